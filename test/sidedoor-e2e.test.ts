/**
 * The Temporal frontend is no side door (DESIGN.md §6 "Nothing a caller can forge is trusted", issue 16): on
 * `npm start`'s stack, a raw Temporal client — without the codec, and with the codec key but without the API's
 * request-signing key — tries what the API would refuse it. Every attempt is refused, nothing changes, and the
 * tenant keeps working through the API.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { startStack, type Stack } from '../harness/stack';
import { loadDataConverter } from '../codec';
import { AUDIT_WORKFLOW_ID, auditMessages, queries, tenantWorkflowId, updates, TASK_QUEUE } from '../workflows/messages';
import { DEFAULT_POLICY } from '../domain/policy';
import type { AuditEntry } from '../audit/trail';

let stack: Stack;
let connection: Connection;
/** Whoever reaches the frontend, with no key at all. */
let plain: Client;
/** Someone who stole the codec key, but not the request-signing key. */
let withCodec: Client;
const work = mkdtempSync(join(tmpdir(), 'cmk-sidedoor-e2e-'));
const ALICE = 'alice@fabrikam.example';
const MALLORY = 'mallory@evil.test';
const tenant = 'fabrikam';

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '72h' });
  connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  plain = new Client({ connection });
  withCodec = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir, {}) });
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Fabrikam', '--admin', `${ALICE}:global`])).code).toBe(0);
  const password = join(work, 'pw.txt');
  writeFileSync(password, 'fabrikam key password 1\n');
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'fab-1', '--password-file', password, '--out', join(work, 'fab.pfx'), '--wait'], { as: ALICE })).code).toBe(0);
}, 180_000);

afterAll(async () => {
  await connection?.close();
  await stack?.stop();
});

async function admins(): Promise<string[]> {
  const shown = await stack.api('GET', `/v1/tenants/${tenant}`, { as: ALICE });
  return ((shown.body as { tenant?: { admins?: Array<{ email: string }> } }).tenant?.admins ?? []).map((a) => a.email).sort();
}

/** How a raw client's update ended: 'accepted', or the messages of the failure and its causes. */
const outcome = (update: Promise<unknown>): Promise<string> =>
  update.then(
    () => 'accepted',
    (err: unknown) => {
      const messages: string[] = [];
      for (let cause = err, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) messages.push(cause.message);
      return messages.join(' / ');
    },
  );

const forgedAdd = { actor: { kind: 'user', email: ALICE }, policy: DEFAULT_POLICY, change: 'add', email: MALLORY, role: 'global' };

/**
 * The refusal's sentence is in an encrypted failure: only a client with the codec key reads it; one without cannot
 * read any answer (what shows the refusal then is that nothing changed, and the workflow's count of forged requests).
 */
const REFUSED = { plain: /binary\/encrypted/, withCodec: /\/ This request was not issued by the cmk API service\.$/ };
const forgedCount = async (): Promise<number> => (await withCodec.workflow.getHandle(tenantWorkflowId(tenant)).query(queries.forgedRequests)).refused;

test.each([
  ['without the codec', () => plain, REFUSED.plain],
  ['with the codec key but no signing key', () => withCodec, REFUSED.withCodec],
])('a changeAdmin through the frontend %s is refused, the admins are unchanged, and the tenant keeps working', async (_how, client, refused) => {
  const before = await admins();
  expect(before).toEqual([ALICE]);
  const handle = client().workflow.getHandle(tenantWorkflowId(tenant));
  const refusedBefore = await forgedCount();
  expect(await outcome(handle.executeUpdate(updates.changeAdmin.name, { args: [forgedAdd] }))).toMatch(refused);
  expect(await admins()).toEqual(before);
  expect(await forgedCount()).toBe(refusedBefore + 1);
  // The tenant still answers the API: a real administrator change goes through, and back.
  expect((await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'carol@fabrikam.example:service'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', 'carol@fabrikam.example'], { as: ALICE })).code).toBe(0);
  expect(await admins()).toEqual(before);
}, 60_000);

test('a lock through the frontend with a forged proof and no embargo is refused; nothing is locked', async () => {
  const key = await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE });
  const thumbprint = (JSON.parse(key.stdout) as { activeKey: { thumbprint: string } }).activeKey.thumbprint;
  const proof = { challengeId: randomUUID(), tenant, region: 'default', user: ALICE, operation: 'lock', expiresAt: new Date(Date.now() + 3_600_000).toISOString(), verifiedThumbprint: thumbprint };
  const forged = { actor: { kind: 'user', email: ALICE }, policy: { ...DEFAULT_POLICY, lockEmbargoMs: 0 }, region: 'default', confirm: 'Fabrikam', proof };
  const refusedBefore = await forgedCount();
  expect(await outcome(plain.workflow.getHandle(tenantWorkflowId(tenant)).executeUpdate(updates.lockTenant.name, { args: [forged] }))).toMatch(REFUSED.plain);
  expect(await outcome(withCodec.workflow.getHandle(tenantWorkflowId(tenant)).executeUpdate(updates.lockTenant.name, { args: [forged] }))).toMatch(REFUSED.withCodec);
  expect(await forgedCount()).toBe(refusedBefore + 2);
  const shown = await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE });
  expect((JSON.parse(shown.stdout) as { activeKey: { state: string } }).activeKey.state).toBe('Active');
  // Through the API the embargo still holds (R6): 72 hours after the key change.
  const lock = await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Fabrikam', '--file', join(work, 'fab.pfx'), '--password-file', join(work, 'pw.txt')], { as: ALICE });
  expect(lock.stderr).toMatch(/^LOCK_EMBARGO: /m);
}, 60_000);

test('a tenant workflow started through the frontend with a forged input creates no tenant, and `cmk tenant create` of that ID works', async () => {
  const id = 'forged-tenant';
  const input = { tenant: id, displayName: 'Forged', homeRegion: 'default', admins: [{ email: MALLORY, role: 'global' }], createdBy: { kind: 'operator' } };
  for (const client of [plain, withCodec]) {
    const handle = await client.workflow.start('tenantWorkflow', { workflowId: tenantWorkflowId(id), taskQueue: TASK_QUEUE, args: [input] });
    await expect(handle.result()).rejects.toThrow();
    expect((await handle.describe()).status.name).toBe('FAILED');
    expect((await stack.api('GET', `/v1/tenants/${id}`, { as: MALLORY })).status).not.toBe(200);
  }
  const created = await stack.cmk(['tenant', 'create', '--tenant', id, '--name', 'Real One', '--admin', `${ALICE}:global`]);
  expect([created.code, created.stderr]).toEqual([0, '']);
  expect((await stack.api('GET', `/v1/tenants/${id}`, { as: ALICE })).status).toBe(200);
}, 90_000);

test('an audit record signalled through the frontend does not reach the trail', async () => {
  const fake = (marker: string): AuditEntry => ({
    id: `forged/${marker}`,
    at: new Date().toISOString(),
    actor: ALICE,
    action: 'tenant.unlock-everything',
    outcome: 'completed',
    tenant,
    region: null,
    environment: null,
    code: null,
    message: marker,
    thumbprints: [],
  });
  await plain.workflow.signalWithStart('auditTrailWorkflow', { workflowId: AUDIT_WORKFLOW_ID, taskQueue: TASK_QUEUE, args: [{}], signal: auditMessages.record.name, signalArgs: [[fake('plain')]] });
  await withCodec.workflow.signalWithStart('auditTrailWorkflow', { workflowId: AUDIT_WORKFLOW_ID, taskQueue: TASK_QUEUE, args: [{}], signal: auditMessages.record.name, signalArgs: [[fake('codec')]] });
  // A real request after them: once it is in the trail, so would they be.
  expect((await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'dave@fabrikam.example:service'], { as: ALICE })).code).toBe(0);
  const deadline = Date.now() + 30_000;
  let listed = '';
  while (Date.now() < deadline) {
    listed = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--json'], { as: ALICE })).stdout;
    if (listed.includes('dave@fabrikam.example')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(listed).toContain('dave@fabrikam.example');
  expect(listed).not.toContain('forged/');
  expect(listed).not.toContain('unlock-everything');
  expect((await stack.cmk(['audit', 'verify', '--tenant', tenant], { as: ALICE })).code).toBe(0);
}, 90_000);
