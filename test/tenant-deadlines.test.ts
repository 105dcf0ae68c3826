/**
 * The tenant workflow's deadlines (workflows/tenant/deadlines.ts), outside any workflow: what the main loop's timer
 * waits for (R6, R9, and with the deadline patch R5 and the lock embargo), what its summary says, and the deadline
 * search attributes.
 */
import { deadlineAttributes, deadlineSummary, labelledDeadlines, nextDeadline } from '../workflows/tenant/deadlines';
import { emptyRegion, type EnvironmentRecord, type TenantSnapshot } from '../domain/model';
import { DEFAULT_POLICY } from '../domain/policy';

const HOUR = 3_600_000;
const now = Date.parse('2026-12-01T00:00:00.000Z');
const at = (ms: number): string => new Date(ms).toISOString();

function lockedEnvironment(id: string, deleteAt: number, warnAt: number[], warningsSent: number): EnvironmentRecord {
  return {
    id,
    region: 'eu',
    state: 'Locked',
    protection: 'tenant',
    keyThumbprint: 'a'.repeat(64),
    systemAdmin: null,
    createdAt: at(now - 100 * HOUR),
    lock: { lockedAt: at(now - 10 * HOUR), lockedBy: 'alice@example.com', sealed: true, deleteAt: at(deleteAt), warnAt: warnAt.map(at), warningsSent },
  };
}

/** A key changed an hour ago in `eu` (R5 24 h, R6 72 h), its rollback window ending with the embargo. */
function tenantWith(environments: EnvironmentRecord[]): TenantSnapshot {
  const eu = { ...emptyRegion('eu'), lastKeyChangeAt: at(now - HOUR), embargoStartedAt: at(now - HOUR), rollbackUntil: at(now + 71 * HOUR), rollbackThumbprint: 'b'.repeat(64) };
  return { tenant: 'contoso', displayName: 'Contoso', homeRegion: 'eu', createdAt: at(now - 200 * HOUR), admins: [], environments, regions: { eu }, operations: {} };
}

test('the timer waits for the next of a rollback window, a deletion warning, a deletion and its retry', () => {
  const warned = lockedEnvironment('warned', now + 2 * HOUR, [now + HOUR], 1);
  const pending = lockedEnvironment('pending', now + 50 * HOUR, [now + 5 * HOUR], 0);
  const retried = lockedEnvironment('retried', now - HOUR, [], 0);
  retried.lock!.deletionFailure = { at: at(now - HOUR), code: 'INTERNAL', message: 'refused', retryAt: at(now + 3 * HOUR) };
  const deadlines = labelledDeadlines(tenantWith([warned, pending, retried]), DEFAULT_POLICY, false, now);
  expect(deadlines).toEqual([
    { at: now + 71 * HOUR, what: 'R6 rollback window ends (eu)' },
    { at: now + 2 * HOUR, what: 'R9 deletion of env warned' },
    { at: now + 5 * HOUR, what: 'R9 deletion warning for env pending' },
    { at: now + 3 * HOUR, what: 'R9 deletion of env retried (retry)' },
  ]);
  expect(nextDeadline(deadlines)).toBe(now + 2 * HOUR);
  expect(nextDeadline([])).toBeNull();
});

test('with the deadline patch the timer also wakes when R5 and the lock embargo end, only while they lie ahead', () => {
  const tenant = tenantWith([]);
  expect(labelledDeadlines(tenant, DEFAULT_POLICY, true, now).map((d) => d.what)).toEqual(['R6 rollback window ends (eu)', 'R6 lock embargo ends (eu)', 'R5 key change allowed again (eu)']);
  // A day later the key-change interval is over; the embargo and the window are not.
  expect(labelledDeadlines(tenant, DEFAULT_POLICY, true, now + 24 * HOUR).map((d) => d.what)).toEqual(['R6 rollback window ends (eu)', 'R6 lock embargo ends (eu)']);
});

test('a timer summary names what falls due at its moment, at most three', () => {
  const due = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ at: now, what: `R9 deletion of env ${id}` }));
  expect(deadlineSummary([...due.slice(0, 2), { at: now + 1, what: 'later' }], now)).toBe('R9 deletion of env a; R9 deletion of env b');
  expect(deadlineSummary(due, now)).toBe('R9 deletion of env a; R9 deletion of env b; R9 deletion of env c; and 2 more');
});

test('deadline search attributes: set while ahead, a deletion also once overdue, else unset', () => {
  const overdue = lockedEnvironment('overdue', now - HOUR, [], 2);
  const values = (t: number) => deadlineAttributes(tenantWith([overdue]), DEFAULT_POLICY, t).map((a) => a.value);
  expect(values(now)).toEqual([new Date(now - HOUR), new Date(now + 71 * HOUR), new Date(now + 23 * HOUR), at(now + 71 * HOUR)]);
  expect(values(now + 100 * HOUR)).toEqual([new Date(now - HOUR), null, null, null]);
});
