/**
 * `npm run bench [-- --n 100] [--routed] [--json]`: re-protection of N environments after a key change on the embedded stack,
 * beside the same work done by a plain sequential script with no Temporal. Not a test: it prints figures; nothing
 * asserts a duration. Set-up (creating and applying N environments) is not timed. `npm run bench -- --bulk-setup N`
 * times the set-up itself instead (bench/bulk-setup.ts).
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { loadRequestSigner } from '../common/request-signing';
import { ControlPlane } from '../client/library';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { startStack } from '../harness/stack';
import { activityLatencies, arg, percentile, pool, tenantHistories, workerMemory } from './support';
import { bulkSetupBench } from './bulk-setup';

async function main(): Promise<void> {
  const n = arg('n', 100);
  // --routed: the deployment names its region, so vault and database work goes through the region's task queue (R1).
  const routed = process.argv.includes('--routed');
  const stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', ...(routed ? { CMK_REGIONS: 'default' } : {}) });
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
  const plane = new ControlPlane(client, 'cmk', loadRequestSigner(stack.secretsDir, {}));
  const config = loadConfig(stack.env);
  const parts = buildParts(config);
  const alice = { kind: 'user', email: 'alice@bench.example' } as const;
  const work = mkdtempSync(join(tmpdir(), 'cmk-bench-'));
  writeFileSync(join(work, 'pw'), 'a long and secret password\n');
  const batches = (items: string[], work: (item: string) => Promise<unknown>) => pool(items, 8, work);
  try {
    await stack.cmk(['tenant', 'create', '--tenant', 'bench', '--name', 'Bench', '--admin', `${alice.email}:global`]);
    await stack.cmk(['key', 'generate', '--tenant', 'bench', '--name', 'k1', '--password-file', join(work, 'pw'), '--out', join(work, 'k1.pfx')], { as: alice.email });
    const envs = Array.from({ length: n }, (_, i) => `env-${i}`);
    const setupStart = Date.now();
    // Created in one operation (`env create --from-file`), then applied one update each: there is no bulk apply.
    writeFileSync(join(work, 'environments.txt'), `${envs.join('\n')}\n`);
    const created = await stack.cmk(['env', 'create', '--tenant', 'bench', '--from-file', join(work, 'environments.txt'), '--json'], { as: alice.email });
    if (created.code !== 0) throw new Error(`bulk creation failed: ${created.stderr}`);
    const createSeconds = (Date.now() - setupStart) / 1000;
    await batches(envs, (env) => parts.databases.writeRow('bench', env, `row of ${env}`));
    // Each record goes along, read once here, so that no apply has to read the whole tenant first (it would, at 10,000).
    const records = new Map((await plane.snapshot('bench'))!.environments.map((e) => [e.id, e]));
    await batches(envs, (env) => plane.environmentOperation('bench', { actor: alice, policy: config.policy, env, operation: 'apply', acceptRisk: true }, records.get(env)));
    const setupSeconds = (Date.now() - setupStart) / 1000;
    await new Promise((r) => setTimeout(r, 1100));

    const statusOf = workerMemory(stack.dataDir);
    const rssBeforeReprotection = statusOf('VmRSS');
    const setupPeakRss = statusOf('VmHWM');
    // The worker's resident memory while it re-protects (sampled), apart from the peak the set-up left behind.
    let reprotectionPeakRss = rssBeforeReprotection;
    const sampler = setInterval(() => (reprotectionPeakRss = Math.max(reprotectionPeakRss, statusOf('VmRSS'))), 100);

    // Timed: the key change returns at once; re-protection runs until the key is Active.
    const started = Date.now();
    const changed = await stack.cmk(['key', 'generate', '--tenant', 'bench', '--name', 'k2', '--password-file', join(work, 'pw'), '--out', join(work, 'k2.pfx'), '--wait', '--json'], { as: alice.email });
    const seconds = (Date.now() - started) / 1000;
    clearInterval(sampler);
    if (changed.code !== 0 || changed.json().activeKey.state !== 'Active') throw new Error(`key change failed: ${changed.stderr}`);

    const runs = await tenantHistories(client, 'bench');
    const latencies = activityLatencies(runs, 'reprotectEnvironments');

    // Baseline: the same re-wrap, one environment after another, in this process, with no Temporal.
    const third = await parts.vault.importKey('tenant-bench-baseline', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: true });
    const baselineStart = Date.now();
    for (const env of envs) await parts.databases.reprotect('bench', env, { kind: 'tenant', name: third.name, version: third.version, thumbprint: third.thumbprint });
    const baselineSeconds = (Date.now() - baselineStart) / 1000;

    const figures = {
      environments: n,
      createSeconds,
      setupSeconds,
      reprotectSeconds: seconds,
      environmentsPerSecond: n / seconds,
      // One activity re-protects a batch of environments: latencies are per batch, scheduled → completed.
      batches: latencies.length,
      batchP50Ms: percentile(latencies, 50),
      batchP95Ms: percentile(latencies, 95),
      workerRssBeforeReprotectionMb: Math.round(rssBeforeReprotection),
      workerPeakRssDuringReprotectionMb: Math.round(reprotectionPeakRss),
      workerPeakRssIncludingSetupMb: Math.round(setupPeakRss),
      workflowRuns: runs.length,
      largestHistoryEvents: Math.max(...runs.map((events) => events.length)),
      baselineSeconds,
      baselineEnvironmentsPerSecond: n / baselineSeconds,
      ratio: seconds / baselineSeconds,
    };
    console.log(process.argv.includes('--json') ? JSON.stringify(figures) : JSON.stringify(figures, null, 2));
  } catch (err) {
    // What the stack's processes said (the API service logs the cause of a 500 there).
    console.error(stack.output().slice(-4000));
    throw err;
  } finally {
    await connection.close();
    await stack.stop();
  }
}

void (process.argv.includes('--bulk-setup') ? bulkSetupBench() : process.argv.includes('--tenants') || process.argv.includes('--growth') ? import('./many-tenants').then((m) => m.manyTenantsBench()) : main()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
