/**
 * The payload codec's key ring (DESIGN.md §6): 32-byte AES keys numbered 1, 2, … in CMK_SECRETS_DIR
 * (`codec-key.1`, 0600; the first created at first start) or, instead, CMK_CODEC_KEYS="1:<base64>,2:<base64>".
 * The highest number encrypts new payloads; every number still present decrypts. Rotating = adding the next number
 * (`npm run codec:rotate`) and restarting the worker and the API service; remove an old key only once no history
 * that still matters was written with it.
 */
import { existsSync, readdirSync } from 'node:fs';
import { loadOrCreateSecret } from '../common/secrets';

export interface CodecKey {
  id: string;
  key: Buffer;
}

export interface CodecKeyRing {
  /** Encrypts new payloads. */
  current: CodecKey;
  byId: Map<string, Buffer>;
}

const FILE = /^codec-key\.([1-9][0-9]{0,5})$/;
const secretName = (n: number) => `codec-key.${n}`;

function ringOf(keys: CodecKey[]): CodecKeyRing {
  const sorted = [...keys].sort((a, b) => Number(a.id) - Number(b.id));
  const current = sorted[sorted.length - 1];
  if (!current) throw new Error('The payload codec has no key.');
  return { current, byId: new Map(sorted.map((k) => [k.id, k.key])) };
}

function fromEnvironment(text: string): CodecKeyRing {
  const keys = text.split(',').map((entry) => {
    const match = /^\s*([1-9][0-9]{0,5}):([A-Za-z0-9+/]+={0,2})\s*$/.exec(entry);
    const key = match ? Buffer.from(match[2]!, 'base64') : Buffer.alloc(0);
    if (!match || key.length !== 32) throw new Error('CMK_CODEC_KEYS must be "N:<base64 of 32 bytes>", comma-separated (N = 1, 2, …).');
    return { id: match[1]!, key };
  });
  return ringOf(keys);
}

/** The services' ring: from CMK_CODEC_KEYS, else the files, creating key 1 at first start. */
export function loadCodecKeyRing(secretsDir: string, env: Record<string, string | undefined> = process.env): CodecKeyRing {
  if (env.CMK_CODEC_KEYS) return fromEnvironment(env.CMK_CODEC_KEYS);
  const numbers = existsSync(secretsDir) ? readdirSync(secretsDir).flatMap((f) => (FILE.exec(f) ? [Number(FILE.exec(f)![1])] : [])) : [];
  if (numbers.length === 0) numbers.push(1);
  // The file-based secrets reader is shared with the other secrets (0600, exclusive creation, damage detection).
  return ringOf(numbers.map((n) => ({ id: String(n), key: loadOrCreateSecret(secretsDir, secretName(n), 32, {}) })));
}

/** Adds the next key to the ring's files; returns its id. */
export function addCodecKey(secretsDir: string): string {
  const ring = loadCodecKeyRing(secretsDir, {});
  const next = Number(ring.current.id) + 1;
  loadOrCreateSecret(secretsDir, secretName(next), 32, {});
  return String(next);
}
