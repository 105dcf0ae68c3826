/**
 * A worker process's role decides what it opens: the workflows' worker is the audit trail's single writer; a
 * region's own worker (CMK_WORKER_WORKFLOWS=false) never opens the trail, since opening recovers from a crash
 * (truncating a torn last line) and must not race the writer's appends on a shared data dir.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { ControlPlane } from '../client/library';
import { loadConfig } from '../config';
import { TRAIL_FILE } from '../audit/trail';
import { workerActivityDependencies } from '../worker/main';
import { scratchDir } from './support/scratch';

// A lazy client: nothing here talks to Temporal.
const plane = new ControlPlane(new Client(), 'cmk');

test("only the workflows' worker opens the audit trail: a region's own worker leaves even a torn last line alone", () => {
  const { dir } = scratchDir('cmk-worker-roles-');
  const deployment = { CMK_DATA_DIR: join(dir, 'var'), CMK_SECRETS_DIR: join(dir, 'secrets'), CMK_REGIONS: 'eu,us' };
  const workflowsWorker = loadConfig({ ...deployment, CMK_WORKER_REGIONS: 'none' });
  const regionWorker = loadConfig({ ...deployment, CMK_WORKER_REGIONS: 'eu', CMK_WORKER_WORKFLOWS: 'false' });
  const trailFile = join(deployment.CMK_DATA_DIR, 'audit', TRAIL_FILE);

  // The region's worker starts first: no trail, no trail key made.
  const region = workerActivityDependencies(regionWorker, plane);
  expect('auditTrail' in region).toBe(false);
  expect(existsSync(join(deployment.CMK_DATA_DIR, 'audit'))).toBe(false);
  expect(existsSync(join(deployment.CMK_SECRETS_DIR, 'audit-key'))).toBe(false);
  // Its records still reach the writer, through the audit workflow.
  expect(typeof region.auditSink.report).toBe('function');

  // The writer makes the trail and its key, and appends; then a line is half-written, as during an append.
  const writer = workerActivityDependencies(workflowsWorker, plane).auditTrail!;
  writer.append([{ id: 'test/1', at: new Date().toISOString(), actor: 'operator', action: 'tenant.create', outcome: 'completed', tenant: 'contoso' }]);
  appendFileSync(trailFile, '{"seq":2,"id":"test/2","par');
  const torn = readFileSync(trailFile, 'utf8');

  // A region's worker starting now must not touch it.
  workerActivityDependencies(regionWorker, plane);
  expect(readFileSync(trailFile, 'utf8')).toBe(torn);
  // Whereas opening the trail (the workflows' worker, e.g. after a restart) recovers: the torn line is cut off.
  const reopened = workerActivityDependencies(workflowsWorker, plane).auditTrail!;
  expect(readFileSync(trailFile, 'utf8')).not.toBe(torn);
  expect(reopened.verify()).toMatchObject({ ok: true, records: 1 });
});
