/**
 * TEST ONLY — the fault suite's vault (`npm run chaos`, issue 15). Never set CMK_CHAOS or CMK_CHAOS_VAULT_FAULTS in
 * production: with them, a share of vault calls is answered with a fault on purpose.
 *
 * With CMK_CHAOS=1 every vault call is counted (one line per call, its operation and whether it was answered with a
 * fault, in `<data dir>/chaos/vault-calls.log`; no key material), so the suite can hold the calls against the minimum.
 * CMK_CHAOS_VAULT_FAULTS=0.2 answers 20 % of calls, at random, with what a throttled or failing Key Vault answers:
 * 429 with Retry-After, or 503. The embedded vault has no HTTP client of its own, so this wrapper also does what the
 * Azure adapter's SDK pipeline does with such answers (vault/azure.ts `retry`): Retry-After honoured, 503 backed off,
 * up to 3 retries; what is still failing then reaches cmk's activities as a retryable error. It stands for the vault
 * outside failing; it is refused unless CMK_CHAOS=1 says the process is under test.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Vault } from './types';

/** Thrown for a fault the retries did not get past: retryable (not a CmkError). Its message carries no key material. */
export class ChaosVaultFault extends Error {
  override name = 'ChaosVaultFault';
  constructor(
    readonly status: 429 | 503,
    readonly operation: string,
  ) {
    super(`The key vault answered ${status} to ${operation} (fault injected by CMK_CHAOS_VAULT_FAULTS, a test-only setting).`);
  }
}

/** Every operation of the interface (a new one fails to compile until it is listed). */
const OPERATIONS = ['importKey', 'importByok', 'createKey', 'createKek', 'getKey', 'listVersions', 'getPublicKeyPem', 'setEnabled', 'deleteKey', 'wrapKey', 'unwrapKey', 'verify'] as const satisfies ReadonlyArray<keyof Vault>;
type Missing = Exclude<keyof Vault, (typeof OPERATIONS)[number]>;
const allListed: [Missing] extends [never] ? true : Missing = true;
void allListed;

const MAX_RETRIES = 3;
/** What a throttled vault asks for: the wrapper waits this long before retrying a 429. */
const RETRY_AFTER_SECONDS = 1;
const BACKOFF_MS = 400;

/** The configured chaos settings, or undefined when CMK_CHAOS is not 1 (then CMK_CHAOS_VAULT_FAULTS is refused). */
export function chaosSettings(env: Record<string, string | undefined> = process.env): { faultRate: number } | undefined {
  const faults = env.CMK_CHAOS_VAULT_FAULTS;
  if (env.CMK_CHAOS !== '1') {
    if (faults) throw new Error('CMK_CHAOS_VAULT_FAULTS is a test-only setting of the fault suite and is refused unless CMK_CHAOS=1; never set either in production.');
    return undefined;
  }
  const faultRate = faults ? Number(faults) : 0;
  if (!Number.isFinite(faultRate) || faultRate < 0 || faultRate >= 1) throw new Error(`CMK_CHAOS_VAULT_FAULTS="${faults}" must be a fraction of calls between 0 and 1, such as 0.2.`);
  return { faultRate };
}

/** `vault` with every call counted and, at `faultRate`, answered with a fault (see the file's comment). */
export function chaosVault(vault: Vault, dataDir: string, { faultRate }: { faultRate: number }): Vault {
  const dir = join(dataDir, 'chaos');
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'vault-calls.log');
  // One short line per call, appended (O_APPEND keeps the API service's and the workers' lines whole).
  const record = (operation: string, fault: number) => appendFileSync(log, `${Date.now()} ${process.pid} ${operation} ${fault}\n`);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const wrapped = {} as Record<string, unknown>;
  for (const operation of OPERATIONS) {
    const original = vault[operation] as (...a: unknown[]) => Promise<unknown>;
    wrapped[operation] = async (...args: unknown[]) => {
      for (let retry = 0; ; retry++) {
        const fault = Math.random() < faultRate ? (Math.random() < 0.5 ? 429 : 503) : 0;
        record(operation, fault);
        if (!fault) return original.apply(vault, args);
        if (retry === MAX_RETRIES) throw new ChaosVaultFault(fault, operation);
        await sleep(fault === 429 ? RETRY_AFTER_SECONDS * 1000 : BACKOFF_MS * 2 ** retry);
      }
    };
  }
  return wrapped as unknown as Vault;
}
