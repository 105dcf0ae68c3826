/**
 * `checkAdminChange` (domain/rules.ts) on its own: R6's purpose — other administrators see a key change and can
 * roll it back — holds only if no one can remove them first, so removal waits for every open rollback window.
 */
import type { Actor } from '../domain/access';
import { emptyRegion, type TenantSnapshot } from '../domain/model';
import { checkAdminChange } from '../domain/rules';

const ALICE: Actor = { kind: 'user', email: 'alice@example.com' };
const NOW = Date.parse('2026-03-01T12:00:00Z');

function tenantWith(rollbackUntil: Record<string, string | null>): TenantSnapshot {
  return {
    tenant: 'contoso',
    displayName: 'Contoso',
    homeRegion: 'emea',
    createdAt: '2026-01-01T00:00:00Z',
    admins: [
      { email: 'alice@example.com', role: 'global' },
      { email: 'bob@example.com', role: 'service' },
    ],
    environments: [],
    regions: Object.fromEntries(Object.entries(rollbackUntil).map(([region, until]) => [region, { ...emptyRegion(region), rollbackUntil: until }])),
    operations: {},
  } as TenantSnapshot;
}

const remove = (email: string) => ({ actor: ALICE, change: 'remove' as const, email, role: null });

test('removing a global or service administrator while any region can still roll back is ROLLBACK_WINDOW_OPEN, saying until when', () => {
  const tenant = tenantWith({ emea: '2026-03-02T00:00:00.000Z', us: '2026-03-03T00:00:00.000Z', apac: null });
  const refusal = checkAdminChange(tenant, remove('bob@example.com'), NOW);
  expect(refusal?.code).toBe('ROLLBACK_WINDOW_OPEN');
  expect(refusal?.message).toContain('2026-03-03T00:00:00.000Z');
  expect(checkAdminChange(tenant, remove('alice@example.com'), NOW)?.code).toBe('ROLLBACK_WINDOW_OPEN');
  // Adding is never held back, and the earlier checks still answer first.
  expect(checkAdminChange(tenant, { actor: ALICE, change: 'add', email: 'carol@example.com', role: 'global' }, NOW)).toBeNull();
  expect(checkAdminChange(tenant, remove('nobody@example.com'), NOW)?.code).toBe('NOT_FOUND');
  expect(checkAdminChange(tenant, remove('mallory@example.com'), NOW)?.code).toBe('NOT_FOUND');
  expect(checkAdminChange(tenant, { ...remove('bob@example.com'), actor: { kind: 'user', email: 'mallory@example.com' } }, NOW)?.code).toBe('FORBIDDEN');
});

test('a window that has passed, or none, does not hold a removal back', () => {
  expect(checkAdminChange(tenantWith({ emea: '2026-03-01T12:00:00.000Z' }), remove('bob@example.com'), NOW)).toBeNull();
  expect(checkAdminChange(tenantWith({ emea: null }), remove('bob@example.com'), NOW)).toBeNull();
  expect(checkAdminChange(tenantWith({}), remove('bob@example.com'), NOW)).toBeNull();
});

test('a refusal never repeats the caller\'s text', () => {
  const refusal = checkAdminChange(tenantWith({}), { actor: ALICE, change: 'add', email: '-----BEGIN RSA PRIVATE KEY-----', role: 'global' }, NOW);
  expect(refusal?.code).toBe('INVALID_ARGUMENT');
  expect(refusal?.message).not.toMatch(/BEGIN/);
});
