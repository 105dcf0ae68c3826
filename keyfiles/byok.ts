/**
 * Azure Key Vault BYOK transfer files (`.byok`): JSON made by the tenant's HSM, holding their key wrapped for our
 * key-exchange key (KEK), as `cmk key kek` hands it out (docs/KEY-MATERIAL.md):
 *
 *   {"schema_version":"1.0.0","header":{"kid":"<KEK id>","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},
 *    "ciphertext":"<base64url>","generator":"<optional tool name>"}
 *
 * ciphertext = RSA-OAEP(SHA-1, MGF1-SHA-1) of an ephemeral AES-256 key, then that key's AES key wrap with padding
 * (RFC 5649) of the PKCS#8 private key: PKCS#11's CKM_RSA_AES_KEY_WRAP.
 * parseByok only checks the shape; the unwrap runs where the KEK's private key lives (the vault).
 */
import { constants, createCipheriv, createDecipheriv, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { CmkError } from '../common/errors';
import type { ByokTransfer } from '../vault/types';
import { MAX_KEY_FILE_BYTES, oversized } from '../common/keys';

/** RFC 5649's alternative initial value, which node's 'id-aes256-wrap-pad' takes as its 4-byte IV. */
const KWP_IV = Buffer.from('A65959A6', 'hex');
const EPHEMERAL_KEY_BYTES = 32;
/** A key identifier is a vault URI (about 100 characters); anything far longer is not one. */
const MAX_KID_LENGTH = 1024;
/** RFC 4648 §5 alphabet; padding is optional in base64url but, when present, must close a 4-character group. */
const BASE64URL = /^[A-Za-z0-9_-]*$/;

function invalid(detail: string): CmkError {
  return new CmkError('INVALID_KEY_FILE', `The file is not a usable .byok file: ${detail}.`);
}

function decodeJson(bytes: Buffer): unknown {
  let text: string;
  try {
    // fatal: bytes that are not UTF-8 are refused rather than replaced; a leading BOM is dropped.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalid('it is not UTF-8 text');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw invalid('it is not JSON');
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Strict base64url: only its alphabet, optional '=' padding at the very end, canonical trailing bits. */
function decodeBase64url(text: string): Buffer | undefined {
  const unpadded = text.replace(/={1,2}$/, '');
  if (unpadded !== text && text.length % 4 !== 0) return undefined;
  if (!BASE64URL.test(unpadded) || unpadded.length % 4 === 1) return undefined;
  const bytes = Buffer.from(unpadded, 'base64url');
  // Node ignores stray trailing bits; re-encoding catches a string no encoder would write.
  return bytes.toString('base64url') === unpadded ? bytes : undefined;
}

/** Validates a .byok file's JSON and returns the KEK it names with the raw ciphertext. Throws INVALID_KEY_FILE. */
export function parseByok(bytes: Buffer): ByokTransfer {
  if (bytes.length > MAX_KEY_FILE_BYTES) throw oversized();
  const doc = decodeJson(bytes);
  if (!isObject(doc)) throw invalid('it is not a JSON object');
  const { schema_version: schemaVersion, header, ciphertext, generator } = doc;
  if (typeof schemaVersion !== 'string' || schemaVersion === '') throw invalid('"schema_version" must be a non-empty string');
  if (!isObject(header)) throw invalid('"header" must be an object');
  const { kid, alg, enc } = header;
  if (typeof kid !== 'string' || kid.trim() === '') throw invalid('"header.kid" must name the key-exchange key the key was wrapped with');
  if (kid.length > MAX_KID_LENGTH) throw invalid('"header.kid" is too long to be a key identifier');
  if (alg !== 'dir') throw invalid('"header.alg" must be "dir"');
  if (enc !== 'CKM_RSA_AES_KEY_WRAP') throw invalid('"header.enc" must be "CKM_RSA_AES_KEY_WRAP"');
  if (generator !== undefined && typeof generator !== 'string') throw invalid('"generator", when present, must be a string');
  if (typeof ciphertext !== 'string' || ciphertext === '') throw invalid('"ciphertext" must be a non-empty string');
  const decoded = decodeBase64url(ciphertext);
  if (!decoded) throw invalid('"ciphertext" is not base64url (only A-Z, a-z, 0-9, "-" and "_" are allowed)');
  return { kid, ciphertext: decoded };
}

function modulusBytes(key: KeyObject): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType !== 'rsa' || !bits) throw new TypeError('A BYOK key-exchange key must be an RSA key.');
  return Math.ceil(bits / 8);
}

/**
 * Reverses CKM_RSA_AES_KEY_WRAP with the KEK's private key and returns the PKCS#8 DER it carried (not yet checked:
 * load it with privateKeyFromPkcs8 and assertSupportedKey). Throws INVALID_KEY_FILE when it does not unwrap.
 */
export function unwrapByokCiphertext(kekPrivateKey: KeyObject, ciphertext: Buffer): Buffer {
  const k = modulusBytes(kekPrivateKey);
  const notForThisKek = (): CmkError =>
    invalid('its key cannot be unwrapped with the key-exchange key it names; it is damaged or was wrapped for another key-exchange key');
  // RFC 5649 output: whole 8-byte blocks, at least two.
  const wrapped = ciphertext.length - k;
  if (wrapped < 16 || wrapped % 8 !== 0) throw invalid('its ciphertext has the wrong length for the key-exchange key it names');
  let aesKey: Buffer;
  try {
    aesKey = privateDecrypt({ key: kekPrivateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ciphertext.subarray(0, k));
  } catch {
    throw notForThisKek();
  }
  if (aesKey.length !== EPHEMERAL_KEY_BYTES) throw notForThisKek();
  try {
    const decipher = createDecipheriv('id-aes256-wrap-pad', aesKey, KWP_IV);
    return Buffer.concat([decipher.update(ciphertext.subarray(k)), decipher.final()]);
  } catch {
    throw notForThisKek();
  } finally {
    aesKey.fill(0);
  }
}

/** What a tenant's HSM does to export a key for us (tests and HSM simulation): the whole .byok file's bytes. */
export function wrapForByok(kekPublicKeyPem: string, kid: string, pkcs8Der: Buffer): Buffer {
  const aesKey = randomBytes(EPHEMERAL_KEY_BYTES);
  try {
    const wrappedAesKey = publicEncrypt({ key: createPublicKey(kekPublicKeyPem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aesKey);
    const cipher = createCipheriv('id-aes256-wrap-pad', aesKey, KWP_IV);
    const wrappedKey = Buffer.concat([cipher.update(pkcs8Der), cipher.final()]);
    const doc = {
      schema_version: '1.0.0',
      header: { kid, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
      ciphertext: Buffer.concat([wrappedAesKey, wrappedKey]).toString('base64url'),
      generator: 'cmk wrapForByok',
    };
    return Buffer.from(JSON.stringify(doc));
  } finally {
    aesKey.fill(0);
  }
}
