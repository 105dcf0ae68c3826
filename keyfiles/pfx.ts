/**
 * Opening a tenant's `.pfx` (PKCS#12) in memory.
 *
 * We walk the PKCS#12 structure ourselves (pkcs12-layout.ts, with node-forge's DER decoder, shared with the console's
 * lock dialog; node:crypto does the cryptography) rather than call forge.pkcs12.pkcs12FromAsn1, because:
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
import { assertSupportedKey, MAX_KEY_FILE_BYTES, oversized, thumbprintOf } from '../common/keys';
import { bmpPassword, DIGEST_SIZES, pkcs12Kdf, pkcs12Mac, type KdfWork } from './pkcs12-kdf';
import {
  assertOneKey,
  binaryOf,
  bytesOf,
  damaged,
  endEntityCertificates,
  readLayout,
  readSafeContents,
  type Bags,
  type CbcCipher,
  type CertificateBag,
  type Layout,
  type MacData,
  type Sealed,
} from './pkcs12-layout';

export { MAX_KEY_FILE_BYTES } from '../common/keys';
export { MAX_KDF_ITERATIONS, OID } from './pkcs12-layout';

/** All derivations of one parse together (MAC, each encrypted block): about 2-3 s of CPU at worst. */
const KDF_WORK_BUDGET = 2_000_000;
/**
 * The empty-password probe after a failed password is a courtesy (PASSWORD_REQUIRED rather than WRONG_PASSWORD), so it
 * gets a small budget of its own: enough for files tools make with an empty password (about 2,048 iterations), not
 * enough to let each wrong guess at a high-iteration file cost three derivations.
 */
const EMPTY_PROBE_BUDGET = 100_000;

export interface OpenedPfx {
  /** The private key, re-encoded by OpenSSL as PKCS#8 DER (bag attributes dropped). */
  pkcs8Der: Buffer;
  thumbprint: string;
  publicKeyPem: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Refusals: plain sentences for a tenant administrator.


const passwordRequired = (): CmkError =>
  new CmkError('PASSWORD_REQUIRED', 'This .pfx file is protected by a password: give its password with --password-file.');
const unprotected = (): CmkError =>
  new CmkError('PASSWORD_REQUIRED', 'The .pfx file is not protected by a password, so anyone who saw it could read the key; export it again with a password.');
const wrongPassword = (): CmkError => new CmkError('WRONG_PASSWORD', 'The password does not open this .pfx file.');

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
function unseal(sealed: Sealed, password: PasswordForms, budget: KdfBudget): Uint8Array | undefined {
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

function decryptCbc(cipher: CbcCipher, key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
  try {
    const decipher = createDecipheriv(cipher, key, iv);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** RC2-40 lives in OpenSSL 3's legacy provider, which node does not load: forge's RC2 does it. */
function decryptRc2(key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
  const cipher = forge.rc2.createDecryptionCipher(binaryOf(key), 40);
  cipher.start(binaryOf(iv));
  cipher.update(forge.util.createBuffer(binaryOf(ciphertext)));
  return cipher.finish() ? bytesOf(cipher.output.getBytes()) : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Keys and certificates.

function certificateKey(der: Uint8Array): KeyObject {
  try {
    return new X509Certificate(der).publicKey;
  } catch {
    throw damaged('a certificate in it cannot be read');
  }
}

/** A PKCS#8 private key node:crypto can load (RSA, EC, …), or undefined. */
function loadPkcs8(der: Uint8Array): KeyObject | undefined {
  try {
    return createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' });
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The checks, in DESIGN.md §4's order.

/** INVALID_KEY_FILE, then UNSUPPORTED_KEY, then PASSWORD_REQUIRED for what anyone can read without the password. */
function refuseWhatIsVisible(layout: Layout): void {
  const { clear, sealed } = layout;
  assertOneKey(clear, sealed.length);
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
function open(opening: Opening, sealed: Sealed): Uint8Array {
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
  assertOneKey(bags);
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
