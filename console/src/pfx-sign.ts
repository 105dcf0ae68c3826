/**
 * The lock dialog's proof of possession (issue 17), in the browser: the tenant's `.pfx` is opened and the challenge
 * signed on the page, so that neither the file nor its password is ever sent. The signature is what `cmk tenant lock`
 * makes (client/commands/tenant.ts): RSASSA-PKCS1-v1_5 with SHA-256 over the challenge's UTF-8 bytes.
 *
 * Like keyfiles/pfx.ts (the server's reader, node-only) we walk the PKCS#12 ourselves with node-forge's DER decoder,
 * refusing with the same codes in DESIGN.md §4's order; the cryptography is WebCrypto's (PBKDF2, AES-128/256-CBC,
 * RSA signing with a non-extractable key). WebCrypto has no 3DES, RC2 or AES-192, so those (OpenSSL's `-legacy`
 * files, rarer PBES2 ciphers) are decrypted with forge's ciphers.
 *
 * The file's MAC is not checked: PKCS#12's MAC key comes from its own KDF, one hash per iteration, which WebCrypto does
 * not offer (cmk's files ask 210,000 SHA-256 rounds: seconds of promise round-trips). A wrong password is told instead
 * by the key bag's decryption: its padding, then a DER PrivateKeyInfo parse. Integrity needs no MAC here: a tampered
 * key cannot make a signature the server accepts. Nothing here logs; no message holds key material or the password.
 */
// Only the parts of node-forge used below (see node-forge-lib.d.ts): DER, SHA-1, and the ciphers WebCrypto lacks.
import forge from 'node-forge/lib/forge';
import 'node-forge/lib/asn1';
import 'node-forge/lib/sha1';
import 'node-forge/lib/aes';
import 'node-forge/lib/des';
import 'node-forge/lib/rc2';
import type * as Forge from 'node-forge';
import type { ErrorCode } from '../../domain/codes';

/** As common/keys.ts: larger files are refused before any parsing (a real .pfx is a few KiB). */
export const MAX_PFX_BYTES = 64 * 1024;
/** As keyfiles/pfx.ts: one key derivation may not ask for more iterations (real files: 2,000 to 600,000). */
export const MAX_KDF_ITERATIONS = 1_000_000;
/** All derivations of one opening together, counted in hash outputs times iterations (keyfiles/pfx.ts's budget). */
const KDF_WORK_BUDGET = 2_000_000;
/** After a failed password, the courtesy probe with the empty password (PASSWORD_REQUIRED) gets a small budget only. */
const EMPTY_PROBE_BUDGET = 100_000;
/** A real PKCS#12 nests about 8 levels in one DER blob. */
const MAX_DER_DEPTH = 24;
const REQUIRED_RSA_BITS = 2048;

export type PfxSignErrorCode = Extract<ErrorCode, 'INVALID_KEY_FILE' | 'UNSUPPORTED_KEY' | 'PASSWORD_REQUIRED' | 'WRONG_PASSWORD'>;

/** A refusal to show next to the dialog's file and password fields: its code and a sentence for a tenant administrator. */
export class PfxSignError extends Error {
  override readonly name = 'PfxSignError';
  constructor(
    readonly code: PfxSignErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const damaged = (detail: string): PfxSignError => new PfxSignError('INVALID_KEY_FILE', `The file is not a usable .pfx (PKCS#12) file: ${detail}.`);
const passwordRequired = (): PfxSignError => new PfxSignError('PASSWORD_REQUIRED', 'This .pfx file is protected by a password: type its password.');
const unprotected = (): PfxSignError =>
  new PfxSignError('PASSWORD_REQUIRED', 'The .pfx file is not protected by a password, so anyone who saw it could read the key; export it again with a password.');
const wrongPassword = (): PfxSignError => new PfxSignError('WRONG_PASSWORD', 'The password does not open this .pfx file.');

const OID = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  keyBag: '1.2.840.113549.1.12.10.1.1',
  shroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  safeContentsBag: '1.2.840.113549.1.12.10.1.6',
  x509Certificate: '1.2.840.113549.1.9.22.1',
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
  hmacWithSha256: '1.2.840.113549.2.9',
  hmacWithSha384: '1.2.840.113549.2.10',
  hmacWithSha512: '1.2.840.113549.2.11',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  dsa: '1.2.840.10040.4.1',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
} as const;

/** What a refused key is called in UNSUPPORTED_KEY's sentence. */
const KEY_KIND: Record<string, string> = {
  [OID.ecPublicKey]: 'an elliptic-curve (EC) key',
  [OID.ed25519]: 'an Ed25519 key',
  [OID.ed448]: 'an Ed448 key',
  [OID.dsa]: 'a DSA key',
  [OID.rsaPss]: 'an RSA-PSS key',
};

// ---------------------------------------------------------------------------------------------------------------
// Bytes. forge works on "binary strings" (one char per byte); WebCrypto on Uint8Array.

function binary(bytes: Uint8Array): string {
  let text = '';
  // In chunks: String.fromCharCode's arguments are limited in number.
  for (let i = 0; i < bytes.length; i += 0x2000) text += String.fromCharCode(...bytes.subarray(i, i + 0x2000));
  return text;
}

function bytesOf(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

// ---------------------------------------------------------------------------------------------------------------
// DER reading: each node's shape is checked, so that a hostile file ends in INVALID_KEY_FILE, never a bare Error.

type Asn1 = Forge.asn1.Asn1;
const { Class, Type } = forge.asn1;
/** forge 1.4's fromDer takes an options object (maxDepth guards deep nesting); @types/node-forge only knows `strict`. */
type FromDer = (bytes: string, options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean; maxDepth: number }) => Asn1;

function decodeDer(bytes: string, what: string): Asn1 {
  try {
    // strict: a length running past the end is an error (forge would otherwise quietly shorten a truncated file).
    return (forge.asn1.fromDer as unknown as FromDer)(bytes, { strict: true, parseAllBytes: true, decodeBitStrings: false, maxDepth: MAX_DER_DEPTH });
  } catch {
    throw damaged(`${what} is truncated, corrupt or not PKCS#12 data`);
  }
}

function childrenOf(node: Asn1 | undefined, tagClass: Forge.asn1.Class, type: number, what: string, minChildren: number): Asn1[] {
  if (!node || node.tagClass !== tagClass || node.type !== type || !Array.isArray(node.value) || node.value.length < minChildren) throw damaged(`${what} is malformed`);
  return node.value;
}

const sequence = (node: Asn1 | undefined, what: string, minChildren = 0): Asn1[] => childrenOf(node, Class.UNIVERSAL, Type.SEQUENCE, what, minChildren);

/** The single child of an `[0] EXPLICIT` wrapper. */
function explicit0(node: Asn1 | undefined, what: string): Asn1 {
  const [child, ...more] = childrenOf(node, Class.CONTEXT_SPECIFIC, 0, what, 1);
  if (more.length) throw damaged(`${what} is malformed`);
  return child!;
}

/** OIDs are compared by their DER contents, never decoded (forge's derToOid throws on huge arcs). */
const KNOWN_OIDS = new Map<string, string>(Object.values(OID).map((oid) => [forge.asn1.oidToDer(oid).getBytes(), oid]));

function oidOf(node: Asn1 | undefined, what: string): string | undefined {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.OID || typeof node.value !== 'string') throw damaged(`${what} is malformed`);
  return KNOWN_OIDS.get(node.value);
}

/** Contents of an OCTET STRING (or of an `[n] IMPLICIT` one), joining BER's constructed chunks as Windows writes them. */
function octetsOf(node: Asn1 | undefined, what: string, implicitTag?: number): string {
  const tagOk = implicitTag === undefined ? node?.tagClass === Class.UNIVERSAL && node.type === Type.OCTETSTRING : node?.tagClass === Class.CONTEXT_SPECIFIC && node.type === implicitTag;
  if (!node || !tagOk) throw damaged(`${what} is malformed`);
  if (typeof node.value === 'string') return node.value;
  return node.value.map((chunk) => octetsOf(chunk, what)).join('');
}

/** Contents of an INTEGER, checked positive. */
function positiveIntegerOf(node: Asn1 | undefined, what: string): string {
  if (!node || node.tagClass !== Class.UNIVERSAL || node.type !== Type.INTEGER || typeof node.value !== 'string' || node.value.length === 0) throw damaged(`${what} is malformed`);
  if (node.value.charCodeAt(0) & 0x80) throw damaged(`${what} is negative`);
  return node.value;
}

/** A positive INTEGER no larger than `max` (iteration counts, versions, key lengths). */
function smallIntegerOf(node: Asn1 | undefined, what: string, max: number): number {
  const contents = positiveIntegerOf(node, what);
  const value = contents.length > 6 ? Infinity : [...contents].reduce((n, c) => n * 256 + c.charCodeAt(0), 0);
  if (value < 1 || value > max) throw damaged(`${what} is out of range (at most ${max.toLocaleString('en-US')})`);
  return value;
}

/** Bits of an unsigned big-endian integer's contents. */
function bitLength(contents: string): number {
  let i = 0;
  while (i < contents.length && contents.charCodeAt(i) === 0) i++;
  return i === contents.length ? 0 : (contents.length - i - 1) * 8 + (32 - Math.clz32(contents.charCodeAt(i)));
}

// ---------------------------------------------------------------------------------------------------------------
// Password-based encryption schemes, read before any password is used.

type WebHash = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';
const PRF_BY_OID: Record<string, { hash: WebHash; bytes: number }> = {
  [OID.hmacWithSha1]: { hash: 'SHA-1', bytes: 20 },
  [OID.hmacWithSha256]: { hash: 'SHA-256', bytes: 32 },
  [OID.hmacWithSha384]: { hash: 'SHA-384', bytes: 48 },
  [OID.hmacWithSha512]: { hash: 'SHA-512', bytes: 64 },
};
/** `webCrypto`: WebCrypto decrypts it (browsers refuse 192-bit AES keys; none offers 3DES). */
const PBES2_CIPHERS: Record<string, { forgeName: 'AES-CBC' | '3DES-CBC'; keyBytes: number; ivBytes: number; webCrypto: boolean }> = {
  [OID.aes128Cbc]: { forgeName: 'AES-CBC', keyBytes: 16, ivBytes: 16, webCrypto: true },
  [OID.aes192Cbc]: { forgeName: 'AES-CBC', keyBytes: 24, ivBytes: 16, webCrypto: false },
  [OID.aes256Cbc]: { forgeName: 'AES-CBC', keyBytes: 32, ivBytes: 16, webCrypto: true },
  [OID.desEde3Cbc]: { forgeName: '3DES-CBC', keyBytes: 24, ivBytes: 8, webCrypto: false },
};

interface Pbes2Scheme {
  kind: 'pbes2';
  salt: string;
  iterations: number;
  prf: { hash: WebHash; bytes: number };
  cipher: { forgeName: 'AES-CBC' | '3DES-CBC'; keyBytes: number; webCrypto: boolean };
  iv: string;
}
/** PKCS#12's own PBE (RFC 7292 appendix C), written by `openssl pkcs12 -legacy` and older Windows. */
interface Pkcs12PbeScheme {
  kind: 'pkcs12';
  salt: string;
  iterations: number;
  cipher: '3DES-CBC' | 'RC2-40-CBC';
}
interface Sealed {
  scheme: Pbes2Scheme | Pkcs12PbeScheme;
  ciphertext: string;
}

function readScheme(algorithm: Asn1 | undefined): Pbes2Scheme | Pkcs12PbeScheme {
  const [oidNode, params] = sequence(algorithm, 'an encryption algorithm', 1);
  const oid = oidOf(oidNode, 'an encryption algorithm');
  if (oid === OID.pbes2) return readPbes2(params);
  if (oid === OID.pbeSha1TripleDes || oid === OID.pbeSha1Rc2_40) {
    const [salt, iterations] = sequence(params, 'the encryption parameters', 2);
    return {
      kind: 'pkcs12',
      salt: octetsOf(salt, 'the encryption salt'),
      iterations: smallIntegerOf(iterations, 'the encryption iteration count', MAX_KDF_ITERATIONS),
      cipher: oid === OID.pbeSha1TripleDes ? '3DES-CBC' : 'RC2-40-CBC',
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
  const cipher = PBES2_CIPHERS[oidOf(cipherOid, 'the encryption scheme') ?? ''];
  if (!cipher) throw damaged('it is encrypted with a cipher cmk does not support (use AES-CBC)');
  let prf = PRF_BY_OID[OID.hmacWithSha1]!;
  for (const field of optional) {
    // PBKDF2-params: keyLength INTEGER OPTIONAL, then prf AlgorithmIdentifier DEFAULT hmacWithSHA1.
    if (field.type === Type.INTEGER) {
      if (smallIntegerOf(field, 'the PBKDF2 key length', 64) !== cipher.keyBytes) throw damaged('its PBKDF2 key length does not fit its cipher');
    } else {
      const named = PRF_BY_OID[oidOf(sequence(field, 'the PBKDF2 PRF', 1)[0], 'the PBKDF2 PRF') ?? ''];
      if (!named) throw damaged('its PBKDF2 pseudo-random function is not supported here (use HMAC-SHA-256)');
      prf = named;
    }
  }
  const ivBytes = octetsOf(iv, 'the encryption IV');
  if (ivBytes.length !== cipher.ivBytes) throw damaged('its encryption IV has the wrong length');
  return {
    kind: 'pbes2',
    salt: octetsOf(salt, 'the PBKDF2 salt'),
    iterations: smallIntegerOf(iterations, 'the PBKDF2 iteration count', MAX_KDF_ITERATIONS),
    prf,
    cipher,
    iv: ivBytes,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The file's layout, as far as it can be read without the password.

interface Bags {
  /** End-entity candidates: DER, and whether a localKeyId pairs it with the key. */
  certificates: Array<{ der: string; paired: boolean }>;
  /** Plain PKCS#8 key bags (DER). */
  keys: string[];
  shroudedKeys: Sealed[];
}
interface Layout {
  clear: Bags;
  /** Encrypted content blocks, each a SafeContents once decrypted. */
  sealed: Sealed[];
}

const emptyBags = (): Bags => ({ certificates: [], keys: [], shroudedKeys: [] });

function readLayout(file: string): Layout {
  const pfx = sequence(decodeDer(file, 'the file'), 'the file', 2);
  if (smallIntegerOf(pfx[0], 'the version', 255) !== 3) throw damaged('only PKCS#12 version 3 is supported');
  const [contentType, content] = sequence(pfx[1], 'the file content', 2);
  if (oidOf(contentType, 'the file content type') !== OID.data) throw damaged('signed (public-key integrity) .pfx files are not supported');
  const authSafe = octetsOf(explicit0(content, 'the file content'), 'the file content');
  const layout: Layout = { clear: emptyBags(), sealed: [] };
  for (const info of sequence(decodeDer(authSafe, 'the content list'), 'the content list')) {
    const [type, body] = sequence(info, 'a content block', 2);
    const oid = oidOf(type, 'a content block type');
    if (oid === OID.data) readSafeContents(octetsOf(explicit0(body, 'a content block'), 'a content block'), layout.clear);
    else if (oid === OID.encryptedData) layout.sealed.push(readEncryptedData(explicit0(body, 'an encrypted block')));
    else throw damaged('it holds a kind of content block cmk does not read (only plain and password-encrypted blocks)');
  }
  return layout;
}

/** EncryptedData (RFC 5652 §8): version, then contentType, algorithm and `[0] IMPLICIT` encrypted content. */
function readEncryptedData(node: Asn1): Sealed {
  const [, info] = sequence(node, 'an encrypted block', 2);
  const [contentType, algorithm, content] = sequence(info, 'an encrypted block', 3);
  if (oidOf(contentType, 'an encrypted block') !== OID.data) throw damaged('an encrypted block holds an unexpected kind of content');
  return { scheme: readScheme(algorithm), ciphertext: octetsOf(content, 'an encrypted block', 0) };
}

/** SafeContents: a SEQUENCE OF SafeBag. Unknown bag types (CRLs, secrets) carry no key and are skipped. */
function readSafeContents(der: string, bags: Bags): void {
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
        bags.keys.push(forge.asn1.toDer(value).getBytes());
        break;
      case OID.shroudedKeyBag: {
        const [algorithm, data] = sequence(value, 'an encrypted private key', 2);
        bags.shroudedKeys.push({ scheme: readScheme(algorithm), ciphertext: octetsOf(data, 'an encrypted private key') });
        break;
      }
      case OID.safeContentsBag:
        throw damaged('it nests bag lists inside bags, which cmk does not read');
    }
  }
}

function hasLocalKeyId(attributes: Asn1 | undefined): boolean {
  if (!attributes) return false;
  return childrenOf(attributes, Class.UNIVERSAL, Type.SET, 'bag attributes', 0).some((a) => oidOf(sequence(a, 'a bag attribute', 1)[0], 'a bag attribute') === OID.localKeyId);
}

// ---------------------------------------------------------------------------------------------------------------
// Keys: what kind they are, read from certificates (before the password) and PKCS#8 (after).

interface RsaPublic {
  modulus: string;
  exponent: string;
}

/** UNSUPPORTED_KEY unless the algorithm is RSA and the modulus 2048 bits. */
function assertSupported(algorithmOid: string | undefined, rsa: () => RsaPublic): RsaPublic {
  if (algorithmOid !== OID.rsaEncryption) {
    const kind = (algorithmOid && KEY_KIND[algorithmOid]) ?? 'not an RSA key';
    throw new PfxSignError('UNSUPPORTED_KEY', `The key in this .pfx file is ${kind}; only 2048-bit RSA keys are supported.`);
  }
  const key = rsa();
  const bits = bitLength(key.modulus);
  if (bits !== REQUIRED_RSA_BITS) throw new PfxSignError('UNSUPPORTED_KEY', `The key in this .pfx file is ${bits}-bit RSA; only 2048-bit RSA keys are supported.`);
  return key;
}

/** RSAPublicKey or the head of RSAPrivateKey: the modulus and public exponent. */
function rsaNumbers(fields: Asn1[], what: string): RsaPublic {
  return { modulus: positiveIntegerOf(fields[0], what), exponent: positiveIntegerOf(fields[1], what) };
}

/** Judges the certificate's SubjectPublicKeyInfo, as keyfiles/pfx.ts does with the certificate's public key. */
function assertCertificateSupported(der: string): void {
  const [tbs] = sequence(decodeDer(der, 'a certificate'), 'a certificate', 3);
  const fields = sequence(tbs, 'a certificate', 6);
  // TBSCertificate: [0] version (optional), serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …
  const versioned = fields[0]!.tagClass === Class.CONTEXT_SPECIFIC ? 1 : 0;
  const [algorithm, publicKey] = sequence(fields[versioned + 5], 'a certificate key', 2);
  assertSupported(oidOf(sequence(algorithm, 'a certificate key', 1)[0], 'a certificate key'), () => {
    if (!publicKey || publicKey.type !== Type.BITSTRING || typeof publicKey.value !== 'string') throw damaged('a certificate key is malformed');
    // A BIT STRING's first content byte counts unused bits: 0 for a DER key.
    return rsaNumbers(sequence(decodeDer(publicKey.value.slice(1), 'a certificate key'), 'a certificate key', 2), 'a certificate key');
  });
}

interface PrivateKeyInfo {
  /** PKCS#8 DER re-encoded without optional attributes, for importKey. */
  pkcs8: Uint8Array<ArrayBuffer>;
  rsa: RsaPublic;
}

/** A decrypted PrivateKeyInfo, or undefined when the bytes are not one (the sign of a wrong password). */
function parsePrivateKeyInfo(der: string): PrivateKeyInfo | undefined {
  let fields: Asn1[];
  let algorithmOid: string | undefined;
  try {
    fields = sequence(decodeDer(der, 'the private key'), 'the private key', 3);
    // PrivateKeyInfo's version: 0 (RFC 5208), or 1 when a public key follows (RFC 5958).
    if (!['\x00', '\x01'].includes(positiveIntegerOf(fields[0], 'the private key version'))) return undefined;
    algorithmOid = oidOf(sequence(fields[1], 'the private key algorithm', 1)[0], 'the private key algorithm');
    octetsOf(fields[2], 'the private key');
  } catch {
    return undefined;
  }
  const rsa = assertSupported(algorithmOid, () => {
    try {
      return rsaNumbers(sequence(decodeDer(octetsOf(fields[2], 'the private key'), 'the private key'), 'the private key', 9).slice(1), 'the private key');
    } catch {
      throw damaged('its private key cannot be read');
    }
  });
  const [version, algorithm, key] = fields;
  return { pkcs8: bytesOf(forge.asn1.toDer(forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [version!, algorithm!, key!])).getBytes()), rsa };
}

/** The certificates whose key can be judged before the password: the paired one, or the only one (not a chain's CAs). */
function endEntityCertificates(certificates: Bags['certificates']): Bags['certificates'] {
  const paired = certificates.filter((c) => c.paired);
  if (paired.length > 0) return paired;
  return certificates.length === 1 ? certificates : [];
}

// ---------------------------------------------------------------------------------------------------------------
// Key derivation and decryption.

class KdfBudget {
  private spent = 0;
  constructor(private readonly limit: number) {}
  spend(work: number): void {
    if (this.spent + work > this.limit) throw damaged('opening it would take an unreasonable amount of key-derivation work');
    this.spent += work;
  }
}

/** The password as PBKDF2 takes it (UTF-8, as OpenSSL 3 and Windows) and as PKCS#12's KDF does (BMPString). */
interface PasswordForms {
  utf8: Uint8Array<ArrayBuffer>;
  bmp: Uint8Array<ArrayBuffer>;
}

/** UTF-16BE code units plus a two-byte terminator (RFC 7292 B.1); non-BMP characters become surrogate pairs, as in OpenSSL. */
function passwordForms(password: string): PasswordForms {
  const bmp = new Uint8Array(password.length * 2 + 2);
  for (let i = 0; i < password.length; i++) {
    bmp[2 * i] = password.charCodeAt(i) >> 8;
    bmp[2 * i + 1] = password.charCodeAt(i) & 0xff;
  }
  return { utf8: new TextEncoder().encode(password) as Uint8Array<ArrayBuffer>, bmp };
}

/** The empty password as OpenSSL tries it: with the BMP terminator, and as no bytes at all. */
const EMPTY_PASSWORDS: readonly PasswordForms[] = [
  { utf8: new Uint8Array(0), bmp: new Uint8Array(2) },
  { utf8: new Uint8Array(0), bmp: new Uint8Array(0) },
];

/**
 * PKCS#12's key derivation (RFC 7292 B.2) with SHA-1, the only digest its PBE schemes name; `id` 1 = key, 2 = IV.
 * forge's SHA-1 runs it synchronously: one WebCrypto digest per iteration would cost a promise round-trip each.
 */
function pkcs12Kdf(password: Uint8Array, salt: string, id: 1 | 2, iterations: number, length: number, budget: KdfBudget): string {
  const u = 20;
  const v = 64;
  const rounds = Math.ceil(length / u);
  budget.spend(rounds * iterations);
  const fill = (source: Uint8Array): Uint8Array => {
    const filled = new Uint8Array(v * Math.ceil(source.length / v));
    for (let i = 0; i < filled.length; i++) filled[i] = source[i % source.length]!;
    return filled;
  };
  const input = concat(fill(bytesOf(salt)), fill(password));
  let output = '';
  for (let round = 0; round < rounds; round++) {
    let a = binary(concat(new Uint8Array(v).fill(id), input));
    for (let i = 0; i < iterations; i++) a = forge.md.sha1.create().update(a).digest().getBytes();
    output += a;
    if (round + 1 < rounds) {
      // Step 6C: I_j = (I_j + B + 1) mod 2^(8v) for each v-byte block of I, B being A repeated to v bytes.
      const b = fill(bytesOf(a)).subarray(0, v);
      for (let start = 0; start < input.length; start += v) {
        let carry = 1;
        for (let i = v - 1; i >= 0; i--) {
          const sum = input[start + i]! + b[i]! + carry;
          input[start + i] = sum & 0xff;
          carry = sum >> 8;
        }
      }
    }
  }
  return output.slice(0, length);
}

/** The plaintext, or undefined when the password does not open it (bad padding, or WebCrypto's refusal). */
async function unseal(sealed: Sealed, password: PasswordForms, budget: KdfBudget): Promise<string | undefined> {
  const { scheme, ciphertext } = sealed;
  if (scheme.kind === 'pkcs12') {
    const key = pkcs12Kdf(password.bmp, scheme.salt, 1, scheme.iterations, scheme.cipher === '3DES-CBC' ? 24 : 5, budget);
    const iv = pkcs12Kdf(password.bmp, scheme.salt, 2, scheme.iterations, 8, budget);
    if (scheme.cipher === '3DES-CBC') return forgeDecrypt('3DES-CBC', key, iv, ciphertext);
    const rc2 = forge.rc2.createDecryptionCipher(key, 40);
    rc2.start(iv);
    rc2.update(forge.util.createBuffer(ciphertext));
    return rc2.finish() ? rc2.output.getBytes() : undefined;
  }
  const { salt, iterations, prf, cipher, iv } = scheme;
  budget.spend(iterations * Math.ceil(cipher.keyBytes / prf.bytes));
  let keyBits: ArrayBuffer;
  try {
    const secret = await crypto.subtle.importKey('raw', password.utf8, 'PBKDF2', false, ['deriveBits']);
    keyBits = await crypto.subtle.deriveBits({ name: 'PBKDF2', salt: bytesOf(salt), iterations, hash: prf.hash }, secret, cipher.keyBytes * 8);
  } catch {
    throw damaged('its key derivation cannot be run in this browser');
  }
  if (!cipher.webCrypto) return forgeDecrypt(cipher.forgeName, binary(new Uint8Array(keyBits)), iv, ciphertext);
  try {
    const key = await crypto.subtle.importKey('raw', keyBits, 'AES-CBC', false, ['decrypt']);
    return binary(new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CBC', iv: bytesOf(iv) }, key, bytesOf(ciphertext))));
  } catch {
    // OperationError: the padding is wrong, the usual sign of a wrong password.
    return undefined;
  }
}

/** forge's CBC checks only the last padding byte; the DER parse that follows catches the rest. */
function forgeDecrypt(algorithm: 'AES-CBC' | '3DES-CBC', key: string, iv: string, ciphertext: string): string | undefined {
  const decipher = forge.cipher.createDecipher(algorithm, forge.util.createBuffer(key));
  decipher.start({ iv: forge.util.createBuffer(iv) });
  decipher.update(forge.util.createBuffer(ciphertext));
  return decipher.finish() ? decipher.output.getBytes() : undefined;
}

/** The key bags behind the password: a shrouded bag in the clear, or whatever the encrypted blocks hold. */
async function unlockKey(layout: Layout, password: PasswordForms, budget: KdfBudget): Promise<PrivateKeyInfo | undefined> {
  const openShrouded = async (sealed: Sealed): Promise<PrivateKeyInfo | undefined> => {
    const plaintext = await unseal(sealed, password, budget);
    return plaintext === undefined ? undefined : parsePrivateKeyInfo(plaintext);
  };
  const shrouded = layout.clear.shroudedKeys[0];
  if (shrouded) return openShrouded(shrouded);
  const bags = emptyBags();
  for (const sealed of layout.sealed) {
    const plaintext = await unseal(sealed, password, budget);
    if (plaintext === undefined) return undefined;
    try {
      readSafeContents(plaintext, bags);
    } catch {
      // Garbage that happened to decrypt with valid padding: without the MAC, that is a wrong password.
      return undefined;
    }
  }
  const count = bags.keys.length + bags.shroudedKeys.length;
  if (count !== 1) throw damaged(count === 0 ? 'it holds no private key' : `it holds ${count} private keys; it must hold exactly one`);
  if (bags.shroudedKeys[0]) return openShrouded(bags.shroudedKeys[0]);
  // A plain key bag inside a block that decrypted and parsed: the password was right, so a bad key is damage.
  return parsePrivateKeyInfo(bags.keys[0]!) ?? Promise.reject(damaged('its private key cannot be read'));
}

/** True when the empty password opens the file: such a file is as good as unprotected. */
async function emptyPasswordOpens(layout: Layout): Promise<boolean> {
  const budget = new KdfBudget(EMPTY_PROBE_BUDGET);
  for (const empty of EMPTY_PASSWORDS) {
    try {
      if (await unlockKey(layout, empty, budget)) return true;
    } catch {
      // Over the probe's budget, or WebCrypto refusing an empty PBKDF2 password: the caller's WRONG_PASSWORD stands.
    }
  }
  return false;
}

/** INVALID_KEY_FILE, then UNSUPPORTED_KEY, then PASSWORD_REQUIRED for what anyone can read without the password. */
function refuseWhatIsVisible({ clear, sealed }: Layout): void {
  const visibleKeys = clear.keys.length + clear.shroudedKeys.length;
  if (visibleKeys > 1) throw damaged(`it holds ${visibleKeys} private keys; it must hold exactly one`);
  if (visibleKeys === 0 && sealed.length === 0) throw damaged('it holds no private key');
  for (const certificate of endEntityCertificates(clear.certificates)) assertCertificateSupported(certificate.der);
  for (const key of clear.keys) if (!parsePrivateKeyInfo(key)) throw damaged('its private key cannot be read');
  if (clear.keys.length > 0) throw unprotected();
}

// ---------------------------------------------------------------------------------------------------------------
// What the lock dialog calls.

/** The opened key: it signs challenges and never leaves WebCrypto (not extractable). */
export interface PfxSigner {
  /** Lower-case hex SHA-256 of the public key's SubjectPublicKeyInfo: the thumbprint the API shows (common/keys.ts). */
  thumbprint: string;
  /** RSASSA-PKCS1-v1_5 with SHA-256 over the challenge's UTF-8 bytes, as `cmk tenant lock` signs it. */
  sign(challenge: string): Promise<Uint8Array>;
}

/**
 * Opens a `.pfx` with its password, refusing as keyfiles/pfx.ts does: INVALID_KEY_FILE (not PKCS#12, over 64 KiB,
 * over the iteration caps), UNSUPPORTED_KEY (not 2048-bit RSA), PASSWORD_REQUIRED (no password, or a file that is not
 * protected), WRONG_PASSWORD. Throws PfxSignError only. The dialog can compare `thumbprint` with the active key's
 * before asking for a challenge.
 */
export async function openPfxSigner(pfx: Uint8Array, password: string): Promise<PfxSigner> {
  if (pfx.length > MAX_PFX_BYTES) throw new PfxSignError('INVALID_KEY_FILE', `The key file is larger than ${MAX_PFX_BYTES / 1024} KiB; real .pfx files are a few KiB.`);
  const layout = readLayout(binary(pfx));
  refuseWhatIsVisible(layout);
  if (password === '') throw passwordRequired();
  const opened = await unlockKey(layout, passwordForms(password), new KdfBudget(KDF_WORK_BUDGET));
  if (!opened) throw (await emptyPasswordOpens(layout)) ? unprotected() : wrongPassword();
  let privateKey: CryptoKey;
  try {
    privateKey = await crypto.subtle.importKey('pkcs8', opened.pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
  } catch {
    throw damaged('its private key cannot be read');
  } finally {
    opened.pkcs8.fill(0);
  }
  return {
    thumbprint: await thumbprintOf(opened.rsa),
    sign: async (challenge) => new Uint8Array(await crypto.subtle.sign('RSASSA-PKCS1-v1_5', privateKey, new TextEncoder().encode(challenge))),
  };
}

/** The lock's proof of possession: the challenge signed with the `.pfx`'s key (base64 it for the lock request). */
export async function signChallengeWithPfx(pfx: Uint8Array, password: string, challenge: string): Promise<Uint8Array> {
  return (await openPfxSigner(pfx, password)).sign(challenge);
}

/** SubjectPublicKeyInfo DER of the RSA key, hashed as common/keys.ts's thumbprintOf does. */
async function thumbprintOf({ modulus, exponent }: RsaPublic): Promise<string> {
  const { create, toDer, oidToDer } = forge.asn1;
  const integer = (contents: string): Asn1 => create(Class.UNIVERSAL, Type.INTEGER, false, contents);
  const rsaPublicKey = toDer(create(Class.UNIVERSAL, Type.SEQUENCE, true, [integer(modulus), integer(exponent)])).getBytes();
  const spki = create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    create(Class.UNIVERSAL, Type.SEQUENCE, true, [create(Class.UNIVERSAL, Type.OID, false, oidToDer(OID.rsaEncryption).getBytes()), create(Class.UNIVERSAL, Type.NULL, false, '')]),
    create(Class.UNIVERSAL, Type.BITSTRING, false, `\x00${rsaPublicKey}`),
  ]);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytesOf(toDer(spki).getBytes())));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
