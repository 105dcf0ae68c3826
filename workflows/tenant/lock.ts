/**
 * The lock (R8–R11, R15, docs/LOCK.md): a region's environments Locked and offline, its keys withdrawn from the
 * vault; the key re-activated and each environment unlocked; and R9's deletion of locked environments past their
 * deadline, warned of beforehand, by the main loop's timer or by the scheduled purge.
 */
import { ApplicationFailure, log, patched, setHandler } from '@temporalio/workflow';
import { updates, type EnvironmentDeleteRequest, type LockAllRegionsRequest, type LockAllRegionsResult, type KeyChangeResult, type LockRequest, type LockResult, type PurgeRequest, type PurgeResult, type ReactivateRequest, type UnlockRequest } from '../messages';
import { describeActor } from '../../domain/access';
import { normaliseEmail } from '../../domain/ids';
import { activeKeyOf, lockTargets, usableKeyOf, type BackgroundFailure, type EnvironmentRecord } from '../../domain/model';
import { checkEnvironmentDelete, checkLock, checkLockAllRegions, checkPurge, checkReactivate, checkUnlock, deletionWarningTimes } from '../../domain/rules';
import { backgroundFailureMail, deletionWarningMail, forSystemAdministrator, environmentsDeletedMail, environmentUnlockedMail, keyReactivatedMail, tenantLockedMail } from '../../domain/notifications';
import { checkLockWithoutApproval } from '../../domain/lock-approval';
import { iso, refuseIf, type TenantContext } from './context';
import { failureOf } from './proxies';

/** The spent challenges (single use, R8), carried across continue-as-new. */
export const usedChallengesOf = (ctx: TenantContext): Record<string, string> => (ctx.carried.usedChallenges ??= {});

/** Locks accepted since then have their possession proof checked again by an activity; older histories replay without. */
const LOCK_POSSESSION_PATCH = 'lock-possession-recheck';

/** A refused R9 deletion is tried again this much later (and at every purge). */
const DELETION_RETRY_MS = 3_600_000;

/** Registers the updates `lockTenant`, `reactivateKey` and `unlockEnvironment`. */
export function registerLock(ctx: TenantContext): void {
  const { tenant } = ctx;
  const usedChallenges = usedChallengesOf(ctx);

  setHandler(
    updates.lockTenant,
    ctx.audited<LockRequest, LockResult>('tenant.lock', (r, res) => ({ region: r.region, thumbprints: res?.withdrawnKeys ?? [], details: res ? { sealed: res.sealed.length, lockedByDecisionOnly: res.lockedByDecisionOnly.length } : undefined }), async (request) => {
      // Spent and marked before the first await: the same challenge cannot lock twice, nor another change slip in.
      usedChallenges[request.proof.challengeId] = request.proof.expiresAt;
      tenant.operations[request.region] = 'a lock';
      try {
        return await ctx.exclusively(() => lock(ctx, usedChallenges, request));
      } finally {
        delete tenant.operations[request.region];
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.lockTenant.name, request);
        refuseIf(checkLock(tenant, request, Date.now(), ctx.policyOf(request), new Set(Object.keys(usedChallenges))));
        refuseIf(checkLockWithoutApproval(tenant, Date.now()));
      },
    },
  );

  // Every region's proof is checked (here and against the vault) before the first region is locked: all or none.
  setHandler(
    updates.lockAllRegions,
    ctx.audited<LockAllRegionsRequest, LockAllRegionsResult>(
      'tenant.lock',
      (r, res) => ({
        region: null,
        thumbprints: res?.regions.flatMap((l) => l.withdrawnKeys) ?? [],
        details: { regions: r.locks.map((l) => l.region).join(','), ...(res ? { sealed: res.regions.reduce((n, l) => n + l.sealed.length, 0), lockedByDecisionOnly: res.regions.reduce((n, l) => n + l.lockedByDecisionOnly.length, 0) } : {}) },
      }),
      async (request) => {
        for (const l of request.locks) {
          usedChallenges[l.proof.challengeId] = l.proof.expiresAt;
          tenant.operations[l.region] = 'a lock of every region';
        }
        try {
          return await ctx.exclusively(async () => {
            const locks: LockRequest[] = request.locks.map((l) => ({ actor: request.actor, policy: request.policy, confirm: request.confirm, region: l.region, proof: l.proof, ...(l.possession ? { possession: l.possession } : {}) }));
            for (const one of locks) await recheckPossession(ctx, one);
            const regions: LockResult[] = [];
            for (const one of locks) regions.push(await lockRegion(ctx, usedChallenges, one));
            return { tenant: tenant.tenant, regions };
          });
        } finally {
          for (const l of request.locks) delete tenant.operations[l.region];
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.lockAllRegions.name, request);
        refuseIf(checkLockAllRegions(tenant, request, Date.now(), ctx.policyOf(request), new Set(Object.keys(usedChallenges))));
        refuseIf(checkLockWithoutApproval(tenant, Date.now()));
      },
    },
  );

  setHandler(
    updates.reactivateKey,
    ctx.audited<ReactivateRequest, KeyChangeResult>('key.reactivate', (r: ReactivateRequest) => ({ region: r.region, thumbprints: [r.staged.thumbprint] }), async (request: ReactivateRequest) => {
      tenant.operations[request.region] = 'a key re-activation';
      try {
        return await ctx.exclusively(async () => {
          const region = tenant.regions[request.region]!;
          const key = activeKeyOf(region)!;
          await ctx.inRegion(request.region).activateStagedKey({ vaultKey: request.staged.vaultKey, thumbprint: request.staged.thumbprint });
          // The same key under a new vault version: R5 and R6 do not restart (DESIGN.md §3).
          key.vaultKey = request.staged.vaultKey;
          key.inVault = true;
          key.state = 'Active';
          key.reactivatedAt = iso(Date.now());
          ctx.publishSearchAttributes();
          const by = describeActor(request.actor);
          const reactivated = keyReactivatedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, region: region.region, keyName: key.name, thumbprint: key.thumbprint, by, at: key.reactivatedAt });
          // R4: the system administrators of the region's locked environments, which this key lets them unlock, each about their own.
          const locked = tenant.environments.filter((e) => e.region === region.region && e.state === 'Locked').map((e) => e.id);
          await ctx.notify(reactivated, locked, (envs) => forSystemAdministrator(reactivated, envs, 'They are still locked: each can now be unlocked with `cmk env unlock`.'));
          return { region: region.region, key };
        });
      } finally {
        delete tenant.operations[request.region];
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.reactivateKey.name, request);
        refuseIf(checkReactivate(tenant, { actor: request.actor, region: request.region, thumbprint: request.staged.thumbprint }));
      },
    },
  );

  setHandler(
    updates.unlockEnvironment,
    ctx.audited<UnlockRequest, EnvironmentRecord>('env.unlock', (r: UnlockRequest, env?: EnvironmentRecord) => ({ environment: r.env, ...(env ? { region: env.region, thumbprints: [env.keyThumbprint] } : {}) }), async (request: UnlockRequest) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      env.runningOperation = 'unlock';
      try {
        return await ctx.exclusively(async () => {
          const key = usableKeyOf(tenant.regions[env.region]);
          const tenantKey = env.protection === 'tenant' && key ? { ...key.vaultKey, thumbprint: key.thumbprint } : null;
          const done = await ctx.inRegion(env.region).bringEnvironmentOnline.executeWithOptions({ summary: `R10 unlock of env ${env.id}` }, [{ tenant: tenant.tenant, env: env.id, tenantKey }]);
          // It keeps the protection it had (DESIGN.md §3).
          env.protection = done.protection;
          env.keyThumbprint = done.keyThumbprint;
          env.state = 'Online';
          delete env.lock;
          ctx.publishSearchAttributes();
          await ctx.notify(environmentUnlockedMail({ tenantName: tenant.displayName, env: env.id, by: describeActor(request.actor), at: iso(Date.now()) }), env.id);
          return env;
        });
      } finally {
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.unlockEnvironment.name, request);
        refuseIf(checkUnlock(tenant, request, Date.now(), ctx.policyOf(request)));
      },
    },
  );
}

async function lock(ctx: TenantContext, usedChallenges: Record<string, string>, request: LockRequest): Promise<LockResult> {
  if (patched(LOCK_POSSESSION_PATCH)) await recheckPossession(ctx, request);
  return lockRegion(ctx, usedChallenges, request);
}

/** The proof once more, against the vault, before anything is locked: a request's word is not enough (§6). */
export async function recheckPossession(ctx: TenantContext, request: LockRequest): Promise<void> {
  const { tenant } = ctx;
  {
    const key = usableKeyOf(tenant.regions[request.region])!;
    await ctx.inRegion(request.region).verifyLockPossession({
      tenant: tenant.tenant,
      region: request.region,
      user: request.actor.kind === 'user' ? normaliseEmail(request.actor.email) : '',
      challengeId: request.proof.challengeId,
      expiresAt: request.proof.expiresAt,
      acceptedAt: iso(Date.now()),
      possession: request.possession ?? null,
      vaultKey: key.vaultKey,
    });
  }
}

/**
 * R8 for one region: its environments Locked and offline, then its keys withdrawn from the vault. `approvedBy`: a
 * lock under the two-administrator policy (`request.actor` asked for it).
 */
export async function lockRegion(ctx: TenantContext, usedChallenges: Record<string, string>, request: Pick<LockRequest, 'actor' | 'policy' | 'region'>, approvedBy?: string): Promise<LockResult> {
  const { tenant } = ctx;
  const now = Date.now();
  const at = iso(now);
  const by = describeActor(request.actor);
  const region = tenant.regions[request.region]!;
  for (const [id, expiresAt] of Object.entries(usedChallenges)) if (Date.parse(expiresAt) < now) delete usedChallenges[id];

  const envs = lockTargets(tenant, region.region);
  const deleteAt = iso(now + ctx.policyOf(request).lockedRetentionMs);
  const warnAt = deletionWarningTimes(now, ctx.policyOf(request).lockedRetentionMs).map(iso);
  // Locked from here: every request for them answers ENVIRONMENT_LOCKED (the data path reads this state too).
  for (const env of envs) {
    env.state = 'Locked';
    env.lock = { lockedAt: at, lockedBy: by, sealed: env.protection === 'tenant', deleteAt, warnAt, warningsSent: 0 };
  }
  ctx.publishSearchAttributes();
  // Offline first (SQL Server keeps a DEK in memory while a database is online), then the keys leave the vault.
  await ctx.inRegion(request.region).takeEnvironmentsOffline.executeWithOptions({ summary: `R8 lock of ${region.region}: ${envs.length} environment(s) offline` }, [
    { tenant: tenant.tenant, envs: envs.map((e) => e.id), mark: { lockedAt: at, deleteAt } },
  ]);
  // Every version that wraps, or wrapped, a key record; an Available key never did, and waits for its activation
  // (which R11 refuses until no environment is locked).
  const withdrawn = region.keys.filter((k) => k.inVault && k.state !== 'Available');
  await ctx.inRegion(request.region).withdrawTenantKeys.executeWithOptions({ summary: `R8 lock of ${region.region}: withdraw ${withdrawn.length} key version(s)` }, [{ vaultKeys: withdrawn.map((k) => k.vaultKey) }]);
  for (const key of withdrawn) key.inVault = false;
  const active = activeKeyOf(region)!;
  active.state = 'Locked';
  active.lockedAt = at;
  // Nothing is left to roll back to: the previous key left the vault with the active one.
  region.rollbackThumbprint = null;
  region.rollbackUntil = null;
  ctx.publishSearchAttributes();

  const result: LockResult = {
    tenant: tenant.tenant,
    region: region.region,
    lockedAt: at,
    unlockAllowedAt: iso(now + ctx.policyOf(request).unlockDelayMs),
    deleteAt,
    sealed: envs.filter((e) => e.lock?.sealed).map((e) => e.id),
    lockedByDecisionOnly: envs.filter((e) => !e.lock?.sealed).map((e) => e.id),
    withdrawnKeys: withdrawn.map((k) => k.thumbprint),
  };
  await ctx.notify(tenantLockedMail({ tenantName: tenant.displayName, ...result, by, at, ...(approvedBy ? { approvedBy } : {}) }), envs.map((e) => e.id));
  return result;
}

/**
 * Registers the update `purgeOverdue` (the daily Schedule's, for what a timer missed). Separate from `registerLock`:
 * registered last, as the recorded histories have it (see `registerBackups`).
 */
export function registerPurge(ctx: TenantContext): void {
  const { tenant } = ctx;
  setHandler(
    updates.purgeOverdue,
    ctx.audited<PurgeRequest, PurgeResult>('env.purge', (_r, res?: PurgeResult) => ({ details: res ? { deleted: res.deleted.join(',').slice(0, 900) } : undefined }), (): Promise<PurgeResult> =>
      ctx.exclusively(async () => {
        const deleted = await deleteOverdue(ctx);
        const stillLocked = tenant.environments.flatMap((e) => (e.state === 'Locked' && e.lock ? [{ env: e.id, deleteAt: e.lock.deleteAt }] : []));
        return { tenant: tenant.tenant, deleted, stillLocked };
      }),
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.purgeOverdue.name, request);
        refuseIf(checkPurge(request.actor));
      },
    },
  );
}

/** R9: one mail per deadline for every warning now due (7 days and 1 day before, scaled). */
export async function sendDueDeletionWarnings(ctx: TenantContext): Promise<void> {
  const { tenant } = ctx;
  const now = Date.now();
  const due = new Map<string, EnvironmentRecord[]>();
  for (const env of tenant.environments) {
    const lock = env.state === 'Locked' ? env.lock : undefined;
    if (!lock || lock.warningsSent >= lock.warnAt.length || Date.parse(lock.warnAt[lock.warningsSent]!) > now) continue;
    // Past the deadline itself, the deletion mail says it all.
    if (Date.parse(lock.deleteAt) <= now) {
      lock.warningsSent = lock.warnAt.length;
      continue;
    }
    // Warnings that all fell due at once (e.g. after an outage) make one mail, not several.
    while (lock.warningsSent < lock.warnAt.length && Date.parse(lock.warnAt[lock.warningsSent]!) <= now) lock.warningsSent += 1;
    due.set(lock.deleteAt, [...(due.get(lock.deleteAt) ?? []), env]);
  }
  for (const [deleteAt, envs] of due) {
    const ids = envs.map((e) => e.id);
    await ctx.notify(deletionWarningMail({ tenantName: tenant.displayName, tenant: tenant.tenant, envs: ids, deleteAt }), ids);
  }
}

/** R9: locked environments past their deadline are destroyed with their backups, shown as Deleted, and mailed. */
export async function deleteOverdue(ctx: TenantContext): Promise<string[]> {
  const { tenant } = ctx;
  const now = Date.now();
  const overdue = tenant.environments.filter((e) => e.state === 'Locked' && e.lock && Date.parse(e.lock.deleteAt) <= now);
  if (overdue.length === 0) return [];
  // Refused (faults are retried by the activity's policy): they stay Locked and offline, marked, and are tried
  // again in an hour and at every purge; the administrators learn it once.
  const destroyed = await destroyLocked(ctx, overdue, (envs, failure) => deletionRefused(ctx, envs, failure));
  if (destroyed.length === 0) return [];
  await markDeleted(ctx, destroyed);
  // R9 acts on its own: the deletion is the control plane's, recorded once per environment.
  for (const env of destroyed) await ctx.audit('env.delete', 'cmk', 'completed', { region: env.region, environment: env.id });
  return destroyed.map((e) => e.id);
}

/**
 * The one way locked environments are destroyed (R9 at the deadline, `env delete` on request): each region's
 * databases, backups and key records by that region's workers. What a region refused goes to `refused` at once.
 */
async function destroyLocked(ctx: TenantContext, envs: EnvironmentRecord[], refused: (envs: EnvironmentRecord[], failure: BackgroundFailure) => Promise<void>): Promise<EnvironmentRecord[]> {
  const { tenant } = ctx;
  // Routed by region: each region's databases are destroyed by that region's workers.
  const groups: Array<[string | null, EnvironmentRecord[]]> = ctx.carried.regions
    ? [...new Set(envs.map((e) => e.region))].map((region) => [region, envs.filter((e) => e.region === region)])
    : [[null, envs]];
  const destroyed: EnvironmentRecord[] = [];
  for (const [region, group] of groups) {
    try {
      await (region === null ? ctx.anyRegion : ctx.inRegion(region)).destroyEnvironments.executeWithOptions({ summary: `R9 deletion of env ${group.map((e) => e.id).slice(0, 5).join(', ')}${group.length > 5 ? ` and ${group.length - 5} more` : ''}` }, [
        { tenant: tenant.tenant, envs: group.map((e) => e.id) },
      ]);
      destroyed.push(...group);
    } catch (err) {
      await refused(group, failureOf(err, iso(Date.now())));
    }
  }
  return destroyed;
}

/** Destroyed environments are Deleted from now on, and the administrators (and their system administrators) told; `by` for a deletion on request. */
async function markDeleted(ctx: TenantContext, destroyed: EnvironmentRecord[], by?: string): Promise<void> {
  const { tenant } = ctx;
  const ids = destroyed.map((e) => e.id);
  const at = iso(Date.now());
  for (const env of destroyed) {
    env.state = 'Deleted';
    env.deletedAt = at;
    delete env.lock;
  }
  ctx.publishSearchAttributes();
  await ctx.notify(environmentsDeletedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, envs: ids, at, ...(by === undefined ? {} : { by }) }), ids);
}

/**
 * Registers the update `deleteEnvironment` (`cmk env delete`): a locked environment not worth unlocking is destroyed
 * now, by R9's own path, so that R11 no longer blocks a new key once none is left. Registered after the others:
 * no recorded history holds it.
 */
export function registerEnvironmentDeletion(ctx: TenantContext): void {
  const { tenant } = ctx;
  setHandler(
    updates.deleteEnvironment,
    ctx.audited<EnvironmentDeleteRequest, EnvironmentRecord>('env.delete', (r, env) => ({ environment: r.env, ...(env ? { region: env.region, thumbprints: [env.keyThumbprint] } : {}) }), async (request) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      // Marked before the first await: an unlock or a second deletion meanwhile answers OPERATION_IN_PROGRESS.
      env.runningOperation = 'delete';
      try {
        return await ctx.exclusively(async () => {
          // R9's timer may have destroyed it while this request waited its turn: the outcome asked for.
          if (env.state !== 'Locked') return env;
          // Refused by the database server or the vault: the request fails with its reason; R9's deadline stands.
          const destroyed = await destroyLocked(ctx, [env], async (_envs, failure) => {
            throw ApplicationFailure.create({ type: failure.code, message: `Environment ${env.id} could not be deleted; it stays locked and offline: ${failure.message}`, nonRetryable: true });
          });
          if (destroyed.length === 0) return env;
          await markDeleted(ctx, [env], describeActor(request.actor));
          return env;
        });
      } finally {
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.deleteEnvironment.name, request);
        refuseIf(checkEnvironmentDelete(tenant, request));
      },
    },
  );
}

async function deletionRefused(ctx: TenantContext, envs: EnvironmentRecord[], failure: BackgroundFailure): Promise<void> {
  const ids = envs.map((e) => e.id);
  const first = envs.filter((e) => !e.lock?.deletionFailure).map((e) => e.id);
  for (const env of envs) if (env.lock) env.lock.deletionFailure = { ...failure, retryAt: iso(Date.parse(failure.at) + DELETION_RETRY_MS) };
  log.warn('Locked environments past their deadline could not be deleted; tried again later.', { envs: ids, ...failure });
  if (first.length === 0) return;
  await ctx.notify(
    backgroundFailureMail({
      tenantName: ctx.tenant.displayName,
      tenant: ctx.tenant.tenant,
      what: `the locked environments past their deletion deadline could not be deleted: ${first.join(', ')}`,
      reason: `${failure.code}: ${failure.message}`,
      repair: 'They stay locked and offline. cmk tries again every hour; the provider operator can run the purge once the cause is repaired.',
      at: failure.at,
    }),
    first,
  );
}
