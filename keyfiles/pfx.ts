// Over 400 lines: one walk of the PKCS#12 structure, refusing in DESIGN.md §4's order; its steps share the parsed layout and the work budget.
/**
 * Opening a tenant's `.pfx` (PKCS#12) in memory.
 *
 * We walk the PKCS#12 structure ourselves (node-forge decodes the DER, node:crypto does the cryptography) rather than
 * call forge.pkcs12.pkcs12FromAsn1, because:
 * - every refusal must carry the right code in DESIGN.md §4's order (INVALID_KEY_FILE → UNSUPPORTED_KEY →
 *   PASSWORD_REQUIRED → WRONG_PASSWORD), which needs to know what is readable *before* the password is used;
 * - forge cannot load EC private keys or certificates, so it cannot say "EC key" (UNSUPPORTED_KEY) rather than "garbage";
 * - forge's PBKDF2 runs in JavaScript when a PRF other than SHA-1 is named (1.9 s for 210,000 iterations against
 *   75 ms in OpenSSL) and feeds it the password's UTF-16 code units truncated to bytes, where OpenSSL and Windows use
 *   UTF-8: a non-ASCII password would not open a file OpenSSL made;
 * - a hostile file must be refused quickly: DER depth, iteration counts and the total key-derivation work are capped.
 * Nothing here logs, and no message contains key material or the password.
 */
import { createDecipheriv, createPrivateKey, createPublicKey, pbkdf2Sync, timingSafeEqual, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { CmkError } from '../common/errors';
import { assertSupportedKey, MAX_KEY_FILE_BYTES, thumbprintOf } from '../common/keys';
import { bmpPassword, DIGEST_SIZES, pkcs12Kdf, pkcs12Mac, type Digest, type KdfWork } from './pkcs12-kdf';

export { MAX_KEY_FILE_BYTES } from '../common/keys';
/** One key derivation may not ask for more iterations than this (real files: 2,000 to 600,000). */
export const MAX_KDF_ITERATIONS = 1_000_000;
/** All derivations of one parse together (MAC, each encrypted block): about 2-3 s of CPU at worst. */
const KDF_WORK_BUDGET = 2_000_000;
/**
 * The empty-password probe after a failed password is a courtesy (PASSWORD_REQUIRED rather than WRONG_PASSWORD), so it
 * gets a small budget of its own: enough for files tools make with an empty password (about 2,048 iterations), not
 * enough to let each wrong guess at a high-iteration file cost three derivations.
 */
const EMPTY_PROBE_BUDGET = 100_000;
/** A real PKCS#12 nests about 8 levels in any one DER blob; this is far below a stack overflow. */
const MAX_DER_DEPTH = 24;

/** Object identifiers of PKCS#12 (RFC 7292), PKCS#5 (RFC 8018) and their algorithms. Shared with generate.ts. */
export const OID = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  keyBag: '1.2.840.113549.1.12.10.1.1',
  shroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  safeContentsBag: '1.2.840.113549.1.12.10.1.6',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  pbeSha1TripleDes: '1.2.840.113549.1.12.1.3',
  pbeSha1Rc2_40: '1.2.840.113549.1.12.1.6',
  aes128Cbc: '2.16.840.1.101.3.4.1.2',
  aes192Cbc: '2.16.840.1.101.3.4.1.22',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  desEde3Cbc: '1.2.840.113549.3.7',
  hmacWithSha1: '1.2.840.113549.2.7',
  hmacWithSha224: '1.2.840.113549.2.8',
  hmacWithSha256: '1.2.840.113549.2.9',
  hmacWithSha384: '1.2.840.113549.2.10',
  hmacWithSha512: '1.2.840.113549.2.11',
  sha1: '1.3.14.3.2.26',
  sha224: '2.16.840.1.101.3.4.2.4',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
} as const;

export interface OpenedPfx {
  /** The private key, re-encoded by OpenSSL as PKCS#8 DER (bag attributes dropped). */
  pkcs8Der: Buffer;
  thumbprint: string;
  publicKeyPem: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Refusals: plain sentences for a tenant administrator.

function damaged(detail: string): CmkError {
  return new CmkError('INVALID_KEY_FILE', `The file is not a usable .pfx (PKCS#12) file: ${detail}.`);
}

export function oversized(): CmkError {
  return new CmkError('INVALID_KEY_FILE', `The key file is larger than ${MAX_KEY_FILE_BYTES / 1024} KiB; real .pfx and .byok files are a few KiB.`);
}

const passwordRequired = (): CmkError =>
  new CmkError('PASSWORD_REQUIRED', 'This .pfx file is protected by a password: give its password with --password-file.');
const unprotected = (): CmkError =>
  new CmkError('PASSWORD_REQUIRED', 'The .pfx file is not protected by a password, so anyone who saw it could read the key; export it again with a password.');
const wrongPassword = (): CmkError => new CmkError('WRONG_PASSWORD', 'The password does not open this .pfx file.');

// ---------------------------------------------------------------------------------------------------------------
// DER reading. forge decodes; these helpers check each node's shape so that a hostile file ends in INVALID_KEY_FILE.

type Asn1 = forge.asn1.Asn1;
const { Class, Type } = forge.asn1;

/** forge 1.4's fromDer takes an options object (maxDepth guards deep nesting); @types/node-forge only knows `strict`. */
type FromDer = (bytes: string, options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean; maxDepth: number }) => Asn1;

function decodeDer(bytes: Buffer, what: string): Asn1 {
  // Looked up at each call, not captured at load, so that a test can spy on it (oversized files must not reach it).
  const fromDer = forge.asn1.fromDer as unknown as FromDer;
  try {
    // strict: a length running past the end is an error (forge would otherwise silently shorten truncated files).
    return fromDer(bytes.toString('binary'), { strict: true, parseAllBytes: true, decodeBitStrings: false, maxDepth: MAX_DER_DEPTH });
  } catch {
    throw damaged(`${what} is truncated, corrupt or not PKCS#12 data`);
  }
}

function constructed(node: Asn1 | undefined, type: number, what: string, minChildren: number): Asn1[] {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== type || !Array.isArray(node.value) || node.value.length < minChildren) {
    throw damaged(`${what} is malformed`);
  }
  return node.value;
}

const sequence = (node: Asn1 | undefined, what: string, minChildren = 0): Asn1[] => constructed(node, Type.SEQUENCE, what, minChildren);

/** The single child of an `[0] EXPLICIT` wrapper. */
function explicit0(node: Asn1 | undefined, what: string): Asn1 {
  if (!node || node.tagClass !== Class.CONTEXT_SPECIFIC || node.type !== 0 || !Array.isArray(node.value) || node.value.length !== 1) {
    throw damaged(`${what} is malformed`);
  }
  return node.value[0]!;
}

/**
 * The OIDs we act on, by their DER contents. A file's OIDs are looked up byte for byte, never decoded: forge's derToOid
 * throws a plain Error on an arc over 2^53 (a 19-byte file was enough to escape parsePfx without a code) and quietly
 * drops a truncated last arc, and a non-minimal encoding of a known OID is not DER either.
 */
const KNOWN_OIDS = new Map<string, string>(Object.values(OID).map((oid) => [forge.asn1.oidToDer(oid).getBytes(), oid]));
/** What oidOf answers for any other OID: equal to none of OID's values, and no key of the lookup tables below. */
const UNKNOWN_OID = 'unknown OID';

function oidOf(node: Asn1 | undefined, what: string): string {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.OID || typeof node.value !== 'string') throw damaged(`${what} is malformed`);
  return KNOWN_OIDS.get(node.value) ?? UNKNOWN_OID;
}

/** Bytes of an OCTET STRING (or of an `[n] IMPLICIT` one), joining BER's constructed chunks as Windows writes them. */
function octetsOf(node: Asn1 | undefined, what: string, implicitTag?: number): Buffer {
  const tagOk = implicitTag === undefined ? node?.tagClass === Class.UNIVERSAL && node.type === Type.OCTETSTRING : node?.tagClass === Class.CONTEXT_SPECIFIC && node.type === implicitTag;
  if (!node || !tagOk) throw damaged(`${what} is malformed`);
  if (typeof node.value === 'string') return Buffer.from(node.value, 'binary');
  return Buffer.concat(node.value.map((chunk) => octetsOf(chunk, what)));
}

/** A positive INTEGER no larger than `max` (iteration counts, versions). */
function smallIntegerOf(node: Asn1 | undefined, what: string, max: number): number {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.INTEGER || typeof node.value !== 'string' || node.value.length === 0) {
    throw damaged(`${what} is malformed`);
  }
  const bytes = Buffer.from(node.value, 'binary');
  if (bytes[0]! & 0x80) throw damaged(`${what} is negative`);
  const value = bytes.length > 6 ? Infinity : bytes.readUIntBE(0, bytes.length);
  if (value < 1 || value > max) throw damaged(`${what} is out of range (at most ${max.toLocaleString('en-US')})`);
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Password-based encryption schemes we accept, read from their AlgorithmIdentifier before any password is used.

const DIGEST_BY_MAC_OID: Record<string, Digest> = {
  [OID.sha1]: 'sha1',
  [OID.sha224]: 'sha224',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};
const DIGEST_BY_PRF_OID: Record<string, Digest> = {
  [OID.hmacWithSha1]: 'sha1',
  [OID.hmacWithSha224]: 'sha224',
  [OID.hmacWithSha256]: 'sha256',
  [OID.hmacWithSha384]: 'sha384',
  [OID.hmacWithSha512]: 'sha512',
};
type CbcCipher = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'des-ede3-cbc';
const PBES2_CIPHERS: Record<string, { name: CbcCipher; keyBytes: number; ivBytes: number }> = {
  [OID.aes128Cbc]: { name: 'aes-128-cbc', keyBytes: 16, ivBytes: 16 },
  [OID.aes192Cbc]: { name: 'aes-192-cbc', keyBytes: 24, ivBytes: 16 },
  [OID.aes256Cbc]: { name: 'aes-256-cbc', keyBytes: 32, ivBytes: 16 },
  [OID.desEde3Cbc]: { name: 'des-ede3-cbc', keyBytes: 24, ivBytes: 8 },
};

interface Pbes2Scheme {
  kind: 'pbes2';
  salt: Buffer;
  iterations: number;
  prf: Digest;
  cipher: CbcCipher;
  keyBytes: number;
  iv: Buffer;
}
/** PKCS#12's own PBE (RFC 7292 appendix C), still written by `openssl pkcs12 -legacy` and older Windows. */
interface Pkcs12PbeScheme {
  kind: 'pkcs12';
  salt: Buffer;
  iterations: number;
  cipher: 'des-ede3-cbc' | 'rc2-40-cbc';
}
type PbeScheme = Pbes2Scheme | Pkcs12PbeScheme;

/** Something encrypted under the password: an EncryptedData block or a shrouded key bag. */
interface Sealed {
  scheme: PbeScheme;
  ciphertext: Buffer;
}

function readScheme(algorithm: Asn1 | undefined): PbeScheme {
  const [oidNode, params] = sequence(algorithm, 'an encryption algorithm', 1);
  const oid = oidOf(oidNode, 'an encryption algorithm');
  if (oid === OID.pbes2) return readPbes2(params);
  if (oid === OID.pbeSha1TripleDes || oid === OID.pbeSha1Rc2_40) {
    const [salt, iterations] = sequence(params, 'the encryption parameters', 2);
    return {
      kind: 'pkcs12',
      salt: octetsOf(salt, 'the encryption salt'),
      iterations: smallIntegerOf(iterations, 'the encryption iteration count', MAX_KDF_ITERATIONS),
      cipher: oid === OID.pbeSha1TripleDes ? 'des-ede3-cbc' : 'rc2-40-cbc',
    };
  }
  throw damaged('it is encrypted with a method cmk does not support (use AES with PBKDF2, or 3DES)');
}

function readPbes2(params: Asn1 | undefined): Pbes2Scheme {
  const [kdf, encryption] = sequence(params, 'the PBES2 parameters', 2);
  const [kdfOid, kdfParams] = sequence(kdf, 'the key-derivation function', 2);
  if (oidOf(kdfOid, 'the key-derivation function') !== OID.pbkdf2) throw damaged('its key-derivation function is not PBKDF2');
  const [salt, iterations, ...optional] = sequence(kdfParams, 'the PBKDF2 parameters', 2);
  const [cipherOid, iv] = sequence(encryption, 'the encryption scheme', 2);
  const cipher = PBES2_CIPHERS[oidOf(cipherOid, 'the encryption scheme')];
  if (!cipher) throw damaged('it is encrypted with a cipher cmk does not support (use AES-CBC)');
  let prf: Digest = 'sha1';
  for (const field of optional) {
    // PBKDF2-params: keyLength INTEGER OPTIONAL, then prf AlgorithmIdentifier DEFAULT hmacWithSHA1.
    if (field.type === Type.INTEGER) {
      if (smallIntegerOf(field, 'the PBKDF2 key length', 64) !== cipher.keyBytes) throw damaged('its PBKDF2 key length does not fit its cipher');
    } else {
      const digest = DIGEST_BY_PRF_OID[oidOf(sequence(field, 'the PBKDF2 PRF', 1)[0], 'the PBKDF2 PRF')];
      if (!digest) throw damaged('its PBKDF2 pseudo-random function is not supported');
      prf = digest;
    }
  }
  const ivBytes = octetsOf(iv, 'the encryption IV');
  if (ivBytes.length !== cipher.ivBytes) throw damaged('its encryption IV has the wrong length');
  return {
    kind: 'pbes2',
    salt: octetsOf(salt, 'the PBKDF2 salt'),
    iterations: smallIntegerOf(iterations, 'the PBKDF2 iteration count', MAX_KDF_ITERATIONS),
    prf,
    cipher: cipher.name,
    keyBytes: cipher.keyBytes,
    iv: ivBytes,
  };
}

/** EncryptedPrivateKeyInfo (a shrouded key bag's value). */
function readEncryptedPrivateKeyInfo(node: Asn1): Sealed {
  const [algorithm, data] = sequence(node, 'an encrypted private key', 2);
  return { scheme: readScheme(algorithm), ciphertext: octetsOf(data, 'an encrypted private key') };
}

/** EncryptedData (RFC 5652 §8): version, then contentType, algorithm and `[0] IMPLICIT` encrypted content. */
function readEncryptedData(node: Asn1): Sealed {
  const [, info] = sequence(node, 'an encrypted block', 2);
  const [contentType, algorithm, content] = sequence(info, 'an encrypted block', 3);
  if (oidOf(contentType, 'an encrypted block') !== OID.data) throw damaged('an encrypted block holds an unexpected kind of content');
  return { scheme: readScheme(algorithm), ciphertext: octetsOf(content, 'an encrypted block', 0) };
}

// ---------------------------------------------------------------------------------------------------------------
// The file's layout, as far as it can be read without the password.

interface CertificateBag {
  der: Buffer;
  /** Carries a localKeyId: the certificate paired with the file's key (the others are its chain). */
  paired: boolean;
}
interface Bags {
  certificates: CertificateBag[];
  /** Plain PKCS#8 key bags. */
  keys: Buffer[];
  shroudedKeys: Sealed[];
}
interface MacData {
  digest: Digest;
  value: Buffer;
  salt: Buffer;
  iterations: number;
}
interface Layout {
  /** The AuthenticatedSafe bytes, which the MAC covers. */
  authSafe: Buffer;
  mac: MacData | undefined;
  /** Bags in unencrypted content blocks. */
  clear: Bags;
  /** Encrypted content blocks, each a SafeContents once decrypted. */
  sealed: Sealed[];
}

const emptyBags = (): Bags => ({ certificates: [], keys: [], shroudedKeys: [] });

function readLayout(file: Buffer): Layout {
  const pfx = sequence(decodeDer(file, 'the file'), 'the file', 2);
  if (smallIntegerOf(pfx[0], 'the version', 255) !== 3) throw damaged('only PKCS#12 version 3 is supported');
  const [contentType, content] = sequence(pfx[1], 'the file content', 2);
  if (oidOf(contentType, 'the file content type') !== OID.data) throw damaged('signed (public-key integrity) .pfx files are not supported');
  const authSafe = octetsOf(explicit0(content, 'the file content'), 'the file content');
  const layout: Layout = { authSafe, mac: pfx[2] ? readMacData(pfx[2]) : undefined, clear: emptyBags(), sealed: [] };
  for (const info of sequence(decodeDer(authSafe, 'the content list'), 'the content list')) {
    const [type, body] = sequence(info, 'a content block', 2);
    const oid = oidOf(type, 'a content block type');
    if (oid === OID.data) readSafeContents(octetsOf(explicit0(body, 'a content block'), 'a content block'), layout.clear);
    else if (oid === OID.encryptedData) layout.sealed.push(readEncryptedData(explicit0(body, 'an encrypted block')));
    else throw damaged('it holds a kind of content block cmk does not read (only plain and password-encrypted blocks)');
  }
  return layout;
}

function readMacData(node: Asn1): MacData {
  const [digestInfo, salt, iterations] = sequence(node, 'the integrity MAC', 2);
  const [algorithm, value] = sequence(digestInfo, 'the integrity MAC', 2);
  const digest = DIGEST_BY_MAC_OID[oidOf(sequence(algorithm, 'the MAC algorithm', 1)[0], 'the MAC algorithm')];
  if (!digest) throw damaged('its integrity MAC uses a digest cmk does not support');
  return {
    digest,
    value: octetsOf(value, 'the MAC value'),
    salt: octetsOf(salt, 'the MAC salt'),
    // RFC 7292: iterations DEFAULT 1.
    iterations: iterations ? smallIntegerOf(iterations, 'the MAC iteration count', MAX_KDF_ITERATIONS) : 1,
  };
}

/** SafeContents: a SEQUENCE OF SafeBag. Unknown bag types (CRLs, secrets) carry no key and are skipped. */
function readSafeContents(der: Buffer, bags: Bags): void {
  for (const bag of sequence(decodeDer(der, 'a bag list'), 'a bag list')) {
    const [bagId, bagValue, attributes] = sequence(bag, 'a bag', 2);
    const value = explicit0(bagValue, 'a bag');
    switch (oidOf(bagId, 'a bag type')) {
      case OID.certBag: {
        const [certType, certValue] = sequence(value, 'a certificate bag', 2);
        if (oidOf(certType, 'a certificate type') !== OID.x509Certificate) break;
        bags.certificates.push({ der: octetsOf(explicit0(certValue, 'a certificate'), 'a certificate'), paired: hasLocalKeyId(attributes) });
        break;
      }
      case OID.keyBag:
        bags.keys.push(Buffer.from(forge.asn1.toDer(value).getBytes(), 'binary'));
        break;
      case OID.shroudedKeyBag:
        bags.shroudedKeys.push(readEncryptedPrivateKeyInfo(value));
        break;
      case OID.safeContentsBag:
        throw damaged('it nests bag lists inside bags, which cmk does not read');
    }
  }
}

function hasLocalKeyId(attributes: Asn1 | undefined): boolean {
  if (!attributes) return false;
  return constructed(attributes, Type.SET, 'bag attributes', 0).some((attribute) => oidOf(sequence(attribute, 'a bag attribute', 1)[0], 'a bag attribute') === OID.localKeyId);
}

// ---------------------------------------------------------------------------------------------------------------
// Key derivation and decryption.

/** Caps the key-derivation work of one parse, counted in hash-function outputs times iterations. */
class KdfBudget implements KdfWork {
  private spent = 0;
  constructor(private readonly limit: number) {}
  canAfford(work: number): boolean {
    return this.spent + work <= this.limit;
  }
  spend(work: number): void {
    if (!this.canAfford(work)) throw damaged('opening it would take an unreasonable amount of key-derivation work');
    this.spent += work;
  }
}

/** The password in the two encodings PKCS#12 uses: UTF-8 for PBKDF2 (as OpenSSL and Windows), BMPString for PKCS#12's KDF. */
interface PasswordForms {
  utf8: Buffer;
  bmp: Buffer;
}

function passwordForms(password: string): PasswordForms {
  return { utf8: Buffer.from(password, 'utf8'), bmp: bmpPassword(password) };
}

/** The empty password as OpenSSL tries it: with the BMP terminator, and as no bytes at all. */
const EMPTY_PASSWORDS: readonly PasswordForms[] = [
  { utf8: Buffer.alloc(0), bmp: Buffer.alloc(2) },
  { utf8: Buffer.alloc(0), bmp: Buffer.alloc(0) },
];

function macMatches(layout: Layout, mac: MacData, password: PasswordForms, budget: KdfBudget): boolean {
  const expected = pkcs12Mac(layout.authSafe, password.bmp, mac.salt, mac.iterations, mac.digest, budget);
  return expected.length === mac.value.length && timingSafeEqual(expected, mac.value);
}

/** The plaintext, or undefined when the padding is wrong (the usual sign of a wrong password). */
function unseal(sealed: Sealed, password: PasswordForms, budget: KdfBudget): Buffer | undefined {
  const { scheme, ciphertext } = sealed;
  if (scheme.kind === 'pbes2') {
    budget.spend(scheme.iterations * Math.ceil(scheme.keyBytes / DIGEST_SIZES[scheme.prf].out));
    const key = pbkdf2Sync(password.utf8, scheme.salt, scheme.iterations, scheme.keyBytes, scheme.prf);
    return decryptCbc(scheme.cipher, key, scheme.iv, ciphertext);
  }
  const keyBytes = scheme.cipher === 'des-ede3-cbc' ? 24 : 5;
  const key = pkcs12Kdf(password.bmp, scheme.salt, 1, scheme.iterations, keyBytes, 'sha1', budget);
  const iv = pkcs12Kdf(password.bmp, scheme.salt, 2, scheme.iterations, 8, 'sha1', budget);
  return scheme.cipher === 'des-ede3-cbc' ? decryptCbc('des-ede3-cbc', key, iv, ciphertext) : decryptRc2(key, iv, ciphertext);
}

function decryptCbc(cipher: CbcCipher, key: Buffer, iv: Buffer, ciphertext: Buffer): Buffer | undefined {
  try {
    const decipher = createDecipheriv(cipher, key, iv);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** RC2-40 lives in OpenSSL 3's legacy provider, which node does not load: forge's RC2 does it. */
function decryptRc2(key: Buffer, iv: Buffer, ciphertext: Buffer): Buffer | undefined {
  const cipher = forge.rc2.createDecryptionCipher(key.toString('binary'), 40);
  cipher.start(iv.toString('binary'));
  cipher.update(forge.util.createBuffer(ciphertext.toString('binary')));
  return cipher.finish() ? Buffer.from(cipher.output.getBytes(), 'binary') : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Keys and certificates.

function certificateKey(der: Buffer): KeyObject {
  try {
    return new X509Certificate(der).publicKey;
  } catch {
    throw damaged('a certificate in it cannot be read');
  }
}

/** A PKCS#8 private key node:crypto can load (RSA, EC, …), or undefined. */
function loadPkcs8(der: Buffer): KeyObject | undefined {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    return undefined;
  }
}

/** The certificates whose key can be judged before the password: the paired one, or the only one (not a chain's CAs). */
function endEntityCertificates(certificates: CertificateBag[]): CertificateBag[] {
  const paired = certificates.filter((c) => c.paired);
  if (paired.length > 0) return paired;
  return certificates.length === 1 ? certificates : [];
}

// ---------------------------------------------------------------------------------------------------------------
// The checks, in DESIGN.md §4's order.

/** INVALID_KEY_FILE, then UNSUPPORTED_KEY, then PASSWORD_REQUIRED for what anyone can read without the password. */
function refuseWhatIsVisible(layout: Layout): void {
  const { clear, sealed } = layout;
  const visibleKeys = clear.keys.length + clear.shroudedKeys.length;
  if (visibleKeys > 1) throw damaged(`it holds ${visibleKeys} private keys; it must hold exactly one`);
  if (visibleKeys === 0 && sealed.length === 0) throw damaged('it holds no private key');
  const certificateKeys = clear.certificates.map((c) => ({ bag: c, key: certificateKey(c.der) }));
  const plainKeys = clear.keys.map((der) => loadPkcs8(der) ?? fail(damaged('its private key cannot be read')));

  const endEntities = new Set(endEntityCertificates(clear.certificates));
  for (const { bag, key } of certificateKeys) if (endEntities.has(bag)) assertSupportedKey(key);
  for (const key of plainKeys) assertSupportedKey(key);

  if (plainKeys.length > 0) throw unprotected();
}

function fail(error: CmkError): never {
  throw error;
}

/** True when the empty password opens the file: such a file is as good as unprotected. */
function emptyPasswordOpens(check: (password: PasswordForms, budget: KdfBudget) => boolean): boolean {
  const budget = new KdfBudget(EMPTY_PROBE_BUDGET);
  return EMPTY_PASSWORDS.some((empty) => {
    try {
      return check(empty, budget);
    } catch {
      // Over the probe's budget: the caller's own answer (WRONG_PASSWORD) stands.
      return false;
    }
  });
}

interface Opening {
  layout: Layout;
  password: PasswordForms;
  budget: KdfBudget;
  /** The MAC verified with this password: a later failure means damage, not a wrong password. */
  macVerified: boolean;
}

function checkMac(layout: Layout, password: PasswordForms, budget: KdfBudget): boolean {
  const { mac } = layout;
  if (!mac) return false;
  if (macMatches(layout, mac, password, budget)) return true;
  if (emptyPasswordOpens((empty, probeBudget) => macMatches(layout, mac, empty, probeBudget))) throw unprotected();
  throw wrongPassword();
}

/** Decrypts one sealed item whose plaintext must start a DER SEQUENCE (SafeContents, PrivateKeyInfo). */
function open(opening: Opening, sealed: Sealed): Buffer {
  const plaintext = unseal(sealed, opening.password, opening.budget);
  if (plaintext && plaintext[0] === 0x30) return plaintext;
  if (plaintext && opening.macVerified) throw damaged('an encrypted part of it is corrupt');
  if (!opening.macVerified && emptyPasswordOpens((empty, probeBudget) => unseal(sealed, empty, probeBudget)?.[0] === 0x30)) throw unprotected();
  throw wrongPassword();
}

function openAllBags(opening: Opening): Bags {
  const bags: Bags = {
    certificates: [...opening.layout.clear.certificates],
    keys: [...opening.layout.clear.keys],
    shroudedKeys: [...opening.layout.clear.shroudedKeys],
  };
  for (const sealed of opening.layout.sealed) {
    const plaintext = open(opening, sealed);
    try {
      readSafeContents(plaintext, bags);
    } catch (err) {
      // Garbage that happened to decrypt with valid padding: without a MAC, that is a wrong password.
      if (!opening.macVerified) throw wrongPassword();
      throw err;
    }
  }
  return bags;
}

function openOnlyKey(opening: Opening, bags: Bags): KeyObject {
  const count = bags.keys.length + bags.shroudedKeys.length;
  if (count !== 1) throw damaged(count === 0 ? 'it holds no private key' : `it holds ${count} private keys; it must hold exactly one`);
  const shrouded = bags.shroudedKeys[0];
  const der = shrouded ? open(opening, shrouded) : bags.keys[0]!;
  const key = loadPkcs8(der);
  if (key) return key;
  if (shrouded && !opening.macVerified) throw wrongPassword();
  throw damaged('its private key cannot be read');
}

function assertCertificatesMatch(certificates: CertificateBag[], key: KeyObject): void {
  if (certificates.length === 0) return;
  const thumbprint = thumbprintOf(key);
  if (!certificates.some((c) => thumbprintOf(certificateKey(c.der)) === thumbprint)) {
    throw damaged('its certificate does not belong to its private key');
  }
}

/**
 * Opens a `.pfx` with its password: exactly one 2048-bit RSA private key, protected by a password (R2).
 * Accepts OpenSSL 3 defaults (PBES2 AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC), `openssl pkcs12 -legacy`
 * (3DES key, RC2-40 certificates, SHA-1 MAC), node-forge and Windows exports. Throws CmkError only.
 */
export function parsePfx(bytes: Buffer, password: string | undefined): OpenedPfx {
  if (bytes.length > MAX_KEY_FILE_BYTES) throw oversized();
  const layout = readLayout(bytes);
  refuseWhatIsVisible(layout);
  if (password === undefined || password === '') throw passwordRequired();

  const budget = new KdfBudget(KDF_WORK_BUDGET);
  const forms = passwordForms(password);
  const opening: Opening = { layout, password: forms, budget, macVerified: checkMac(layout, forms, budget) };
  const bags = openAllBags(opening);
  for (const certificate of bags.certificates) certificateKey(certificate.der);
  const key = openOnlyKey(opening, bags);
  assertCertificatesMatch(bags.certificates, key);
  assertSupportedKey(key);
  return {
    pkcs8Der: key.export({ type: 'pkcs8', format: 'der' }),
    thumbprint: thumbprintOf(key),
    publicKeyPem: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString(),
  };
}
