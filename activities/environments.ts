import { availableParallelism } from 'node:os';
import { providerKeyName } from '../vault/names';
import { isCmkError } from '../common/errors';
import type { EnvironmentDatabases, KeyRecordView, Protector, RekeyHooks, ScanProgress } from '../database/types';
import type { Vault } from '../vault/types';
import { attemptSignal, heartbeat, isRetry, resumeFrom } from './progress';

/** A tenant key version in the vault, as the workflows refer to it. */
export interface TenantKeyRef {
  name: string;
  version: string;
  thumbprint: string;
}

/** What one batch of re-protection did: environments now on the new key, and those refused (left on their old key). */
export interface ReprotectionBatchResult {
  reprotected: Array<{ env: string; keyThumbprint: string }>;
  refused: Array<{ env: string; code: string; message: string }>;
}

/** Environments of one batch re-wrapped at once: the work is vault crypto and small fsynced writes. */
const BATCH_CONCURRENCY = 4;

/** What one batch of a bulk creation did: every environment under `keyThumbprint` but `others`; `refused` not created. */
export interface ProvisionBatchResult {
  protection: Protector['kind'];
  keyThumbprint: string;
  /** Environments found already made under another protector (left by an earlier attempt or operation): as they are. */
  others: Array<{ env: string; protection: Protector['kind']; keyThumbprint: string }>;
  refused: Array<{ env: string; code: string; message: string }>;
}

/**
 * Environments of one bulk-creation batch made at once, fitted to the cores. A creation is mostly waiting for fsyncs
 * (its database file's, its key record's and that record's directory's, on the thread pool); the event loop's own
 * share is about 0.3 ms. Eight in flight per core (16 on the 2 cores measured in docs/PERFORMANCE.md, "Bulk set-up")
 * keep them busy; at most 64, so that a large machine does not open hundreds of files at once.
 */
const CREATE_CONCURRENCY = Math.min(64, 8 * availableParallelism());


export async function providerProtector(vault: Vault, region: string): Promise<Protector> {
  const name = providerKeyName(region);
  let versions = await vault.listVersions(name);
  if (versions.length === 0) {
    await vault.createKey(name, { purpose: 'provider', enabled: true, tags: { region } });
    versions = await vault.listVersions(name);
  }
  // Should two workers race to create it, every one of them settles on the oldest version.
  const key = versions[0];
  if (!key) throw new Error(`The provider key for region ${region} could not be created.`);
  return { kind: 'provider', name: key.name, version: key.version, thumbprint: key.thumbprint };
}

/** How often a rekey heartbeats while a statement runs (a log backup, opening an EKM key): well within its timeout. */
const KEEP_ALIVE_MS = 15_000;

/**
 * A rekey with its page scan reported as heartbeat details on every poll, and repeated while a statement runs. On a
 * retry, the last details the earlier attempt recorded (`{}` when none reached Temporal: the engine then looks at
 * the database alone) let the engine wait for the scan that attempt started instead of asking for another new DEK;
 * an attempt cut off stops waiting.
 */
async function withScanHeartbeats(rekey: (hooks: RekeyHooks) => Promise<KeyRecordView>): Promise<KeyRecordView> {
  const details = resumeFrom<unknown>();
  // Details from before scans were checkpointed were a bare percentage: they tell nothing about a REGENERATE.
  const resume = isRetry() ? (details !== null && typeof details === 'object' ? (details as Partial<ScanProgress>) : {}) : undefined;
  const signal = attemptSignal();
  // Until this attempt reports, the earlier one's checkpoint is what a later retry must find.
  let last: Partial<ScanProgress> = resume ?? { percentComplete: 0 };
  const keepAlive = setInterval(() => heartbeat(last), KEEP_ALIVE_MS);
  try {
    return await rekey({
      onProgress: (percentComplete, scan) => heartbeat((last = scan ?? { percentComplete })),
      ...(resume ? { resume } : {}),
      ...(signal ? { signal } : {}),
    });
  } finally {
    clearInterval(keepAlive);
  }
}

export function createEnvironmentActivities({ vault, databases }: { vault: Vault; databases: EnvironmentDatabases }) {
  // One provider-key creation at a time in this process, so concurrent first uses of a region make one key.
  let providerKeyChain: Promise<unknown> = Promise.resolve();
  // A region's provider key never changes once made: later provisionings check it with one read instead of listing
  // the vault (in Azure Key Vault, a listing pages through every key of the vault).
  const knownProviderKeys = new Map<string, Protector>();
  const serialisedProviderProtector = (region: string): Promise<Protector> => {
    const next = providerKeyChain.then(async () => {
      const known = knownProviderKeys.get(region);
      if (known && (await vault.getKey(known))?.enabled) return known;
      const found = await providerProtector(vault, region);
      knownProviderKeys.set(region, found);
      return found;
    });
    providerKeyChain = next.catch(() => undefined);
    return next;
  };

  return {
    /** A new environment database under the region's provider key. Idempotent: a retry returns the same record. */
    async provisionEnvironmentDatabase({ tenant, env, region }: { tenant: string; env: string; region: string }) {
      const existing = await databases.describe(tenant, env);
      const record = existing ?? (await databases.create(tenant, env, await serialisedProviderProtector(region)));
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },

    /**
     * `env create --from-file`: a batch of new environment databases under the region's provider key. Idempotent per
     * environment (one made by an earlier attempt is found and kept), so a retry after a fault (a full disk) or a dead
     * worker simply runs the batch again; the heartbeat reports how many are done. A refusal of one environment is
     * reported for it and the batch goes on; any other fault fails the attempt and Temporal retries it.
     */
    async provisionEnvironmentDatabases({ tenant, region, envs }: { tenant: string; region: string; envs: string[] }): Promise<ProvisionBatchResult> {
      const protector = await serialisedProviderProtector(region);
      const result: ProvisionBatchResult = { protection: protector.kind, keyThumbprint: protector.thumbprint, others: [], refused: [] };
      const queue = [...envs];
      let done = 0;
      const worker = async (): Promise<void> => {
        for (let env = queue.shift(); env !== undefined; env = queue.shift()) {
          try {
            const record = (await databases.describe(tenant, env)) ?? (await databases.create(tenant, env, protector));
            if (record.protector.thumbprint !== protector.thumbprint) result.others.push({ env, protection: record.protector.kind, keyThumbprint: record.protector.thumbprint });
          } catch (err) {
            if (!isCmkError(err)) throw err;
            result.refused.push({ env, code: err.code, message: err.message });
          }
          heartbeat({ done: ++done });
        }
      };
      await Promise.all(Array.from({ length: Math.min(CREATE_CONCURRENCY, queue.length) }, worker));
      return result;
    },

    /** R7 apply: a new DEK (every page re-encrypted), wrapped by the tenant key — nothing the provider held opens it. */
    async applyTenantKey({ tenant, env, tenantKey }: { tenant: string; env: string; tenantKey: TenantKeyRef }) {
      const record = await withScanHeartbeats((hooks) => databases.rekey(tenant, env, { kind: 'tenant', ...tenantKey }, hooks));
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },

    /** R7 revert: the DEK re-wrapped by the region's provider key. */
    async revertToProviderKey({ tenant, env, region }: { tenant: string; env: string; region: string }) {
      const record = await databases.reprotect(tenant, env, await serialisedProviderProtector(region));
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },

    /** `env rekey`: a new DEK under the same protector. */
    async rekeyEnvironmentDatabase({ tenant, env }: { tenant: string; env: string }) {
      const current = await databases.describe(tenant, env);
      if (!current) throw new Error(`Environment ${tenant}/${env} has no key record.`);
      const record = await withScanHeartbeats((hooks) => databases.rekey(tenant, env, current.protector, hooks));
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },

    /**
     * R7 after a key change, for a batch of environments: each DEK re-wrapped by the new tenant key. Progress is
     * checkpointed in heartbeat details, so a retry after a fault or a dead worker resumes where the last attempt
     * stopped (re-wrapping is idempotent besides). A refusal (e.g. the key record is gone) is reported for that
     * environment and the batch goes on; any other fault fails the attempt and Temporal retries it with backoff.
     */
    async reprotectEnvironments({ tenant, envs, tenantKey }: { tenant: string; envs: string[]; tenantKey: TenantKeyRef }): Promise<ReprotectionBatchResult> {
      const result: ReprotectionBatchResult = resumeFrom<ReprotectionBatchResult>() ?? { reprotected: [], refused: [] };
      const finished = new Set([...result.reprotected, ...result.refused].map((r) => r.env));
      const queue = envs.filter((env) => !finished.has(env));
      const protector: Protector = { kind: 'tenant', ...tenantKey };
      const worker = async (): Promise<void> => {
        for (let env = queue.shift(); env !== undefined; env = queue.shift()) {
          try {
            const record = await databases.reprotect(tenant, env, protector);
            result.reprotected.push({ env, keyThumbprint: record.protector.thumbprint });
          } catch (err) {
            if (!isCmkError(err)) throw err;
            result.refused.push({ env, code: err.code, message: err.message });
          }
          heartbeat(result);
        }
      };
      await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, queue.length) }, worker));
      return result;
    },

    /**
     * One environment at a time, as tenant workflows started before batched re-protection still schedule it: kept
     * until none of those runs is left (their histories name it).
     */
    async reprotectEnvironment({ tenant, env, tenantKey }: { tenant: string; env: string; tenantKey: TenantKeyRef }) {
      const record = await databases.reprotect(tenant, env, { kind: 'tenant', ...tenantKey });
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },
  };
}
