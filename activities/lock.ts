/**
 * The side effects of a lock (R8), an unlock (R10), the deletion of what stays locked (R9), and backups: each
 * idempotent, so that Temporal may retry any of them after a fault or a dead worker.
 */
import type { BackupView, EnvironmentDatabases, OfflineMark } from '../database/types';
import type { KeyRef, Vault } from '../vault/types';
import type { TenantKeyRef } from './environments';
import { heartbeat, resumeFrom } from './progress';

export function createLockActivities({ vault, databases }: { vault: Vault; databases: EnvironmentDatabases }) {
  return {
    /** R8: every environment of the lock offline, with its deadline (R9). Checkpointed: a retry skips those done. */
    async takeEnvironmentsOffline({ tenant, envs, mark }: { tenant: string; envs: string[]; mark: OfflineMark }): Promise<void> {
      const done = resumeFrom<number>() ?? 0;
      for (let i = done; i < envs.length; i++) {
        await databases.takeOffline(tenant, envs[i]!, mark);
        heartbeat(i + 1);
      }
    },

    /**
     * R8's seal: every tenant key version that wraps a key record (the active one and any kept for rollback) is
     * disabled, then deleted and purged from the vault, so no key the service holds opens a sealed environment or
     * any backup of it. Idempotent: a version already gone is skipped.
     */
    async withdrawTenantKeys({ vaultKeys }: { vaultKeys: KeyRef[] }): Promise<void> {
      for (const ref of vaultKeys) {
        const key = await vault.getKey(ref);
        if (key?.enabled) await vault.setEnabled(ref, false);
        await vault.deleteKey(ref);
      }
    },

    /** R10: back online; a sealed environment's key record is re-bound to the re-activated version of its key. */
    async bringEnvironmentOnline({ tenant, env, tenantKey }: { tenant: string; env: string; tenantKey: TenantKeyRef | null }) {
      const record = await databases.bringOnline(tenant, env, tenantKey ? { kind: 'tenant', ...tenantKey } : undefined);
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },

    /** R9 crypto-shredding: database, key record and backups, environment by environment. Checkpointed. */
    async destroyEnvironments({ tenant, envs }: { tenant: string; envs: string[] }): Promise<void> {
      const done = resumeFrom<number>() ?? 0;
      for (let i = done; i < envs.length; i++) {
        await databases.destroy(tenant, envs[i]!);
        heartbeat(i + 1);
      }
    },

    async backupEnvironment({ tenant, env }: { tenant: string; env: string }): Promise<BackupView> {
      return databases.backup(tenant, env);
    },

    async restoreEnvironment({ tenant, env, backupId }: { tenant: string; env: string; backupId: string | null }): Promise<BackupView> {
      return databases.restore(tenant, env, backupId ?? undefined);
    },
  };
}
