/**
 * The tenant's deadlines (R5, R6, R9), computed from its state: what the main loop's durable timer waits for, what the
 * timer's summary says, and the deadline search attributes. Pure: the caller passes the workflow clock.
 */
import { SEARCH_ATTRIBUTES } from '../messages';
import type { TenantSnapshot } from '../../domain/model';
import type { Policy } from '../../domain/policy';
import { lockAllowedAt, nextKeyChangeAllowedAt } from '../../domain/rules';

const iso = (ms: number): string => new Date(ms).toISOString();
const latest = (values: Array<number | null>): number | null => values.reduce<number | null>((a, b) => (b === null ? a : a === null ? b : Math.max(a, b)), null);

/** R5, R6, R9 deadlines as search attributes: set while they lie ahead (a deletion also once overdue), else unset. */
export function deadlineAttributes(tenant: TenantSnapshot, policy: Policy, now: number) {
  const regions = Object.values(tenant.regions);
  const ahead = (at: number | null) => (at !== null && at > now ? at : null);
  const deletions = tenant.environments.flatMap((e) => (e.state === 'Locked' && e.lock ? [Date.parse(e.lock.deleteAt)] : []));
  const nextDeletion = deletions.length ? Math.min(...deletions) : null;
  const embargo = latest(regions.map((r) => ahead(lockAllowedAt(r, policy))));
  const keyChange = latest(regions.map((r) => ahead(nextKeyChangeAllowedAt(r, policy))));
  const rollback = latest(regions.map((r) => ahead(r.rollbackUntil ? Date.parse(r.rollbackUntil) : null)));
  return [
    { key: SEARCH_ATTRIBUTES.nextDeletionAt, value: nextDeletion === null ? null : new Date(nextDeletion) },
    { key: SEARCH_ATTRIBUTES.lockEmbargoEndsAt, value: embargo === null ? null : new Date(embargo) },
    { key: SEARCH_ATTRIBUTES.keyChangeAllowedAt, value: keyChange === null ? null : new Date(keyChange) },
    { key: SEARCH_ATTRIBUTES.rollbackUntil, value: rollback === null ? null : iso(rollback) },
  ];
}

/**
 * Every deadline the workflow waits for, named by its rule (the timer's summary in the Temporal UI): the end of a
 * rollback window (R6), a deletion warning or a deletion (R9); with `publishesDeadlines`, also the end of an embargo
 * or a key-change interval (only to unset their search attributes). An unlock removes its environment's deadlines.
 */
export function labelledDeadlines(tenant: TenantSnapshot, policy: Policy, publishesDeadlines: boolean, now: number): Array<{ at: number; what: string }> {
  const deadlines = Object.values(tenant.regions).flatMap((r) => (r.rollbackUntil ? [{ at: Date.parse(r.rollbackUntil), what: `R6 rollback window ends (${r.region})` }] : []));
  for (const env of tenant.environments) {
    const lock = env.state === 'Locked' ? env.lock : undefined;
    if (!lock) continue;
    const warning = lock.warnAt[lock.warningsSent];
    const what = warning ? `R9 deletion warning for env ${env.id}` : lock.deletionFailure ? `R9 deletion of env ${env.id} (retry)` : `R9 deletion of env ${env.id}`;
    deadlines.push({ at: Date.parse(warning ?? lock.deletionFailure?.retryAt ?? lock.deleteAt), what });
  }
  // A lock waiting for a second administrator lapses at the end of its window (issue 19).
  if (tenant.pendingLock) deadlines.push({ at: Date.parse(tenant.pendingLock.expiresAt), what: 'lock request lapses unless approved' });
  if (publishesDeadlines) {
    // Only to unset their search attributes: nothing else happens when an embargo or an interval ends.
    for (const r of Object.values(tenant.regions)) {
      const embargo = lockAllowedAt(r, policy);
      if (embargo !== null && embargo > now) deadlines.push({ at: embargo, what: `R6 lock embargo ends (${r.region})` });
      const change = nextKeyChangeAllowedAt(r, policy);
      if (change !== null && change > now) deadlines.push({ at: change, what: `R5 key change allowed again (${r.region})` });
    }
  }
  return deadlines;
}

/** The next durable timer's moment, or null when nothing is due. */
export function nextDeadline(deadlines: Array<{ at: number }>): number | null {
  return deadlines.length ? Math.min(...deadlines.map((d) => d.at)) : null;
}

/** The timer's summary: what falls due at that moment, at most three named. */
export function deadlineSummary(deadlines: Array<{ at: number; what: string }>, at: number): string {
  const what = [...new Set(deadlines.filter((d) => d.at === at).map((d) => d.what))];
  return (what.length > 3 ? [...what.slice(0, 3), `and ${what.length - 3} more`] : what).join('; ');
}
