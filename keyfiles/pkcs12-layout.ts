/**
 * A `.pfx` (PKCS#12) as far as it can be read without the password: its encryption schemes, its bags, its MAC.
 * Shared by the server's reader (keyfiles/pfx.ts, node:crypto) and the console's lock dialog (console/src/pfx-sign.ts,
 * WebCrypto), so that both read and refuse the same files alike: pure DER walking with node-forge's decoder, no Node
 * API, bytes as Uint8Array. Each node's shape is checked, so that a hostile file ends in INVALID_KEY_FILE, never in a
 * bare Error; DER depth and iteration counts are capped before any password is used.
 */
// forge's shared object (typed by node-forge-lib.d.ts) and its DER codec only, not `node-forge` (every algorithm), so
// that the console's bundle stays small. Under Node it is the very object `import forge from 'node-forge'` gives.
import forge from 'node-forge/lib/forge';
import 'node-forge/lib/asn1';
import type * as Forge from 'node-forge';
import { CmkError } from '../common/errors';

/** One key derivation may not ask for more iterations than this (real files: 2,000 to 600,000). */
export const MAX_KDF_ITERATIONS = 1_000_000;
/** A real PKCS#12 nests about 8 levels in any one DER blob; this is far below a stack overflow. */
const MAX_DER_DEPTH = 24;

/** Object identifiers of PKCS#12 (RFC 7292), PKCS#5 (RFC 8018), their algorithms and key types. */
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
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  dsa: '1.2.840.10040.4.1',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
} as const;

export type Digest = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';

export function damaged(detail: string): CmkError {
  return new CmkError('INVALID_KEY_FILE', `The file is not a usable .pfx (PKCS#12) file: ${detail}.`);
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes: forge works on "binary strings" (one char per byte); our callers on Uint8Array (Buffer is one).

export function binaryOf(bytes: Uint8Array): string {
  let text = '';
  // In chunks: String.fromCharCode's arguments are limited in number.
  for (let i = 0; i < bytes.length; i += 0x2000) text += String.fromCharCode(...bytes.subarray(i, i + 0x2000));
  return text;
}

export function bytesOf(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// DER reading.

export type Asn1 = Forge.asn1.Asn1;
const { Class, Type } = forge.asn1;

/** forge 1.4's fromDer takes an options object (maxDepth guards deep nesting); @types/node-forge only knows `strict`. */
type FromDer = (bytes: string, options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean; maxDepth: number }) => Asn1;

export function decodeDer(bytes: Uint8Array, what: string): Asn1 {
  // Looked up at each call, not captured at load, so that a test can spy on it (oversized files must not reach it).
  const fromDer = forge.asn1.fromDer as unknown as FromDer;
  try {
    // strict: a length running past the end is an error (forge would otherwise silently shorten truncated files).
    return fromDer(binaryOf(bytes), { strict: true, parseAllBytes: true, decodeBitStrings: false, maxDepth: MAX_DER_DEPTH });
  } catch {
    throw damaged(`${what} is truncated, corrupt or not PKCS#12 data`);
  }
}

/** DER bytes of a node (a key bag's PrivateKeyInfo, a re-assembled key). */
export const derOf = (node: Asn1): Uint8Array<ArrayBuffer> => bytesOf(forge.asn1.toDer(node).getBytes());

function constructed(node: Asn1 | undefined, tagClass: Forge.asn1.Class, type: number, what: string, minChildren: number): Asn1[] {
  if (!node || node.tagClass !== tagClass || node.type !== type || !Array.isArray(node.value) || node.value.length < minChildren) {
    throw damaged(`${what} is malformed`);
  }
  return node.value;
}

export const sequence = (node: Asn1 | undefined, what: string, minChildren = 0): Asn1[] => constructed(node, Class.UNIVERSAL, Type.SEQUENCE, what, minChildren);

/** The single child of an `[0] EXPLICIT` wrapper. */
function explicit0(node: Asn1 | undefined, what: string): Asn1 {
  const children = constructed(node, Class.CONTEXT_SPECIFIC, 0, what, 1);
  if (children.length !== 1) throw damaged(`${what} is malformed`);
  return children[0]!;
}

/**
 * The OIDs we act on, by their DER contents. A file's OIDs are looked up byte for byte, never decoded: forge's derToOid
 * throws a plain Error on an arc over 2^53 (a 19-byte file was enough to escape parsePfx without a code) and quietly
 * drops a truncated last arc, and a non-minimal encoding of a known OID is not DER either.
 */
const KNOWN_OIDS = new Map<string, string>(Object.values(OID).map((oid) => [forge.asn1.oidToDer(oid).getBytes(), oid]));
/** What oidOf answers for any other OID: equal to none of OID's values, and no key of the lookup tables below. */
const UNKNOWN_OID = 'unknown OID';

export function oidOf(node: Asn1 | undefined, what: string): string {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.OID || typeof node.value !== 'string') throw damaged(`${what} is malformed`);
  return KNOWN_OIDS.get(node.value) ?? UNKNOWN_OID;
}

/** Contents of an OCTET STRING (or of an `[n] IMPLICIT` one), joining BER's constructed chunks as Windows writes them. */
function octetsOf(node: Asn1 | undefined, what: string, implicitTag?: number): string {
  const tagOk = implicitTag === undefined ? node?.tagClass === Class.UNIVERSAL && node.type === Type.OCTETSTRING : node?.tagClass === Class.CONTEXT_SPECIFIC && node.type === implicitTag;
  if (!node || !tagOk) throw damaged(`${what} is malformed`);
  if (typeof node.value === 'string') return node.value;
  return node.value.map((chunk) => octetsOf(chunk, what)).join('');
}

export const bytesIn = (node: Asn1 | undefined, what: string, implicitTag?: number): Uint8Array<ArrayBuffer> => bytesOf(octetsOf(node, what, implicitTag));

/** Contents of a non-negative INTEGER (binary string, big-endian). */
export function unsignedOf(node: Asn1 | undefined, what: string): string {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.INTEGER || typeof node.value !== 'string' || node.value.length === 0) {
    throw damaged(`${what} is malformed`);
  }
  if (node.value.charCodeAt(0) & 0x80) throw damaged(`${what} is negative`);
  return node.value;
}

/** A positive INTEGER no larger than `max` (iteration counts, versions). */
export function smallIntegerOf(node: Asn1 | undefined, what: string, max: number): number {
  const contents = unsignedOf(node, what);
  const value = contents.length > 6 ? Infinity : [...contents].reduce((n, c) => n * 256 + c.charCodeAt(0), 0);
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
export type CbcCipher = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'des-ede3-cbc';
const PBES2_CIPHERS: Record<string, { name: CbcCipher; keyBytes: number; ivBytes: number }> = {
  [OID.aes128Cbc]: { name: 'aes-128-cbc', keyBytes: 16, ivBytes: 16 },
  [OID.aes192Cbc]: { name: 'aes-192-cbc', keyBytes: 24, ivBytes: 16 },
  [OID.aes256Cbc]: { name: 'aes-256-cbc', keyBytes: 32, ivBytes: 16 },
  [OID.desEde3Cbc]: { name: 'des-ede3-cbc', keyBytes: 24, ivBytes: 8 },
};

export interface Pbes2Scheme {
  kind: 'pbes2';
  salt: Uint8Array<ArrayBuffer>;
  iterations: number;
  prf: Digest;
  cipher: CbcCipher;
  keyBytes: number;
  iv: Uint8Array<ArrayBuffer>;
}
/** PKCS#12's own PBE (RFC 7292 appendix C), still written by `openssl pkcs12 -legacy` and older Windows. */
export interface Pkcs12PbeScheme {
  kind: 'pkcs12';
  salt: Uint8Array<ArrayBuffer>;
  iterations: number;
  cipher: 'des-ede3-cbc' | 'rc2-40-cbc';
}

/** Something encrypted under the password: an EncryptedData block or a shrouded key bag. */
export interface Sealed {
  scheme: Pbes2Scheme | Pkcs12PbeScheme;
  ciphertext: Uint8Array<ArrayBuffer>;
}

function readScheme(algorithm: Asn1 | undefined): Pbes2Scheme | Pkcs12PbeScheme {
  const [oidNode, params] = sequence(algorithm, 'an encryption algorithm', 1);
  const oid = oidOf(oidNode, 'an encryption algorithm');
  if (oid === OID.pbes2) return readPbes2(params);
  if (oid === OID.pbeSha1TripleDes || oid === OID.pbeSha1Rc2_40) {
    const [salt, iterations] = sequence(params, 'the encryption parameters', 2);
    return {
      kind: 'pkcs12',
      salt: bytesIn(salt, 'the encryption salt'),
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
  const ivBytes = bytesIn(iv, 'the encryption IV');
  if (ivBytes.length !== cipher.ivBytes) throw damaged('its encryption IV has the wrong length');
  return {
    kind: 'pbes2',
    salt: bytesIn(salt, 'the PBKDF2 salt'),
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
  return { scheme: readScheme(algorithm), ciphertext: bytesIn(data, 'an encrypted private key') };
}

/** EncryptedData (RFC 5652 §8): version, then contentType, algorithm and `[0] IMPLICIT` encrypted content. */
function readEncryptedData(node: Asn1): Sealed {
  const [, info] = sequence(node, 'an encrypted block', 2);
  const [contentType, algorithm, content] = sequence(info, 'an encrypted block', 3);
  if (oidOf(contentType, 'an encrypted block') !== OID.data) throw damaged('an encrypted block holds an unexpected kind of content');
  return { scheme: readScheme(algorithm), ciphertext: bytesIn(content, 'an encrypted block', 0) };
}

// ---------------------------------------------------------------------------------------------------------------
// The file's layout.

export interface CertificateBag {
  der: Uint8Array<ArrayBuffer>;
  /** Carries a localKeyId: the certificate paired with the file's key (the others are its chain). */
  paired: boolean;
}
export interface Bags {
  certificates: CertificateBag[];
  /** Plain PKCS#8 key bags. */
  keys: Array<Uint8Array<ArrayBuffer>>;
  shroudedKeys: Sealed[];
}
export interface MacData {
  digest: Digest;
  value: Uint8Array<ArrayBuffer>;
  salt: Uint8Array<ArrayBuffer>;
  iterations: number;
}
export interface Layout {
  /** The AuthenticatedSafe bytes, which the MAC covers. */
  authSafe: Uint8Array<ArrayBuffer>;
  mac: MacData | undefined;
  /** Bags in unencrypted content blocks. */
  clear: Bags;
  /** Encrypted content blocks, each a SafeContents once decrypted. */
  sealed: Sealed[];
}

export const emptyBags = (): Bags => ({ certificates: [], keys: [], shroudedKeys: [] });

export function readLayout(file: Uint8Array): Layout {
  const pfx = sequence(decodeDer(file, 'the file'), 'the file', 2);
  if (smallIntegerOf(pfx[0], 'the version', 255) !== 3) throw damaged('only PKCS#12 version 3 is supported');
  const [contentType, content] = sequence(pfx[1], 'the file content', 2);
  if (oidOf(contentType, 'the file content type') !== OID.data) throw damaged('signed (public-key integrity) .pfx files are not supported');
  const authSafe = bytesIn(explicit0(content, 'the file content'), 'the file content');
  const layout: Layout = { authSafe, mac: pfx[2] ? readMacData(pfx[2]) : undefined, clear: emptyBags(), sealed: [] };
  for (const info of sequence(decodeDer(authSafe, 'the content list'), 'the content list')) {
    const [type, body] = sequence(info, 'a content block', 2);
    const oid = oidOf(type, 'a content block type');
    if (oid === OID.data) readSafeContents(bytesIn(explicit0(body, 'a content block'), 'a content block'), layout.clear);
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
    value: bytesIn(value, 'the MAC value'),
    salt: bytesIn(salt, 'the MAC salt'),
    // RFC 7292: iterations DEFAULT 1.
    iterations: iterations ? smallIntegerOf(iterations, 'the MAC iteration count', MAX_KDF_ITERATIONS) : 1,
  };
}

/** SafeContents: a SEQUENCE OF SafeBag. Unknown bag types (CRLs, secrets) carry no key and are skipped. */
export function readSafeContents(der: Uint8Array, bags: Bags): void {
  for (const bag of sequence(decodeDer(der, 'a bag list'), 'a bag list')) {
    const [bagId, bagValue, attributes] = sequence(bag, 'a bag', 2);
    const value = explicit0(bagValue, 'a bag');
    switch (oidOf(bagId, 'a bag type')) {
      case OID.certBag: {
        const [certType, certValue] = sequence(value, 'a certificate bag', 2);
        if (oidOf(certType, 'a certificate type') !== OID.x509Certificate) break;
        bags.certificates.push({ der: bytesIn(explicit0(certValue, 'a certificate'), 'a certificate'), paired: hasLocalKeyId(attributes) });
        break;
      }
      case OID.keyBag:
        bags.keys.push(derOf(value));
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
  return constructed(attributes, Class.UNIVERSAL, Type.SET, 'bag attributes', 0).some((attribute) => oidOf(sequence(attribute, 'a bag attribute', 1)[0], 'a bag attribute') === OID.localKeyId);
}

/** The certificates whose key can be judged before the password: the paired one, or the only one (not a chain's CAs). */
export function endEntityCertificates(certificates: CertificateBag[]): CertificateBag[] {
  const paired = certificates.filter((c) => c.paired);
  if (paired.length > 0) return paired;
  return certificates.length === 1 ? certificates : [];
}

/** How many private keys a set of bags holds, refusing anything but one: a .pfx carries the one key it is about. */
export function assertOneKey(bags: Bags, sealedBlocks = 0): void {
  const count = bags.keys.length + bags.shroudedKeys.length;
  if (count > 1) throw damaged(`it holds ${count} private keys; it must hold exactly one`);
  if (count === 0 && sealedBlocks === 0) throw damaged('it holds no private key');
}
