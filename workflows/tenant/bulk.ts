/**
 * `env create --from-file`: many environments in one update. The validator checks every line before anything is
 * created (domain/bulk.ts); the handler makes the databases in batches, a few batches at once, and records each
 * batch in the tenant's state as it completes (in the list's order). History stays small: one update, one activity
 * per batch, one search-attribute upsert per batch.
 *
 * Failure midway is resumed, not rolled back: a fault (a full disk, a vault outage, a dead worker) fails the batch's
 * attempt and Temporal retries it with backoff until it succeeds; a batch is idempotent (an environment an earlier
 * attempt made is found and kept), and a replayed workflow continues from the batches its history records. Until
 * recorded, the list's environments are "being created" (a create of the same ID answers ALREADY_EXISTS), so what
 * the workflow believes and what is on disk agree at every step. See docs/RELIABILITY.md, "Bulk set-up".
 */
import { setHandler } from '@temporalio/workflow';
import { queries, updates, type EnvironmentCreationProgress, type EnvironmentsCreateRequest, type EnvironmentsCreateResult } from '../messages';
import { checkEnvironmentsCreate } from '../../domain/bulk';
import { normaliseEmail } from '../../domain/ids';
import type { EnvironmentRecord } from '../../domain/model';
import type { ProvisionBatchResult } from '../../activities/environments';
import { iso, refuseIf, type TenantContext } from './context';

/** Environments per activity: small enough that progress moves every second or so, large enough that history stays short. */
const BATCH_SIZE = 250;
/** Batches in flight at once; each creates 16 environments at a time inside (activities/environments.ts). */
const PARALLEL_BATCHES = 2;
/** Progress of this many recent operations is kept for the query (the CLI reads its own while it runs). */
const PROGRESS_KEPT = 20;

export function registerBulkCreate(ctx: TenantContext): void {
  const { tenant, provisioning } = ctx;
  const progress: EnvironmentCreationProgress[] = [];
  setHandler(queries.environmentCreation, (operation) => progress.find((p) => p.operation === operation) ?? null);

  setHandler(
    updates.createEnvironments,
    ctx.audited<EnvironmentsCreateRequest, EnvironmentsCreateResult>(
      'env.create.bulk',
      (r, result) => ({
        region: r.region,
        ...(result ? { thumbprints: [result.keyThumbprint] } : {}),
        details: { operation: r.operation, environments: r.list.entries.length, created: result?.created ?? null, first: r.list.entries[0]?.[0] ?? null, last: r.list.entries.at(-1)?.[0] ?? null },
      }),
      async (request) => {
        const ids = request.list.entries.map(([env]) => env);
        // Marked before the first await: from now on a create of any of them answers ALREADY_EXISTS.
        for (const id of ids) provisioning.add(id);
        const entry: EnvironmentCreationProgress = { operation: request.operation, region: request.region, total: ids.length, created: 0, startedAt: iso(Date.now()), finishedAt: null };
        progress.push(entry);
        if (progress.length > PROGRESS_KEPT) progress.shift();
        try {
          // The whole list at once, like a single create: nothing else (a lock, a key change) runs in between.
          return await ctx.exclusively(() => createInBatches(ctx, request, entry));
        } finally {
          for (const id of ids) provisioning.delete(id);
          entry.finishedAt = iso(Date.now());
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.createEnvironments.name, request);
        refuseIf(checkEnvironmentsCreate(tenant, request, provisioning));
      },
    },
  );
}

async function createInBatches(ctx: TenantContext, request: EnvironmentsCreateRequest, entry: EnvironmentCreationProgress): Promise<EnvironmentsCreateResult> {
  const { tenant } = ctx;
  const { entries, admins } = request.list;
  const batches: Array<typeof entries> = [];
  for (let i = 0; i < entries.length; i += BATCH_SIZE) batches.push(entries.slice(i, i + BATCH_SIZE));
  const results: Array<ProvisionBatchResult | undefined> = batches.map(() => undefined);
  const refused: EnvironmentsCreateResult['refused'] = [];
  let recorded = 0;
  let next = 0;
  let key: { protection: EnvironmentRecord['protection']; keyThumbprint: string } | null = null;

  /** Finished batches join the tenant's state in the list's order, whichever finished first. */
  const recordFinished = () => {
    for (let done = results[recorded]; done !== undefined; done = results[++recorded]) {
      const others = new Map(done.others.map((o) => [o.env, o]));
      const notMade = new Map(done.refused.map((r) => [r.env, r]));
      key ??= { protection: done.protection, keyThumbprint: done.keyThumbprint };
      const createdAt = iso(Date.now());
      for (const [env, line, admin] of batches[recorded]!) {
        const refusal = notMade.get(env);
        if (refusal) {
          refused.push({ env, line, code: refusal.code, message: refusal.message });
          continue;
        }
        const made = others.get(env) ?? done;
        const record: EnvironmentRecord = { id: env, region: request.region, state: 'Online', protection: made.protection, keyThumbprint: made.keyThumbprint, systemAdmin: admin < 0 ? null : normaliseEmail(admins[admin]!), createdAt };
        tenant.environments.push(record);
        entry.created += 1;
      }
    }
    ctx.publishSearchAttributes();
  };

  const runBatches = async (): Promise<void> => {
    for (let b = next++; b < batches.length; b = next++) {
      const batch = batches[b]!;
      const from = b * BATCH_SIZE + 1;
      results[b] = await ctx.inRegion(request.region).provisionEnvironmentDatabases.executeWithOptions(
        { summary: `bulk create ${request.operation}: environments ${from}–${from + batch.length - 1} of ${entries.length}` },
        [{ tenant: tenant.tenant, region: request.region, envs: batch.map(([env]) => env) }],
      );
      recordFinished();
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_BATCHES, batches.length) }, runBatches));
  const made = key ?? { protection: 'provider' as const, keyThumbprint: '' };
  return { operation: request.operation, region: request.region, created: entry.created, protection: made.protection, keyThumbprint: made.keyThumbprint, refused };
}
