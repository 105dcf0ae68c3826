/**
 * R1 with region task queues: two regions, each served by its own worker with its own vault and database files
 * (as a region's workers are configured with that region's vault and servers), and a workflows-only worker for the
 * tenant workflow, mail and the audit trail. On the time-skipping server, so that R6's 72 hours pass in seconds.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import { regionTaskQueue, tenantWorkflowId } from '../workflows/messages';
import { DEFAULT_POLICY, type Policy } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';
import { ALICE, HOUR, OPERATOR_ACTOR, timeSkippingHarness } from './support/time-skipping';
import { localParts } from './support/parts';
import { signChallenge, testAuditSink, testDataConverter, testRequestTrust, TEST_CHALLENGES } from './support/codec';

const harness = timeSkippingHarness();
const POLICY: Policy = { ...DEFAULT_POLICY, regions: ['eu', 'us'] };

interface Region {
  name: 'eu' | 'us';
  parts: ReturnType<typeof localParts>;
  worker: Worker;
  running: Promise<void>;
}

async function regionWorker(name: 'eu' | 'us', taskQueue: string, main: ReturnType<typeof localParts>, parts = localParts()): Promise<Region> {
  const worker = await Worker.create({
    connection: harness.env.nativeConnection,
    taskQueue: regionTaskQueue(taskQueue, name),
    dataConverter: testDataConverter(),
    // The region's own vault and databases; mail and audit stay with the workflows' worker.
    activities: createActivities({ ...main, ...testAuditSink(main.config.dataDir), ...testRequestTrust(POLICY), challenges: TEST_CHALLENGES, vault: parts.vault, databases: parts.databases }),
  });
  return { name, parts, worker, running: worker.run() };
}

/** The worker of the tenant workflow, mail and the audit trail, on the deployment's main queue; `policy` is its configuration. */
function workflowsWorker(taskQueue: string, main: ReturnType<typeof localParts>, policy: Policy = POLICY): Promise<Worker> {
  return Worker.create({
    connection: harness.env.nativeConnection,
    taskQueue,
    workflowBundle: harness.bundle,
    dataConverter: testDataConverter(),
    activities: createActivities({ ...main, ...testAuditSink(main.config.dataDir), ...testRequestTrust(policy) }),
  });
}

async function stage(region: Region, tenant: string, privateKey: KeyObject = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey) {
  const key = await region.parts.vault.importKey(`tenant-${tenant}-${region.name}`, privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: false });
  return { vaultKey: { name: key.name, version: key.version }, thumbprint: key.thumbprint };
}

/** The task queues the tenant's activities were scheduled on, by activity type. */
async function activityQueues(tenant: string): Promise<Array<[string, string]>> {
  const history = await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    .map((e) => [e.activityTaskScheduledEventAttributes?.activityType?.name ?? '', e.activityTaskScheduledEventAttributes?.taskQueue?.name ?? '']);
}

test('R1: each region runs on its own queue with its own vault and databases; a key change and a lock in one leave the other untouched', async () => {
  const taskQueue = `regions-${process.pid}`;
  const main = localParts();
  // The workflows' worker serves no region: were a region's activity routed here, it would find no key or database.
  const workflows = await workflowsWorker(taskQueue, main);
  const tenant = `globex-${process.pid % 1000}`;
  const plane = new ControlPlane(harness.env.client, taskQueue, harness.signer);
  const eu = await regionWorker('eu', taskQueue, main);
  let us = await regionWorker('us', taskQueue, main);
  try {
    await workflows.runUntil(async () => {
      await plane.createTenant({ actor: OPERATOR_ACTOR, tenant, displayName: 'Globex', homeRegion: 'eu', admins: [{ email: 'alice@example.com', role: 'global' }], regions: POLICY.regions! });
      // A region the deployment does not serve is refused before anything waits for a worker that never comes.
      await expect(plane.createTenant({ actor: OPERATOR_ACTOR, tenant: `${tenant}-x`, displayName: 'X', homeRegion: 'apac', admins: [{ email: 'alice@example.com', role: 'global' }], regions: POLICY.regions! })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      const before = (await plane.snapshot(tenant))!;
      await expect(plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: POLICY, env: 'prod-apac', region: 'apac', systemAdmin: null })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect((await plane.snapshot(tenant))!.environments).toEqual(before.environments);

      for (const region of [eu, us]) {
        await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: POLICY, env: `prod-${region.name}`, region: region.name, systemAdmin: null });
      }
      // Each database and provider key lives in its region's parts only.
      expect(await eu.parts.databases.describe(tenant, 'prod-eu')).toBeDefined();
      expect(await eu.parts.databases.describe(tenant, 'prod-us')).toBeUndefined();
      expect(await us.parts.databases.describe(tenant, 'prod-us')).toBeDefined();
      expect(await main.databases.describe(tenant, 'prod-eu')).toBeUndefined();
      expect((await eu.parts.vault.listVersions('provider-eu')).length).toBe(1);
      expect(await us.parts.vault.listVersions('provider-eu')).toEqual([]);

      // A key per region (R1), each staged in and activated by its own region.
      const euKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      const euStaged = await stage(eu, tenant, euKey);
      const usStaged = await stage(us, tenant);
      await plane.changeKey(tenant, { actor: ALICE, policy: POLICY, region: 'eu', name: 'globex-eu', source: 'generated', staged: euStaged });
      await plane.changeKey(tenant, { actor: ALICE, policy: POLICY, region: 'us', name: 'globex-us', source: 'generated', staged: usStaged });
      for (const region of [eu, us]) {
        await plane.environmentOperation(tenant, { actor: ALICE, policy: POLICY, env: `prod-${region.name}`, operation: 'apply', acceptRisk: true });
        await region.parts.databases.writeRow(tenant, `prod-${region.name}`, `${region.name} row`);
      }

      // With the US workers gone, Europe carries on: its work never waits on another region's queue.
      await us.worker.shutdown();
      await us.running;
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: POLICY, env: 'test-eu', region: 'eu', systemAdmin: null });
      expect(await eu.parts.databases.describe(tenant, 'test-eu')).toBeDefined();
      // Back, with the US region's own vault and databases.
      us = await regionWorker('us', taskQueue, main, us.parts);

      // R8 in Europe, once R6's embargo is over: only Europe's environments and key are touched.
      await harness.env.sleep(72 * HOUR + 60_000);
      const proof: PossessionProof = { challengeId: randomUUID(), tenant, region: 'eu', user: 'alice@example.com', operation: 'lock', expiresAt: new Date(Date.now() + 30 * 24 * HOUR).toISOString(), verifiedThumbprint: euStaged.thumbprint };
      // The challenge and signature the proof was made of: Europe's worker checks them again against Europe's vault.
      const challenge = await TEST_CHALLENGES.seal({ id: proof.challengeId, tenant, region: 'eu', user: proof.user, operation: 'lock', expiresAt: proof.expiresAt });
      const possession = { challenge, signature: signChallenge(challenge, euKey) };
      const locked = await plane.lockTenant(tenant, { actor: ALICE, policy: POLICY, region: 'eu', confirm: 'Globex', proof, possession });
      expect(locked.sealed.sort()).toEqual(['prod-eu']);

      const after = (await plane.snapshot(tenant))!;
      const states = Object.fromEntries(after.environments.map((e) => [e.id, e.state]));
      expect(states).toEqual({ 'prod-eu': 'Locked', 'test-eu': 'Locked', 'prod-us': 'Online' });
      expect(after.regions.eu!.keys[0]).toMatchObject({ state: 'Locked', inVault: false });
      expect(after.regions.us!.keys[0]).toMatchObject({ state: 'Active', thumbprint: usStaged.thumbprint });
      expect(await eu.parts.vault.getKey(euStaged.vaultKey)).toBeUndefined();
      expect(await us.parts.vault.getKey(usStaged.vaultKey)).toMatchObject({ enabled: true });
      await expect(eu.parts.databases.readRows(tenant, 'prod-eu')).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
      expect((await us.parts.databases.readRows(tenant, 'prod-us')).map((r) => r.text)).toEqual(['us row']);

      // Every vault and database activity ran on its region's queue; mail and audit on the workflows' queue.
      const queues = await activityQueues(tenant);
      const regionBound = new Set(['provisionEnvironmentDatabase', 'activateStagedKey', 'applyTenantKey', 'verifyLockPossession', 'takeEnvironmentsOffline', 'withdrawTenantKeys']);
      for (const [type, queue] of queues) {
        if (regionBound.has(type)) expect(queue).toMatch(new RegExp(`^${taskQueue}-region-(eu|us)$`));
        else expect([type, queue]).toEqual([type, taskQueue]);
      }
      expect(queues.filter(([type]) => type === 'takeEnvironmentsOffline').map(([, q]) => q)).toEqual([regionTaskQueue(taskQueue, 'eu')]);
      expect(new Set(queues.filter(([type]) => type === 'provisionEnvironmentDatabase').map(([, q]) => q))).toEqual(new Set([regionTaskQueue(taskQueue, 'eu'), regionTaskQueue(taskQueue, 'us')]));
      await harness.terminateWhenIdle(tenantWorkflowId(tenant));
    });
  } finally {
    for (const region of [eu, us]) {
      if (region.worker.getState() === 'RUNNING') region.worker.shutdown();
      await region.running.catch(() => undefined);
    }
  }
});

test("R1 routing follows the worker's configuration, not the request: a request naming regions does not re-route a deployment that names none", async () => {
  const taskQueue = `regions-follow-${process.pid}`;
  const main = localParts();
  const workflows = await workflowsWorker(taskQueue, main, DEFAULT_POLICY);
  const tenant = `initech-${process.pid % 1000}`;
  const plane = new ControlPlane(harness.env.client, taskQueue, harness.signer);
  // The region's worker shares the parts here: what this test shows is the queue each activity was sent to.
  const eu = await regionWorker('eu', taskQueue, main, main);
  try {
    await workflows.runUntil(async () => {
      // Started before the deployment named regions: no region list in the input.
      await plane.createTenant({ actor: OPERATOR_ACTOR, tenant, displayName: 'Initech', homeRegion: 'eu', admins: [{ email: 'alice@example.com', role: 'global' }] });
      const create = (env: string, policy: Policy) => plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy, env, region: 'eu', systemAdmin: null });
      await create('before', DEFAULT_POLICY);
      await create('routed', POLICY);
      await create('after', DEFAULT_POLICY);
      const provisioned = (await activityQueues(tenant)).filter(([type]) => type === 'provisionEnvironmentDatabase').map(([, queue]) => queue);
      // Signed or not, a request's policy is not the deployment's (DESIGN.md §6): the worker's own says no regions.
      expect(provisioned).toEqual([taskQueue, taskQueue, taskQueue]);
      for (const env of ['before', 'routed', 'after']) expect(await main.databases.describe(tenant, env)).toBeDefined();
      expect((await plane.snapshot(tenant))!.environments.map((e) => [e.id, e.state])).toEqual([['before', 'Online'], ['routed', 'Online'], ['after', 'Online']]);
      await harness.terminateWhenIdle(tenantWorkflowId(tenant));
    });
  } finally {
    eu.worker.shutdown();
    await eu.running.catch(() => undefined);
  }
});
