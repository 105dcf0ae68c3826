/**
 * The tenant workflow on the time-skipping test server: the real 24 h (R5) and 72 h (R6) pass in seconds, with the
 * real activities over a local vault, encrypted databases and the outbox.
 */
import { generateKeyPairSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import type { Mailer } from '../mail/types';
import { queries, tenantWorkflowId } from '../workflows/messages';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { localParts } from './support/parts';
import { ALICE, BOB, HOUR, keyChange as change, timeSkippingHarness } from './support/time-skipping';
import { testAuditSink, testDataConverter, testRequestTrust } from './support/codec';

const harness = timeSkippingHarness();
const { withTenant, acceptedUpdates } = harness;
let env: typeof harness.env;
beforeAll(() => {
  env = harness.env;
});

test('a generated key becomes active, is mailed to every administrator, and R5 holds for exactly 24 hours', async () => {
  await withTenant(async ({ plane, parts, tenant, stage }) => {
    const first = await stage();
    const result = await plane.changeKey(tenant, change(ALICE, first));
    expect(result.key).toMatchObject({ state: 'Active', thumbprint: first.thumbprint, activatedBy: 'alice@example.com' });
    expect((await parts.vault.getKey(first.vaultKey))?.enabled).toBe(true);

    const mails = (await parts.outbox.list(tenant)).filter((m) => m.event === 'key-changed');
    expect(mails.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);

    // R5: refused inside the interval, before anything reaches history.
    const second = await stage();
    const before = await acceptedUpdates(tenant);
    await expect(plane.changeKey(tenant, change(BOB, second))).rejects.toMatchObject({ code: 'KEY_CHANGE_TOO_SOON' });
    expect(await acceptedUpdates(tenant)).toBe(before);

    await env.sleep(24 * HOUR - 60_000);
    await expect(plane.changeKey(tenant, change(BOB, second))).rejects.toMatchObject({ code: 'KEY_CHANGE_TOO_SOON' });
    await env.sleep(61_000);
    const after = await plane.changeKey(tenant, change(BOB, second));
    expect(after.key).toMatchObject({ state: 'Active', thumbprint: second.thumbprint });
  });
});

test('the replaced key stays in the vault for the 72-hour rollback window (R6), then a durable timer removes it', async () => {
  await withTenant(async ({ plane, parts, tenant, stage }) => {
    const first = await stage();
    await plane.changeKey(tenant, change(ALICE, first));
    await env.sleep(25 * HOUR);
    const second = await stage();
    await plane.changeKey(tenant, change(ALICE, second));

    const snapshot = await plane.snapshot(tenant);
    const region = snapshot!.regions.emea!;
    expect(region.rollbackThumbprint).toBe(first.thumbprint);
    expect(Date.parse(region.embargoStartedAt!) + DEFAULT_POLICY.lockEmbargoMs - Date.parse(region.rollbackUntil!)).toBe(0);
    expect(region.keys.find((k) => k.thumbprint === first.thumbprint)?.state).toBe('Retired');

    await env.sleep(71 * HOUR);
    expect(await parts.vault.getKey(first.vaultKey)).toBeDefined();
    await env.sleep(2 * HOUR);
    // The timer fired in the workflow and the key's deletion it started has finished; the snapshot query shows both.
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    const later = await plane.snapshot(tenant);
    expect(later!.regions.emea!.rollbackThumbprint).toBeNull();
    expect(later!.regions.emea!.keys.find((k) => k.thumbprint === first.thumbprint)?.inVault).toBe(false);
    expect(await parts.vault.getKey(first.vaultKey)).toBeUndefined();
    expect(await parts.vault.getKey(second.vaultKey)).toBeDefined();
  });
});

test('R12: the operator and a system administrator may not change keys; nothing is accepted', async () => {
  await withTenant(async ({ plane, tenant, stage }) => {
    await plane.createEnvironment(tenant, { actor: { kind: 'operator' }, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: 'sam@example.com' });
    const staged = await stage();
    const before = await acceptedUpdates(tenant);
    await expect(plane.changeKey(tenant, change({ kind: 'operator' }, staged))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(plane.changeKey(tenant, change({ kind: 'user', email: 'sam@example.com' }, staged))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(plane.changeKey(tenant, change({ kind: 'user', email: 'mallory@example.com' }, staged))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await acceptedUpdates(tenant)).toBe(before);
    expect((await plane.snapshot(tenant))!.regions.emea).toBeUndefined();
  });
});

test('the same key cannot be set twice, and a second concurrent change answers OPERATION_IN_PROGRESS', async () => {
  await withTenant(async ({ plane, tenant, stage }) => {
    const keyA = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const keyB = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const a = await stage(keyA);
    const b = await stage(keyB);
    const results = await Promise.allSettled([plane.changeKey(tenant, change(ALICE, a)), plane.changeKey(tenant, change(BOB, b))]);
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: string }).code)).sort();
    // Whichever lands second sees either the running change or, if the first already finished, R5.
    expect(codes[0]).toMatch(/^(KEY_CHANGE_TOO_SOON|OPERATION_IN_PROGRESS)$/);
    expect(codes[1]).toBe('ok');
    await env.sleep(25 * HOUR);
    // The same key again, staged anew as a re-upload would be: refused.
    const again = await stage(results[0]!.status === 'fulfilled' ? keyA : keyB);
    await expect(plane.changeKey(tenant, change(ALICE, again))).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
  });
});

test('tenant create never alters an existing tenant', async () => {
  await withTenant(async ({ plane, tenant }) => {
    await expect(
      plane.createTenant({ actor: { kind: 'operator' }, tenant, displayName: 'Someone Else', homeRegion: 'us', admins: [{ email: 'eve@example.com', role: 'global' }] }),
    ).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    const snapshot = await plane.snapshot(tenant);
    expect(snapshot).toMatchObject({ displayName: 'Contoso Ltd', homeRegion: 'emea' });
    expect(snapshot!.admins.map((a) => a.email)).toEqual(['alice@example.com', 'bob@example.com']);
  });
});

test('R4: every administrator gets each mail exactly once, even when the mail activity fails after sending', async () => {
  const parts = localParts();
  const failedOnce = new Set<string>();
  // The real outbox, behind a connection that drops right after the first delivery of every message.
  const flakyMailer: Mailer = {
    sendAll: async (mails) => {
      const result = await parts.mailer.sendAll(mails);
      for (const mail of mails) {
        if (!failedOnce.has(mail.id)) {
          failedOnce.add(mail.id);
          throw new Error('mail relay connection lost after sending');
        }
      }
      return result;
    },
    retry: (options) => parts.mailer.retry(options),
  };
  const taskQueue = `tenant-wf-flaky-${process.pid}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: harness.bundle,
    dataConverter: testDataConverter(),
    activities: createActivities({ ...parts, ...testAuditSink(parts.config.dataDir), ...testRequestTrust(), mailer: flakyMailer }),
  });
  const plane = new ControlPlane(env.client, taskQueue, harness.signer);
  const tenant = 'flaky-mail';
  await worker.runUntil(async () => {
    await plane.createTenant({ actor: { kind: 'operator' }, tenant, displayName: 'Flaky', homeRegion: 'emea', admins: [{ email: 'alice@example.com', role: 'global' }, { email: 'bob@example.com', role: 'service' }] });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const key = await parts.vault.importKey(`tenant-${tenant}-emea`, privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: false });
    await plane.changeKey(tenant, change(ALICE, { vaultKey: { name: key.name, version: key.version }, thumbprint: key.thumbprint }));
    await harness.terminateWhenIdle(tenantWorkflowId(tenant));
  });
  expect(failedOnce.size).toBeGreaterThanOrEqual(4);
  const mails = await parts.outbox.list(tenant);
  const keyChanged = mails.filter((m) => m.event === 'key-changed').map((m) => m.to).sort();
  expect(keyChanged).toEqual(['alice@example.com', 'bob@example.com']);
  expect(mails.filter((m) => m.event === 'admin-changed').map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
});

test('R7: apply, rotate with background re-protection, rekey and revert keep every row; refusals change nothing', async () => {
  await withTenant(async ({ plane, parts, tenant, stage }) => {
    const operator = { kind: 'operator' } as const;
    const op = (actor: Actor, env: string, operation: 'apply' | 'revert' | 'rekey') => plane.environmentOperation(tenant, { actor, policy: DEFAULT_POLICY, env, operation, acceptRisk: true });
    for (const env of ['prod', 'test', 'dev']) {
      await plane.createEnvironment(tenant, { actor: operator, policy: DEFAULT_POLICY, env, region: 'emea', systemAdmin: `${env}-admin@example.com` });
      await parts.databases.writeRow(tenant, env, `row of ${env}`);
    }
    const sam = { kind: 'user', email: 'prod-admin@example.com' } as const;
    await expect(op(sam, 'prod', 'apply')).rejects.toMatchObject({ code: 'KEY_NOT_ACTIVE' });
    await expect(op(sam, 'test', 'apply')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(op(operator, 'prod', 'apply')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(op(ALICE, 'nope', 'apply')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(op(ALICE, 'prod', 'revert')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });

    const first = await stage();
    await plane.changeKey(tenant, change(ALICE, first));
    const providerBefore = (await parts.databases.describe(tenant, 'prod'))!.protector;
    const applied = await op(sam, 'prod', 'apply');
    expect(applied).toMatchObject({ state: 'Online', protection: 'tenant', keyThumbprint: first.thumbprint });
    await op(ALICE, 'test', 'apply');
    await expect(op(sam, 'prod', 'apply')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    // Apply made a new DEK: the provider key, which still exists, is not what protects it now.
    expect((await parts.databases.describe(tenant, 'prod'))!.protector).toMatchObject({ kind: 'tenant', thumbprint: first.thumbprint });
    expect(providerBefore.kind).toBe('provider');

    // A key change re-protects both tenant-key environments in the background, then the old key can go.
    await env.sleep(25 * HOUR);
    const second = await stage();
    const changed = await plane.changeKey(tenant, change(BOB, second));
    expect(['Installing', 'Active']).toContain(changed.key.state);
    let snapshot = await plane.snapshot(tenant);
    for (let i = 0; i < 100 && snapshot!.regions.emea!.keys.at(-1)!.state !== 'Active'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      snapshot = await plane.snapshot(tenant);
    }
    const byId = Object.fromEntries(snapshot!.environments.map((e) => [e.id, e]));
    expect(byId.prod).toMatchObject({ protection: 'tenant', keyThumbprint: second.thumbprint, state: 'Online' });
    expect(byId.test).toMatchObject({ protection: 'tenant', keyThumbprint: second.thumbprint, state: 'Online' });
    expect(byId.dev).toMatchObject({ protection: 'provider' });
    expect((await parts.vault.getKey(first.vaultKey))?.enabled).toBe(true); // kept for the rollback window (R6)

    await op(sam, 'prod', 'rekey');
    await op(ALICE, 'test', 'revert');
    await env.sleep(73 * HOUR);
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    expect(await parts.vault.getKey(first.vaultKey)).toBeUndefined();
    for (const id of ['prod', 'test', 'dev']) expect((await parts.databases.readRows(tenant, id)).map((r) => r.text)).toEqual([`row of ${id}`]);

    const mails = await parts.outbox.list(tenant);
    expect(mails.filter((m) => m.event === 'environment-applied' && m.to === 'prod-admin@example.com')).toHaveLength(1);
    expect(mails.filter((m) => m.event === 'environment-applied' && m.to === 'test-admin@example.com')).toHaveLength(1);
    expect(mails.filter((m) => m.event === 'environment-reverted').map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'test-admin@example.com']);
    expect(mails.find((m) => m.event === 'environment-reverted')!.subject).toMatch(/^Environment returned to the provider key/);
    expect(mails.filter((m) => m.event === 'environment-rekeyed')).toHaveLength(3);
  });
});

test('R7: a repeat of a running apply attaches to it; a different operation meanwhile answers OPERATION_IN_PROGRESS', async () => {
  await withTenant(async ({ plane, parts, tenant, stage }) => {
    const op = (actor: Actor, operation: 'apply' | 'revert' | 'rekey') => plane.environmentOperation(tenant, { actor, policy: DEFAULT_POLICY, env: 'prod', operation, acceptRisk: true });
    await plane.createEnvironment(tenant, { actor: { kind: 'operator' }, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: null });
    await parts.databases.writeRow(tenant, 'prod', 'the only row');
    const key = await stage();
    await plane.changeKey(tenant, change(ALICE, key));

    // The apply waits in the database until released, so the repeats certainly meet it running.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const rekey = parts.databases.rekey.bind(parts.databases);
    parts.databases.rekey = async (...args) => {
      await gate;
      return rekey(...args);
    };
    const first = op(ALICE, 'apply');
    let repeat: ReturnType<typeof op>;
    try {
      for (let i = 0; i < 100 && (await plane.snapshot(tenant))!.environments[0]!.runningOperation !== 'apply'; i++) await new Promise((r) => setTimeout(r, 50));
      repeat = op(BOB, 'apply');
      // (A revert would answer ALREADY_EXISTS: until the apply is done, the environment is on the provider key.)
      await expect(op(BOB, 'rekey')).rejects.toMatchObject({ code: 'OPERATION_IN_PROGRESS' });
    } finally {
      // Released whatever happened: the worker cannot shut down while the apply waits.
      release();
    }
    const [a, b] = await Promise.all([first, repeat]);
    expect(a).toMatchObject({ protection: 'tenant', keyThumbprint: key.thumbprint, state: 'Online' });
    expect(b).toEqual(a);
    const history = await env.client.workflow.getHandle(tenantWorkflowId(tenant)).fetchHistory();
    const accepted = (history.events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'environmentOperation');
    expect(accepted).toHaveLength(1);
    expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'environment-applied' && m.to === 'alice@example.com')).toHaveLength(1);

    // Finished operations do not swallow later requests: revert and apply again are new operations.
    await expect(op(BOB, 'revert')).resolves.toMatchObject({ protection: 'provider' });
    await expect(op(BOB, 'apply')).resolves.toMatchObject({ protection: 'tenant', keyThumbprint: key.thumbprint });
    expect((await parts.databases.readRows(tenant, 'prod')).map((r) => r.text)).toEqual(['the only row']);
  });
});

test('R7: a key change re-protects environments in batches; one that cannot move is reported and keeps its key in the vault', async () => {
  await withTenant(async ({ plane, parts, tenant, stage }) => {
    const N = 60;
    const envs = Array.from({ length: N }, (_, i) => `env-${i}`);
    for (const id of envs) await plane.createEnvironment(tenant, { actor: { kind: 'operator' }, policy: DEFAULT_POLICY, env: id, region: 'emea', systemAdmin: null });
    const first = await stage();
    await plane.changeKey(tenant, change(ALICE, first));
    for (const id of envs) {
      await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: id, operation: 'apply', acceptRisk: true });
      await parts.databases.writeRow(tenant, id, `row of ${id}`);
    }
    // One environment loses its key record: re-protection must report it and leave it alone.
    rmSync(join(parts.config.dataDir, 'environments', tenant, 'env-7', 'key-record.json'));

    await env.sleep(25 * HOUR);
    const second = await stage();
    await plane.changeKey(tenant, change(BOB, second));
    const handle = env.client.workflow.getHandle(tenantWorkflowId(tenant));
    let progress = (await handle.query(queries.reprotection)).emea!;
    for (let i = 0; i < 200 && progress.finishedAt === null; i++) {
      await new Promise((r) => setTimeout(r, 100));
      progress = (await handle.query(queries.reprotection)).emea!;
    }
    expect(progress).toMatchObject({ keyThumbprint: second.thumbprint, total: N, done: N - 1, remaining: 0, refused: [{ env: 'env-7', code: 'NOT_FOUND' }] });
    const snapshot = (await plane.snapshot(tenant))!;
    expect(snapshot.regions.emea!.keys.at(-1)!.state).toBe('Active');
    for (const e of snapshot.environments) {
      expect(e).toMatchObject({ state: 'Online', protection: 'tenant', keyThumbprint: e.id === 'env-7' ? first.thumbprint : second.thumbprint });
    }
    const described = await handle.describe();
    expect(described.searchAttributes).toMatchObject({ CmkReprotectionRemaining: [0], CmkReprotectionRefused: ['env-7'], CmkEnvironmentCount: [N] });
    const history = await handle.fetchHistory();
    const batches = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'reprotectEnvironments');
    expect(batches).toHaveLength(Math.ceil(N / 50));

    // The rollback window ends, but a key record still depends on the first key: it stays in the vault.
    await env.sleep(73 * HOUR);
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    expect(await parts.vault.getKey(first.vaultKey)).toBeDefined();
    for (const id of envs.filter((id) => id !== 'env-7')) expect((await parts.databases.readRows(tenant, id)).map((r) => r.text)).toEqual([`row of ${id}`]);
  });
});

test('R6: while a key change can be rolled back, no global or service administrator is removed (ROLLBACK_WINDOW_OPEN); afterwards they can be', async () => {
  await withTenant(async ({ plane, tenant, stage }) => {
    const remove = (email: string) => plane.changeAdmin(tenant, { actor: ALICE, policy: DEFAULT_POLICY, change: 'remove', email, role: null });
    await plane.changeKey(tenant, change(ALICE, await stage()));
    // The first key has nothing to roll back to: no window, removal allowed.
    await plane.changeAdmin(tenant, { actor: ALICE, policy: DEFAULT_POLICY, change: 'add', email: 'carol@example.com', role: 'service' });
    await remove('carol@example.com');
    await env.sleep(25 * HOUR);
    await plane.changeKey(tenant, change(ALICE, await stage()));
    const until = (await plane.snapshot(tenant))!.regions.emea!.rollbackUntil!;

    // Alice cannot remove Bob, who must be able to roll her change back; nothing reaches history.
    const before = await acceptedUpdates(tenant);
    await expect(remove('bob@example.com')).rejects.toMatchObject({ code: 'ROLLBACK_WINDOW_OPEN', message: expect.stringContaining(until) });
    expect(await acceptedUpdates(tenant)).toBe(before);
    // Adding one is still allowed.
    await plane.changeAdmin(tenant, { actor: ALICE, policy: DEFAULT_POLICY, change: 'add', email: 'carol@example.com', role: 'global' });

    await env.sleep(72 * HOUR - 60_000);
    await expect(remove('carol@example.com')).rejects.toMatchObject({ code: 'ROLLBACK_WINDOW_OPEN' });
    await env.sleep(2 * 60_000);
    const after = await remove('bob@example.com');
    expect(after.admins.map((a) => a.email).sort()).toEqual(['alice@example.com', 'carol@example.com']);
  });
});
