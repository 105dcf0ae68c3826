/**
 * R7 after a key change or a rollback: every environment of the region on the tenant key is re-protected with the new
 * key in the background, while the update has returned. Progress in `ctx.reprotections` (query, `key show`, search
 * attributes); the key is Installing until the end, then Active.
 */
import { ActivityFailure, ApplicationFailure, log, patched } from '@temporalio/workflow';
import { reprotectionIncompleteMail } from '../../domain/notifications';
import type { EnvironmentRecord, RegionKeys, ReprotectionProgress, TenantKey } from '../../domain/model';
import { iso, type TenantContext } from './context';
import { retireUnused } from './retirement';

/** Environments per re-protection activity, and batches running at once. */
const REPROTECT_BATCH_SIZE = 50;
const REPROTECT_PARALLEL_BATCHES = 2;

/** Environments re-protected at once after a key change, one per activity (workflows started before batches). */
const REPROTECT_CONCURRENCY = 8;

export function startReprotection(ctx: TenantContext, region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
  ctx.reprotecting.add(region.region);
  ctx.tenant.operations[region.region] = `re-protecting ${targets.length} environment(s) with the key "${key.name}"`;
  targets.forEach((e) => (e.state = 'Reprotecting'));
  if (patched('reprotect-in-batches')) reprotectInBatches(ctx, region, key, targets);
  else reprotectOneByOne(ctx, region, key, targets);
}

/**
 * Batches of environments, a few at a time, each batch one heartbeating activity. Every batch's outcome lands in the
 * environments' records and in the progress (query, `key show`, search attributes).
 */
function reprotectInBatches(ctx: TenantContext, region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
  const progress: ReprotectionProgress = {
    region: region.region,
    keyName: key.name,
    keyThumbprint: key.thumbprint,
    startedAt: iso(Date.now()),
    finishedAt: null,
    total: targets.length,
    done: 0,
    refused: [],
    remaining: targets.length,
  };
  ctx.reprotections[region.region] = progress;
  ctx.publishSearchAttributes();
  const byId = new Map(targets.map((e) => [e.id, e]));
  const batches: string[][] = [];
  for (let i = 0; i < targets.length; i += REPROTECT_BATCH_SIZE) batches.push(targets.slice(i, i + REPROTECT_BATCH_SIZE).map((e) => e.id));
  const lane = async (): Promise<void> => {
    for (let batch = batches.shift(); batch; batch = batches.shift()) {
      if (ctx.superseded.has(region.region)) {
        // A rollback replaces this re-protection: what it has not started stays as it is, for the rollback to move.
        for (const env of batch) {
          const record = byId.get(env);
          if (record?.state === 'Reprotecting') record.state = 'Online';
        }
        progress.remaining -= batch.length;
        continue;
      }
      let outcome: { reprotected: Array<{ env: string; keyThumbprint: string }>; refused: ReprotectionProgress['refused'] };
      try {
        outcome = await ctx.inRegion(region.region).reprotectEnvironments.executeWithOptions({ summary: `R7 re-protect ${batch.length} environment(s) of ${region.region} with key "${key.name}"` }, [
          { tenant: ctx.tenant.tenant, envs: batch, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } },
        ]);
      } catch (err) {
        // Only a refusal of the whole batch ends here (faults are retried): its environments keep their old key.
        // An activity's refusal arrives as an ActivityFailure whose cause carries the stable code.
        const refusal = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
        const code = refusal?.type ?? 'INTERNAL';
        const message = refusal?.message ?? String(err);
        outcome = { reprotected: [], refused: batch.map((env) => ({ env, code, message })) };
      }
      for (const { env, keyThumbprint } of outcome.reprotected) {
        const record = byId.get(env);
        if (record) record.keyThumbprint = keyThumbprint;
      }
      for (const refusal of outcome.refused) {
        log.warn('An environment could not be re-protected with the new key; it stays on its previous key.', { ...refusal });
      }
      for (const env of batch) {
        const record = byId.get(env);
        if (record?.state === 'Reprotecting') record.state = 'Online';
      }
      progress.done += outcome.reprotected.length;
      progress.refused.push(...outcome.refused);
      progress.remaining -= batch.length;
      ctx.publishSearchAttributes();
    }
  };
  const lanes = Array.from({ length: Math.min(REPROTECT_PARALLEL_BATCHES, batches.length) }, lane);
  void Promise.all(lanes)
    .then(async () => {
      progress.finishedAt = iso(Date.now());
      await finishReprotection(ctx, region, key);
      if (progress.refused.length > 0) await reportLeftBehind(ctx, region, key, progress);
    })
    // Nothing here may fail the tenant (DESIGN.md §6); what was refused is in the progress, the records and the mail.
    .catch((err) => log.error('The end of a re-protection failed; the tenant workflow goes on.', { region: region.region, error: String(err) }));
}

/**
 * Environments a re-protection could not move: the administrators learn which, why, how to move them, and why before
 * a lock; each of those environments' system administrators gets the same, naming only their own.
 */
async function reportLeftBehind(ctx: TenantContext, region: RegionKeys, key: TenantKey, progress: ReprotectionProgress): Promise<void> {
  const mail = (refused: ReprotectionProgress['refused'], systemAdmin = false) =>
    reprotectionIncompleteMail({ tenantName: ctx.tenant.displayName, tenant: ctx.tenant.tenant, region: region.region, keyName: key.name, refused, at: progress.finishedAt ?? iso(Date.now()), systemAdmin });
  await ctx.notify(
    mail(progress.refused),
    progress.refused.map((r) => r.env),
    (envs) => {
      const theirs = new Set(envs);
      return mail(progress.refused.filter((r) => theirs.has(r.env)), true);
    },
  );
}

/** Every environment has been dealt with: the key is Active, and keys nothing depends on leave the vault. */
async function finishReprotection(ctx: TenantContext, region: RegionKeys, key: TenantKey): Promise<void> {
  if (region.activeThumbprint === key.thumbprint) key.state = 'Active';
  ctx.reprotecting.delete(region.region);
  delete ctx.tenant.operations[region.region];
  ctx.publishSearchAttributes();
  await ctx.exclusively(() => retireUnused(ctx, region));
}

/** Re-protection as workflows started before batches did it; kept so that their histories replay. */
function reprotectOneByOne(ctx: TenantContext, region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
  ctx.publishSearchAttributes();
  const queue = [...targets];
  const lane = async (): Promise<void> => {
    for (let env = queue.shift(); env; env = queue.shift()) {
      // Faults are retried with backoff; only a refusal (e.g. its key record is gone) ends here, and then the
      // environment stays on its old key, which stays in the vault because a record still depends on it.
      try {
        const done = await ctx.inRegion(region.region).reprotectEnvironment({ tenant: ctx.tenant.tenant, env: env.id, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } });
        env.keyThumbprint = done.keyThumbprint;
      } catch (err) {
        log.warn('An environment could not be re-protected with the new key; it stays on its previous key.', { env: env.id, error: String(err) });
      } finally {
        env.state = 'Online';
      }
    }
  };
  void Promise.all(Array.from({ length: Math.min(REPROTECT_CONCURRENCY, targets.length) }, lane))
    .then(() => finishReprotection(ctx, region, key))
    .catch((err) => log.error('The end of a re-protection failed; the tenant workflow goes on.', { region: region.region, error: String(err) }));
}
