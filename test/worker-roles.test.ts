/**
 * A worker process's role decides what it opens: the workflows' worker is the audit trail's single writer; a
 * region's own worker (CMK_WORKER_WORKFLOWS=false) never opens the trail, since opening recovers from a crash
 * (truncating a torn last line) and must not race the writer's appends on a shared data dir.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { ControlPlane } from '../client/library';
import { loadConfig } from '../config';
import { TRAIL_FILE } from '../audit/trail';
import { createWorkers, defaultMaxCachedWorkflows, workerActivityDependencies } from '../worker/main';
import { buildParts } from '../worker/parts';
import { temporalCliPath } from '../stack/tools';
import { testDataConverter, testRequestSigner } from './support/codec';
import { scratchDir } from './support/scratch';

// A lazy client: nothing here talks to Temporal.
const plane = new ControlPlane(new Client(), 'cmk', testRequestSigner());

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

describe('the workers a process creates, on the Temporal dev server', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCliPath() } } });
  }, 120_000);
  afterAll(async () => {
    await env?.teardown();
  });

  async function workersFor(settings: Record<string, string>): Promise<Array<[string, number]>> {
    const { dir } = scratchDir('cmk-worker-create-');
    const config = loadConfig({ CMK_DATA_DIR: join(dir, 'var'), CMK_SECRETS_DIR: join(dir, 'secrets'), ...settings });
    const workers = await createWorkers(config, env.nativeConnection, buildParts(config), workerActivityDependencies(config, plane), testDataConverter());
    // Started and stopped at once: what is read is how each was created.
    for (const worker of workers) await worker.runUntil(Promise.resolve());
    return workers.map((w) => [w.options.taskQueue, w.options.maxCachedWorkflows]);
  }

  test('CMK_WORKER_MAX_CACHED_WORKFLOWS sizes the workflows worker’s cache; unset, one tenant per MB of heap past 80 MB', async () => {
    expect(await workersFor({ CMK_WORKER_MAX_CACHED_WORKFLOWS: '7' })).toEqual([['cmk', 7]]);
    const derived = (await workersFor({}))[0]?.[1];
    expect(derived).toBe(Math.floor(getHeapStatistics().heap_size_limit / 1024 / 1024 - 80));
    // At the launchers' default heap (256 MB old space; V8 adds its young generation): about 200, not the SDK's 46.
    expect(defaultMaxCachedWorkflows(280)).toBe(200);
    expect(defaultMaxCachedWorkflows(64)).toBe(10);
  }, 120_000);

  test('a region worker serves its region’s queue only; the workflows worker the main one', async () => {
    expect((await workersFor({ CMK_REGIONS: 'eu,us', CMK_WORKER_REGIONS: 'us', CMK_WORKER_WORKFLOWS: 'false' })).map(([q]) => q)).toEqual(['cmk-region-us']);
    expect((await workersFor({ CMK_REGIONS: 'eu,us' })).map(([q]) => q)).toEqual(['cmk', 'cmk-region-eu', 'cmk-region-us']);
  }, 120_000);
});
