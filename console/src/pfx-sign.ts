/**
 * The lock dialog's proof of possession (issue 17), in the browser: the tenant's `.pfx` is opened and the challenge
 * signed on the page, so that neither the file nor its password is ever sent. The signature is what `cmk tenant lock`
 * makes (client/commands/tenant.ts): RSASSA-PKCS1-v1_5 with SHA-256 over the challenge's UTF-8 bytes.
 *
 * The file is read as the server reads it (keyfiles/pkcs12-layout.ts, shared with keyfiles/pfx.ts), refusing with the
 * same codes in DESIGN.md §4's order; the cryptography is WebCrypto's (PBKDF2, AES-128/256-CBC, RSA signing with a
 * non-extractable key). WebCrypto has no 3DES, RC2 or AES-192, so those (OpenSSL's `-legacy` files, rarer PBES2
 * ciphers) are decrypted with forge's ciphers, and PKCS#12's own KDF runs on forge's SHA-1.
 *
 * The file's MAC is not checked: its key comes from PKCS#12's KDF, one hash per iteration, which WebCrypto does not
 * offer (cmk's files ask 210,000 SHA-256 rounds: seconds in JavaScript). A wrong password is told instead by the key
 * bag's decryption: its padding, then a DER PrivateKeyInfo parse. Integrity needs no MAC here: a tampered key cannot
 * make a signature the server accepts. Nothing here logs; no message holds key material or the password.
 */
// Only the parts of node-forge used below (see keyfiles/node-forge-lib.d.ts): SHA-1 and the ciphers WebCrypto lacks.
import forge from 'node-forge/lib/forge';
import 'node-forge/lib/sha1';
import 'node-forge/lib/aes';
import 'node-forge/lib/des';
import 'node-forge/lib/rc2';
import type { ErrorCode } from '../../domain/codes';
import { CmkError } from '../../common/errors';
import {
  assertOneKey,
  binaryOf,
  bytesIn,
  bytesOf,
  damaged,
  decodeDer,
  derOf,
  emptyBags,
  endEntityCertificates,
  OID,
  oidOf,
  readLayout,
  readSafeContents,
  sequence,
  unsignedOf,
  type Asn1,
  type Digest,
  type Layout,
  type Sealed,
} from '../../keyfiles/pkcs12-layout';
import { derivePkcs12, type KdfWork, type Pkcs12Hash } from '../../keyfiles/pkcs12-derive';

/** As common/keys.ts: larger files are refused before any parsing (a real .pfx is a few KiB). */
export const MAX_PFX_BYTES = 64 * 1024;
/** All derivations of one opening together, counted in hash outputs times iterations (keyfiles/pfx.ts's budget). */
const KDF_WORK_BUDGET = 2_000_000;
/** After a failed password, the courtesy probe with the empty password (PASSWORD_REQUIRED) gets a small budget only. */
const EMPTY_PROBE_BUDGET = 100_000;
const REQUIRED_RSA_BITS = 2048;

export type PfxSignErrorCode = Extract<ErrorCode, 'INVALID_KEY_FILE' | 'UNSUPPORTED_KEY' | 'PASSWORD_REQUIRED' | 'WRONG_PASSWORD'>;

/** A refusal to show next to the dialog's file and password fields: its code and a sentence for a tenant administrator. */
export class PfxSignError extends CmkError {
  declare readonly code: PfxSignErrorCode;
  constructor(code: PfxSignErrorCode, message: string) {
    super(code, message);
    this.name = 'PfxSignError';
  }
}

const passwordRequired = (): CmkError => new CmkError('PASSWORD_REQUIRED', 'This .pfx file is protected by a password: type its password.');
const unprotected = (): CmkError =>
  new CmkError('PASSWORD_REQUIRED', 'The .pfx file is not protected by a password, so anyone who saw it could read the key; export it again with a password.');
const wrongPassword = (): CmkError => new CmkError('WRONG_PASSWORD', 'The password does not open this .pfx file.');

const { Class, Type } = forge.asn1;

// ---------------------------------------------------------------------------------------------------------------
// Keys: what kind they are, read from certificates (before the password) and PKCS#8 (after). The server asks
// node:crypto (common/keys.ts assertSupportedKey); here the DER says it.

/** What a refused key is called in UNSUPPORTED_KEY's sentence. */
const KEY_KIND: Record<string, string> = {
  [OID.ecPublicKey]: 'an elliptic-curve (EC) key',
  [OID.ed25519]: 'an Ed25519 key',
  [OID.ed448]: 'an Ed448 key',
  [OID.dsa]: 'a DSA key',
  [OID.rsaPss]: 'an RSA-PSS key',
};

interface RsaPublic {
  /** INTEGER contents, as forge keeps them (one char per byte). */
  modulus: string;
  exponent: string;
}

/** Bits of an unsigned big-endian integer's contents. */
function bitLength(contents: string): number {
  let i = 0;
  while (i < contents.length && contents.charCodeAt(i) === 0) i++;
  return i === contents.length ? 0 : (contents.length - i - 1) * 8 + (32 - Math.clz32(contents.charCodeAt(i)));
}

/** UNSUPPORTED_KEY unless the algorithm is RSA and the modulus 2048 bits (R2). */
function assertSupported(algorithmOid: string, rsa: () => RsaPublic): RsaPublic {
  if (algorithmOid !== OID.rsaEncryption) {
    throw new CmkError('UNSUPPORTED_KEY', `The key in this .pfx file is ${KEY_KIND[algorithmOid] ?? 'not an RSA key'}; only 2048-bit RSA keys are supported.`);
  }
  const key = rsa();
  const bits = bitLength(key.modulus);
  if (bits !== REQUIRED_RSA_BITS) throw new CmkError('UNSUPPORTED_KEY', `The key in this .pfx file is ${bits}-bit RSA; only 2048-bit RSA keys are supported.`);
  return key;
}

/** RSAPublicKey, or RSAPrivateKey past its version: the modulus and the public exponent come first. */
const rsaNumbers = ([modulus, exponent]: Asn1[], what: string): RsaPublic => ({ modulus: unsignedOf(modulus, what), exponent: unsignedOf(exponent, what) });

/** Judges a certificate's SubjectPublicKeyInfo, as keyfiles/pfx.ts judges the certificate's public key. */
function assertCertificateSupported(der: Uint8Array): void {
  const [tbs] = sequence(decodeDer(der, 'a certificate'), 'a certificate', 3);
  const fields = sequence(tbs, 'a certificate', 6);
  // TBSCertificate: [0] version (optional), serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …
  const versioned = fields[0]!.tagClass === Class.CONTEXT_SPECIFIC ? 1 : 0;
  const [algorithm, publicKey] = sequence(fields[versioned + 5], 'a certificate key', 2);
  assertSupported(oidOf(sequence(algorithm, 'a certificate key', 1)[0], 'a certificate key'), () => {
    if (!publicKey || publicKey.type !== Type.BITSTRING || typeof publicKey.value !== 'string') throw damaged('a certificate key is malformed');
    // A BIT STRING's first content byte counts unused bits: 0 for a DER key.
    return rsaNumbers(sequence(decodeDer(bytesOf(publicKey.value.slice(1)), 'a certificate key'), 'a certificate key', 2), 'a certificate key');
  });
}

interface PrivateKeyInfo {
  /** PKCS#8 DER re-assembled without optional attributes, for importKey. */
  pkcs8: Uint8Array<ArrayBuffer>;
  rsa: RsaPublic;
}

/** A decrypted PrivateKeyInfo, or undefined when the bytes are not one (the sign of a wrong password). */
function parsePrivateKeyInfo(der: Uint8Array): PrivateKeyInfo | undefined {
  let fields: Asn1[];
  let algorithmOid: string;
  try {
    fields = sequence(decodeDer(der, 'the private key'), 'the private key', 3);
    // PrivateKeyInfo's version: 0 (RFC 5208), or 1 when a public key follows (RFC 5958).
    if (!['\x00', '\x01'].includes(unsignedOf(fields[0], 'the private key version'))) return undefined;
    algorithmOid = oidOf(sequence(fields[1], 'the private key algorithm', 1)[0], 'the private key algorithm');
    bytesIn(fields[2], 'the private key');
  } catch {
    return undefined;
  }
  const rsa = assertSupported(algorithmOid, () => {
    try {
      // RSAPrivateKey: version, modulus, publicExponent, privateExponent, two primes, two exponents, coefficient.
      return rsaNumbers(sequence(decodeDer(bytesIn(fields[2], 'the private key'), 'the private key'), 'the private key', 9).slice(1), 'the private key');
    } catch {
      throw damaged('its private key cannot be read');
    }
  });
  const [version, algorithm, key] = fields;
  return { pkcs8: derOf(forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [version!, algorithm!, key!])), rsa };
}

// ---------------------------------------------------------------------------------------------------------------
// Key derivation and decryption.

class KdfBudget implements KdfWork {
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
  bmp: Uint8Array;
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

/** SHA-1, the only digest PKCS#12's PBE schemes name, for its KDF (pkcs12-derive.ts): forge's, synchronous. */
const SHA1: Pkcs12Hash = {
  out: 20,
  block: 64,
  digestRepeatedly: (data, times) => {
    let a = binaryOf(data);
    for (let i = 0; i < times; i++) a = forge.md.sha1.create().update(a).digest().getBytes();
    return bytesOf(a);
  },
};

const WEB_HASHES: Partial<Record<Digest, { name: string; bytes: number }>> = {
  sha1: { name: 'SHA-1', bytes: 20 },
  sha256: { name: 'SHA-256', bytes: 32 },
  sha384: { name: 'SHA-384', bytes: 48 },
  sha512: { name: 'SHA-512', bytes: 64 },
};

/** The plaintext, or undefined when the password does not open it (the padding is wrong). */
async function unseal(sealed: Sealed, password: PasswordForms, budget: KdfBudget): Promise<Uint8Array | undefined> {
  const { scheme, ciphertext } = sealed;
  if (scheme.kind === 'pkcs12') {
    const key = derivePkcs12(SHA1, password.bmp, scheme.salt, 1, scheme.iterations, scheme.cipher === 'des-ede3-cbc' ? 24 : 5, budget);
    const iv = derivePkcs12(SHA1, password.bmp, scheme.salt, 2, scheme.iterations, 8, budget);
    if (scheme.cipher === 'des-ede3-cbc') return forgeDecrypt('3DES-CBC', key, iv, ciphertext);
    const rc2 = forge.rc2.createDecryptionCipher(binaryOf(key), 40);
    rc2.start(binaryOf(iv));
    rc2.update(forge.util.createBuffer(binaryOf(ciphertext)));
    return rc2.finish() ? bytesOf(rc2.output.getBytes()) : undefined;
  }
  const hash = WEB_HASHES[scheme.prf];
  if (!hash) throw damaged('its PBKDF2 pseudo-random function (HMAC-SHA-224) is not available in a browser');
  budget.spend(scheme.iterations * Math.ceil(scheme.keyBytes / hash.bytes));
  let keyBits: ArrayBuffer;
  try {
    const secret = await crypto.subtle.importKey('raw', password.utf8, 'PBKDF2', false, ['deriveBits']);
    keyBits = await crypto.subtle.deriveBits({ name: 'PBKDF2', salt: scheme.salt, iterations: scheme.iterations, hash: hash.name }, secret, scheme.keyBytes * 8);
  } catch {
    throw damaged('its key derivation cannot be run in this browser');
  }
  // Browsers refuse 192-bit AES keys, and none offers 3DES.
  if (scheme.cipher === 'aes-192-cbc' || scheme.cipher === 'des-ede3-cbc') {
    return forgeDecrypt(scheme.cipher === 'des-ede3-cbc' ? '3DES-CBC' : 'AES-CBC', new Uint8Array(keyBits), scheme.iv, ciphertext);
  }
  try {
    const key = await crypto.subtle.importKey('raw', keyBits, 'AES-CBC', false, ['decrypt']);
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CBC', iv: scheme.iv }, key, ciphertext));
  } catch {
    // OperationError: the padding is wrong, the usual sign of a wrong password.
    return undefined;
  }
}

/** forge's CBC checks only the last padding byte; the DER parse that follows catches the rest. */
function forgeDecrypt(algorithm: 'AES-CBC' | '3DES-CBC', key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
  const decipher = forge.cipher.createDecipher(algorithm, forge.util.createBuffer(binaryOf(key)));
  decipher.start({ iv: forge.util.createBuffer(binaryOf(iv)) });
  decipher.update(forge.util.createBuffer(binaryOf(ciphertext)));
  return decipher.finish() ? bytesOf(decipher.output.getBytes()) : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The checks, in DESIGN.md §4's order.

/** INVALID_KEY_FILE, then UNSUPPORTED_KEY, then PASSWORD_REQUIRED for what anyone can read without the password. */
function refuseWhatIsVisible({ clear, sealed }: Layout): void {
  assertOneKey(clear, sealed.length);
  for (const certificate of endEntityCertificates(clear.certificates)) assertCertificateSupported(certificate.der);
  for (const key of clear.keys) if (!parsePrivateKeyInfo(key)) throw damaged('its private key cannot be read');
  if (clear.keys.length > 0) throw unprotected();
}

/** The key behind the password: a shrouded bag in the clear, or whatever the encrypted blocks hold; undefined if it does not open. */
async function unlockKey(layout: Layout, password: PasswordForms, budget: KdfBudget): Promise<PrivateKeyInfo | undefined> {
  const openShrouded = async (sealed: Sealed): Promise<PrivateKeyInfo | undefined> => {
    const plaintext = await unseal(sealed, password, budget);
    return plaintext && parsePrivateKeyInfo(plaintext);
  };
  const shrouded = layout.clear.shroudedKeys[0];
  if (shrouded) return openShrouded(shrouded);
  const bags = emptyBags();
  for (const sealed of layout.sealed) {
    const plaintext = await unseal(sealed, password, budget);
    if (!plaintext) return undefined;
    try {
      readSafeContents(plaintext, bags);
    } catch {
      // Garbage that happened to decrypt with valid padding: without the MAC, that is a wrong password.
      return undefined;
    }
  }
  assertOneKey(bags);
  if (bags.shroudedKeys[0]) return openShrouded(bags.shroudedKeys[0]);
  // A plain key bag in a block that decrypted and parsed: the password was right, so a bad key is damage.
  const opened = parsePrivateKeyInfo(bags.keys[0]!);
  if (!opened) throw damaged('its private key cannot be read');
  return opened;
}

/** True when the empty password opens the file: such a file is as good as unprotected. */
async function emptyPasswordOpens(layout: Layout): Promise<boolean> {
  const budget = new KdfBudget(EMPTY_PROBE_BUDGET);
  for (const empty of EMPTY_PASSWORDS) {
    try {
      if (await unlockKey(layout, empty, budget)) return true;
    } catch {
      // Over the probe's budget: the caller's WRONG_PASSWORD stands.
    }
  }
  return false;
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
  try {
    return await open(pfx, password);
  } catch (err) {
    if (err instanceof CmkError && !(err instanceof PfxSignError)) throw new PfxSignError(err.code as PfxSignErrorCode, err.message);
    throw err;
  }
}

/** The lock's proof of possession: the challenge signed with the `.pfx`'s key (base64 it for the lock request). */
export async function signChallengeWithPfx(pfx: Uint8Array, password: string, challenge: string): Promise<Uint8Array> {
  return (await openPfxSigner(pfx, password)).sign(challenge);
}

async function open(pfx: Uint8Array, password: string): Promise<PfxSigner> {
  // Browsers offer WebCrypto only to secure contexts (https, or http on localhost); about:blank is not one either. No
  // refusal code fits: it is how the console is served, not the file, so a plain Error says so.
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
    throw new Error('This page is not a secure context (https, or http on localhost): the browser offers no WebCrypto, so the .pfx cannot be opened here.');
  }
  if (pfx.length > MAX_PFX_BYTES) throw new CmkError('INVALID_KEY_FILE', `The key file is larger than ${MAX_PFX_BYTES / 1024} KiB; real .pfx files are a few KiB.`);
  const layout = readLayout(pfx);
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

/** SubjectPublicKeyInfo DER of the RSA key, hashed as common/keys.ts's thumbprintOf does. */
async function thumbprintOf({ modulus, exponent }: RsaPublic): Promise<string> {
  const node = (type: number, value: string | Asn1[]): Asn1 => forge.asn1.create(Class.UNIVERSAL, type, Array.isArray(value), value);
  const rsaPublicKey = binaryOf(derOf(node(Type.SEQUENCE, [node(Type.INTEGER, modulus), node(Type.INTEGER, exponent)])));
  const algorithm = node(Type.SEQUENCE, [node(Type.OID, forge.asn1.oidToDer(OID.rsaEncryption).getBytes()), node(Type.NULL, '')]);
  const spki = derOf(node(Type.SEQUENCE, [algorithm, node(Type.BITSTRING, `\x00${rsaPublicKey}`)]));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', spki));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
