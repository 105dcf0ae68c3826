/**
 * Secrets that protect the data dir live outside it (DESIGN.md §6): files in CMK_SECRETS_DIR (0700 / 0600),
 * created at first use, or values from the environment (`CMK_SECRET_<NAME>`, base64).
 */
import { existsSync, mkdirSync, readFileSync, chmodSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { createFileExclusiveSync } from './atomic';

export const secretEnvName = (name: string): string => `CMK_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

export function loadOrCreateSecret(secretsDir: string, name: string, bytes = 32, env: Record<string, string | undefined> = process.env): Buffer {
  return loadSecret(secretsDir, name, { bytes, env, create: true });
}

/** A secret that must already exist (a client reading what the services created): null when it does not. */
export function loadExistingSecret(secretsDir: string, name: string, bytes = 32, env: Record<string, string | undefined> = process.env): Buffer | null {
  if (!env[secretEnvName(name)] && !existsSync(join(secretsDir, name))) return null;
  return loadSecret(secretsDir, name, { bytes, env, create: false });
}

function loadSecret(secretsDir: string, name: string, { bytes, env, create }: { bytes: number; env: Record<string, string | undefined>; create: boolean }): Buffer {
  const fromEnv = env[secretEnvName(name)];
  if (fromEnv) {
    const value = Buffer.from(fromEnv, 'base64');
    if (value.length !== bytes) throw new Error(`${secretEnvName(name)} must be ${bytes} bytes, base64-encoded.`);
    return value;
  }
  const path = join(secretsDir, name);
  if (create) {
    mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
    // Only when needed: a secrets dir mounted read-only (docker-compose.yml) refuses even a chmod that changes nothing.
    if ((statSync(secretsDir).mode & 0o777) !== 0o700) chmodSync(secretsDir, 0o700);
    // Exclusive creation: two processes starting together end up with the same secret.
    if (!existsSync(path)) createFileExclusiveSync(path, randomBytes(bytes).toString('base64'));
  }
  const value = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (value.length !== bytes) throw new Error(`The secret ${path} is damaged: expected ${bytes} bytes.`);
  return value;
}

/** The secrets must not lie inside the data dir they protect. */
export function assertOutside(dataDir: string, secretsDir: string): void {
  const rel = relative(resolve(dataDir), resolve(secretsDir));
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
    throw new Error(`CMK_SECRETS_DIR (${secretsDir}) lies inside CMK_DATA_DIR (${dataDir}); keep the secrets that protect the data dir outside it.`);
  }
}
