/**
 * PKCS#12's own key derivation and MAC (RFC 7292 appendix B), shared by the reader (pfx.ts) and the writer
 * (generate.ts). node:crypto does the hashing; the caller counts the work (a hostile file must be refused quickly).
 */
import { createHash, createHmac, hash } from 'node:crypto';

export type Digest = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';

/** Output and block sizes in bytes: PKCS#12's KDF works in blocks, and work is counted in hash outputs. */
export const DIGEST_SIZES: Record<Digest, { out: number; block: number }> = {
  sha1: { out: 20, block: 64 },
  sha224: { out: 28, block: 64 },
  sha256: { out: 32, block: 64 },
  sha384: { out: 48, block: 128 },
  sha512: { out: 64, block: 128 },
};

/** What a derivation spends its work from: pfx.ts caps one parse's total; the writer does not count. */
export interface KdfWork {
  spend(work: number): void;
}

const UNLIMITED: KdfWork = { spend: () => undefined };

/** UTF-16BE code units plus a two-byte terminator (RFC 7292 B.1); non-BMP characters become surrogate pairs, as in OpenSSL. */
export function bmpPassword(password: string): Buffer {
  return Buffer.concat([Buffer.from(password, 'utf16le').swap16(), Buffer.alloc(2)]);
}

/** PKCS#12's KDF hashes once per iteration: crypto.hash (node >= 20.12) skips a Hash object each time (~35% faster). */
function digestOnce(digest: Digest, data: Buffer): Buffer {
  return typeof hash === 'function' ? hash(digest, data, 'buffer') : createHash(digest).update(data).digest();
}

/** PKCS#12's key derivation (RFC 7292 appendix B.2); `id` 1 = cipher key, 2 = IV, 3 = MAC key. */
export function pkcs12Kdf(password: Buffer, salt: Buffer, id: 1 | 2 | 3, iterations: number, length: number, digest: Digest, budget: KdfWork = UNLIMITED): Buffer {
  const { out: u, block: v } = DIGEST_SIZES[digest];
  const rounds = Math.ceil(length / u);
  budget.spend(rounds * iterations);
  const fill = (source: Buffer): Buffer => {
    const filled = Buffer.alloc(v * Math.ceil(source.length / v));
    for (let i = 0; i < filled.length; i++) filled[i] = source[i % source.length]!;
    return filled;
  };
  const diversifier = Buffer.alloc(v, id);
  const input = Buffer.concat([fill(salt), fill(password)]);
  const output: Buffer[] = [];
  for (let round = 0; round < rounds; round++) {
    let a = digestOnce(digest, Buffer.concat([diversifier, input]));
    for (let i = 1; i < iterations; i++) a = digestOnce(digest, a);
    output.push(a);
    if (round + 1 < rounds) addToEachBlock(input, fill(a).subarray(0, v), v);
  }
  return Buffer.concat(output).subarray(0, length);
}

/** Step B.2 6C: I_j = (I_j + B + 1) mod 2^(8v) for each v-byte block of I, in place. */
function addToEachBlock(input: Buffer, b: Buffer, v: number): void {
  for (let start = 0; start < input.length; start += v) {
    let carry = 1;
    for (let i = v - 1; i >= 0; i--) {
      const sum = input[start + i]! + b[i]! + carry;
      input[start + i] = sum & 0xff;
      carry = sum >> 8;
    }
  }
}

/** HMAC of the AuthenticatedSafe under the PKCS#12 MAC key (shared with generate.ts, which writes the MAC). */
export function pkcs12Mac(authSafe: Buffer, password: Buffer, salt: Buffer, iterations: number, digest: Digest, budget: KdfWork = UNLIMITED): Buffer {
  const key = pkcs12Kdf(password, salt, 3, iterations, DIGEST_SIZES[digest].out, digest, budget);
  return createHmac(digest, key).update(authSafe).digest();
}
