/**
 * Runs started before signed requests (issue 16, follow-up): a tenant workflow run whose history has no
 * `signed-requests` marker, picked up by today's worker, accepts nothing it cannot verify. Unsigned requests through
 * the frontend are refused; the client library has the run load its worker's trust (`refreshTrust`) and retries,
 * so the API's signed requests keep working; from then on the run checks signatures like a new one. On the Temporal
 * dev server: an upgrade is one worker stopping and another taking over the same task queue.
 */
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/workflow-bundle';
import { ControlPlane, asRefusal } from '../client/library';
import { createActivities } from '../activities';
import { temporalCliPath } from '../stack/tools';
import { AUDIT_WORKFLOW_ID, auditMessages, queries, tenantWorkflowId, updates, type AdminChangeRequest, type TenantWorkflowInput } from '../workflows/messages';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { FORGED_REQUEST_MESSAGE, TRUST_NOT_LOADED_MESSAGE } from '../domain/signed';
import { localParts } from './support/parts';
import { TEST_CHALLENGES, testAuditSink, testDataConverter, testRequestSigner, testRequestTrust } from './support/codec';

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCliPath() } }, client: { dataConverter: testDataConverter() } });
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

const ALICE: Actor = { kind: 'user', email: 'alice@example.com' };
const adminChange = (email: string): AdminChangeRequest => ({ actor: ALICE, policy: DEFAULT_POLICY, change: 'add', email, role: 'global' });

/** A tenant as a run continued as new before the upgrade carries it. */
const preSigningInput = (tenant: string): TenantWorkflowInput => ({
  tenant,
  displayName: 'Contoso Ltd',
  homeRegion: 'emea',
  admins: [{ email: 'alice@example.com', role: 'global' }],
  createdBy: { kind: 'operator' },
  carried: {
    snapshot: { tenant, displayName: 'Contoso Ltd', homeRegion: 'emea', createdAt: '2026-11-01T00:00:00.000Z', admins: [{ email: 'alice@example.com', role: 'global' }], environments: [], regions: {}, operations: {}, reprotections: {} },
    notificationSeq: 3,
    policy: DEFAULT_POLICY,
  },
});

/** How an update through the frontend ended: 'accepted', or the refusal's code and sentence. */
const outcome = (update: Promise<unknown>): Promise<string> =>
  update.then(
    () => 'accepted',
    (err: unknown) => {
      const refusal = asRefusal(err);
      return refusal ? `${refusal.code}: ${refusal.message}` : String(err);
    },
  );

const failureConverterPath = testDataConverter().failureConverterPath;
let counter = 0;

/**
 * A run of `workflowType` started on a worker from before signed requests (test/support/pre-signing-workflows.ts),
 * then the upgrade: `test` runs while today's worker serves the queue; the history replays on today's code after.
 */
async function afterUpgrade(workflowType: string, workflowId: string, args: unknown[], test: (plane: ControlPlane, frontend: Client) => Promise<void>): Promise<void> {
  const taskQueue = `upgrade-${process.pid}-${++counter}`;
  const handle = env.client.workflow.getHandle(workflowId);
  const workflowTasksCompleted = async (count: number) => {
    const deadline = Date.now() + 30_000;
    while ((await handle.fetchHistory()).events?.filter((e) => e.workflowTaskCompletedEventAttributes).length !== count) {
      if (Date.now() > deadline) throw new Error(`The pre-signing worker did not complete ${count} workflow task(s).`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // No sticky cache, so that today's worker takes the next task from the shared queue at once.
  const older = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    maxCachedWorkflows: 0,
    workflowBundle: await bundleWorkflowCode({ workflowsPath: require.resolve('./support/pre-signing-workflows'), failureConverterPath }),
    dataConverter: testDataConverter(),
  });
  await older.runUntil(async () => {
    await env.client.workflow.start(workflowType, { workflowId, taskQueue, args });
    await workflowTasksCompleted(1);
    // Something happens in the run after its first task, as in any run that has lived a while (an update, a timer):
    // without it, the next worker would take that task and the next for one (a workflow task "heartbeat"), not replay.
    await handle.signal('pre-upgrade-event');
    await workflowTasksCompleted(2);
  });
  expect((await handle.fetchHistory()).events?.some((e) => e.markerRecordedEventAttributes)).toBe(false);

  // The upgrade: today's worker takes over the queue.
  const parts = localParts();
  const workflowBundle = await bundleWorkflowCode(workflowBundleOptions());
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle,
    dataConverter: testDataConverter(),
    activities: createActivities({ ...parts, ...testAuditSink(parts.config.dataDir), ...testRequestTrust(), challenges: TEST_CHALLENGES }),
  });
  // Whoever reaches the frontend (here with the codec key, so that the refusal's sentence is readable).
  const frontend = new Client({ connection: env.connection, dataConverter: testDataConverter() });
  try {
    await worker.runUntil(() => test(new ControlPlane(env.client, taskQueue, testRequestSigner()), frontend));
    // The run, refreshTrust included, replays on today's code.
    await Worker.runReplayHistory({ workflowBundle, dataConverter: testDataConverter() }, await handle.fetchHistory(), workflowId);
  } finally {
    await handle.terminate('test finished');
  }
}

test('a tenant run started before signed requests refuses unsigned requests, takes signed ones after refreshTrust, then checks signatures', async () => {
  const tenant = `contoso-upgrade-${process.pid % 1000}`;
  const workflowId = tenantWorkflowId(tenant);
  await afterUpgrade('tenantWorkflow', workflowId, [preSigningInput(tenant)], async (plane, frontend) => {
    const admins = async () => (await plane.snapshot(tenant))!.admins.map((a) => a.email).sort();
    // Unsigned, before the run has any trust: refused, retryably, and nothing changes.
    expect(await outcome(frontend.workflow.getHandle(workflowId).executeUpdate(updates.changeAdmin, { args: [adminChange('mallory@evil.test')] }))).toBe(`OPERATION_IN_PROGRESS: ${TRUST_NOT_LOADED_MESSAGE}`);
    expect(await admins()).toEqual(['alice@example.com']);

    // Signed, through the client library: it has the run load its worker's trust, and retries.
    await plane.changeAdmin(tenant, adminChange('carol@example.com'));
    expect(await admins()).toEqual(['alice@example.com', 'carol@example.com']);

    // From now on the run checks signatures as a new one does; a second refreshTrust is refused (no history).
    expect(await outcome(frontend.workflow.getHandle(workflowId).executeUpdate(updates.changeAdmin, { args: [adminChange('mallory@evil.test')] }))).toBe(`FORBIDDEN: ${FORGED_REQUEST_MESSAGE}`);
    expect(await admins()).toEqual(['alice@example.com', 'carol@example.com']);
    expect((await frontend.workflow.getHandle(workflowId).query(queries.forgedRequests)).refused).toBe(1);
    expect(await outcome(frontend.workflow.getHandle(workflowId).executeUpdate(updates.refreshTrust))).toMatch(/^ALREADY_EXISTS: /);
  });
}, 180_000);

test('the audit trail answers only signed reads, also in a run started before signed records', async () => {
  const workflowId = AUDIT_WORKFLOW_ID;
  const read = { tenant: null, afterSeq: null, limit: 10, verify: true };
  await afterUpgrade('auditTrailWorkflow', workflowId, [{}], async (plane, frontend) => {
    expect(await outcome(frontend.workflow.getHandle(workflowId).executeUpdate(auditMessages.read, { args: [read] }))).toBe(`OPERATION_IN_PROGRESS: ${TRUST_NOT_LOADED_MESSAGE}`);
    expect((await plane.readAudit(read)).verification).not.toBeNull();
    expect(await outcome(frontend.workflow.getHandle(workflowId).executeUpdate(auditMessages.read, { args: [read] }))).toBe(`FORBIDDEN: ${FORGED_REQUEST_MESSAGE}`);
    expect((await plane.readAudit(read)).verification).not.toBeNull();
  });
}, 180_000);

test('a request with its own update ID (a rollback) is sent again under that ID after refreshTrust, and answered by the rules', async () => {
  const tenant = `contoso-upgrade-id-${process.pid % 1000}`;
  await afterUpgrade('tenantWorkflow', tenantWorkflowId(tenant), [preSigningInput(tenant)], async (plane) => {
    // There is no key change to roll back: the rules' answer, not the upgrade's, so the repeat reached the validator.
    await expect(plane.rollbackKey(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea' }, 'f'.repeat(64))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
}, 180_000);
