/** The real local parts (vault, databases, outbox) in a fresh temporary data dir, as the worker builds them. */
import { mkdtempSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../config';
import { buildParts } from '../../worker/parts';

export function localParts() {
  const base = mkdtempSync(join(tmpdir(), 'cmk-parts-'));
  const config = loadConfig({ CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') });
  return { config, ...buildParts(config) };
}

/**
 * The real part, with one method refusing while `control.refusing` is set: it stands for the outside part refusing
 * (non-retryable, as a vault's or a database server's refusal is).
 */
export function refusing<T extends object>(part: T, method: keyof T, refusal: () => Error) {
  const control = { refusing: true, calls: 0 };
  const wrapped = new Proxy(part, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (property === method && control.refusing) {
          control.calls += 1;
          throw refusal();
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { wrapped, control };
}

/** The vault refusing a key's deletion (a missing permission). */
export const vaultRefusal = () => ApplicationFailure.nonRetryable('The vault refused: the caller lacks the delete permission on this key.', 'VAULT_REFUSED');
