/**
 * PKCS#12's key derivation (RFC 7292 appendix B.2) over a given hash: node:crypto's on the server (pkcs12-kdf.ts),
 * forge's SHA-1 in the console's lock dialog (console/src/pfx-sign.ts: WebCrypto has no synchronous digest, and one
 * promise per iteration would be far slower). Pure: no Node API.
 */

/** What a derivation spends its work from: the readers cap one opening's total; the writer does not count. */
export interface KdfWork {
  spend(work: number): void;
}

export const UNLIMITED: KdfWork = { spend: () => undefined };

/** A hash with its output and block sizes in bytes: PKCS#12's KDF works in blocks, and work is counted in outputs. */
export interface Pkcs12Hash {
  out: number;
  block: number;
  /** H^times(data): the iterations run in the hash's own representation (forge's are strings, not bytes). */
  digestRepeatedly(data: Uint8Array, times: number): Uint8Array;
}

/** `id` 1 = cipher key, 2 = IV, 3 = MAC key; `password` is the BMPString form (pkcs12-kdf.ts bmpPassword). */
export function derivePkcs12(hash: Pkcs12Hash, password: Uint8Array, salt: Uint8Array, id: 1 | 2 | 3, iterations: number, length: number, budget: KdfWork = UNLIMITED): Uint8Array {
  const { out: u, block: v } = hash;
  const rounds = Math.ceil(length / u);
  budget.spend(rounds * iterations);
  const fill = (source: Uint8Array): Uint8Array => {
    const filled = new Uint8Array(v * Math.ceil(source.length / v));
    for (let i = 0; i < filled.length; i++) filled[i] = source[i % source.length]!;
    return filled;
  };
  const salted = fill(salt);
  const input = new Uint8Array(salted.length + v * Math.ceil(password.length / v));
  input.set(salted);
  input.set(fill(password), salted.length);
  const first = new Uint8Array(v + input.length).fill(id);
  const output = new Uint8Array(rounds * u);
  for (let round = 0; round < rounds; round++) {
    first.set(input, v);
    const a = hash.digestRepeatedly(first, iterations);
    output.set(a, round * u);
    if (round + 1 < rounds) addToEachBlock(input, fill(a).subarray(0, v), v);
  }
  return output.subarray(0, length);
}

/** Step B.2 6C: I_j = (I_j + B + 1) mod 2^(8v) for each v-byte block of I, in place. */
function addToEachBlock(input: Uint8Array, b: Uint8Array, v: number): void {
  for (let start = 0; start < input.length; start += v) {
    let carry = 1;
    for (let i = v - 1; i >= 0; i--) {
      const sum = input[start + i]! + b[i]! + carry;
      input[start + i] = sum & 0xff;
      carry = sum >> 8;
    }
  }
}
