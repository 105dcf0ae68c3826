/**
 * The two-administrator lock (issue 19; docs/LOCK.md): a tenant's policy that a lock one global or service
 * administrator asks for waits for a second one's approval, within the approval window (24 hours by default). The
 * proofs of possession are verified, and spent, when the lock is asked for; the approval checks the rules of a lock
 * again (R11, R10, R6, a running operation) and that the proven key is still the active one.
 * Pure, like rules.ts: "now" is passed in.
 */
import { tenantAdminRole, type Actor } from './access';
import { normaliseEmail } from './ids';
import { usableKeyOf, type PendingLock, type TenantSnapshot } from './model';
import { lockApprovalWindowOf, type Policy } from './policy';
import { checkLock, checkLockAllRegions, forbidden, lockStateRefusal, lockTimingRefusal, refuse, tenantNameMismatch, type PossessionProof, type Refusal } from './rules';

/** How many administrators a lock takes now: 2 under the policy, and still 2 while its lowering waits for its window. */
export function lockApprovalsRequired(tenant: Pick<TenantSnapshot, 'lockApproval'>, now: number): 1 | 2 {
  const policy = tenant.lockApproval;
  if (!policy) return 1;
  if (policy.required === 2) return 2;
  return policy.effectiveAt !== undefined && now < Date.parse(policy.effectiveAt) ? 2 : 1;
}

/** The lock waiting for approval now; a lapsed one is no longer pending (the workflow's timer clears it). */
export function pendingLockOf(tenant: Pick<TenantSnapshot, 'pendingLock'>, now: number): PendingLock | null {
  const pending = tenant.pendingLock;
  return pending && Date.parse(pending.expiresAt) > now ? pending : null;
}

/** The policy as `tenant policy` reports it. */
export function lockApprovalReport(tenant: Pick<TenantSnapshot, 'lockApproval' | 'pendingLock'>, now: number) {
  const policy = tenant.lockApproval;
  return {
    lockApproval: lockApprovalsRequired(tenant, now),
    ...(policy ? { setBy: policy.setBy, setAt: policy.setAt } : {}),
    // A lowering that does not hold yet: from then on one administrator locks again.
    ...(policy?.effectiveAt !== undefined && Date.parse(policy.effectiveAt) > now ? { lockApprovalFrom: { value: policy.required, at: policy.effectiveAt } } : {}),
    pendingLock: pendingLockOf(tenant, now),
  };
}

export interface LockApprovalChangeCheck {
  actor: Actor;
  lockApproval: number;
}

/** `tenant policy --lock-approval 1|2`: a global or service administrator; two need a second one to approve. */
export function checkLockApprovalChange(tenant: TenantSnapshot, request: LockApprovalChangeCheck): Refusal | null {
  const { actor } = request;
  if (!tenantAdminRole(tenant, actor)) return forbidden(actor, "change this tenant's lock policy");
  if (request.lockApproval !== 1 && request.lockApproval !== 2) {
    return refuse('INVALID_ARGUMENT', '--lock-approval must be 1 (one administrator locks) or 2 (a second administrator approves every lock).');
  }
  if (request.lockApproval === 2 && tenant.admins.length < 2) {
    return refuse('INVALID_ARGUMENT', 'A second administrator must be able to approve: add another global or service administrator (`cmk tenant admin add`) before requiring two for a lock.');
  }
  return null;
}

/** A lock under the policy: asked for with the lock's own proofs (one region, or every region). */
export interface LockRequestCheck {
  actor: Actor;
  confirm: string;
  allRegions: boolean;
  locks: Array<{ region: string; proof: PossessionProof | null }>;
}

/** The lock's own rules, then: the policy must want a second administrator, and no other lock may be waiting. */
export function checkLockRequest(tenant: TenantSnapshot, request: LockRequestCheck, now: number, policy: Policy, usedChallenges: ReadonlySet<string> = new Set()): Refusal | null {
  const { actor } = request;
  let refusal: Refusal | null;
  if (request.allRegions) refusal = checkLockAllRegions(tenant, request, now, policy, usedChallenges);
  else if (request.locks.length !== 1) refusal = refuse('INVALID_ARGUMENT', 'A lock of one region takes one proof.');
  else refusal = checkLock(tenant, { actor, confirm: request.confirm, region: request.locks[0]!.region, proof: request.locks[0]!.proof }, now, policy, usedChallenges);
  if (refusal) return refusal;
  if (lockApprovalsRequired(tenant, now) < 2) return refuse('INVALID_ARGUMENT', "This tenant's policy lets one administrator lock: no approval is needed.");
  return pendingRefusal(tenant, now);
}

/** A direct lock is refused while the policy wants a second administrator (the API asks for approval instead). */
export function checkLockWithoutApproval(tenant: TenantSnapshot, now: number): Refusal | null {
  if (lockApprovalsRequired(tenant, now) < 2) return null;
  return refuse('FORBIDDEN', "This tenant's policy requires a second global or service administrator to approve a lock: ask for it (`cmk tenant lock`), then another administrator approves it (`cmk tenant lock approve`).");
}

function pendingRefusal(tenant: TenantSnapshot, now: number): Refusal | null {
  const pending = pendingLockOf(tenant, now);
  if (!pending) return null;
  return refuse('OPERATION_IN_PROGRESS', `A lock asked for by ${pending.requestedBy} waits for a second administrator's approval until ${pending.expiresAt}: approve it (\`cmk tenant lock approve\`) or cancel it (\`cmk tenant lock cancel\`) first.`);
}

export interface LockDecisionCheck {
  actor: Actor;
  /** The request's ID, when the caller names it (the console does; the CLI takes the one waiting). */
  id?: string;
}

function waitingLock(tenant: TenantSnapshot, request: LockDecisionCheck, now: number, what: string): Refusal | PendingLock {
  const { actor } = request;
  if (!tenantAdminRole(tenant, actor)) return forbidden(actor, what);
  const pending = pendingLockOf(tenant, now);
  if (!pending) {
    const lapsed = tenant.pendingLock;
    return refuse('NOT_FOUND', lapsed ? `The lock asked for by ${lapsed.requestedBy} lapsed at ${lapsed.expiresAt} without a second administrator's approval; ask for it again (\`cmk tenant lock\`).` : 'No lock of this tenant waits for approval.');
  }
  if (request.id !== undefined && request.id !== pending.id) return refuse('NOT_FOUND', `No lock request ${request.id} waits for approval; the one waiting is ${pending.id}, asked for by ${pending.requestedBy}.`);
  return pending;
}

/**
 * `tenant lock approve`: a second global or service administrator, who types the display name; then every region
 * as a lock of it would be checked (R11, R10, R6, running operations), and its active key still the one proven.
 */
export function checkLockApproval(tenant: TenantSnapshot, request: LockDecisionCheck & { confirm: string }, now: number, policy: Policy): Refusal | null {
  const pending = waitingLock(tenant, request, now, 'approve a lock of this tenant');
  if ('code' in pending) return pending;
  if (request.actor.kind === 'user' && normaliseEmail(request.actor.email) === pending.requestedBy) {
    return refuse('FORBIDDEN', 'You asked for this lock: a second global or service administrator must approve it.');
  }
  if (request.confirm !== tenant.displayName) return tenantNameMismatch();
  for (const { region } of pending.regions) {
    const state = lockStateRefusal(tenant, region);
    if (state) return state;
  }
  for (const { region, thumbprint } of pending.regions) {
    const active = usableKeyOf(tenant.regions[region])!;
    if (active.thumbprint !== thumbprint) {
      return refuse('KEY_MISMATCH', `The active key of region ${region} changed since the lock was asked for (its proof was made with ${thumbprint}); cancel the request and ask again with the new key.`);
    }
  }
  for (const { region } of pending.regions) {
    const timing = lockTimingRefusal(tenant, region, now, policy);
    if (timing) return timing;
  }
  return null;
}

/** `tenant lock cancel`: any global or service administrator, the one who asked included. */
export function checkLockCancel(tenant: TenantSnapshot, request: LockDecisionCheck, now: number): Refusal | null {
  const pending = waitingLock(tenant, request, now, 'cancel a lock of this tenant');
  return 'code' in pending ? pending : null;
}

/** The end of an approval window opened now: when a lock asked for now lapses, and when a lowering asked for now holds. */
export const approvalWindowEndsAt = (now: number, policy: Policy): number => now + lockApprovalWindowOf(policy);
