/**
 * `tenant create` answers with the new tenant even when its workflow's first task comes late. The workflow registers
 * its queries only after it has loaded its worker's trust (a local activity) and checked the start's signature, so
 * that a forged start is never read as a tenant; a query delivered with that first task finds no handler yet. Seen in
 * a CI run on a loaded machine: `createTenant` failed with "Failed to query Workflow" for a tenant it had created.
 */
import { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import { tenantWorkflowId } from '../workflows/messages';
import { localParts } from './support/parts';
import { testAuditSink, testDataConverter, testRequestTrust, TEST_CHALLENGES } from './support/codec';
import { OPERATOR_ACTOR, timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();

test('a tenant whose workflow is first picked up after the client asked for it is answered once created', async () => {
  const parts = localParts();
  const taskQueue = `first-answer-${process.pid}`;
  // The worker starts only once the client library has asked for the new tenant (a busy worker, a loaded machine).
  let asked: () => void = () => undefined;
  const queried = new Promise<void>((resolve) => (asked = resolve));
  const client = new Client({
    connection: harness.env.connection,
    dataConverter: testDataConverter(),
    interceptors: { workflow: [{ query: (input, next) => (asked(), next(input)) }] },
  });
  const plane = new ControlPlane(client, taskQueue, harness.signer);
  const created = plane.createTenant({ actor: OPERATOR_ACTOR, tenant: 'late-start', displayName: 'Late Start Ltd', homeRegion: 'emea', admins: [{ email: 'alice@example.com', role: 'global' }] });
  created.catch(() => undefined);
  await queried;
  const worker = await Worker.create({
    connection: harness.env.nativeConnection,
    taskQueue,
    workflowBundle: harness.bundle,
    dataConverter: testDataConverter(),
    activities: createActivities({ ...parts, ...testAuditSink(parts.config.dataDir), ...testRequestTrust(), challenges: TEST_CHALLENGES }),
  });
  await worker.runUntil(async () => {
    await expect(created).resolves.toMatchObject({ tenant: 'late-start', displayName: 'Late Start Ltd', admins: [{ email: 'alice@example.com', role: 'global' }] });
    await harness.terminateWhenIdle(tenantWorkflowId('late-start'));
  });
});
