/** The worker process: runs the tenant workflows and their activities on the configured task queue. */
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { Client, Connection, type DataConverter } from '@temporalio/client';
import { ControlPlane } from '../client/library';
import { ensurePurgeSchedule } from '../client/purge-schedule';
import { ensureMailRetrySchedule } from '../client/mail-schedule';
import { ensureDriftSchedule } from '../client/drift-schedule';
import { OPERATOR } from '../domain/access';
import { regionTaskQueue, type DriftRecordRequest } from '../workflows/messages';
import { loadConfig, type Config } from '../config';
import { createActivities } from '../activities';
import { buildParts } from './parts';
import { workflowBundleOptions } from './workflow-bundle';
import { loadDataConverter } from '../codec';
import { temporalConnectionOptions } from '../config/temporal';
import { AuditTrail } from '../audit/trail';
import { loadOrCreateSecret } from '../common/secrets';
import { loadRequestSigner, requestTrustFor } from '../common/request-signing';
import { ChallengeIssuer } from '../api/challenges';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { stopWhenStackEnds } from '../stack/parent';
import { driftMetrics, installWorkerRuntime } from './telemetry';

/**
 * What this process's activities need besides its parts: the tenants (for the daily purge), the audit sink, and — in
 * the workflows' worker only — the audit trail. The workflows' worker is the trail's single writer (the audit
 * workflow's appends run on its queue); its HMAC key lives outside the data dir. A region's own worker never opens
 * the trail: opening recovers from a crash, which must not race the writer's appends on a shared data dir.
 */
export function workerActivityDependencies(config: Config, plane: ControlPlane) {
  return {
    tenants: { purgeOverdue: (tenant: string) => plane.purgeOverdue(tenant, { actor: OPERATOR, policy: config.policy }) },
    // The drift check reads as the operator and has cmk's own worker record what it found (it repairs nothing).
    drift: {
      runningTenants: () => plane.runningTenants(),
      snapshot: (tenant: string) => plane.snapshot(tenant),
      recordDrift: (tenant: string, found: Pick<DriftRecordRequest, 'checkedAt' | 'findings' | 'operators'>) => plane.recordDrift(tenant, { ...found, actor: OPERATOR, policy: config.policy }),
    },
    operatorEmails: config.operatorEmails,
    driftMetrics: driftMetrics(() => Runtime.instance().metricMeter),
    ...(config.workerWorkflows ? { auditTrail: new AuditTrail(join(config.dataDir, 'audit'), loadOrCreateSecret(config.secretsDir, 'audit-key')) } : {}),
    auditSink: { report: (entries: Parameters<ControlPlane['recordAudit']>[0]) => plane.recordAudit(entries) },
    // The workflows trust this worker's own signing key and durations, never a request's (DESIGN.md §6).
    requestTrust: requestTrustFor(loadRequestSigner(config.secretsDir), config.policy),
    // A lock's proof is checked again here, against the vault, with the API service's challenge key.
    challenges: new ChallengeIssuer(loadOrCreateSecret(config.secretsDir, 'challenge-key')),
  };
}

/**
 * The tenant workflows kept in memory when CMK_WORKER_MAX_CACHED_WORKFLOWS is unset: one per MB of heap past the
 * 80 MB the worker's own modules and the SDK hold. A cached tenant of 10 environments holds 0.2 MB once the bundle's
 * shared modules are loaded once (worker/workflow-bundle.ts; bench/workflow-memory.ts), so this leaves room for
 * tenants five times that. The SDK's own default (one per 1.7 MB past 200 MB: 46 at the 256 MB default heap)
 * assumed tenants eight times bigger, and 100 changing keys at once replayed their histories on every task.
 */
export function defaultMaxCachedWorkflows(heapLimitMb: number): number {
  return Math.max(10, Math.floor(heapLimitMb - 80));
}

/**
 * The `Worker`s of this process: the workflows' (unless CMK_WORKER_WORKFLOWS=false), with its workflow cache as
 * CMK_WORKER_MAX_CACHED_WORKFLOWS sets it (else `defaultMaxCachedWorkflows`), and one activity worker per region
 * served (R1), each with that region's vault and database servers.
 */
export async function createWorkers(
  config: Config,
  connection: NativeConnection,
  parts: ReturnType<typeof buildParts>,
  activityDependencies: ReturnType<typeof workerActivityDependencies>,
  dataConverter: DataConverter,
): Promise<Worker[]> {
  const workers: Worker[] = [];
  if (config.workerWorkflows) {
    const bundleOptions = workflowBundleOptions();
    workers.push(
      await Worker.create({
        connection,
        namespace: config.temporalNamespace,
        taskQueue: config.taskQueue,
        dataConverter,
        // `npm start` bundles the workflows once in a process of its own (stack/bundle-workflows.ts); alone, the worker bundles them itself.
        ...(process.env.CMK_WORKFLOW_BUNDLE ? { workflowBundle: { codePath: process.env.CMK_WORKFLOW_BUNDLE } } : { workflowsPath: bundleOptions.workflowsPath, bundlerOptions: { preloadModules: bundleOptions.preloadModules } }),
        activities: createActivities({ ...parts, ...activityDependencies }),
        maxCachedWorkflows: config.workerMaxCachedWorkflows ?? defaultMaxCachedWorkflows(getHeapStatistics().heap_size_limit / 1024 / 1024),
      }),
    );
    // Past this many tenants active at once, each task replays its tenant's history (docs/PERFORMANCE.md: 100 tenants
    // changing keys at once took 165 s with 46 cached, 9 s with all cached): operators size both together.
    Runtime.instance().logger.info('Tenant workflows kept in memory between tasks, and the heap limit they share.', {
      maxCachedWorkflows: workers[0]!.options.maxCachedWorkflows,
      heapLimitMb: Math.round(getHeapStatistics().heap_size_limit / 1024 / 1024),
    });
  }
  // R1: one activity worker per region served, with that region's vault and database servers.
  for (const region of config.workerRegions) {
    workers.push(
      await Worker.create({
        connection,
        namespace: config.temporalNamespace,
        taskQueue: regionTaskQueue(config.taskQueue, region),
        dataConverter,
        activities: createActivities({ ...parts, ...parts.inRegion(region), ...activityDependencies }),
      }),
    );
  }
  return workers;
}

export async function runWorker(): Promise<void> {
  const config = loadConfig();
  // Before any connection: the Runtime carries the logger (WARN by default, so the foreground stack prints one ready line) and the metrics endpoint.
  installWorkerRuntime(config);
  const parts = buildParts(config);
  // Every payload this worker writes (results, failures, memos, its client's starts and signals) is encrypted.
  // A payload it refuses (forged through the frontend, or under a codec key it lacks) is a warning in its log.
  const dataConverter = loadDataConverter(config.secretsDir, process.env, { warn: (message) => Runtime.instance().logger.warn(message) });
  const connection = await NativeConnection.connect(temporalConnectionOptions());
  // The daily purge reaches the tenant workflows through the client library.
  const clientConnection = await Connection.connect(temporalConnectionOptions());
  const temporal = new Client({ connection: clientConnection, namespace: config.temporalNamespace, dataConverter });
  // The purge and the audit records are signed like the API service's requests (domain/signed.ts).
  const plane = new ControlPlane(temporal, config.taskQueue, loadRequestSigner(config.secretsDir));
  // The Schedule starts workflows: the workers that run them keep it in place.
  if (config.workerWorkflows) await ensurePurgeSchedule(temporal, { taskQueue: config.taskQueue, intervalMs: config.purgeIntervalMs });
  if (config.workerWorkflows) await ensureMailRetrySchedule(temporal, { taskQueue: config.taskQueue });
  if (config.workerWorkflows) await ensureDriftSchedule(temporal, { taskQueue: config.taskQueue, intervalMs: config.driftCheckIntervalMs });
  const activityDependencies = workerActivityDependencies(config, plane);
  const workers = await createWorkers(config, connection, parts, activityDependencies, dataConverter);
  if (workers.length === 0) throw new Error('This worker serves nothing: CMK_WORKER_WORKFLOWS=false and CMK_WORKER_REGIONS=none.');
  stopWhenStackEnds(() => workers.forEach((w) => w.shutdown()));
  // Worker.run ends on SIGINT/SIGTERM (the SDK's default shutdown signals) once in-flight tasks are done.
  await Promise.all(workers.map((w) => w.run()));
  await connection.close();
  await clientConnection.close();
}

if (require.main === module) {
  runWorker().catch((err: unknown) => {
    console.error(`cmk worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
