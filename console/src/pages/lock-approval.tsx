/**
 * The two-administrator lock (issue 19) on the Lock page: the tenant's policy, with its switch, and the lock waiting
 * for a second administrator — approved here by typing the tenant's name, or cancelled. The same routes as
 * `cmk tenant policy` and `cmk tenant lock approve|cancel`.
 */
import { useState } from 'preact/hooks';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../../api/schemas';
import { call, enc } from '../api';
import { relative, when } from '../format';
import { Done, Field, Refusal, Section, useAction } from '../ui';
import type { TenantContext } from '../tenant-context';

type PendingLock = Static<typeof S.PendingLockView>;
/** As `tenant show` gives it: without the thumbprints. */
type PendingShown = Omit<PendingLock, 'regions'> & { regions: Array<{ region: string }> };
type LockPolicy = Static<typeof S.LockPolicyReport>;

/** What a lock request's answer says: locked at once, or waiting for approval. */
export function pendingText(p: PendingLock): string {
  return `The lock waits for a second administrator's approval until ${when(p.expiresAt)}; nothing is locked yet. Every administrator was mailed.`;
}

export function LockApproval({ ctx }: { ctx: TenantContext }) {
  const base = `/v1/tenants/${enc(ctx.tenant.id)}`;
  const [confirm, setConfirm] = useState('');
  const pending = ctx.tenant.pendingLock as PendingShown | null;
  const admin = ctx.can('tenant.lock');
  const setPolicy = useAction(async (lockApproval: 1 | 2) => {
    const r = await call<LockPolicy>('POST', `${base}/policy`, { lockApproval });
    ctx.refresh();
    if (r.lockApprovalFrom) return `One administrator will lock alone again from ${when(r.lockApprovalFrom.at)}; until then a lock still needs a second administrator. Every administrator was mailed.`;
    return r.lockApproval === 2 ? 'From now on a lock needs a second administrator to approve it. Every administrator was mailed.' : 'One administrator locks alone.';
  });
  const approve = useAction(async () => {
    const r = await call<Static<typeof S.LockApprovedReport>>('POST', `${base}/lock/approve`, { confirm, id: pending?.id });
    setConfirm('');
    ctx.refresh();
    return `The tenant is locked (${r.regions.length} region(s)), asked for by ${r.requestedBy}, approved by ${r.approvedBy}.`;
  });
  const cancel = useAction(async () => {
    const r = await call<Static<typeof S.LockCancelledReport>>('POST', `${base}/lock/cancel`, { id: pending?.id });
    ctx.refresh();
    return `The lock asked for by ${r.cancelled.requestedBy} is cancelled; nothing was locked.`;
  });
  const mine = pending !== null && pending.requestedBy === ctx.user.toLowerCase();
  return (
    <Section title="Two-administrator lock">
      <p>
        {ctx.tenant.lockApproval === 2
          ? 'A lock of this tenant takes two administrators: one asks for it, another approves it within the approval window.'
          : 'One global or service administrator locks this tenant alone.'}
      </p>
      {admin ? (
        <p>
          {ctx.tenant.lockApproval === 2 ? (
            <button type="button" disabled={setPolicy.busy} onClick={() => void setPolicy.go(1)}>
              Let one administrator lock
            </button>
          ) : (
            <button type="button" disabled={setPolicy.busy} onClick={() => void setPolicy.go(2)}>
              Require a second administrator
            </button>
          )}
        </p>
      ) : null}
      <Refusal error={setPolicy.error} />
      <Done text={setPolicy.done} />
      {pending ? (
        <div role="region" aria-label="Lock waiting for approval" class="warning">
          <p>
            {pending.requestedBy} asked at {when(pending.requestedAt)} to lock region(s) {pending.regions.map((r) => r.region).join(', ')}. It lapses{' '}
            {relative(pending.expiresAt)} ({when(pending.expiresAt)}) unless another administrator approves it.
          </p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void approve.go();
            }}
          >
            <Field label="Tenant name to approve" hint={`Type the tenant's name, ${ctx.tenant.name}, to approve the lock.`}>
              {(id) => <input id={id} value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} autocomplete="off" aria-describedby={`${id}-hint`} />}
            </Field>
            <button type="submit" class="danger" disabled={approve.busy || !admin || mine}>
              {approve.busy ? 'Locking…' : 'Approve lock'}
            </button>{' '}
            <button type="button" disabled={cancel.busy || !admin} onClick={() => void cancel.go()}>
              Cancel lock request
            </button>
            {mine ? <p class="why">You asked for this lock: another global or service administrator must approve it.</p> : null}
          </form>
          <Refusal error={approve.error ?? cancel.error} />
        </div>
      ) : null}
      <Done text={approve.done ?? cancel.done} />
    </Section>
  );
}
