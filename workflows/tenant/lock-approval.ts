/**
 * The two-administrator lock (issue 19, docs/LOCK.md): the tenant's policy, a lock asked for and waiting, its
 * approval by a second global or service administrator (then the lock of workflows/tenant/lock.ts, region by
 * region), its cancellation, and its lapse at the end of the approval window (the main loop's timer).
 * Registered after every other concern: no recorded history holds these updates.
 */
import { setHandler, uuid4 } from '@temporalio/workflow';
import { updates, type LockApprovalChangeRequest, type LockApprovalState, type LockApprovedResult, type LockAskRequest, type LockDecisionRequest } from '../messages';
import { describeActor } from '../../domain/access';
import { normaliseEmail } from '../../domain/ids';
import { checkLockApproval, checkLockApprovalChange, checkLockCancel, checkLockRequest, lockApprovalReport, lockApprovalsRequired, approvalWindowEndsAt, pendingLockOf } from '../../domain/lock-approval';
import { lockTargets, usableKeyOf, type PendingLock } from '../../domain/model';
import { lockPolicyChangedMail, lockRequestClosedMail, lockRequestedMail } from '../../domain/notifications';
import { iso, refuseIf, type TenantContext } from './context';
import { lockRegion, recheckPossession, usedChallengesOf } from './lock';

export function registerLockApproval(ctx: TenantContext): void {
  const { tenant } = ctx;
  const usedChallenges = usedChallengesOf(ctx);

  setHandler(
    updates.setLockApproval,
    ctx.audited<LockApprovalChangeRequest, LockApprovalState>('tenant.policy', (r) => ({ details: { lockApproval: r.lockApproval } }), async (request) => {
      const now = Date.now();
      const before = tenant.lockApproval;
      const by = describeActor(request.actor);
      // Raising holds at once; a lowering of a policy that holds waits for the window (a second lowering keeps the first's date).
      const stillLowering = before?.required === 1 && before.effectiveAt !== undefined && Date.parse(before.effectiveAt) > now ? before.effectiveAt : undefined;
      const effectiveAt = request.lockApproval === 1 && lockApprovalsRequired(tenant, now) === 2 ? (stillLowering ?? iso(approvalWindowEndsAt(now, ctx.policyOf(request)))) : undefined;
      // Asking for what holds (or is already on its way) changes nothing and mails nobody.
      const unchanged = (before?.required ?? 1) === request.lockApproval && effectiveAt === stillLowering;
      if (!unchanged) {
        tenant.lockApproval = { required: request.lockApproval, setBy: by, setAt: iso(now), ...(effectiveAt ? { effectiveAt } : {}) };
        await ctx.notify(lockPolicyChangedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, lockApproval: request.lockApproval, by, at: iso(now), holdsFrom: effectiveAt ?? null }));
      }
      return lockApprovalReport(tenant, Date.now());
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.setLockApproval.name, request);
        refuseIf(checkLockApprovalChange(tenant, request));
      },
    },
  );

  setHandler(
    updates.requestLock,
    ctx.audited<LockAskRequest, PendingLock>(
      'tenant.lock.request',
      (r, res) => ({ region: r.allRegions ? null : (r.locks[0]?.region ?? null), details: { regions: r.locks.map((l) => l.region).join(','), ...(res ? { request: res.id, expiresAt: res.expiresAt } : {}) } }),
      async (request) => {
        // Spent and marked before the first await, as a lock does: a second request meanwhile meets OPERATION_IN_PROGRESS.
        for (const l of request.locks) {
          usedChallenges[l.proof.challengeId] = l.proof.expiresAt;
          tenant.operations[l.region] = 'a lock request';
        }
        try {
          return await ctx.exclusively(async () => {
            for (const l of request.locks) {
              await recheckPossession(ctx, { actor: request.actor, policy: request.policy, confirm: request.confirm, region: l.region, proof: l.proof, ...(l.possession ? { possession: l.possession } : {}) });
            }
            const now = Date.now();
            const pending: PendingLock = {
              id: uuid4(),
              requestedBy: request.actor.kind === 'user' ? normaliseEmail(request.actor.email) : describeActor(request.actor),
              requestedAt: iso(now),
              expiresAt: iso(approvalWindowEndsAt(now, ctx.policyOf(request))),
              allRegions: request.allRegions,
              regions: request.locks.map((l) => ({ region: l.region, thumbprint: usableKeyOf(tenant.regions[l.region])!.thumbprint })),
            };
            tenant.pendingLock = pending;
            const offline = pending.regions.flatMap((r) => lockTargets(tenant, r.region).map((e) => e.id));
            await ctx.notify(lockRequestedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, id: pending.id, regions: pending.regions.map((r) => r.region), offline, by: pending.requestedBy, at: pending.requestedAt, expiresAt: pending.expiresAt }));
            return pending;
            });
        } finally {
          for (const l of request.locks) delete tenant.operations[l.region];
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.requestLock.name, request);
        refuseIf(checkLockRequest(tenant, request, Date.now(), ctx.policyOf(request), new Set(Object.keys(usedChallenges))));
      },
    },
  );

  setHandler(
    updates.approveLock,
    ctx.audited<LockDecisionRequest, LockApprovedResult>(
      'tenant.lock',
      (r, res) => ({ region: null, thumbprints: res?.regions.flatMap((l) => l.withdrawnKeys) ?? [], details: { approved: true, ...(r.id ? { request: r.id } : {}), ...(res ? { requestedBy: res.requestedBy, regions: res.regions.map((l) => l.region).join(',') } : {}) } }),
      async (request) => {
        const pending = pendingLockOf(tenant, Date.now())!;
        // Taken before the first await: a second approval, or a cancellation, meanwhile finds none waiting.
        tenant.pendingLock = null;
        const regions = pending.regions.map((r) => r.region);
        for (const region of regions) tenant.operations[region] = 'an approved lock';
        try {
          return await ctx.exclusively(async () => {
              const requester = { kind: 'user' as const, email: pending.requestedBy };
              const approvedBy = describeActor(request.actor);
              const locked = [];
              for (const region of regions) locked.push(await lockRegion(ctx, usedChallenges, { actor: requester, policy: request.policy, region }, approvedBy));
              return { tenant: tenant.tenant, regions: locked, requestedBy: pending.requestedBy, approvedBy };
            });
        } finally {
          for (const region of regions) delete tenant.operations[region];
        }
      },
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.approveLock.name, request);
        refuseIf(checkLockApproval(tenant, { actor: request.actor, confirm: request.confirm ?? '', ...(request.id ? { id: request.id } : {}) }, Date.now(), ctx.policyOf(request)));
      },
    },
  );

  setHandler(
    updates.cancelLock,
    ctx.audited<LockDecisionRequest, PendingLock>('tenant.lock.cancel', (r) => ({ details: r.id ? { request: r.id } : undefined }), async (request) => {
      const pending = pendingLockOf(tenant, Date.now())!;
      tenant.pendingLock = null;
      await ctx.notify(lockRequestClosedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, id: pending.id, requestedBy: pending.requestedBy, how: 'cancelled', by: describeActor(request.actor), at: iso(Date.now()) }));
      return pending;
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.cancelLock.name, request);
        refuseIf(checkLockCancel(tenant, { actor: request.actor, ...(request.id ? { id: request.id } : {}) }, Date.now()));
      },
    },
  );
}

/** At the main loop's wake: a lock request past its window lapses, mailed and audited once. */
export async function expireLockRequest(ctx: TenantContext): Promise<void> {
  const { tenant } = ctx;
  const pending = tenant.pendingLock;
  if (!pending || Date.parse(pending.expiresAt) > Date.now()) return;
  tenant.pendingLock = null;
  await ctx.notify(lockRequestClosedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, id: pending.id, requestedBy: pending.requestedBy, how: 'lapsed', by: null, at: pending.expiresAt }));
  await ctx.audit('tenant.lock.lapse', 'cmk', 'completed', { details: { request: pending.id, requestedBy: pending.requestedBy } });
}
