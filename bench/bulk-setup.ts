/**
 * `npm run bench -- --bulk-setup N [--json]`: N environments set up with one `cmk env create --from-file` on the
 * embedded stack (issue 20), timed from the CLI's start to its answer, beside a plain script that creates the same N
 * databases one after another in-process with no Temporal. Not a test: it prints figures; nothing asserts a
 * duration. The worker's memory is sampled every 100 ms while the list is created.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { providerProtector } from '../activities/environments';
import { tenantWorkflowId } from '../workflows/messages';
import { startStack } from '../harness/stack';
import { activityLatencies, arg, percentile, tenantHistories, workerMemory } from './support';

export async function bulkSetupBench(): Promise<void> {
  const n = arg('bulk-setup', 1000);
  const stack = await startStack();
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
  const alice = 'alice@bench.example';
  const work = mkdtempSync(join(tmpdir(), 'cmk-bench-bulk-'));
  try {
    await stack.cmk(['tenant', 'create', '--tenant', 'bench', '--name', 'Bench', '--admin', `${alice}:global`]);
    const lines = Array.from({ length: n }, (_, i) => (i % 10 === 0 ? `env-${i},admin-${i % 7}@bench.example` : `env-${i}`));
    const list = join(work, 'environments.txt');
    writeFileSync(list, `# ${n} environments of the bench tenant\n${lines.join('\n')}\n`);

    const memory = workerMemory(stack.dataDir);
    const rssBefore = memory('VmRSS');
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, memory('VmRSS'))), 100);
    const started = Date.now();
    const created = await stack.cmk(['env', 'create', '--tenant', 'bench', '--from-file', list, '--json'], { as: alice });
    const seconds = (Date.now() - started) / 1000;
    clearInterval(sampler);
    if (created.code !== 0 || created.json().created !== n) throw new Error(`bulk creation failed: ${created.stderr}`);

    const listStarted = Date.now();
    const listed = await stack.cmk(['env', 'list', '--tenant', 'bench', '--json'], { as: alice });
    const listSeconds = (Date.now() - listStarted) / 1000;
    if ((listed.json().environments as unknown[]).length !== n) throw new Error('env list does not show every environment');

    const runs = await tenantHistories(client, 'bench');
    const latencies = activityLatencies(runs, 'provisionEnvironmentDatabases');
    const described = await client.workflow.getHandle(tenantWorkflowId('bench')).describe();

    // Baseline: the same databases made one after another in this process, with no Temporal, no API, no CLI.
    const parts = buildParts(loadConfig(stack.env));
    const protector = await providerProtector(parts.vault, 'default');
    const baselineStart = Date.now();
    for (let i = 0; i < n; i++) await parts.databases.create('bench-baseline', `env-${i}`, protector);
    const baselineSeconds = (Date.now() - baselineStart) / 1000;

    const figures = {
      environments: n,
      setupSeconds: seconds,
      environmentsPerSecond: n / seconds,
      progressLines: created.stderr.split('\n').filter((l) => l.startsWith('created ')),
      batches: latencies.length,
      batchP50Ms: percentile(latencies, 50),
      batchP95Ms: percentile(latencies, 95),
      workerRssBeforeMb: Math.round(rssBefore),
      workerPeakRssDuringMb: Math.round(rssPeak),
      workerPeakRssLifetimeMb: Math.round(memory('VmHWM')),
      workflowRuns: runs.length,
      largestHistoryEvents: Math.max(...runs.map((events) => events.length)),
      currentRunHistoryBytes: Number(described.raw.workflowExecutionInfo?.historySizeBytes ?? NaN),
      envListSeconds: listSeconds,
      baselineSeconds,
      baselineEnvironmentsPerSecond: n / baselineSeconds,
      ratio: seconds / baselineSeconds,
    };
    console.log(process.argv.includes('--json') ? JSON.stringify(figures) : JSON.stringify(figures, null, 2));
  } catch (err) {
    console.error(stack.output().slice(-4000));
    throw err;
  } finally {
    await connection.close();
    await stack.stop();
  }
}
