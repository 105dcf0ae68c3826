/**
 * The key vault as the control plane sees it. The local vault (vault/local.ts) and the Azure Key Vault adapter
 * implement the same interface, with Azure's semantics: named keys, immutable versions, enable/disable, delete.
 * Private key material enters a vault and never leaves it: callers get public keys, thumbprints and wrap/unwrap.
 */

/** Identifies one version of one key. */
export interface KeyRef {
  name: string;
  version: string;
}

export type KeyPurpose = 'tenant' | 'provider' | 'kek';

export interface VaultKeyInfo extends KeyRef {
  /** Key identifier in the vault's own URI form (what a .byok header.kid names for a KEK). */
  kid: string;
  /** Lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER (DESIGN.md §4). */
  thumbprint: string;
  purpose: KeyPurpose;
  enabled: boolean;
  createdAt: string;
  tags: Record<string, string>;
}

export interface ImportOptions {
  purpose: KeyPurpose;
  /** Staged keys are imported disabled and enabled only when the owning workflow accepts the change. */
  enabled: boolean;
  tags?: Record<string, string>;
}

/** A parsed Azure Key Vault BYOK file (keyfiles/byok.ts validates the JSON shape). */
export interface ByokTransfer {
  /** header.kid: the key-exchange key that wrapped the transfer. */
  kid: string;
  /** RSA-OAEP(SHA-1) of an ephemeral AES-256 key, then RFC 5649 AES key wrap with padding of the PKCS#8 key. */
  ciphertext: Buffer;
}

export interface Vault {
  /** Imports a PKCS#8 DER private key (RSA-2048 only: UNSUPPORTED_KEY otherwise) as a new version of `name`. */
  importKey(name: string, pkcs8Der: Buffer, options: ImportOptions): Promise<VaultKeyInfo>;
  /**
   * Unwraps a BYOK transfer with the KEK it names (inside the vault) and imports the key as a new version of `name`.
   * The named KEK must be a version of `kekName` (the tenant's own for the region): another tenant's is refused.
   */
  importByok(name: string, transfer: ByokTransfer, options: ImportOptions, kekName: string): Promise<VaultKeyInfo>;
  /** Generates an RSA-2048 key inside the vault (provider keys). */
  createKey(name: string, options: ImportOptions): Promise<VaultKeyInfo>;
  /** Creates a key-exchange key (RSA-2048, purpose 'kek') and returns it with its public key (SPKI PEM). */
  createKek(name: string): Promise<{ key: VaultKeyInfo; publicKeyPem: string }>;
  /** The key version, or undefined when it does not exist (or was deleted). */
  getKey(ref: KeyRef): Promise<VaultKeyInfo | undefined>;
  /** All live versions of a key, oldest first. */
  listVersions(name: string): Promise<VaultKeyInfo[]>;
  /** SPKI PEM of the key version's public key. */
  getPublicKeyPem(ref: KeyRef): Promise<string>;
  setEnabled(ref: KeyRef, enabled: boolean): Promise<void>;
  /** Deletes and purges the key version: no copy stays recoverable. Idempotent. */
  deleteKey(ref: KeyRef): Promise<void>;
  /** RSA-OAEP-256 wrap with an enabled key version. */
  wrapKey(ref: KeyRef, plaintext: Buffer): Promise<Buffer>;
  /** RSA-OAEP-256 unwrap with an enabled key version. */
  unwrapKey(ref: KeyRef, wrapped: Buffer): Promise<Buffer>;
  /** Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature with the key version's public key. */
  verify(ref: KeyRef, data: Buffer, signature: Buffer): Promise<boolean>;
}
