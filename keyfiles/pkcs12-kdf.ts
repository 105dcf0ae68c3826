/**
 * PKCS#12's own key derivation and MAC (RFC 7292 appendix B), shared by the reader (pfx.ts) and the writer
 * (generate.ts). node:crypto does the hashing; the caller counts the work (a hostile file must be refused quickly).
 */
import { createHash, createHmac, hash } from 'node:crypto';
import { derivePkcs12, UNLIMITED, type KdfWork } from './pkcs12-derive';
import type { Digest } from './pkcs12-layout';

export type { Digest } from './pkcs12-layout';
export type { KdfWork } from './pkcs12-derive';

/** Output and block sizes in bytes: PKCS#12's KDF works in blocks, and work is counted in hash outputs. */
export const DIGEST_SIZES: Record<Digest, { out: number; block: number }> = {
  sha1: { out: 20, block: 64 },
  sha224: { out: 28, block: 64 },
  sha256: { out: 32, block: 64 },
  sha384: { out: 48, block: 128 },
  sha512: { out: 64, block: 128 },
};

/** UTF-16BE code units plus a two-byte terminator (RFC 7292 B.1); non-BMP characters become surrogate pairs, as in OpenSSL. */
export function bmpPassword(password: string): Buffer {
  return Buffer.concat([Buffer.from(password, 'utf16le').swap16(), Buffer.alloc(2)]);
}

/** PKCS#12's KDF hashes once per iteration: crypto.hash (node >= 20.12) skips a Hash object each time (~35% faster). */
function digestOnce(digest: Digest, data: Uint8Array): Buffer {
  return typeof hash === 'function' ? hash(digest, data, 'buffer') : createHash(digest).update(data).digest();
}

function digestRepeatedly(digest: Digest, data: Uint8Array, times: number): Buffer {
  let a = digestOnce(digest, data);
  for (let i = 1; i < times; i++) a = digestOnce(digest, a);
  return a;
}

/** PKCS#12's key derivation (RFC 7292 appendix B.2) with node:crypto's hashes; `id` 1 = cipher key, 2 = IV, 3 = MAC key. */
export function pkcs12Kdf(password: Uint8Array, salt: Uint8Array, id: 1 | 2 | 3, iterations: number, length: number, digest: Digest, budget: KdfWork = UNLIMITED): Buffer {
  const derived = derivePkcs12({ ...DIGEST_SIZES[digest], digestRepeatedly: (data, times) => digestRepeatedly(digest, data, times) }, password, salt, id, iterations, length, budget);
  return Buffer.from(derived.buffer, derived.byteOffset, derived.byteLength);
}

/** HMAC of the AuthenticatedSafe under the PKCS#12 MAC key (shared with generate.ts, which writes the MAC). */
export function pkcs12Mac(authSafe: Uint8Array, password: Uint8Array, salt: Uint8Array, iterations: number, digest: Digest, budget: KdfWork = UNLIMITED): Buffer {
  const key = pkcs12Kdf(password, salt, 3, iterations, DIGEST_SIZES[digest].out, digest, budget);
  return createHmac(digest, key).update(authSafe).digest();
}
