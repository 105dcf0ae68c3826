/**
 * The side effects of a lock (R8), an unlock (R10), the deletion of what stays locked (R9), and backups: each
 * idempotent, so that Temporal may retry any of them after a fault or a dead worker.
 */
import { CmkError } from '../common/errors';
import type { BackupView, EnvironmentDatabases, OfflineMark } from '../database/types';
import type { KeyRef, Vault } from '../vault/types';
import type { ChallengeClaims } from '../api/challenges';
import type { LockPossession } from '../workflows/messages';
import type { TenantKeyRef } from './environments';
import { heartbeat, resumeFrom } from './progress';

/** Opens a challenge the API service issued (api/challenges.ts: the same HMAC key, `challenge-key`). */
export interface ChallengeOpener {
  open(challenge: string): Promise<ChallengeClaims | undefined>;
}

/** What the workflow asks to be checked: the possession the request carried, bound to what the workflow accepted. */
export interface LockPossessionCheck {
  tenant: string;
  region: string;
  user: string;
  challengeId: string;
  expiresAt: string;
  /** When the workflow accepted the lock (its clock): the challenge must not have expired by then. */
  acceptedAt: string;
  possession: LockPossession | null;
  /** The region's active key in the vault: the signature must verify with its public key. */
  vaultKey: KeyRef;
}

export function createLockActivities({ vault, databases, challenges }: { vault: Vault; databases: EnvironmentDatabases; challenges?: ChallengeOpener }) {
  return {
    /**
     * R8, again, before the lock's first side effect: the challenge is one the API service issued (its HMAC), for
     * this tenant, region, user and a lock, the one the workflow spent, unexpired when accepted; the signature over
     * it verifies with the vault's public key of the active key. Whatever a request says it verified is not enough.
     */
    async verifyLockPossession(check: LockPossessionCheck): Promise<void> {
      const refuse = (why: string): never => {
        throw new CmkError('KEY_MISMATCH', `The lock's proof of possession of the active key does not hold (${why}); nothing was locked.`);
      };
      if (!challenges) return refuse('this worker cannot check challenges');
      const { possession } = check;
      if (!possession || typeof possession.challenge !== 'string' || typeof possession.signature !== 'string') return refuse('the request carries no challenge and signature');
      const claims = await challenges.open(possession.challenge);
      if (!claims) return refuse('the challenge was not issued by the cmk API service');
      if (claims.id !== check.challengeId || claims.expiresAt !== check.expiresAt) return refuse('the challenge is not the one the request names');
      if (claims.tenant !== check.tenant || claims.region !== check.region || claims.user !== check.user || claims.operation !== 'lock') {
        return refuse('the challenge was issued for another tenant, region, user or operation');
      }
      if (!(Date.parse(claims.expiresAt) > Date.parse(check.acceptedAt))) return refuse('the challenge had expired');
      const verified = await vault.verify(check.vaultKey, Buffer.from(possession.challenge, 'utf8'), Buffer.from(possession.signature, 'base64')).catch(() => false);
      if (!verified) return refuse("the signature does not verify with the vault's public key of the active key");
    },

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
