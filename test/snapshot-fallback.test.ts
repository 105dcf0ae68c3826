/**
 * Rolling upgrades: while workers older than the `environmentSnapshot` query (or than `compactSnapshot` too) still
 * run a tenant's workflow, the client library falls back to the queries they answer, and gets the whole tenant, on
 * which every check answers as on the newest worker. On the Temporal dev server, because the fallback rests on how
 * the real server reports a query the workflow has no handler for (INVALID_ARGUMENT); the time-skipping test server
 * reports it differently (INTERNAL).
 */
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { ControlPlane } from '../client/library';
import { temporalCliPath } from '../stack/tools';
import { tenantWorkflowId } from '../workflows/messages';
import { isAllowed, type Actor } from '../domain/access';
import type { EnvironmentRecord, TenantSnapshot } from '../domain/model';
import { checkEnvironmentOperation } from '../domain/rules';
import { testDataConverter, testRequestSigner } from './support/codec';

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCliPath() } }, client: { dataConverter: testDataConverter() } });
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

const environment = (id: string, systemAdmin: string | null): EnvironmentRecord => ({
  id, region: 'emea', state: 'Online', protection: 'provider', keyThumbprint: 'A'.repeat(40), systemAdmin, createdAt: '2026-11-01T00:00:00.000Z',
});
const tenantSnapshot = (tenant: string): TenantSnapshot => ({
  tenant,
  displayName: 'Contoso Ltd',
  homeRegion: 'emea',
  createdAt: '2026-11-01T00:00:00.000Z',
  admins: [{ email: 'alice@example.com', role: 'global' }],
  environments: [environment('prod', 'sam@example.com'), environment('test', null), environment('hr', 'kim@example.com')],
  regions: {},
  operations: {},
});

test.each([
  // compactSnapshot, not snapshot, when the worker has it: the plain snapshot of a large tenant is over 2 MB.
  ['tenantWorkflowBeforeEnvironmentSnapshot', ['environmentSnapshot', 'compactSnapshot']],
  ['tenantWorkflowBeforeCompactSnapshot', ['environmentSnapshot', 'compactSnapshot', 'snapshot']],
])('%s: a scoped read asks %j and gets the whole tenant, on which every check answers alike', async (workflow, asked) => {
  const taskQueue = `older-${workflow}-${process.pid}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await bundleWorkflowCode({ workflowsPath: require.resolve('./support/older-tenant-workflows'), failureConverterPath: testDataConverter().failureConverterPath }),
    dataConverter: testDataConverter(),
  });
  const tenant = `contoso-${workflow.length}-${process.pid % 1000}`;
  const whole = tenantSnapshot(tenant);
  // Which queries the client library asks, in order.
  const queried: string[] = [];
  const client = new Client({
    connection: env.connection,
    dataConverter: testDataConverter(),
    interceptors: { workflow: [{ query: (input, next) => (queried.push(input.queryType), next(input)) }] },
  });
  const plane = new ControlPlane(client, taskQueue, testRequestSigner());
  await worker.runUntil(async () => {
    await env.client.workflow.start(workflow, { workflowId: tenantWorkflowId(tenant), taskQueue, args: [whole] });
    try {
      const sam: Actor = { kind: 'user', email: 'sam@example.com' };
      const scoped = (await plane.snapshot(tenant, { env: 'test', caller: 'sam@example.com' }))!;
      expect(queried).toEqual(asked);
      // Not narrowed to test and sam's own, but whole and correct.
      expect(scoped.environments).toEqual(whole.environments);
      for (const target of ['prod', 'test', 'hr']) {
        expect(checkEnvironmentOperation(scoped, { actor: sam, env: target, operation: 'apply' })).toEqual(checkEnvironmentOperation(whole, { actor: sam, env: target, operation: 'apply' }));
        expect(isAllowed(scoped, sam, 'env.data', target)).toBe(isAllowed(whole, sam, 'env.data', target));
      }
      expect(await plane.snapshot(tenant)).toEqual(whole);
      // A tenant that does not exist is still "no such tenant", not an error.
      expect(await plane.snapshot(`${tenant}-none`, { env: 'test', caller: null })).toBeUndefined();
    } finally {
      await env.client.workflow.getHandle(tenantWorkflowId(tenant)).terminate('test finished');
    }
  });
}, 120_000);
