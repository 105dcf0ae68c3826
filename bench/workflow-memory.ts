/**
 * `node --expose-gc --import tsx bench/workflow-memory.ts [--tenants N] [--envs E] [--unshared] [--json]` (issue 20):
 * what one tenant's workflow costs the worker while the worker keeps it in memory (its workflow cache). An in-process
 * worker on the time-skipping test server runs the workflows on this process's main thread (`debugMode`), so that
 * the heap measured after a full collection is theirs: before any tenant, then after N tenants created through the
 * client library (signed, as the API service sends them) with E environments each (one bulk creation). `--unshared`
 * builds the bundle without the shared modules of worker/workflow-bundle.ts, to compare.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { createActivities } from '../activities';
import { AuditTrail } from '../audit/trail';
import { ControlPlane } from '../client/library';
import { dataConverterFor, loadCodecKeyRing } from '../codec';
import { RequestSigner, requestTrustFor } from '../common/request-signing';
import { ChallengeIssuer } from '../api/challenges';
import { loadConfig } from '../config';
import { OPERATOR } from '../domain/access';
import { parseEnvironmentList } from '../domain/bulk';
import { DEFAULT_POLICY } from '../domain/policy';
import { registerSearchAttributes } from '../stack/search-attributes';
import { temporalTestServerPath } from '../stack/tools';
import { buildParts } from '../worker/parts';
import { workflowBundleOptions } from '../worker/workflow-bundle';
import { arg, pool } from './support';

const REGION = 'default';
const ALICE = { kind: 'user', email: 'alice@bench.example' } as const;

/** Heap in use after full collections (the workflows' own, as they run on this thread), in MB. */
function heapMb(): number {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) collect();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

async function main(): Promise<void> {
  const tenants = arg('tenants', 100);
  const envCount = arg('envs', 10);
  const unshared = process.argv.includes('--unshared');
  const dataConverter = dataConverterFor(loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${randomBytes(32).toString('base64')}` }));
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: temporalTestServerPath() } }, client: { dataConverter } });
  try {
    await registerSearchAttributes(env.connection, 'default');
    const options = workflowBundleOptions();
    const workflowBundle = await bundleWorkflowCode(unshared ? { ...options, preloadModules: [] } : options);
    const base = mkdtempSync(join(tmpdir(), 'cmk-wfmem-'));
    const config = loadConfig({ CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') });
    const parts = buildParts(config);
    const signer = new RequestSigner(randomBytes(32), () => Date.now());
    const auditTrail = new AuditTrail(join(config.dataDir, 'audit'), randomBytes(32));
    const taskQueue = `wfmem-${process.pid}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle,
      dataConverter,
      debugMode: true, // the workflows on this thread: their heap is the one measured
      maxCachedWorkflows: tenants + 10,
      activities: createActivities({ ...parts, auditTrail, auditSink: { report: async (entries) => void auditTrail.append(entries) }, requestTrust: requestTrustFor(signer, DEFAULT_POLICY, {}), challenges: new ChallengeIssuer(randomBytes(32)) }),
    });
    const running = worker.run();
    const plane = new ControlPlane(env.client, taskQueue, signer);
    const names = Array.from({ length: tenants }, (_, i) => `mem-${String(i).padStart(4, '0')}`);
    const list = parseEnvironmentList(Array.from({ length: envCount }, (_, i) => `env-${i}`).join('\n')).list;
    // One tenant first: the bundle's shared part, the SDK's and the activities' first use are not a tenant's cost.
    const one = async (tenant: string) => {
      await plane.createTenant({ actor: OPERATOR, tenant, displayName: `Memory ${tenant}`, homeRegion: REGION, admins: [{ email: ALICE.email, role: 'global' }] });
      if (envCount > 0) await plane.createEnvironments(tenant, { actor: ALICE, policy: config.policy, operation: randomUUID(), region: REGION, list });
    };
    await one('mem-first');
    const before = heapMb();
    await pool(names, 8, one);
    const after = heapMb();
    worker.shutdown();
    await running;
    const result = { tenants, environmentsPerTenant: envCount, sharedModules: !unshared, heapMbBefore: Math.round(before * 10) / 10, heapMbAfter: Math.round(after * 10) / 10, perTenantMb: Math.round(((after - before) / tenants) * 1000) / 1000 };
    console.log(process.argv.includes('--json') ? JSON.stringify(result) : result);
  } finally {
    await env.teardown();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
