// Over 400 lines: one adapter class; every Vault method maps onto Azure's key API through the same naming and error scrubbing.
/**
 * Azure Key Vault / Managed HSM as the `Vault` (docs/AZURE.md), through `@azure/keyvault-keys` with a credential from
 * `@azure/identity` (DefaultAzureCredential in production: managed identity, workload identity, or the CLI).
 *
 * One cmk key version is one Azure key, named by a hash of `<cmk name>/<cmk version>` (`azureKeyName`; the version a
 * 32-hex nonce made here, the name 26 characters for SQL Server's EKM connector):
 * Azure deletes and purges whole keys, never one version of a key, and the product must withdraw exactly one version
 * (after a rollback window, or at a lock) while newer ones stay in use. Tags record the cmk name, version, purpose
 * and creation time; `listVersions` therefore pages through the vault's whole key list (25 keys a page) and keeps
 * the keys tagged with that name — acceptable because only the per-region provider key is listed, once per region
 * and worker process (activities/environments.ts keeps what it found). The same shape is what SQL Server's EKM
 * connector wants too: it ignores Azure key versions and rotates by new key names.
 *
 * No key material leaves this module in an error: every SDK failure is rebuilt as a VaultError, CmkError or
 * AzureKeyVaultError holding the status, the service's code and its message (long base64 runs cut out), never the
 * SDK's RestError, whose `request` holds the body (a JWK's private fields, a .byok).
 */
import { createPublicKey, randomBytes, verify as verifySignature, constants, type KeyObject } from 'node:crypto';
import { Agent } from 'node:https';
import { CryptographyClient, KeyClient, type DeletedKey, type JsonWebKey, type KeyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { TokenCredential } from '@azure/identity';
import { CmkError } from '../common/errors';
import { assertSupportedKey, privateKeyFromPkcs8, REQUIRED_RSA_BITS, thumbprintOf } from '../common/keys';
import { VaultError } from './errors';
// In a module of its own, so that the SQL Server engine can name keys without loading the Azure SDK.
import { azureKeyName } from './azure-names';
export { azureKeyName };
import type { ByokTransfer, ImportOptions, KeyPurpose, KeyRef, Vault, VaultKeyInfo } from './types';

/** The cmk key names the local vault accepts; Azure's own rule (`[0-9a-zA-Z-]{1,127}`) is wider. */
const KEY_NAME = /^[a-z0-9][a-z0-9-]{0,126}$/;
const VERSION = /^[0-9a-f]{32}$/;

const TAG = { name: 'cmk-name', version: 'cmk-version', purpose: 'cmk-purpose', created: 'cmk-created' } as const;
const OWN_TAGS: readonly string[] = Object.values(TAG);
/** Azure allows 15 tags with values of at most 256 characters. */
const MAX_TAGS = 15;
const MAX_TAG_VALUE = 256;
const PURPOSES: readonly KeyPurpose[] = ['tenant', 'provider', 'kek'];

/** The operations a tenant or provider key allows; a KEK allows only `import` (Azure's BYOK rule). */
const DATA_KEY_OPS = ['wrapKey', 'unwrapKey', 'verify'] as const;
const KEK_OPS = ['import'] as const;
/** One CryptographyClient per key version in use; each has its own pipeline, so keep the hot ones. */
const CRYPTO_CLIENT_CACHE = 512;

export interface AzureKeyVaultOptions {
  vaultUrl: string;
  credential: TokenCredential;
  /** For emulators and test doubles, whose challenge names https://vault.azure.net from another host. */
  disableChallengeResourceVerification?: boolean;
  /**
   * The SDK's own retries of 429 (after Retry-After), 408, 5xx and network faults, before the activity's Temporal
   * retry policy (the outer layer) sees a failure.
   */
  retry?: { maxRetries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
  /** How often a deletion is polled until the key shows among the deleted keys (then it is purged). */
  deletePollIntervalMs?: number;
  /** Extra trust anchors (PEM) for this client only — tests; production trusts NODE_EXTRA_CA_CERTS. */
  trustedCaPem?: string;
  /**
   * Told when a deleted key cannot be purged because the vault has purge protection: it stays soft-deleted (unusable,
   * recoverable by a vault administrator) until Azure purges it at `scheduledPurgeDate`. Default: a warning on stderr.
   */
  onPurgeRefused?: (event: { ref: KeyRef; azureName: string; scheduledPurgeDate?: string }) => void;
}

/** A failure of the vault service or of reaching it: status, service code and message only. Retryable. */
export class AzureKeyVaultError extends Error {
  override name = 'AzureKeyVaultError';
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}


const validRef = ({ name, version }: KeyRef): boolean => KEY_NAME.test(name) && VERSION.test(version);
const label = ({ name, version }: KeyRef): string => `${name}/${version}`;

/** Anything that looks like encoded key material (a JWK field, a .byok) is cut out of a message we pass on. */
function scrub(text: string): string {
  return text.replace(/[A-Za-z0-9+/_=-]{40,}/g, '[…]').slice(0, 300);
}

/** The parts of the SDK's RestError (or any error) we keep. Reads fields only: the object itself is dropped. */
function describe(err: unknown): { status?: number; code?: string; message: string; name: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { statusCode?: unknown; code?: unknown; message?: unknown; name?: unknown };
  return {
    ...(typeof e.statusCode === 'number' ? { status: e.statusCode } : {}),
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    message: typeof e.message === 'string' ? scrub(e.message) : 'unknown error',
    name: typeof e.name === 'string' ? e.name : 'Error',
  };
}

const statusOf = (err: unknown): number | undefined => describe(err).status;

function rsaPublicKey(jwk: JsonWebKey | undefined): KeyObject {
  if (!jwk?.n || !jwk.e || (jwk.kty !== 'RSA' && jwk.kty !== 'RSA-HSM')) throw new AzureKeyVaultError('The vault returned a key without an RSA public key.');
  return createPublicKey({ key: { kty: 'RSA', n: Buffer.from(jwk.n).toString('base64url'), e: Buffer.from(jwk.e).toString('base64url') }, format: 'jwk' });
}

/** node's JWK export of a private key, as the SDK's JsonWebKey (bytes, not base64url strings). */
function sdkJwk(key: KeyObject): JsonWebKey {
  const jwk = key.export({ format: 'jwk' });
  const bytes = (field: string | undefined): Uint8Array | undefined => (field === undefined ? undefined : Buffer.from(field, 'base64url'));
  return {
    kty: 'RSA',
    keyOps: [...DATA_KEY_OPS],
    n: bytes(jwk.n),
    e: bytes(jwk.e),
    d: bytes(jwk.d),
    p: bytes(jwk.p),
    q: bytes(jwk.q),
    dp: bytes(jwk.dp),
    dq: bytes(jwk.dq),
    qi: bytes(jwk.qi),
  };
}

/** Best effort: the private parts we still hold are zeroed (the SDK's serialised request string cannot be). */
function wipe(jwk: JsonWebKey): void {
  for (const field of [jwk.d, jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi, jwk.t]) field?.fill(0);
}

export class AzureKeyVault implements Vault {
  private readonly client: KeyClient;
  private readonly vaultUrl: string;
  private readonly credential: TokenCredential;
  private readonly clientOptions: KeyClientOptions;
  private readonly deletePollIntervalMs: number;
  private readonly onPurgeRefused: NonNullable<AzureKeyVaultOptions['onPurgeRefused']>;
  private readonly cryptoClients = new Map<string, CryptographyClient>();

  constructor(options: AzureKeyVaultOptions) {
    this.vaultUrl = new URL(options.vaultUrl).origin;
    this.credential = options.credential;
    const agent = options.trustedCaPem ? new Agent({ ca: options.trustedCaPem, keepAlive: true }) : undefined;
    this.clientOptions = {
      disableChallengeResourceVerification: options.disableChallengeResourceVerification ?? false,
      retryOptions: { maxRetries: 4, retryDelayInMs: 800, maxRetryDelayInMs: 30_000, ...options.retry },
      ...(agent
        ? {
            additionalPolicies: [
              {
                position: 'perCall' as const,
                policy: {
                  name: 'cmkTrustedCaPolicy',
                  sendRequest: (request, next) => {
                    request.agent = agent;
                    return next(request);
                  },
                },
              },
            ],
          }
        : {}),
    };
    this.client = new KeyClient(this.vaultUrl, this.credential, this.clientOptions);
    this.deletePollIntervalMs = options.deletePollIntervalMs ?? 2_000;
    this.onPurgeRefused =
      options.onPurgeRefused ??
      (({ ref, azureName, scheduledPurgeDate }) =>
        console.warn(
          `cmk vault: the key ${label(ref)} (Azure key ${azureName}) is deleted but the vault's purge protection keeps it recoverable until ${scheduledPurgeDate ?? 'its retention ends'}; Azure purges it then.`,
        ));
  }

  // ------------------------------------------------------------------------------------------------ errors

  /** Rebuilds an SDK failure without the SDK's objects: 404 → not-found, 403 on a disabled key → disabled. */
  private failure(err: unknown, operation: string, ref?: KeyRef): Error {
    if (err instanceof CmkError || err instanceof VaultError || err instanceof AzureKeyVaultError) return err;
    const { status, code, message, name } = describe(err);
    const what = ref ? ` ${label(ref)}` : '';
    if (status === 404) return new VaultError('not-found', `No key${what} in the vault.`);
    if (status === 403 && /disabled key/i.test(message)) return new VaultError('disabled', `The key${what} is disabled.`);
    if (status === undefined) return new AzureKeyVaultError(`Azure Key Vault could not be reached to ${operation}${what} (${name}): ${message}`, undefined, code);
    return new AzureKeyVaultError(`Azure Key Vault answered ${status}${code ? ` ${code}` : ''} to ${operation}${what}: ${message}`, status, code);
  }

  private async call<T>(operation: string, ref: KeyRef | undefined, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.failure(err, operation, ref);
    }
  }

  // ------------------------------------------------------------------------------------------------ mapping

  private tagsFor(ref: KeyRef, purpose: KeyPurpose, tags: Record<string, string> = {}): Record<string, string> {
    const own = Object.keys(tags).filter((k) => !OWN_TAGS.includes(k));
    if (own.length + OWN_TAGS.length > MAX_TAGS) throw new Error(`A vault key takes at most ${MAX_TAGS - OWN_TAGS.length} tags of the caller's.`);
    // Tags are labels for people browsing the vault; nothing reads them back for a decision, so a long one is cut.
    const labels = Object.fromEntries(own.map((k) => [k, (tags[k] ?? '').slice(0, MAX_TAG_VALUE)]));
    return { ...labels, [TAG.name]: ref.name, [TAG.version]: ref.version, [TAG.purpose]: purpose, [TAG.created]: new Date().toISOString() };
  }

  /** The cmk view of an Azure key; `tampered` when its tags say it is another key version than the one asked for. */
  private info(key: KeyVaultKey, expected?: KeyRef): VaultKeyInfo {
    const tags = key.properties.tags ?? {};
    const ref = { name: tags[TAG.name] ?? '', version: tags[TAG.version] ?? '' };
    if (!validRef(ref) || azureKeyName(ref) !== key.name || (expected && (expected.name !== ref.name || expected.version !== ref.version))) {
      throw new VaultError('tampered', `The Azure key ${key.name} is not the cmk key version its name says.`);
    }
    const purpose = PURPOSES.find((p) => p === tags[TAG.purpose]);
    if (!purpose || !key.id) throw new VaultError('tampered', `The Azure key ${key.name} has no cmk purpose or identifier.`);
    const created = tags[TAG.created] ?? key.properties.createdOn?.toISOString() ?? new Date(0).toISOString();
    return {
      ...ref,
      kid: key.id,
      thumbprint: thumbprintOf(rsaPublicKey(key.key)),
      purpose,
      enabled: key.properties.enabled ?? false,
      createdAt: created,
      tags: Object.fromEntries(Object.entries(tags).filter(([k]) => !OWN_TAGS.includes(k))),
    };
  }

  private newRef(name: string): KeyRef {
    if (!KEY_NAME.test(name)) throw new CmkError('INVALID_ARGUMENT', `"${name}" is not a valid vault key name.`);
    return { name, version: randomBytes(16).toString('hex') };
  }

  /** The key version (enabled or not) or undefined; Azure answers a disabled key's GET with its public key. */
  private async fetch(ref: KeyRef): Promise<KeyVaultKey | undefined> {
    if (!validRef(ref)) return undefined;
    try {
      return await this.client.getKey(azureKeyName(ref));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.failure(err, 'read the key', ref);
    }
  }

  private async require(ref: KeyRef, mustBeEnabled = true): Promise<KeyVaultKey> {
    const key = await this.fetch(ref);
    if (!key) throw new VaultError('not-found', `No key ${label(ref)} in the vault.`);
    this.info(key, ref);
    if (mustBeEnabled && !key.properties.enabled) throw new VaultError('disabled', `The key ${label(ref)} is disabled.`);
    return key;
  }

  private async cryptography(ref: KeyRef): Promise<CryptographyClient> {
    const id = azureKeyName(ref);
    const cached = this.cryptoClients.get(id);
    if (cached) {
      // Map order is insertion order: re-inserting keeps the most recently used at the end.
      this.cryptoClients.delete(id);
      this.cryptoClients.set(id, cached);
      return cached;
    }
    // Built from the key itself (not its id), so the client does not fetch it again; the service then checks the
    // enabled flag on every wrap and unwrap, whichever process disabled it.
    const key = await this.require(ref, false);
    const client = new CryptographyClient(key, this.credential, this.clientOptions);
    this.cryptoClients.set(id, client);
    if (this.cryptoClients.size > CRYPTO_CLIENT_CACHE) this.cryptoClients.delete(this.cryptoClients.keys().next().value as string);
    return client;
  }

  // ------------------------------------------------------------------------------------------------ Vault

  async importKey(name: string, pkcs8Der: Buffer, options: ImportOptions): Promise<VaultKeyInfo> {
    const key = privateKeyFromPkcs8(pkcs8Der);
    assertSupportedKey(key);
    const ref = this.newRef(name);
    const jwk = sdkJwk(key);
    try {
      const imported = await this.call('import the key', ref, () =>
        this.client.importKey(azureKeyName(ref), jwk, { enabled: options.enabled, tags: this.tagsFor(ref, options.purpose, options.tags), hardwareProtected: false }),
      );
      return this.info(imported, ref);
    } finally {
      wipe(jwk);
    }
  }

  /**
   * Azure unwraps the .byok inside its HSM with the KEK the file names (`key_hsm`); this side only makes sure that
   * KEK is a version of the tenant's own `kekName` (tenant isolation) before the transfer goes in.
   */
  async importByok(name: string, transfer: ByokTransfer, options: ImportOptions, kekName: string): Promise<VaultKeyInfo> {
    const kek = await this.findKek(transfer.kid, kekName);
    const ref = this.newRef(name);
    // Azure takes the whole .byok file as key_hsm; rebuild it around the transfer, naming the KEK by its full id.
    const byok = Buffer.from(
      JSON.stringify({ schema_version: '1.0.0', header: { kid: kek.id, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' }, ciphertext: transfer.ciphertext.toString('base64url'), generator: 'cmk' }),
    );
    const jwk: JsonWebKey = { kty: 'RSA-HSM', keyOps: [...DATA_KEY_OPS], t: byok };
    let imported: KeyVaultKey;
    try {
      imported = await this.call('import the .byok key', ref, () =>
        this.client.importKey(azureKeyName(ref), jwk, { enabled: options.enabled, tags: this.tagsFor(ref, options.purpose, options.tags), hardwareProtected: true }),
      );
    } catch (err) {
      // The service refuses a transfer that does not unwrap (400 BadParameter): the file's fault, not the vault's.
      if (err instanceof AzureKeyVaultError && err.status === 400) {
        throw new CmkError('INVALID_KEY_FILE', 'The .byok file does not unwrap with the key-exchange key it names; it is damaged or was wrapped for another key-exchange key.');
      }
      throw err;
    } finally {
      wipe(jwk);
    }
    // R2 is judged on the key the HSM holds now: anything but RSA-2048 goes again, purged.
    const bits = imported.key?.n ? imported.key.n.length * 8 : 0;
    if (bits !== REQUIRED_RSA_BITS || (imported.key?.kty !== 'RSA' && imported.key?.kty !== 'RSA-HSM')) {
      await this.deleteKey(ref);
      throw new CmkError('UNSUPPORTED_KEY', `The key is ${bits || 'an unknown number of'}-bit ${imported.key?.kty ?? 'key'}; only 2048-bit RSA keys are supported.`);
    }
    return this.info(imported, ref);
  }

  async createKey(name: string, options: ImportOptions): Promise<VaultKeyInfo> {
    const ref = this.newRef(name);
    const created = await this.call('create the key', ref, () =>
      this.client.createRsaKey(azureKeyName(ref), { keySize: REQUIRED_RSA_BITS, keyOps: [...DATA_KEY_OPS], enabled: options.enabled, tags: this.tagsFor(ref, options.purpose, options.tags) }),
    );
    return this.info(created, ref);
  }

  /** An RSA-HSM key with key_ops ["import"], as Azure's BYOK requires (a Premium vault or a Managed HSM). */
  async createKek(name: string): Promise<{ key: VaultKeyInfo; publicKeyPem: string }> {
    const ref = this.newRef(name);
    const created = await this.call('create the key-exchange key', ref, () =>
      this.client.createRsaKey(azureKeyName(ref), { hsm: true, keySize: REQUIRED_RSA_BITS, keyOps: [...KEK_OPS], enabled: true, tags: this.tagsFor(ref, 'kek') }),
    );
    return { key: this.info(created, ref), publicKeyPem: rsaPublicKey(created.key).export({ type: 'spki', format: 'pem' }).toString() };
  }

  async getKey(ref: KeyRef): Promise<VaultKeyInfo | undefined> {
    const key = await this.fetch(ref);
    return key && this.info(key, ref);
  }

  /** Pages through every key of the vault (see the file comment), then reads each match for its public key. */
  async listVersions(name: string): Promise<VaultKeyInfo[]> {
    if (!KEY_NAME.test(name)) return [];
    const refs: KeyRef[] = [];
    await this.call('list the keys', undefined, async () => {
      for await (const properties of this.client.listPropertiesOfKeys()) {
        const version = properties.tags?.[TAG.version] ?? '';
        if (properties.tags?.[TAG.name] === name && VERSION.test(version) && properties.name === azureKeyName({ name, version })) refs.push({ name, version });
      }
    });
    // A version deleted between the list and its read is no longer live: left out.
    const keys = await Promise.all(refs.map((ref) => this.getKey(ref)));
    return keys.filter((k): k is VaultKeyInfo => k !== undefined).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
  }

  async getPublicKeyPem(ref: KeyRef): Promise<string> {
    return rsaPublicKey((await this.require(ref, false)).key).export({ type: 'spki', format: 'pem' }).toString();
  }

  async setEnabled(ref: KeyRef, enabled: boolean): Promise<void> {
    if (!validRef(ref)) throw new VaultError('not-found', `No key ${label(ref)} in the vault.`);
    // Without a version Azure updates the key's only (latest) version: one request.
    await this.call(enabled ? 'enable the key' : 'disable the key', ref, () => this.client.updateKeyProperties(azureKeyName(ref), { enabled }));
  }

  /**
   * Deletes the Azure key, waits until it shows among the deleted keys, and purges it. Idempotent: a key already
   * gone (or deleted by an earlier attempt that died before the purge) is finished off. Under purge protection the
   * key stays soft-deleted until Azure purges it itself: reported through onPurgeRefused, not thrown, so that a lock
   * completes (the key cannot be used any more; only a vault administrator could recover it).
   */
  async deleteKey(ref: KeyRef): Promise<void> {
    if (!validRef(ref)) return;
    const azureName = azureKeyName(ref);
    this.cryptoClients.delete(azureName);
    let deleted: DeletedKey | undefined;
    try {
      const poller = await this.client.beginDeleteKey(azureName, { intervalInMs: this.deletePollIntervalMs });
      deleted = await poller.pollUntilDone();
    } catch (err) {
      if (statusOf(err) !== 404) throw this.failure(err, 'delete the key', ref);
      deleted = await this.deletedKey(ref, azureName);
      if (!deleted) return;
    }
    const recoveryLevel = deleted.properties.recoveryLevel;
    if (recoveryLevel !== undefined && !recoveryLevel.includes('Purgeable')) {
      this.onPurgeRefused({ ref, azureName, ...(deleted.properties.scheduledPurgeDate ? { scheduledPurgeDate: deleted.properties.scheduledPurgeDate.toISOString() } : {}) });
      return;
    }
    // Without soft delete ('Purgeable') the key is gone already; a purge then answers 404.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.purgeDeletedKey(azureName);
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) return;
        // 409: Azure is still deleting it. Anything else (a 403 from RBAC) is the operator's to fix: retried by Temporal.
        if (status !== 409 || attempt >= 10) throw this.failure(err, 'purge the deleted key', ref);
        await new Promise((r) => setTimeout(r, this.deletePollIntervalMs));
      }
    }
  }

  private async deletedKey(ref: KeyRef, azureName: string): Promise<DeletedKey | undefined> {
    try {
      return await this.client.getDeletedKey(azureName);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.failure(err, 'read the deleted key', ref);
    }
  }

  async wrapKey(ref: KeyRef, plaintext: Buffer): Promise<Buffer> {
    if (!validRef(ref)) throw new VaultError('not-found', `No key ${label(ref)} in the vault.`);
    const client = await this.cryptography(ref);
    const { result } = await this.call('wrap with the key', ref, () => client.wrapKey('RSA-OAEP-256', plaintext));
    return Buffer.from(result);
  }

  async unwrapKey(ref: KeyRef, wrapped: Buffer): Promise<Buffer> {
    if (!validRef(ref)) throw new VaultError('not-found', `No key ${label(ref)} in the vault.`);
    const client = await this.cryptography(ref);
    const { result } = await this.call('unwrap with the key', ref, () => client.unwrapKey('RSA-OAEP-256', wrapped));
    return Buffer.from(result);
  }

  /** Locally with the public key (one read, which also refuses a disabled key, as the local vault does). */
  async verify(ref: KeyRef, data: Buffer, signature: Buffer): Promise<boolean> {
    const key = await this.require(ref);
    return verifySignature('sha256', data, { key: rsaPublicKey(key.key), padding: constants.RSA_PKCS1_PADDING }, signature);
  }

  /**
   * A .byok's header.kid must name a key of this vault that is a version of `kekName`: its Azure id, with or without
   * the Azure version. Another tenant's KEK is as unknown as a made-up one.
   */
  private async findKek(kid: string, kekName: string): Promise<KeyVaultKey> {
    const unknown = () => new CmkError('INVALID_KEY_FILE', 'The .byok file names a key-exchange key this vault does not hold; create one with `cmk key kek` and wrap the key with it.');
    let url: URL;
    try {
      url = new URL(kid);
    } catch {
      throw unknown();
    }
    const match = /^\/keys\/([0-9a-zA-Z-]{1,127})(?:\/([0-9a-f]{32}))?\/?$/.exec(url.pathname);
    if (url.origin.toLowerCase() !== this.vaultUrl.toLowerCase() || !match?.[1]) throw unknown();
    // The name is a hash: the key's tags say which cmk key version it is, and `info` checks them against the name.
    let key: KeyVaultKey | undefined;
    try {
      key = await this.client.getKey(match[1]);
      const ref = { name: key.properties.tags?.[TAG.name] ?? '', version: key.properties.tags?.[TAG.version] ?? '' };
      if (ref.name !== kekName) throw unknown();
      this.info(key, ref);
    } catch (err) {
      if (err instanceof VaultError || err instanceof CmkError || statusOf(err) === 404) throw unknown();
      throw this.failure(err, 'read the key-exchange key');
    }
    if (!key || key.properties.tags?.[TAG.purpose] !== 'kek' || !key.properties.enabled || (match[2] && key.properties.version !== match[2])) throw unknown();
    return key;
  }
}
