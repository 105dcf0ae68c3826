import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { CmkError } from './errors';

/** DESIGN.md §4: larger key files are refused before any parsing (a real .pfx or .byok is a few KiB). */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

export function oversized(): CmkError {
  return new CmkError('INVALID_KEY_FILE', `The key file is larger than ${MAX_KEY_FILE_BYTES / 1024} KiB; real .pfx and .byok files are a few KiB.`);
}

/** R2: tenant keys are 2048-bit RSA. */
export const REQUIRED_RSA_BITS = 2048;

/** Lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER (DESIGN.md §4). */
export function thumbprintOf(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex');
}

/** Refuses anything but an RSA-2048 key with UNSUPPORTED_KEY (R2), naming what was found. */
export function assertSupportedKey(key: KeyObject): void {
  const type = key.asymmetricKeyType;
  if (type !== 'rsa') {
    throw new CmkError('UNSUPPORTED_KEY', `The key is ${type ?? 'of an unknown type'}; only 2048-bit RSA keys are supported.`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== REQUIRED_RSA_BITS) {
    throw new CmkError('UNSUPPORTED_KEY', `The key is ${bits ?? 'an unknown number of'}-bit RSA; only 2048-bit RSA keys are supported.`);
  }
}

/** Loads a PKCS#8 DER private key, refusing bytes that are not one (INVALID_KEY_FILE). */
export function privateKeyFromPkcs8(der: Buffer): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    throw new CmkError('INVALID_KEY_FILE', 'The file does not hold a readable private key.');
  }
}
