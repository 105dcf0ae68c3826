/**
 * A tenant whose workflow tasks fail (a worker crashing, out of memory, or timing out under load: issue 20 saw 10 of
 * 100 key changes end so when the worker saturated): Temporal refuses every update to it with FAILED_PRECONDITION
 * until a task completes. The client library sends the update again for a while (nothing was applied: the update
 * was never admitted), then answers TENANT_UNAVAILABLE with a sentence an administrator understands — never
 * Temporal's bare "Workflow Update failed". Once a healthy worker completes a task, the same request goes through.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/workflow-bundle';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import { CmkError } from '../common/errors';
import { registerSearchAttributes } from '../stack/search-attributes';
import { temporalCliPath } from '../stack/tools';
import { tenantWorkflowId } from '../workflows/messages';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { localParts } from './support/parts';
import { TEST_CHALLENGES, testAuditSink, testDataConverter, testRequestSigner, testRequestTrust } from './support/codec';

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCliPath() } }, client: { dataConverter: testDataConverter() } });
  await registerSearchAttributes(env.connection, 'default');
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

const ALICE: Actor = { kind: 'user', email: 'alice@example.com' };

test('updates to a tenant whose workflow tasks fail are retried, then refused as TENANT_UNAVAILABLE; a healthy worker takes the same request', async () => {
  const taskQueue = `task-failing-${process.pid}`;
  const tenant = `contoso-failing-${process.pid % 1000}`;
  const handle = env.client.workflow.getHandle(tenantWorkflowId(tenant));
  const failing = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    maxCachedWorkflows: 0,
    workflowBundle: await bundleWorkflowCode({ workflowsPath: require.resolve('./support/failing-tenant-workflows'), failureConverterPath: testDataConverter().failureConverterPath }),
    dataConverter: testDataConverter(),
  });
  const impatient = new ControlPlane(env.client, taskQueue, testRequestSigner(), { failingTaskRetryMs: 2_000 });
  const request = { actor: ALICE, policy: DEFAULT_POLICY, change: 'add', email: 'bob@example.com', role: 'global' } as const;
  let refusal: unknown;
  await failing.runUntil(async () => {
    // Started as the API service starts a tenant (signed), without waiting for an answer the stand-in never gives.
    const input = { tenant, displayName: 'Contoso Ltd', homeRegion: 'emea', admins: [{ email: ALICE.email, role: 'global' as const }], createdBy: { kind: 'operator' as const } };
    await env.client.workflow.start('tenantWorkflow', { workflowId: handle.workflowId, taskQueue, args: [await testRequestSigner().signed(handle.workflowId, 'tenantWorkflow', input)] });
    // Temporal refuses updates once a run's workflow task has failed a few times in a row.
    const deadline = Date.now() + 60_000;
    while (((await handle.describe()).raw.pendingWorkflowTask?.attempt ?? 0) < 3) {
      if (Date.now() > deadline) throw new Error('the stand-in did not fail its workflow task three times in 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    refusal = await impatient.changeAdmin(tenant, request).then(
      () => 'accepted',
      (err: unknown) => err,
    );
  });
  expect(refusal).toBeInstanceOf(CmkError);
  expect((refusal as CmkError).code).toBe('TENANT_UNAVAILABLE');
  expect((refusal as CmkError).message).toBe(
    `Tenant ${tenant} cannot take requests right now: its workflow's last tasks failed (a worker restarting or overloaded). Nothing was changed; try again in a minute, and if this persists the provider's operator must look (docs/RUNBOOK.md).`,
  );
  // Nothing was admitted: no update in the history.
  expect((await handle.fetchHistory()).events?.some((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toBe(false);

  // A healthy worker takes over the queue: the same request, with the default patience (30 s), goes through once the
  // server gives it the task (here after the stand-in's last attempt times out, 10 s).
  const parts = localParts();
  const healthy = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await bundleWorkflowCode(workflowBundleOptions()),
    dataConverter: testDataConverter(),
    activities: createActivities({ ...parts, ...testAuditSink(parts.config.dataDir), ...testRequestTrust(), challenges: TEST_CHALLENGES }),
  });
  const patient = new ControlPlane(env.client, taskQueue, testRequestSigner());
  try {
    await healthy.runUntil(async () => {
      await patient.changeAdmin(tenant, request);
      expect((await patient.snapshot(tenant))!.admins.map((a) => a.email).sort()).toEqual(['alice@example.com', 'bob@example.com']);
    });
  } finally {
    await handle.terminate('test finished');
  }
}, 180_000);
