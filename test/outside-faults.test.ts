/**
 * No outside fault fails a tenant (DESIGN.md §6, issue 15): the tenant workflow on the time-skipping server with the
 * real activities. Mail goes through the SendGrid adapter against the SendGrid double: a recipient SendGrid refuses
 * (400) is recorded as rejected and the others get their mail; a SendGrid outage leaves mail pending for the retry;
 * either way create, lock, the deletion warnings, the R9 deletion and the next request succeed. The vault and the
 * databases are the real local ones behind a wrapper that refuses a given call (it stands for the outside part
 * refusing): the workflow runs on, marks what failed, mails the administrators, and the repair moves it on.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { CmkError } from '../common/errors';
import { buildMailer, PostOffice } from '../mail';
import { SendGridMailer } from '../mail/sendgrid';
import { tenantWorkflowId } from '../workflows/messages';
import { DEFAULT_POLICY } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';
import { FakeSendGrid, SENDGRID_TEST_KEY } from '../harness/sendgrid-double';
import { refusing, vaultRefusal } from './support/parts';
import { ALICE, HOUR, keyChange, OPERATOR_ACTOR, tenantWithProdOnItsKey, timeSkippingHarness, type TenantContext } from './support/time-skipping';

const harness = timeSkippingHarness();
const DAY = 24 * HOUR;

let sendgrid: FakeSendGrid;
let baseUrl: string;
beforeEach(async () => {
  sendgrid = new FakeSendGrid();
  baseUrl = await sendgrid.start();
});
afterEach(() => sendgrid.stop());

const sendgridMailer = (parts: TenantContext['parts']) => ({
  mailer: buildMailer({ mailer: 'sendgrid', sendgridApiKey: SENDGRID_TEST_KEY, sendgridBaseUrl: baseUrl, mailFrom: 'cmk@example.com' }, parts.outbox),
});

const proof = (tenant: string, verifiedThumbprint: string): PossessionProof => ({
  challengeId: randomUUID(),
  tenant,
  region: 'emea',
  user: 'alice@example.com',
  operation: 'lock',
  expiresAt: new Date(Date.now() + 400 * DAY).toISOString(),
  verifiedThumbprint,
});

/** prod (system administrator sam) on the tenant key, dev on the provider key, then locked once the embargo is over. */
async function lockedTenant(ctx: TenantContext) {
  const { plane, tenant } = ctx;
  const { staged } = await tenantWithProdOnItsKey(ctx);
  await harness.env.sleep(73 * HOUR);
  const claims = proof(tenant, staged.thumbprint);
  return plane.lockTenant(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', confirm: 'Contoso Ltd', proof: claims, possession: await ctx.possession(claims) });
}

async function workflowStatus(tenant: string): Promise<string | undefined> {
  return (await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).describe()).status.name;
}

test('refused recipients: create, lock, the deletion warnings, the R9 deletion and the next request all succeed; the refused mails are listed as rejected', async () => {
  // bob (service administrator) and sam (prod's system administrator): SendGrid refuses both addresses, every time.
  sendgrid.rejectAddresses.add('bob@example.com');
  sendgrid.rejectAddresses.add('sam@example.com');
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant } = ctx;
    const lock = await lockedTenant(ctx);
    expect(lock).toMatchObject({ sealed: ['prod'], lockedByDecisionOnly: ['dev'] });

    await harness.env.sleep(28 * DAY + HOUR);
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    expect(await workflowStatus(tenant)).toBe('RUNNING');
    const snapshot = (await plane.snapshot(tenant))!;
    expect(snapshot.environments.map((e) => [e.id, e.state])).toEqual([['prod', 'Deleted'], ['dev', 'Deleted']]);

    // The next request.
    const next = await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'next', region: 'emea', systemAdmin: null });
    expect(next).toMatchObject({ id: 'next', state: 'Online' });

    const mails = await parts.outbox.list(tenant);
    const events = ['admin-changed', 'key-changed', 'environment-applied', 'tenant-locked', 'deletion-warning', 'environment-deleted'];
    for (const event of events) {
      const of = mails.filter((m) => m.event === event);
      // alice got every mail, once; bob's and sam's are listed as rejected, with SendGrid's reason.
      expect(of.filter((m) => m.to === 'alice@example.com').map((m) => (m as { delivery?: string }).delivery)).toEqual(event === 'deletion-warning' ? ['delivered', 'delivered'] : ['delivered']);
      for (const m of of.filter((m) => m.to !== 'alice@example.com')) expect(m).toMatchObject({ delivery: 'rejected', reason: expect.stringMatching(/400.*valid address/) });
    }
    expect(mails.filter((m) => m.to === 'bob@example.com').length).toBeGreaterThanOrEqual(events.length);
    expect(sendgrid.delivered().filter((d) => d.to === 'alice@example.com')).toHaveLength(mails.filter((m) => m.to === 'alice@example.com').length);
    expect(JSON.stringify(mails)).not.toContain(SENDGRID_TEST_KEY);
  }, sendgridMailer);
});

test('a SendGrid outage (key revoked, then down) during the deletion warnings and the deletion: the workflow runs on, the mail waits and goes out once, after', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant } = ctx;
    await lockedTenant(ctx);
    sendgrid.down = 401;
    await harness.env.sleep(22 * DAY);
    sendgrid.down = 503;
    await harness.env.sleep(6 * DAY + HOUR);
    expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
    expect(await workflowStatus(tenant)).toBe('RUNNING');
    expect((await plane.snapshot(tenant))!.environments.map((e) => e.state)).toEqual(['Deleted', 'Deleted']);
    const waiting = (await parts.outbox.list(tenant)).filter((m) => m.event === 'deletion-warning' || m.event === 'environment-deleted');
    expect(waiting.length).toBe(9); // two warnings and the deletion, to alice, bob and sam
    expect(waiting.every((m) => m.delivery === 'pending')).toBe(true);

    // SendGrid is back: an hour later the retry (the Schedule's activity) delivers each mail once, however often it runs.
    sendgrid.down = null;
    const mailer = new PostOffice(parts.outbox, new SendGridMailer({ sendgridApiKey: SENDGRID_TEST_KEY, sendgridBaseUrl: baseUrl, mailFrom: 'cmk@example.com' }), { now: () => Date.now() + HOUR });
    const report = await mailer.retry({});
    expect(report.stillPending).toBe(0);
    await mailer.retry({});
    await mailer.retry({ tenant, now: true });
    const after = (await parts.outbox.list(tenant)).filter((m) => m.event === 'deletion-warning' || m.event === 'environment-deleted');
    expect(after.every((m) => m.delivery === 'delivered')).toBe(true);
    const ids = sendgrid.delivered().map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const m of after) expect(ids.filter((id) => id === m.id)).toHaveLength(1);
  }, sendgridMailer);
});

test('the vault refuses to delete the replaced key at the end of the rollback window: the workflow runs on, the key is marked and mailed, and the next `env rekey` removes it', async () => {
  let control = { refusing: true, calls: 0 };
  await harness.withTenant(
    async ({ plane, parts, tenant, stage }) => {
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: null });
      const first = await stage();
      await plane.changeKey(tenant, keyChange(ALICE, first));
      await harness.env.sleep(25 * HOUR);
      await plane.changeKey(tenant, keyChange(ALICE, await stage()));
      await harness.env.sleep(73 * HOUR);
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      expect(control.calls).toBeGreaterThan(0);
      expect(await workflowStatus(tenant)).toBe('RUNNING');
      const key = (await plane.snapshot(tenant))!.regions.emea!.keys.find((k) => k.thumbprint === first.thumbprint)!;
      expect(key).toMatchObject({ inVault: true, retireFailure: { code: 'VAULT_REFUSED', message: expect.stringMatching(/delete permission/) } });
      expect(await parts.vault.getKey(first.vaultKey)).toBeDefined();
      const failed = (await parts.outbox.list(tenant)).filter((m) => m.event === 'operation-failed');
      expect(failed.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
      expect(failed[0]!.body).toMatch(/could not be removed from the vault[\s\S]*VAULT_REFUSED[\s\S]*cmk env rekey/);

      // The vault is repaired; the next environment operation retires the key.
      control.refusing = false;
      await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' });
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      const after = (await plane.snapshot(tenant))!.regions.emea!.keys.find((k) => k.thumbprint === first.thumbprint)!;
      expect(after.inVault).toBe(false);
      expect(after.retireFailure).toBeUndefined();
      expect(await parts.vault.getKey(first.vaultKey)).toBeUndefined();
    },
    (parts) => {
      const r = refusing(parts.vault, 'deleteKey', vaultRefusal);
      control = r.control;
      return { vault: r.wrapped };
    },
  );
});

test('the database server refuses R9\'s deletion: the environments stay Locked with the reason, the administrators are mailed, and the deletion is tried again an hour later', async () => {
  let control = { refusing: true, calls: 0 };
  await harness.withTenant(
    async (ctx) => {
      const { plane, parts, tenant } = ctx;
      await lockedTenant(ctx);
      await harness.env.sleep(28 * DAY + 10 * 60_000);
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      expect(control.calls).toBeGreaterThan(0);
      expect(await workflowStatus(tenant)).toBe('RUNNING');
      const snapshot = (await plane.snapshot(tenant))!;
      expect(snapshot.environments.map((e) => [e.id, e.state, e.lock?.deletionFailure?.code])).toEqual([['prod', 'Locked', 'DATABASE_REFUSED'], ['dev', 'Locked', 'DATABASE_REFUSED']]);
      const failed = (await parts.outbox.list(tenant)).filter((m) => m.event === 'operation-failed');
      expect(failed.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
      expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'environment-deleted')).toEqual([]);
      // The next request works meanwhile.
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'next', region: 'emea', systemAdmin: null });

      control.refusing = false;
      await harness.env.sleep(HOUR);
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      const after = (await plane.snapshot(tenant))!;
      expect(after.environments.map((e) => [e.id, e.state])).toEqual([['prod', 'Deleted'], ['dev', 'Deleted'], ['next', 'Online']]);
      expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'environment-deleted')).toHaveLength(3);
      // One failure mail per refusal, not one per retry.
      expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'operation-failed')).toHaveLength(3);
    },
    (parts) => {
      const r = refusing(parts.databases, 'destroy', () => ApplicationFailure.nonRetryable('The database server refused: DROP DATABASE permission denied.', 'DATABASE_REFUSED'));
      control = r.control;
      return { databases: r.wrapped };
    },
  );
});

test('a re-protection the database refuses leaves the environment on its previous key, marked and mailed; `env rekey` moves it to the active key', async () => {
  let control = { refusing: false, calls: 0 };
  await harness.withTenant(
    async ({ plane, parts, tenant, stage }) => {
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: 'sam@example.com' });
      const first = await stage();
      await plane.changeKey(tenant, keyChange(ALICE, first));
      await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'apply', acceptRisk: true });
      await parts.databases.writeRow(tenant, 'prod', 'kept');
      await harness.env.sleep(25 * HOUR);
      control.refusing = true;
      const second = await stage();
      await plane.changeKey(tenant, keyChange(ALICE, second));
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      expect(await workflowStatus(tenant)).toBe('RUNNING');
      const snapshot = (await plane.snapshot(tenant))!;
      expect(snapshot.environments[0]).toMatchObject({ id: 'prod', state: 'Online', keyThumbprint: first.thumbprint });
      expect(snapshot.reprotections!.emea!.refused).toEqual([expect.objectContaining({ env: 'prod', code: 'NOT_FOUND' })]);
      const failed = (await parts.outbox.list(tenant)).filter((m) => m.event === 'reprotection-incomplete');
      expect(failed.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
      expect(failed.every((m) => /- prod: NOT_FOUND: .*cmk env rekey/s.test(m.body))).toBe(true);

      control.refusing = false;
      const moved = await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' });
      expect(moved).toMatchObject({ protection: 'tenant', keyThumbprint: second.thumbprint });
      expect((await parts.databases.readRows(tenant, 'prod')).map((r) => r.text)).toEqual(['kept']);
    },
    (parts) => {
      const r = refusing(parts.databases, 'reprotect', () => new CmkError('NOT_FOUND', 'The key record of this environment could not be read: the database server refused.'));
      control = r.control;
      return { databases: r.wrapped };
    },
  );
});
