/**
 * R1 as `npm start` runs it with CMK_REGIONS set: one worker serving every region's task queue, the API refusing
 * regions the deployment does not serve, and each region's vault and database work on that region's queue.
 * test/regions.test.ts shows separate workers per region and a lock in one region leaving the other untouched.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { loadDataConverter } from '../codec';
import { tenantWorkflowId } from '../workflows/messages';
import { startStack, type Stack } from '../harness/stack';

let stack: Stack;
const ALICE = 'alice@globex.example';

beforeAll(async () => {
  stack = await startStack({ CMK_REGIONS: 'eu,us' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

test('one worker serves both regions; a region outside CMK_REGIONS is refused and nothing changes', async () => {
  const status = await stack.cmk(['status', '--json']);
  expect(status.code).toBe(0);
  expect(status.json().worker.regions).toEqual({ eu: { taskQueue: 'cmk-region-eu', pollers: expect.any(Number) }, us: { taskQueue: 'cmk-region-us', pollers: expect.any(Number) } });
  expect(status.json().worker.regions.eu.pollers).toBeGreaterThan(0);
  expect((await stack.cmk(['status'])).stdout).toMatch(/Workers polling cmk-region-us \(region us\): [1-9]/);

  const refusedTenant = await stack.cmk(['tenant', 'create', '--tenant', 'initech', '--name', 'Initech', '--region', 'apac', '--admin', `${ALICE}:global`, '--json']);
  expect(refusedTenant.code).toBe(3);
  expect(refusedTenant.json().error).toEqual({ code: 'INVALID_ARGUMENT', message: 'Region "apac" is not served by this deployment; it serves eu, us.' });
  expect((await stack.cmk(['env', 'list', '--tenant', 'initech', '--json'])).json().error.code).toBe('NOT_FOUND');

  expect((await stack.cmk(['tenant', 'create', '--tenant', 'globex', '--name', 'Globex', '--region', 'eu', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'globex', '--env', 'prod-us', '--region', 'us'])).code).toBe(0);
  const refusedEnv = await stack.cmk(['env', 'create', '--tenant', 'globex', '--env', 'prod-apac', '--region', 'apac', '--json']);
  expect(refusedEnv.code).toBe(3);
  expect(refusedEnv.json().error.code).toBe('INVALID_ARGUMENT');
  expect((await stack.cmk(['env', 'list', '--tenant', 'globex', '--region', 'us', '--json'])).json().environments.map((e: { id: string }) => e.id)).toEqual(['prod-us']);

  const work = mkdtempSync(join(tmpdir(), 'cmk-regions-'));
  writeFileSync(join(work, 'pw'), 'a long and secret password\n');
  const generated = await stack.cmk(['key', 'generate', '--tenant', 'globex', '--name', 'globex-us', '--region', 'us', '--password-file', join(work, 'pw'), '--out', join(work, 'us.pfx'), '--wait', '--json'], { as: ALICE });
  expect(generated.code).toBe(0);
  expect((await stack.cmk(['key', 'show', '--tenant', 'globex', '--region', 'us', '--json'], { as: ALICE })).json().activeKey).toMatchObject({ name: 'globex-us', state: 'Active' });
  expect((await stack.cmk(['key', 'show', '--tenant', 'globex', '--region', 'eu', '--json'], { as: ALICE })).json().activeKey).toBeNull();

  // The history says where each activity ran: the US region's work on the US queue, mail and audit on the main one.
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  try {
    const client = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
    const history = await client.workflow.getHandle(tenantWorkflowId('globex')).fetchHistory();
    const scheduled = (history.events ?? [])
      .filter((e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      .map((e) => `${e.activityTaskScheduledEventAttributes?.activityType?.name}@${e.activityTaskScheduledEventAttributes?.taskQueue?.name}`);
    expect(scheduled).toEqual(expect.arrayContaining(['provisionEnvironmentDatabase@cmk-region-us', 'activateStagedKey@cmk-region-us', 'notifyAdministrators@cmk', 'recordAudit@cmk']));
    expect(scheduled.filter((s) => s.endsWith('@cmk-region-eu'))).toEqual([]);
  } finally {
    await connection.close();
  }
});
