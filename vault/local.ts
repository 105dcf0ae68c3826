/**
 * The embedded key vault: Azure Key Vault's model (named keys, immutable versions, enabled flag, delete = purge)
 * in files under `<data dir>/vault/keys/<name>/<version>.json`. Public parts are stored in the clear; the private
 * key is AES-256-GCM encrypted under the master key (kept in CMK_SECRETS_DIR), with name and version as additional
 * data so that records cannot be swapped. The whole record (public key, thumbprint, purpose, enabled, tags…) carries
 * an HMAC under a key derived from the master key: whoever can write the data dir but not the secrets dir cannot
 * put their own public key in a record (and so pass a lock's proof of possession) or re-enable a key. Every call
 * reads from disk: the API service and the worker share it.
 *
 * What is kept in memory: the private keys opened by recent unwraps (OpenedKeys), so that a re-protection of many
 * environments does not decrypt and parse the same private key once per environment. Keeping it changes nothing of
 * what may unwrap: every call still reads the key's record from disk, checks its MAC and refuses a disabled or
 * deleted key (whichever process disabled or deleted it) before the kept key is used.
 *
 * The RSA private operation of an unwrap runs on libuv's thread pool (WebCrypto's RSA-OAEP, the same OAEP-SHA-256
 * with MGF1-SHA-256 as `privateDecrypt`), not on the event loop: a re-protection of many environments then uses every
 * core, and the worker's event loop stays free for its heartbeats. An opened key is imported as RSA_LANES separate
 * copies, used in turn, because OpenSSL serialises concurrent private operations on one key object (measured: two
 * operations in flight on one copy ran no faster than one; on two copies, 1.4× faster on 2 cores).
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPublicKey,
  generateKeyPair,
  hkdfSync,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
  verify as verifySignature,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CmkError } from '../common/errors';
import { assertSupportedKey, privateKeyFromPkcs8, thumbprintOf } from '../common/keys';
import { readJsonIfExists, writeFileAtomic } from '../common/atomic';
import { unwrapByokCiphertext } from '../keyfiles/byok';
import { VaultError } from './errors';
import type { ByokTransfer, ImportOptions, KeyRef, Vault, VaultKeyInfo } from './types';

const generateRsa = promisify(generateKeyPair);

/** How long an opened private key is kept after it was opened, and how many are kept at most (oldest use first out). */
const OPENED_KEY_TTL_MS = 60_000;
const OPENED_KEYS_MAX = 32;
/** Copies of an opened key for unwrapping in parallel: one per core, at least two, at most libuv's default pool (4). */
const RSA_LANES = Math.min(4, Math.max(2, availableParallelism()));
const OAEP_SHA256 = { name: 'RSA-OAEP', hash: 'SHA-256' } as const;
const KEY_NAME = /^[a-z0-9][a-z0-9-]{0,126}$/;
const VERSION = /^[0-9a-f]{32}$/;

// Shared with the Azure adapter (vault/azure.ts); re-exported so that existing imports keep working.
export { VaultError };

interface StoredKey extends VaultKeyInfo {
  publicKeyPem: string;
  sealed: { iv: string; tag: string; ciphertext: string };
  /**
   * HMAC-SHA256 of every other field (recordMac), base64. Absent in records written before records were authenticated:
   * those are migrated when first read (see migrate).
   */
  mac?: string;
}

/** Fields in a fixed order and tags sorted, so that the MAC does not depend on how JSON was written. */
function canonicalRecord(stored: StoredKey): Buffer {
  const { name, version, kid, thumbprint, purpose, enabled, createdAt, tags, publicKeyPem, sealed } = stored;
  const sortedTags = Object.entries(tags ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(['cmk-local-vault-record/2', name, version, kid, thumbprint, purpose, enabled, createdAt, sortedTags, publicKeyPem, sealed.iv, sealed.tag, sealed.ciphertext]));
}

/** A private key opened from its record: as a KeyObject (BYOK unwrapping) and as RSA_LANES WebCrypto copies (unwraps). */
interface OpenedKey {
  key: KeyObject;
  decryptors: webcrypto.CryptoKey[];
  turn: number;
}

/**
 * Private keys opened from their records, by name/version, each with the sealed form it was opened from (a record
 * sealed afresh is opened afresh) — for at most OPENED_KEY_TTL_MS after opening, at most OPENED_KEYS_MAX of them.
 * Only a cache of work: it is consulted after the record was read and found enabled, never instead. Concurrent
 * unwraps of a key not yet open share one opening. Node offers no way to wipe a KeyObject's or CryptoKey's memory; an
 * entry dropped is unreferenced, and its DER was zeroed as soon as it was parsed.
 */
class OpenedKeys {
  private readonly entries = new Map<string, { opened: Promise<OpenedKey>; sealed: string; expires: number }>();
  private sweeper: NodeJS.Timeout | undefined;

  get(stored: StoredKey, open: () => Promise<OpenedKey>): Promise<OpenedKey> {
    const id = `${stored.name}/${stored.version}`;
    const sealed = `${stored.sealed.iv}.${stored.sealed.tag}`;
    const now = Date.now();
    const found = this.entries.get(id);
    this.entries.delete(id);
    if (found && found.sealed === sealed && found.expires > now) {
      this.entries.set(id, found);
      return found.opened;
    }
    const entry = { opened: open(), sealed, expires: now + OPENED_KEY_TTL_MS };
    // A failed opening is not kept: the next call tries again (and reports the record as it is then).
    entry.opened.catch(() => {
      if (this.entries.get(id) === entry) this.entries.delete(id);
    });
    this.entries.set(id, entry);
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= OPENED_KEYS_MAX) break;
      this.entries.delete(oldest);
    }
    this.sweeper ??= setInterval(() => this.sweep(), OPENED_KEY_TTL_MS).unref();
    return entry.opened;
  }

  forget({ name, version }: KeyRef): void {
    this.entries.delete(`${name}/${version}`);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, entry] of this.entries) if (entry.expires <= now) this.entries.delete(id);
    if (this.entries.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}

/**
 * Public keys parsed from their PEM, by the PEM itself (32 at most, oldest use out first): parsing costs about as
 * much as the RSA encryption. Keyed by content, so a kept key is always the one the record, just read and checked,
 * names.
 */
class PublicKeys {
  private readonly entries = new Map<string, KeyObject>();

  get(pem: string): KeyObject {
    const key = this.entries.get(pem) ?? createPublicKey(pem);
    this.entries.delete(pem);
    this.entries.set(pem, key);
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= OPENED_KEYS_MAX) break;
      this.entries.delete(oldest);
    }
    return key;
  }
}

export class LocalVault implements Vault {
  private readonly root: string;
  private readonly masterKey: Buffer;
  /** Its own key for the records' MACs, derived from the master key (never the encryption key itself). */
  private readonly macKey: Buffer;
  private readonly opened = new OpenedKeys();
  private readonly publicKeys = new PublicKeys();

  constructor({ dataDir, masterKey }: { dataDir: string; masterKey: Buffer }) {
    if (masterKey.length !== 32) throw new Error('The vault master key must be 32 bytes.');
    this.root = join(dataDir, 'vault', 'keys');
    this.masterKey = masterKey;
    this.macKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'cmk-local-vault record mac', 32));
  }

  // ------------------------------------------------------------------------------------------------ storage

  private path({ name, version }: KeyRef): string {
    if (!KEY_NAME.test(name) || !VERSION.test(version)) throw new VaultError('not-found', `No key ${name}/${version} in the vault.`);
    return join(this.root, name, `${version}.json`);
  }

  /**
   * The private key's additional data. Authenticated records use a second form, so that a record whose MAC was
   * stripped cannot pass for one written before records were authenticated: its private key would not open.
   */
  private aad({ name, version }: KeyRef, legacy = false): Buffer {
    return Buffer.from(legacy ? `cmk-local-vault:${name}/${version}` : `cmk-local-vault:v2:${name}/${version}`);
  }

  private recordMac(stored: StoredKey): Buffer {
    return createHmac('sha256', this.macKey).update(canonicalRecord(stored)).digest();
  }

  private async write(stored: StoredKey): Promise<void> {
    const { mac: _old, ...record } = stored;
    await writeFileAtomic(this.path(stored), JSON.stringify({ ...record, mac: this.recordMac(record).toString('base64') }));
  }

  private async load(ref: KeyRef): Promise<StoredKey | undefined> {
    const stored = await readJsonIfExists<StoredKey>(this.path(ref));
    if (!stored) return undefined;
    const tampered = () => new VaultError('tampered', `The vault record ${ref.name}/${ref.version} has been changed outside the vault; it is not used.`);
    if (typeof stored !== 'object' || stored.name !== ref.name || stored.version !== ref.version) throw new VaultError('tampered', `The vault record ${ref.name}/${ref.version} does not belong there.`);
    if (stored.mac === undefined) return this.migrate(stored, tampered);
    const mac = Buffer.from(String(stored.mac), 'base64');
    const expected = this.recordMac(stored);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) throw tampered();
    return stored;
  }

  /**
   * A record written before records were authenticated: its private key is (AES-GCM authenticates it), so the public
   * key and thumbprint are derived from it again and must match what the record says; then the record is sealed
   * afresh (new IV, the second additional data, a MAC) and written back. Its enabled flag, purpose and tags are taken
   * as found, once: from then on they are authenticated.
   */
  private async migrate(stored: StoredKey, tampered: () => VaultError): Promise<StoredKey> {
    let key: KeyObject;
    try {
      key = this.open(stored, true);
    } catch {
      throw tampered();
    }
    const publicKeyPem = createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
    if (publicKeyPem !== stored.publicKeyPem || thumbprintOf(key) !== stored.thumbprint) throw tampered();
    const { mac: _none, ...record } = stored;
    const migrated: StoredKey = { ...record, sealed: this.seal(stored, key) };
    await this.write(migrated);
    return migrated;
  }

  private seal(ref: KeyRef, key: KeyObject): StoredKey['sealed'] {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, iv);
    cipher.setAAD(this.aad(ref));
    const ciphertext = Buffer.concat([cipher.update(key.export({ type: 'pkcs8', format: 'der' })), cipher.final()]);
    return { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), ciphertext: ciphertext.toString('base64') };
  }

  /** The record's private key as PKCS#8 DER: the caller parses it and zeroes it. */
  private openDer(stored: StoredKey, legacy: boolean): Buffer {
    const decipher = createDecipheriv('aes-256-gcm', this.masterKey, Buffer.from(stored.sealed.iv, 'base64'));
    decipher.setAAD(this.aad(stored, legacy));
    decipher.setAuthTag(Buffer.from(stored.sealed.tag, 'base64'));
    const parts = [decipher.update(Buffer.from(stored.sealed.ciphertext, 'base64')), decipher.final()];
    const der = Buffer.concat(parts);
    for (const b of parts) b.fill(0);
    return der;
  }

  private open(stored: StoredKey, legacy: boolean): KeyObject {
    const der = this.openDer(stored, legacy);
    try {
      return privateKeyFromPkcs8(der);
    } finally {
      // The key's plaintext DER is needed only to parse it.
      der.fill(0);
    }
  }

  private async openForUnwrap(stored: StoredKey): Promise<OpenedKey> {
    const der = this.openDer(stored, false);
    try {
      const key = privateKeyFromPkcs8(der);
      const decryptors = await Promise.all(Array.from({ length: RSA_LANES }, () => webcrypto.subtle.importKey('pkcs8', der, OAEP_SHA256, false, ['decrypt'])));
      return { key, decryptors, turn: 0 };
    } finally {
      der.fill(0);
    }
  }

  private async require(ref: KeyRef, mustBeEnabled = true): Promise<StoredKey> {
    const stored = await this.load(ref);
    if (!stored) throw new VaultError('not-found', `No key ${ref.name}/${ref.version} in the vault.`);
    if (mustBeEnabled && !stored.enabled) throw new VaultError('disabled', `The key ${ref.name}/${ref.version} is disabled.`);
    return stored;
  }

  /** The record's private key, opened — or kept from a recent opening of the same record (OpenedKeys). */
  private async privateKey(stored: StoredKey): Promise<OpenedKey> {
    try {
      return await this.opened.get(stored, () => this.openForUnwrap(stored));
    } catch {
      throw new VaultError('tampered', `The vault record ${stored.name}/${stored.version} cannot be opened with this vault's master key.`);
    }
  }

  private async store(name: string, key: KeyObject, options: ImportOptions): Promise<VaultKeyInfo> {
    if (!KEY_NAME.test(name)) throw new CmkError('INVALID_ARGUMENT', `"${name}" is not a valid vault key name.`);
    const version = randomBytes(16).toString('hex');
    const ref = { name, version };
    const info: VaultKeyInfo = {
      name,
      version,
      kid: `local-vault:/keys/${name}/${version}`,
      thumbprint: thumbprintOf(key),
      purpose: options.purpose,
      enabled: options.enabled,
      createdAt: new Date().toISOString(),
      tags: options.tags ?? {},
    };
    const stored: StoredKey = {
      ...info,
      publicKeyPem: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString(),
      sealed: this.seal(ref, key),
    };
    mkdirSync(join(this.root, name), { recursive: true, mode: 0o700 });
    await this.write(stored);
    return info;
  }

  private info(stored: StoredKey): VaultKeyInfo {
    const { publicKeyPem: _p, sealed: _s, mac: _m, ...info } = stored;
    return info;
  }

  // ------------------------------------------------------------------------------------------------ Vault

  async importKey(name: string, pkcs8Der: Buffer, options: ImportOptions): Promise<VaultKeyInfo> {
    const key = privateKeyFromPkcs8(pkcs8Der);
    assertSupportedKey(key);
    return this.store(name, key, options);
  }

  async importByok(name: string, transfer: ByokTransfer, options: ImportOptions, kekName: string): Promise<VaultKeyInfo> {
    const kek = await this.findKek(transfer.kid, kekName);
    const pkcs8 = unwrapByokCiphertext((await this.privateKey(kek)).key, transfer.ciphertext);
    return this.importKey(name, pkcs8, options);
  }

  async createKey(name: string, options: ImportOptions): Promise<VaultKeyInfo> {
    const { privateKey } = await generateRsa('rsa', { modulusLength: 2048 });
    return this.store(name, privateKey, options);
  }

  async createKek(name: string): Promise<{ key: VaultKeyInfo; publicKeyPem: string }> {
    const { privateKey } = await generateRsa('rsa', { modulusLength: 2048 });
    const key = await this.store(name, privateKey, { purpose: 'kek', enabled: true });
    return { key, publicKeyPem: await this.getPublicKeyPem(key) };
  }

  async getKey(ref: KeyRef): Promise<VaultKeyInfo | undefined> {
    const stored = await this.load(ref).catch((err: unknown) => (err instanceof VaultError && err.reason === 'not-found' ? undefined : Promise.reject(err)));
    return stored && this.info(stored);
  }

  async listVersions(name: string): Promise<VaultKeyInfo[]> {
    if (!KEY_NAME.test(name)) return [];
    const files = await fs.readdir(join(this.root, name)).catch(() => [] as string[]);
    const versions = await Promise.all(files.filter((f) => VERSION.test(f.replace(/\.json$/, '')) && f.endsWith('.json')).map((f) => this.getKey({ name, version: f.slice(0, -5) })));
    return versions.filter((v): v is VaultKeyInfo => v !== undefined).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
  }

  async getPublicKeyPem(ref: KeyRef): Promise<string> {
    return (await this.require(ref, false)).publicKeyPem;
  }

  async setEnabled(ref: KeyRef, enabled: boolean): Promise<void> {
    this.opened.forget(ref);
    const stored = await this.require(ref, false);
    if (stored.enabled === enabled) return;
    await this.write({ ...stored, enabled });
  }

  async deleteKey(ref: KeyRef): Promise<void> {
    // The local vault has no soft-delete: deleting is purging; the encrypted record is gone (and no opened copy kept).
    this.opened.forget(ref);
    await fs.rm(this.path(ref), { force: true });
  }

  async wrapKey(ref: KeyRef, plaintext: Buffer): Promise<Buffer> {
    const stored = await this.require(ref);
    return publicEncrypt({ key: this.publicKeys.get(stored.publicKeyPem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
  }

  async unwrapKey(ref: KeyRef, wrapped: Buffer): Promise<Buffer> {
    // Read and checked on every call (another process may have disabled or deleted the key); a refused key is not kept.
    const stored = await this.require(ref).catch((err: unknown) => {
      this.opened.forget(ref);
      throw err;
    });
    const opened = await this.privateKey(stored);
    const decryptor = opened.decryptors[opened.turn++ % opened.decryptors.length]!;
    try {
      return Buffer.from(await webcrypto.subtle.decrypt(OAEP_SHA256, decryptor, wrapped));
    } catch {
      // What privateDecrypt said of a ciphertext that is not this key's (WebCrypto says only "operation failed").
      throw new Error(`The wrapped key cannot be unwrapped with ${ref.name}/${ref.version}: it was wrapped for another key or is damaged.`);
    }
  }

  async verify(ref: KeyRef, data: Buffer, signature: Buffer): Promise<boolean> {
    const stored = await this.require(ref);
    return verifySignature('sha256', data, { key: this.publicKeys.get(stored.publicKeyPem), padding: constants.RSA_PKCS1_PADDING }, signature);
  }

  /** A .byok's header.kid: the full kid, `<name>/<version>` or `<name>` (its newest version). */
  private async findKek(kid: string, kekName: string): Promise<StoredKey> {
    const match = /^(?:local-vault:\/keys\/)?([a-z0-9][a-z0-9-]{0,126})(?:\/([0-9a-f]{32}))?$/.exec(kid);
    let stored: StoredKey | undefined;
    // Only the tenant's own KEK for this region: a kid naming another tenant's KEK is as unknown as a made-up one.
    if (match?.[1] === kekName) {
      const version = match[2] ?? (await this.listVersions(match[1])).at(-1)?.version;
      stored = version ? await this.load({ name: match[1], version }).catch(() => undefined) : undefined;
    }
    if (!stored || stored.purpose !== 'kek' || !stored.enabled) {
      throw new CmkError('INVALID_KEY_FILE', 'The .byok file names a key-exchange key this vault does not hold; create one with `cmk key kek` and wrap the key with it.');
    }
    return stored;
  }
}
