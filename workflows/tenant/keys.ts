/**
 * The tenant's keys (R3, R5, R6): a staged key activated by a key change, the rollback to the key it replaced. Both
 * start the background re-protection (R7) of the region's environments on the tenant key.
 */
import { condition, setHandler } from '@temporalio/workflow';
import { updates, type KeyActivateRequest, type KeyChangeRequest, type KeyChangeResult, type RollbackRequest, type RollbackResult } from '../messages';
import type { Actor } from '../../domain/access';
import type { Policy } from '../../domain/policy';
import { describeActor } from '../../domain/access';
import { activeKeyOf, emptyRegion, reprotectionTargets, type RegionKeys, type TenantKey } from '../../domain/model';
import { checkKeyActivate, checkKeyAdd, checkKeyChange, checkRollback, lockAllowedAt, nextKeyChangeAllowedAt } from '../../domain/rules';
import { forSystemAdministrator, keyChangedMail, keyRolledBackMail } from '../../domain/notifications';
import { iso, refuseIf, type TenantContext } from './context';
import { startReprotection } from './reprotection';
import { retire, retireUnused } from './retirement';

/** What a key change means for a system administrator's environments. */
const REPROTECTED = 'They are being re-protected with this key in the background; you need do nothing unless a later mail names one that could not be.';

/**
 * Registers the updates `addKey` and `activateKey` (`key upload --no-activate`, `key activate`). Registered after the
 * others: no recorded history holds them.
 */
export function registerKeyActivation(ctx: TenantContext): void {
  const { tenant } = ctx;

  setHandler(
    updates.addKey,
    ctx.audited<KeyChangeRequest, KeyChangeResult>(
      'key.upload',
      (r) => ({ region: r.region, thumbprints: [r.staged.thumbprint], details: { name: r.name, source: r.source, activate: false } }),
      async (request) => {
        // No outside call: the API service staged it (disabled), and it stays so until its activation.
        const region: RegionKeys = (tenant.regions[request.region] ??= emptyRegion(request.region));
        const by = describeActor(request.actor);
        const key: TenantKey = {
          name: request.name,
          thumbprint: request.staged.thumbprint,
          vaultKey: request.staged.vaultKey,
          state: 'Available',
          source: request.source,
          createdAt: iso(Date.now()),
          createdBy: by,
          activatedAt: null,
          activatedBy: null,
          retiredAt: null,
          inVault: true,
        };
        region.keys.push(key);
        return { region: region.region, key };
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.addKey.name, request);
        refuseIf(checkKeyAdd(tenant, { actor: request.actor, region: request.region, thumbprint: request.staged.thumbprint }, ctx.policyOf(request)));
      },
    },
  );

  setHandler(
    updates.activateKey,
    ctx.audited<KeyActivateRequest, KeyChangeResult>('key.activate', (r) => ({ region: r.region, thumbprints: [r.thumbprint] }), async (request) => {
      // Marked before the first await, as a key change: a second change validated meanwhile answers OPERATION_IN_PROGRESS.
      tenant.operations[request.region] = `the activation of the key ${request.thumbprint.slice(0, 12)}…`;
      try {
        return await ctx.exclusively(() => activateKey(ctx, request));
      } finally {
        if (!ctx.reprotecting.has(request.region)) delete tenant.operations[request.region];
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.activateKey.name, request);
        refuseIf(checkKeyActivate(tenant, request, Date.now(), ctx.policyOf(request)));
      },
    },
  );
}

/** Registers the updates `changeKey` and `rollbackKey`. */
export function registerKeys(ctx: TenantContext): void {
  const { tenant } = ctx;

  setHandler(
    updates.changeKey,
    ctx.audited<KeyChangeRequest, KeyChangeResult>(
      (r) => (r.source === 'generated' ? 'key.generate' : 'key.upload'),
      (r) => ({ region: r.region, thumbprints: [r.staged.thumbprint], details: { name: r.name, source: r.source } }),
      async (request) => {
        // Marked before the first await, so that a second change validated meanwhile answers OPERATION_IN_PROGRESS.
        tenant.operations[request.region] = `a key change to "${request.name}"`;
        try {
          return await ctx.exclusively(() => changeKey(ctx, request));
        } finally {
          if (!ctx.reprotecting.has(request.region)) delete tenant.operations[request.region];
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.changeKey.name, request);
        refuseIf(checkKeyChange(tenant, { actor: request.actor, region: request.region, thumbprint: request.staged.thumbprint }, Date.now(), ctx.policyOf(request)));
      },
    },
  );

  setHandler(
    updates.rollbackKey,
    ctx.audited<RollbackRequest, RollbackResult>(
      'key.rollback',
      (r, res) => ({ region: r.region, thumbprints: res ? [res.key.thumbprint, res.rolledBack.thumbprint] : [] }),
      async (request) => {
        // The change's re-protection, if it still runs, stops after its batches in flight; then the rollback runs.
        ctx.superseded.add(request.region);
        try {
          await condition(() => !ctx.reprotecting.has(request.region));
        } finally {
          ctx.superseded.delete(request.region);
        }
        tenant.operations[request.region] = 'a rollback';
        try {
          return await ctx.exclusively(() => rollback(ctx, request));
        } finally {
          if (!ctx.reprotecting.has(request.region)) delete tenant.operations[request.region];
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.rollbackKey.name, request);
        if (ctx.superseded.has(request.region)) refuseIf({ code: 'OPERATION_IN_PROGRESS', message: `A rollback is already in progress in region ${request.region}.` });
        refuseIf(checkRollback(tenant, request, Date.now()));
      },
    },
  );
}

async function changeKey(ctx: TenantContext, request: KeyChangeRequest) {
  const { tenant } = ctx;
  const region: RegionKeys = (tenant.regions[request.region] ??= emptyRegion(request.region));
  await ctx.inRegion(request.region).activateStagedKey.executeWithOptions({ summary: `R3 activate key "${request.name}" in ${request.region}` }, [{ vaultKey: request.staged.vaultKey, thumbprint: request.staged.thumbprint }]);
  const now = Date.now();
  const by = describeActor(request.actor);
  const key: TenantKey = {
    name: request.name,
    thumbprint: request.staged.thumbprint,
    vaultKey: request.staged.vaultKey,
    state: 'Installing',
    source: request.source,
    createdAt: iso(now),
    createdBy: by,
    activatedAt: iso(now),
    activatedBy: by,
    retiredAt: null,
    inVault: true,
  };
  return makeActive(ctx, region, key, request, now);
}

/**
 * `key activate`: the Available key, enabled in the vault, becomes the active key as a generated or uploaded one
 * does. R5 and R6 count from here, not from its upload.
 */
async function activateKey(ctx: TenantContext, request: KeyActivateRequest) {
  const region = ctx.tenant.regions[request.region]!;
  const key = region.keys.find((k) => k.thumbprint === request.thumbprint)!;
  await ctx.inRegion(request.region).activateStagedKey.executeWithOptions({ summary: `R3 activate key "${key.name}" in ${request.region}` }, [{ vaultKey: key.vaultKey, thumbprint: key.thumbprint }]);
  const now = Date.now();
  const by = describeActor(request.actor);
  key.state = 'Installing';
  key.activatedAt = iso(now);
  key.activatedBy = by;
  return makeActive(ctx, region, key, request, now);
}

/**
 * The key, enabled in the vault, is the region's active key from `now` (R5, R6 start): the one it replaces is
 * retired (kept for rollback), and every environment on the tenant key moves to it in the background (R7).
 */
async function makeActive(ctx: TenantContext, region: RegionKeys, key: TenantKey, request: { actor: Actor; policy: Policy }, now: number): Promise<KeyChangeResult> {
  const { tenant } = ctx;
  const by = describeActor(request.actor);
  const replaced = activeKeyOf(region);
  // A key kept for an earlier change's rollback can no longer be rolled back to (rollback goes one step back).
  const olderRollback = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint && k !== replaced);
  if (olderRollback) await retire(ctx, region, olderRollback);
  if (replaced) {
    replaced.state = 'Retired';
    replaced.retiredAt = iso(now);
  }
  if (!region.keys.includes(key)) region.keys.push(key);
  region.activeThumbprint = key.thumbprint;
  // R7: every environment on the tenant key moves to the new key, in the background; the key is Installing
  // until they all have, and Active at once when there are none.
  const targets = reprotectionTargets(tenant, region.region);
  if (targets.length === 0) key.state = 'Active';
  else startReprotection(ctx, region, key, targets);
  // A key a lock withdrew is gone from the vault: nothing to roll back to.
  const rollbackTo = replaced?.inVault ? replaced : null;
  region.rollbackThumbprint = rollbackTo?.thumbprint ?? null;
  region.rollbackUntil = rollbackTo ? iso(now + ctx.policyOf(request).lockEmbargoMs) : null;
  region.lastKeyChangeAt = iso(now);
  region.embargoStartedAt = iso(now);
  ctx.carried.policy = ctx.policyOf(request);
  ctx.publishSearchAttributes();

  const changed = keyChangedMail({
    tenantName: tenant.displayName,
    tenant: tenant.tenant,
    region: region.region,
    keyName: key.name,
    thumbprint: key.thumbprint,
    by,
    at: iso(now),
    lockAllowedAt: iso(lockAllowedAt(region, ctx.policyOf(request)) ?? now),
    nextChangeAllowedAt: iso(nextKeyChangeAllowedAt(region, ctx.policyOf(request)) ?? now),
  });
  // R4: the system administrators of the environments it re-protects learn of it too, each about their own.
  await ctx.notify(
    changed,
    targets.map((e) => e.id),
    (envs) => forSystemAdministrator(changed, envs, REPROTECTED),
  );
  return { region: region.region, key };
}

/** R6's purpose: the key the last change replaced is active again; R6 restarts, R5 does not (DESIGN.md §3). */
async function rollback(ctx: TenantContext, request: RollbackRequest): Promise<RollbackResult> {
  const { tenant } = ctx;
  const region = tenant.regions[request.region]!;
  const now = Date.now();
  const at = iso(now);
  const by = describeActor(request.actor);
  const current = activeKeyOf(region)!;
  const previous = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint)!;
  current.state = 'Retired';
  current.retiredAt = at;
  previous.state = 'Installing';
  previous.retiredAt = null;
  previous.activatedAt = at;
  previous.activatedBy = by;
  region.activeThumbprint = previous.thumbprint;
  // One step back only: nothing to roll back to from here.
  region.rollbackThumbprint = null;
  region.rollbackUntil = null;
  region.embargoStartedAt = at;
  ctx.carried.policy = ctx.policyOf(request);
  const targets = reprotectionTargets(tenant, region.region);
  if (targets.length === 0) previous.state = 'Active';
  else startReprotection(ctx, region, previous, targets);
  ctx.publishSearchAttributes();
  const rolledBack = keyRolledBackMail({
    tenantName: tenant.displayName,
    tenant: tenant.tenant,
    region: region.region,
    keyName: previous.name,
    thumbprint: previous.thumbprint,
    rolledBackName: current.name,
    rolledBackThumbprint: current.thumbprint,
    by,
    at,
    lockAllowedAt: iso(lockAllowedAt(region, ctx.policyOf(request)) ?? now),
  });
  await ctx.notify(rolledBack, targets.map((e) => e.id), (envs) => forSystemAdministrator(rolledBack, envs, REPROTECTED));
  // With nothing to re-protect, the rolled-back key leaves the vault now; otherwise when the re-protection ends.
  if (targets.length === 0) await retireUnused(ctx, region);
  return { region: region.region, key: previous, rolledBack: { name: current.name, thumbprint: current.thumbprint } };
}
