/**
 * Rollback (R6's purpose) in the tenant workflow on the time-skipping server, over a real local vault and encrypted
 * SQLite databases: another administrator puts the replaced key back within the embargo; the rollback supersedes a
 * running re-protection; R6 restarts and R5 does not; the key rolled back leaves the vault once nothing needs it;
 * every accepted request is in the (real) audit trail, which verifies.
 */
import { join } from 'node:path';
import { AuditTrail } from '../audit/trail';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { TEST_AUDIT_KEY } from './support/codec';
import { tenantWorkflowId } from '../workflows/messages';
import { ALICE, BOB, HOUR, keyChange, OPERATOR_ACTOR, timeSkippingHarness, type TenantContext } from './support/time-skipping';

const harness = timeSkippingHarness();
const SAM = { kind: 'user', email: 'sam@example.com' } as const;
const rollback = (actor: Actor) => ({ actor, policy: DEFAULT_POLICY, region: 'emea' });

/** `count` environments on the tenant key `first` (set by alice), then bob's change to `second`. */
async function changedTwice(ctx: TenantContext, count: number) {
  const { plane, tenant, stage } = ctx;
  for (let i = 0; i < count; i++) {
    await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: `env-${i}`, region: 'emea', systemAdmin: i === 0 ? SAM.email : null });
  }
  const first = await stage();
  await plane.changeKey(tenant, { ...keyChange(ALICE, first), name: 'first' });
  for (let i = 0; i < count; i++) await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: `env-${i}`, operation: 'apply', acceptRisk: true });
  await harness.env.sleep(25 * HOUR);
  const second = await stage();
  const changed = await plane.changeKey(tenant, { ...keyChange(BOB, second), name: 'second' });
  return { first, second, changedAt: Date.parse(changed.key.activatedAt!) };
}

/** The snapshot once the key put back is installed and what followed (retiring keys, mail) has finished too. */
async function settled(ctx: TenantContext) {
  for (;;) {
    const snapshot = (await ctx.plane.snapshot(ctx.tenant))!;
    const key = snapshot.regions.emea!.keys.find((k) => k.thumbprint === snapshot.regions.emea!.activeThumbprint)!;
    if (key.state !== 'Installing') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(await harness.whenIdle(tenantWorkflowId(ctx.tenant))).toBe(true);
  return (await ctx.plane.snapshot(ctx.tenant))!;
}

test('refusals in order: FORBIDDEN for the operator, a system administrator and the maker of the change; NOT_FOUND once nothing is left to roll back', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, tenant, stage } = ctx;
    await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: SAM.email });
    await expect(plane.rollbackKey(tenant, rollback(ALICE), 'none')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await plane.changeKey(tenant, keyChange(ALICE, await stage()));
    // The first key replaced the provider key: there is no key of the tenant's to go back to.
    await expect(plane.rollbackKey(tenant, rollback(BOB), 'none')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await harness.env.sleep(25 * HOUR);
    const second = await stage();
    await plane.changeKey(tenant, keyChange(BOB, second));
    const before = await harness.acceptedUpdates(tenant);
    for (const actor of [OPERATOR_ACTOR, SAM, BOB]) await expect(plane.rollbackKey(tenant, rollback(actor), second.thumbprint)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await harness.acceptedUpdates(tenant)).toBe(before);
    // The window is the embargo: 72 h after the change, the replaced key has left the vault.
    await harness.env.sleep(72 * HOUR + 60_000);
    await expect(plane.rollbackKey(tenant, rollback(ALICE), second.thumbprint)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    const keys = (await plane.snapshot(tenant))!.regions.emea!.keys;
    expect(keys.map((k) => [k.state, k.inVault])).toEqual([['Retired', false], ['Active', true]]);
  });
});

test('a rollback supersedes the running re-protection, re-protects everything with the key put back, and the rolled-back key leaves the vault', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant } = ctx;
    const { first, second, changedAt } = await changedTwice(ctx, 120);
    const beforeRollback = (await plane.snapshot(tenant))!;
    // Sent at once: the re-protection of 120 environments to `second` is still running (batches of 50).
    const result = await plane.rollbackKey(tenant, rollback(ALICE), second.thumbprint);
    expect(result.key).toMatchObject({ name: 'first', thumbprint: first.thumbprint, activatedBy: 'alice@example.com' });
    expect(result.rolledBack).toEqual({ name: 'second', thumbprint: second.thumbprint });
    const after = await settled(ctx);
    const region = after.regions.emea!;
    expect(region.activeThumbprint).toBe(first.thumbprint);
    expect(after.environments.every((e) => e.state === 'Online' && e.keyThumbprint === first.thumbprint)).toBe(true);
    // R5 from bob's change; R6 from the rollback.
    expect(region.lastKeyChangeAt).toBe(beforeRollback.regions.emea!.lastKeyChangeAt);
    expect(Date.parse(region.embargoStartedAt!)).toBeGreaterThanOrEqual(changedAt);
    expect(region.rollbackThumbprint).toBeNull();
    // The key rolled back is needed by no record: it left the vault; the one put back is there.
    const rolledBack = region.keys.find((k) => k.thumbprint === second.thumbprint)!;
    expect([rolledBack.state, rolledBack.inVault]).toEqual(['Retired', false]);
    expect(await parts.vault.getKey(second.vaultKey)).toBeUndefined();
    expect(await parts.vault.getKey(first.vaultKey)).toBeDefined();
    // Every database still opens.
    await parts.databases.writeRow(tenant, 'env-0', 'after the rollback');
    expect((await parts.databases.readRows(tenant, 'env-119')).length).toBeGreaterThanOrEqual(0);
    // Everyone is told: the administrators and the system administrators of the environments re-protected.
    const mails = (await parts.outbox.list(tenant)).filter((m) => m.event === 'key-rolled-back');
    expect(mails.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
  });
}, 240_000);

test('a rollback restarts R6 but not R5; the next legitimate change is allowed 24 h after the change it undid', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant, stage } = ctx;
    const { second } = await changedTwice(ctx, 1);
    await harness.env.sleep(20 * HOUR);
    await plane.rollbackKey(tenant, rollback(ALICE), second.thumbprint);
    await settled(ctx);
    await harness.env.sleep(5 * HOUR);
    // 25 h after bob's change, 5 h after the rollback: R5 allows a change.
    const third = await plane.changeKey(tenant, { ...keyChange(BOB, await stage()), name: 'third' });
    expect(third.key.name).toBe('third');
    // The trail holds every accepted request of the story, and verifies.
    const trail = new AuditTrail(join(parts.config.dataDir, 'audit'), TEST_AUDIT_KEY);
    const actions = trail.list({ tenant }).map((r) => `${r.actor} ${r.action} ${r.outcome}`);
    expect(actions).toEqual([
      'operator tenant.create completed',
      'operator env.create completed',
      'alice@example.com key.generate completed',
      'alice@example.com env.apply completed',
      'bob@example.com key.generate completed',
      'alice@example.com key.rollback completed',
      'bob@example.com key.generate completed',
    ]);
    expect(trail.verify()).toMatchObject({ ok: true, records: 7 });
  });
}, 240_000);
