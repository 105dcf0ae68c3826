/**
 * The two-administrator lock's rules (domain/lock-approval.ts), pure: how many administrators a lock takes while a
 * lowering waits, who may approve or cancel, what an approval checks again, in DESIGN.md §4's order.
 */
import type { Actor } from '../domain/access';
import { checkLockApproval, checkLockApprovalChange, checkLockCancel, checkLockRequest, checkLockWithoutApproval, lockApprovalReport, lockApprovalsRequired, pendingLockOf } from '../domain/lock-approval';
import { emptyRegion, type PendingLock, type TenantSnapshot } from '../domain/model';
import { DEFAULT_POLICY } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-06-01T00:00:00.000Z');
const NOW = T0 + 100 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
const ALICE: Actor = { kind: 'user', email: 'alice@contoso.example' };
const BOB: Actor = { kind: 'user', email: 'Bob@Contoso.example' };
const SAM: Actor = { kind: 'user', email: 'sam@contoso.example' };
const K = 'c'.repeat(64);

function contoso(changes: (t: TenantSnapshot) => void = () => {}): TenantSnapshot {
  const tenant: TenantSnapshot = {
    tenant: 'contoso',
    displayName: 'Contoso Ltd',
    homeRegion: 'default',
    createdAt: iso(T0),
    admins: [
      { email: 'alice@contoso.example', role: 'global' },
      { email: 'bob@contoso.example', role: 'service' },
    ],
    environments: [{ id: 'prod', region: 'default', state: 'Online', protection: 'tenant', keyThumbprint: K, systemAdmin: 'sam@contoso.example', createdAt: iso(T0) }],
    regions: {
      default: {
        ...emptyRegion('default'),
        keys: [{ name: 'k', thumbprint: K, vaultKey: { name: 'v', version: '1' }, state: 'Active', source: 'generated', createdAt: iso(T0), createdBy: 'alice@contoso.example', activatedAt: iso(T0), activatedBy: 'alice@contoso.example', retiredAt: null, inVault: true }],
        activeThumbprint: K,
        lastKeyChangeAt: iso(T0),
        embargoStartedAt: iso(T0),
      },
    },
    operations: {},
    lockApproval: { required: 2, setBy: 'alice@contoso.example', setAt: iso(T0) },
  };
  changes(tenant);
  return tenant;
}

const pending = (overrides: Partial<PendingLock> = {}): PendingLock => ({
  id: 'req-1',
  requestedBy: 'alice@contoso.example',
  requestedAt: iso(NOW - HOUR),
  expiresAt: iso(NOW + HOUR),
  allRegions: false,
  regions: [{ region: 'default', thumbprint: K }],
  ...overrides,
});
const proof = (user: string): PossessionProof => ({ challengeId: 'c-1', tenant: 'contoso', region: 'default', user, operation: 'lock', expiresAt: iso(NOW + 60_000), verifiedThumbprint: K });
const code = (r: { code: string } | null) => r?.code ?? null;

test('how many administrators a lock takes: absent 1; 2 at once; a lowering holds only from its date', () => {
  expect(lockApprovalsRequired({}, NOW)).toBe(1);
  expect(lockApprovalsRequired(contoso(), NOW)).toBe(2);
  const lowering = contoso((t) => (t.lockApproval = { required: 1, setBy: 'bob@contoso.example', setAt: iso(NOW), effectiveAt: iso(NOW + 24 * HOUR) }));
  expect(lockApprovalsRequired(lowering, NOW + 24 * HOUR - 1)).toBe(2);
  expect(lockApprovalsRequired(lowering, NOW + 24 * HOUR)).toBe(1);
  expect(lockApprovalReport(lowering, NOW)).toMatchObject({ lockApproval: 2, lockApprovalFrom: { value: 1, at: iso(NOW + 24 * HOUR) }, pendingLock: null });
  expect(lockApprovalReport(lowering, NOW + 25 * HOUR).lockApprovalFrom).toBeUndefined();
});

test('a pending lock is pending until its expiry, not after', () => {
  const t = contoso((x) => (x.pendingLock = pending()));
  expect(pendingLockOf(t, NOW)?.id).toBe('req-1');
  expect(pendingLockOf(t, NOW + HOUR)).toBeNull();
});

test('changing the policy: a global or service administrator; 1 or 2; two need a second administrator', () => {
  expect(code(checkLockApprovalChange(contoso(), { actor: BOB, lockApproval: 1 }))).toBeNull();
  expect(code(checkLockApprovalChange(contoso(), { actor: SAM, lockApproval: 1 }))).toBe('FORBIDDEN');
  expect(code(checkLockApprovalChange(contoso(), { actor: { kind: 'operator' }, lockApproval: 2 }))).toBe('FORBIDDEN');
  expect(code(checkLockApprovalChange(contoso(), { actor: ALICE, lockApproval: 3 }))).toBe('INVALID_ARGUMENT');
  const alone = contoso((t) => (t.admins = [t.admins[0]!]));
  expect(code(checkLockApprovalChange(alone, { actor: ALICE, lockApproval: 2 }))).toBe('INVALID_ARGUMENT');
});

test('a direct lock is refused under the policy; a request is refused without it, or while another waits', () => {
  expect(code(checkLockWithoutApproval(contoso(), NOW))).toBe('FORBIDDEN');
  expect(code(checkLockWithoutApproval(contoso((t) => delete t.lockApproval), NOW))).toBeNull();
  const request = { actor: ALICE, confirm: 'Contoso Ltd', allRegions: false, locks: [{ region: 'default', proof: proof('alice@contoso.example') }] };
  expect(code(checkLockRequest(contoso(), request, NOW, DEFAULT_POLICY))).toBeNull();
  expect(code(checkLockRequest(contoso((t) => delete t.lockApproval), request, NOW, DEFAULT_POLICY))).toBe('INVALID_ARGUMENT');
  expect(code(checkLockRequest(contoso((t) => (t.pendingLock = pending())), request, NOW, DEFAULT_POLICY))).toBe('OPERATION_IN_PROGRESS');
  // The lock's own rules first: a wrong name is TENANT_NAME_MISMATCH whatever waits.
  expect(code(checkLockRequest(contoso((t) => (t.pendingLock = pending())), { ...request, confirm: 'contoso' }, NOW, DEFAULT_POLICY))).toBe('TENANT_NAME_MISMATCH');
});

test('an approval: another global or service administrator, the name, then the lock rules again and the same key', () => {
  const t = contoso((x) => (x.pendingLock = pending()));
  const approve = (actor: Actor, overrides: { confirm?: string; id?: string } = {}, tenant = t, now = NOW) => code(checkLockApproval(tenant, { actor, confirm: 'Contoso Ltd', ...overrides }, now, DEFAULT_POLICY));
  expect(approve(BOB)).toBeNull();
  expect(approve(ALICE)).toBe('FORBIDDEN');
  expect(approve({ kind: 'user', email: 'ALICE@contoso.example' })).toBe('FORBIDDEN');
  expect(approve(SAM)).toBe('FORBIDDEN');
  expect(approve(BOB, { confirm: 'contoso ltd' })).toBe('TENANT_NAME_MISMATCH');
  expect(approve(BOB, { id: 'other' })).toBe('NOT_FOUND');
  expect(approve(BOB, {}, t, NOW + HOUR)).toBe('NOT_FOUND');
  expect(approve(BOB, {}, contoso())).toBe('NOT_FOUND');
  // The key changed since: KEY_MISMATCH; the embargo of that change: after it, LOCK_EMBARGO.
  expect(approve(BOB, {}, contoso((x) => (x.pendingLock = pending({ regions: [{ region: 'default', thumbprint: 'd'.repeat(64) }] }))))).toBe('KEY_MISMATCH');
  expect(approve(BOB, {}, contoso((x) => {
    x.pendingLock = pending();
    x.regions.default!.embargoStartedAt = iso(NOW - HOUR);
  }))).toBe('LOCK_EMBARGO');
  expect(approve(BOB, {}, contoso((x) => {
    x.pendingLock = pending();
    x.operations.default = 'a key change';
  }))).toBe('OPERATION_IN_PROGRESS');
  expect(approve(BOB, {}, contoso((x) => {
    x.pendingLock = pending();
    x.environments[0]!.state = 'Locked';
  }))).toBe('LOCKED_ENVIRONMENTS_EXIST');
});

test('a cancellation: any global or service administrator, the one who asked included; something must wait', () => {
  const t = contoso((x) => (x.pendingLock = pending()));
  expect(code(checkLockCancel(t, { actor: ALICE }, NOW))).toBeNull();
  expect(code(checkLockCancel(t, { actor: BOB, id: 'req-1' }, NOW))).toBeNull();
  expect(code(checkLockCancel(t, { actor: SAM }, NOW))).toBe('FORBIDDEN');
  expect(code(checkLockCancel(t, { actor: BOB, id: 'nope' }, NOW))).toBe('NOT_FOUND');
  expect(code(checkLockCancel(contoso(), { actor: BOB }, NOW))).toBe('NOT_FOUND');
});
