/**
 * Lock (R8), re-activation and unlock (R10, R15), R11, and the deletion of what stays locked (R9) in the tenant
 * workflow, on the time-skipping server: the real 72 h, 1 h and 28 days pass in seconds, over a real local vault,
 * encrypted SQLite databases and the outbox. The API service's signature check is exercised end to end in
 * test/lock-e2e.test.ts; here the workflow gets the proof as the API service hands it over.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';
import { ALICE, BOB, HOUR, keyChange, OPERATOR_ACTOR, tenantWithProdOnItsKey, timeSkippingHarness, type TenantContext } from './support/time-skipping';

const harness = timeSkippingHarness();
const DAY = 24 * HOUR;
const SAM: Actor = { kind: 'user', email: 'sam@example.com' };

/** The proof the API service passes on after verifying a signature (verifiedThumbprint null: it did not verify). */
function proof(tenant: string, verifiedThumbprint: string | null, overrides: Partial<PossessionProof> = {}): PossessionProof {
  return { challengeId: randomUUID(), tenant, region: 'emea', user: 'alice@example.com', operation: 'lock', expiresAt: new Date(Date.now() + 400 * DAY).toISOString(), verifiedThumbprint, ...overrides };
}

/** A lock request as the API service sends it: the proof, and the challenge and signature it was made of. */
const lockRequest = async (ctx: TenantContext, p: PossessionProof, actor: Actor = ALICE, confirm = 'Contoso Ltd') => ({ actor, policy: DEFAULT_POLICY, region: 'emea', confirm, proof: p, possession: await ctx.possession(p) });

/** prod (system administrator sam) on the tenant key with rows, dev on the provider key; the embargo over. */
async function lockableTenant(ctx: TenantContext) {
  const { parts, tenant } = ctx;
  const { privateKey, staged } = await tenantWithProdOnItsKey(ctx);
  for (const text of ['before the lock', 'second row']) await parts.databases.writeRow(tenant, 'prod', text);
  await parts.databases.writeRow(tenant, 'dev', 'dev row');
  return { privateKey, staged };
}

test('R8: refusals come in the order of DESIGN.md §4 and change nothing; the lock seals, withdraws every key version and mails', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant } = ctx;
    const { staged } = await lockableTenant(ctx);
    const rowsBefore = await parts.databases.readRows(tenant, 'prod');
    const good = () => proof(tenant, staged.thumbprint);
    const refusals: Array<[string, ReturnType<typeof lockRequest>]> = [
      ['FORBIDDEN', lockRequest(ctx, good(), OPERATOR_ACTOR)],
      ['FORBIDDEN', lockRequest(ctx, proof(tenant, staged.thumbprint, { user: 'sam@example.com' }), SAM)],
      ['TENANT_NAME_MISMATCH', lockRequest(ctx, good(), ALICE, 'contoso ltd')],
      ['KEY_MISMATCH', lockRequest(ctx, proof(tenant, null))],
      ['KEY_MISMATCH', lockRequest(ctx, proof(tenant, 'ab'.repeat(32)))],
      ['KEY_MISMATCH', lockRequest(ctx, proof(tenant, staged.thumbprint, { user: 'bob@example.com' }))],
      ['KEY_MISMATCH', lockRequest(ctx, proof(tenant, staged.thumbprint, { region: 'apac' }))],
      ['KEY_MISMATCH', lockRequest(ctx, proof(tenant, staged.thumbprint, { expiresAt: new Date(Date.now() - 1000).toISOString() }))],
      // R6: a good request inside the 72-hour embargo after the key change.
      ['LOCK_EMBARGO', lockRequest(ctx, good())],
    ];
    const before = await harness.acceptedUpdates(tenant);
    for (const [code, request] of refusals) await expect(plane.lockTenant(tenant, await request)).rejects.toMatchObject({ code });
    expect(await harness.acceptedUpdates(tenant)).toBe(before);
    expect((await plane.snapshot(tenant))!.environments.map((e) => e.state)).toEqual(['Online', 'Online']);

    await harness.env.sleep(72 * HOUR - 60_000);
    await expect(plane.lockTenant(tenant, await lockRequest(ctx, good()))).rejects.toMatchObject({ code: 'LOCK_EMBARGO' });
    await harness.env.sleep(61_000);
    // The proof says it verified, but the signature is another key's, or missing: the activity that checks it again
    // against the vault refuses before anything is locked (even if a forged request had passed the validator).
    const claimed = good();
    const anotherKeys = { ...(await lockRequest(ctx, claimed)), possession: await ctx.possession({ ...claimed, verifiedThumbprint: null }) };
    await expect(plane.lockTenant(tenant, anotherKeys)).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    await expect(plane.lockTenant(tenant, { ...(await lockRequest(ctx, good())), possession: undefined })).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    expect((await plane.snapshot(tenant))!.environments.map((e) => e.state)).toEqual(['Online', 'Online']);
    expect((await plane.snapshot(tenant))!.regions.emea!.keys[0]).toMatchObject({ state: 'Active', inVault: true });
    expect(await parts.databases.readRows(tenant, 'prod')).toEqual(rowsBefore);
    const spent = good();
    const result = await plane.lockTenant(tenant, await lockRequest(ctx, spent));
    expect(result).toMatchObject({ sealed: ['prod'], lockedByDecisionOnly: ['dev'], withdrawnKeys: [staged.thumbprint] });
    expect(Date.parse(result.unlockAllowedAt) - Date.parse(result.lockedAt)).toBe(HOUR);
    expect(Date.parse(result.deleteAt) - Date.parse(result.lockedAt)).toBe(28 * DAY);

    const snapshot = (await plane.snapshot(tenant))!;
    expect(snapshot.environments.map((e) => [e.id, e.state, e.lock?.sealed])).toEqual([['prod', 'Locked', true], ['dev', 'Locked', false]]);
    expect(snapshot.regions.emea!.keys[0]).toMatchObject({ state: 'Locked', inVault: false });
    expect(await parts.vault.getKey(staged.vaultKey)).toBeUndefined();
    for (const env of ['prod', 'dev']) {
      expect(await parts.databases.offlineMark(tenant, env)).toEqual({ lockedAt: result.lockedAt, deleteAt: result.deleteAt });
      await expect(parts.databases.readRows(tenant, env)).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    }
    const locked = (await parts.outbox.list(tenant)).filter((m) => m.event === 'tenant-locked');
    expect(locked.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);

    // No key the service still holds — the provider key included — unwraps any DEK of the sealed key record.
    const record = JSON.parse(readFileSync(join(parts.config.dataDir, 'environments', tenant, 'prod', 'key-record.json'), 'utf8')) as Record<string, unknown>;
    const wrapped = JSON.stringify(record).match(/"wrappedDek":"([A-Za-z0-9+/=]+)"/g)!.map((m) => Buffer.from(m.split('"')[3]!, 'base64'));
    expect(wrapped.length).toBeGreaterThan(0);
    const held = [...(await parts.vault.listVersions('provider-emea')), ...(await parts.vault.listVersions(`tenant-${tenant}-emea`))];
    expect(held.length).toBeGreaterThan(0);
    for (const key of held) for (const dek of wrapped) await expect(parts.vault.unwrapKey(key, dek)).rejects.toThrow();

    // While locked: a second lock (R11's sibling), a key change (R11), apply and data all refuse.
    await expect(plane.lockTenant(tenant, await lockRequest(ctx, good()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
    await expect(plane.changeKey(tenant, keyChange(ALICE, await ctx.stage()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
    await expect(plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'dev', operation: 'apply', acceptRisk: true })).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    await expect(plane.environmentBackup(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'backup', backupId: null })).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    expect(rowsBefore).toHaveLength(2);
  });
});

test('R10, R15, R11: unlock needs the same key re-activated and an hour; each environment comes back with its rows and protection', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant, stage } = ctx;
    const { privateKey, staged } = await lockableTenant(ctx);
    const rows = await parts.databases.readRows(tenant, 'prod');
    await harness.env.sleep(73 * HOUR);
    const spent = proof(tenant, staged.thumbprint);
    await plane.lockTenant(tenant, await lockRequest(ctx, spent));
    const nextChangeBefore = (await plane.snapshot(tenant))!.regions.emea!.lastKeyChangeAt;

    const unlock = (env: string, actor: Actor = ALICE) => plane.unlockEnvironment(tenant, { actor, policy: DEFAULT_POLICY, env });
    await expect(unlock('prod')).rejects.toMatchObject({ code: 'KEY_NOT_ACTIVE' });
    await expect(unlock('dev')).rejects.toMatchObject({ code: 'KEY_NOT_ACTIVE' });
    const reactivate = (s: typeof staged, actor: Actor = ALICE) => plane.reactivateKey(tenant, { actor, policy: DEFAULT_POLICY, region: 'emea', staged: s });
    await expect(reactivate(await stage())).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    await expect(reactivate(await stage(privateKey), SAM)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const again = await stage(privateKey);
    expect(again.thumbprint).toBe(staged.thumbprint);
    const reactivated = await reactivate(again, BOB);
    expect(reactivated.key).toMatchObject({ state: 'Active', thumbprint: staged.thumbprint, inVault: true, vaultKey: again.vaultKey });
    await expect(reactivate(await stage(privateKey))).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    // R11: still locked environments — no new key, re-activation excepted.
    await expect(plane.changeKey(tenant, keyChange(ALICE, await stage()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });

    await expect(unlock('prod', SAM)).rejects.toMatchObject({ code: 'UNLOCK_TOO_SOON' });
    await harness.env.sleep(HOUR - 60_000);
    await expect(unlock('prod', SAM)).rejects.toMatchObject({ code: 'UNLOCK_TOO_SOON' });
    await harness.env.sleep(61_000);
    await expect(unlock('prod', { kind: 'user', email: 'mallory@example.com' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    // The system administrator unlocks their own environment; it keeps the tenant key and every row.
    const prod = await unlock('prod', SAM);
    expect(prod).toMatchObject({ state: 'Online', protection: 'tenant', keyThumbprint: staged.thumbprint });
    expect(prod.lock).toBeUndefined();
    expect(await parts.databases.readRows(tenant, 'prod')).toEqual(rows);
    await expect(unlock('prod')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    // Still one locked: R11 holds until the last one is unlocked.
    await expect(plane.changeKey(tenant, keyChange(ALICE, await stage()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
    const dev = await unlock('dev');
    expect(dev).toMatchObject({ state: 'Online', protection: 'provider' });
    expect((await parts.databases.readRows(tenant, 'dev')).map((r) => r.text)).toEqual(['dev row']);

    // Re-activation restarted neither R5 nor R6; the spent challenge cannot lock again.
    const region = (await plane.snapshot(tenant))!.regions.emea!;
    expect(region.lastKeyChangeAt).toBe(nextChangeBefore);
    await expect(plane.lockTenant(tenant, await lockRequest(ctx, spent))).rejects.toMatchObject({ code: 'KEY_MISMATCH', message: expect.stringMatching(/already used/) });
    const events = (await parts.outbox.list(tenant)).map((m) => `${m.event}:${m.to}`);
    expect(events).toEqual(expect.arrayContaining(['key-reactivated:alice@example.com', 'key-reactivated:bob@example.com', 'environment-unlocked:sam@example.com', 'environment-unlocked:alice@example.com']));
    // sam administers prod only: dev's unlock is not mailed to them.
    expect(events.filter((e) => e === 'environment-unlocked:sam@example.com')).toHaveLength(1);
  });
});

test('R9: warnings 7 days and 1 day before, deletion with backups after 28 days; an unlock cancels both', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant, stage } = ctx;
    const { privateKey, staged } = await lockableTenant(ctx);
    const backup = await plane.environmentBackup(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'backup', backupId: null });
    expect(backup.backup.id).toMatch(/^b-/);
    await harness.env.sleep(73 * HOUR);
    await plane.lockTenant(tenant, await lockRequest(ctx, proof(tenant, staged.thumbprint)));
    const mails = async (event: string) => (await parts.outbox.list(tenant)).filter((m) => m.event === event);

    await harness.env.sleep(21 * DAY - 60_000);
    expect(await mails('deletion-warning')).toHaveLength(0);
    await harness.env.sleep(120_000);
    const first = await mails('deletion-warning');
    expect(first.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);

    // dev comes back on day 22: its timers are cancelled.
    await plane.reactivateKey(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', staged: await stage(privateKey) });
    await harness.env.sleep(DAY);
    await plane.unlockEnvironment(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'dev' });

    await harness.env.sleep(5 * DAY);
    const second = (await mails('deletion-warning')).filter((m) => !first.some((f) => f.id === m.id));
    expect(second.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
    // The second warning names prod only: dev's timers went with its unlock.
    expect(first[0]!.body).toMatch(/: prod, dev\./);
    expect(second.every((m) => /: prod\./.test(m.body))).toBe(true);
    expect(await mails('environment-deleted')).toHaveLength(0);

    await harness.env.sleep(DAY);
    const snapshot = (await plane.snapshot(tenant))!;
    expect(snapshot.environments.map((e) => [e.id, e.state])).toEqual([['prod', 'Deleted'], ['dev', 'Online']]);
    expect(snapshot.environments[0]!.deletedAt).toBeDefined();
    // Crypto-shredding: the database, its key record and its backup are gone.
    expect(existsSync(join(parts.config.dataDir, 'environments', tenant, 'prod'))).toBe(false);
    expect(await parts.databases.listBackups(tenant, 'prod')).toEqual([]);
    const deleted = await mails('environment-deleted');
    expect(deleted.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
    expect((await parts.databases.readRows(tenant, 'dev')).map((r) => r.text)).toEqual(['dev row']);
    // A deleted environment is not found; nothing is locked any more, so a new key may be set.
    await expect(plane.unlockEnvironment(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await plane.changeKey(tenant, keyChange(ALICE, await stage()))).key.state).toBe('Active');
  });
});

test('backup and restore go through the workflow: rows come back through a rekey; bad requests change nothing', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant } = ctx;
    await lockableTenant(ctx);
    const request = (operation: 'backup' | 'restore', backupId: string | null = null, actor: Actor = SAM, env = 'prod') => ({ actor, policy: DEFAULT_POLICY, env, operation, backupId });
    const taken = await plane.environmentBackup(tenant, request('backup'));
    const generation = () => (JSON.parse(readFileSync(join(parts.config.dataDir, 'environments', tenant, 'prod', 'key-record.json'), 'utf8')) as { generation: number }).generation;
    const generationAtBackup = generation();
    const rows = await parts.databases.readRows(tenant, 'prod');
    await parts.databases.writeRow(tenant, 'prod', 'after the backup');
    await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' });

    const before = await harness.acceptedUpdates(tenant);
    await expect(plane.environmentBackup(tenant, request('backup', null, SAM, 'dev'))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(plane.environmentBackup(tenant, request('restore', 'Not An Id'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(plane.environmentBackup(tenant, request('backup', 'b-1'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(plane.environmentBackup(tenant, request('restore', null, SAM, 'nope'))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(plane.environmentBackup(tenant, request('restore', null, ALICE, 'nope'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await harness.acceptedUpdates(tenant)).toBe(before);
    // An unknown backup is refused by the engine, after acceptance: the database is untouched.
    await expect(plane.environmentBackup(tenant, request('restore', 'b-20000101000000000-abcd'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await parts.databases.readRows(tenant, 'prod')).toHaveLength(rows.length + 1);

    const restored = await plane.environmentBackup(tenant, request('restore', taken.backup.id));
    expect(restored.backup.id).toBe(taken.backup.id);
    expect(await parts.databases.readRows(tenant, 'prod')).toEqual(rows);
    // prod is on the tenant key: the restored database got a new DEK at once (the backup's DEK stays for the backup).
    expect(generation()).toBeGreaterThan(generationAtBackup + 1);
    expect(restored.environment).toMatchObject({ protection: 'tenant', state: 'Online' });
  });
});
