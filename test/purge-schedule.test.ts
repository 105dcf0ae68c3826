/**
 * R9's belt and braces on the dev server (the time-skipping server has no Schedules): the stack creates the daily
 * purge Schedule at start; a tenant's own timer deletes its locked environment at the deadline; and the purge deletes
 * what a timer missed — here a tenant whose workflow an operator terminated by mistake. Short durations (R14).
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { PURGE_SCHEDULE_ID, tenantWorkflowId } from '../workflows/messages';
import type { PurgeReport } from '../activities/purge';
import { startStack, type Stack } from '../harness/stack';
import { onceTimeAllows } from './support/deadline';
import { expectSchedule } from './support/schedules';

let stack: Stack;
let connection: Connection;
let temporal: Client;
const work = mkdtempSync(join(tmpdir(), 'cmk-purge-'));
const password = join(work, 'password.txt');
writeFileSync(password, 'purge test password 1\n');
const ALICE = 'alice@example.com';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '1s', CMK_UNLOCK_DELAY: '1s', CMK_LOCKED_RETENTION: '12s' });
  connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS });
  temporal = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
}, 120_000);

afterAll(async () => {
  await connection?.close();
  await stack?.stop();
});

async function lockedTenant(tenant: string): Promise<{ deleteAt: string }> {
  const pfx = join(work, `${tenant}.pfx`);
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', `Tenant ${tenant}`, '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'e1'])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k', '--password-file', password, '--out', pfx], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'e1'], { as: ALICE })).code).toBe(0);
  const locked = await onceTimeAllows('the embargo lets the lock in', () => stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', `Tenant ${tenant}`, '--file', pfx, '--password-file', password, '--json'], { as: ALICE }));
  expect(locked.code).toBe(0);
  return locked.json() as { deleteAt: string };
}

test('the stack creates the daily purge Schedule, visible to operators', async () => {
  await expectSchedule(temporal, PURGE_SCHEDULE_ID, { everyMs: 24 * 3_600_000, workflowType: 'purgeLockedEnvironmentsWorkflow' });
});

test('R9: the tenant timer deletes at the deadline; the purge deletes what no timer will (a terminated tenant workflow)', async () => {
  const timely = await lockedTenant('timely');
  const orphan = await lockedTenant('orphan');
  await temporal.workflow.getHandle(tenantWorkflowId('orphan')).terminate('operator mistake (test)');
  await sleep(Math.max(Date.parse(timely.deleteAt), Date.parse(orphan.deleteAt)) + 1500 - Date.now());

  // The tenant's own timer: Deleted, mailed, warned beforehand.
  for (let i = 0; i < 40; i++) {
    const state = (await stack.cmk(['env', 'list', '--tenant', 'timely', '--json'])).json().environments[0].state as string;
    if (state === 'Deleted') break;
    await sleep(500);
  }
  expect((await stack.cmk(['env', 'list', '--tenant', 'timely', '--json'])).json().environments[0]).toMatchObject({ id: 'e1', state: 'Deleted', deletedAt: expect.any(String) });
  // tenant show counts it apart from the live environments.
  expect((await stack.cmk(['tenant', 'show', '--tenant', 'timely', '--json'])).json().tenant.regions).toEqual([{ region: 'default', environments: 0, byState: {}, onTenantKey: 0, deleted: 1 }]);
  const events = ((await stack.cmk(['mail', 'list', '--tenant', 'timely', '--json'])).json().mails as Array<{ event: string }>).map((m) => m.event);
  expect(events).toEqual(expect.arrayContaining(['tenant-locked', 'deletion-warning', 'environment-deleted']));
  expect(existsSync(join(stack.dataDir, 'environments', 'timely', 'e1'))).toBe(false);
  // No workflow runs for the orphan: its locked database is still on disk, past its deadline.
  expect(existsSync(join(stack.dataDir, 'environments', 'orphan', 'e1', 'key-record.json'))).toBe(true);

  const schedule = temporal.schedule.getHandle(PURGE_SCHEDULE_ID);
  const before = (await schedule.describe()).info.recentActions.length;
  await schedule.trigger();
  let workflowId: string | undefined;
  for (let i = 0; i < 40 && !workflowId; i++) {
    const actions = (await schedule.describe()).info.recentActions;
    workflowId = actions.length > before ? actions.at(-1)?.action.workflow.workflowId : undefined;
    if (!workflowId) await sleep(250);
  }
  expect(workflowId).toBeDefined();
  const report = (await temporal.workflow.getHandle(workflowId!).result()) as PurgeReport;
  expect(report.deleted).toEqual([{ tenant: 'orphan', env: 'e1', deleteAt: orphan.deleteAt, by: 'purge' }]);
  expect(report.orphanedTenants).toEqual(['orphan']);
  expect(existsSync(join(stack.dataDir, 'environments', 'orphan', 'e1'))).toBe(false);

  // A second pass finds nothing left to do.
  const again = await temporal.workflow.start('purgeLockedEnvironmentsWorkflow', { taskQueue: 'cmk', workflowId: `purge-again-${Date.now()}`, args: [] });
  expect(((await again.result()) as PurgeReport).deleted).toEqual([]);
});
