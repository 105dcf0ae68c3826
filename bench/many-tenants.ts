/**
 * `npm run bench -- --tenants T [--envs E] [--json]` (issue 20, "Many tenants"): T tenants on the embedded stack, each
 * with E environments created (one bulk creation per tenant) and applied (protected by a first tenant key), then
 * every tenant's key changed at once through the client library, timed until every tenant's new key is Active
 * (every environment re-protected). Beside it, a plain script re-wraps the same environments one after another
 * in-process with no Temporal. Set-up is timed and reported apart; it is not the headline. `--growth [10,100,1000]`
 * runs it once per tenant count, a fresh stack each, and prints how each figure grows. Not a test: nothing asserts
 * a duration; a tenant that fails is reported by name, and a run past its deadline stops with what was still pending.
 *
 * Options: `--setup-concurrency N` tenants set up at once (default 32), `--change-concurrency N` key changes in
 * flight at once (default: all of them), `--deadline-minutes M` for the whole run (default 5 + T×E/250), `--stack-log FILE`
 * to keep what the stack's processes printed.
 */
import { generateKeyPair, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { loadRequestSigner } from '../common/request-signing';
import { ControlPlane } from '../client/library';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { stackTemporalPid, stackWorkerPid, startStack, type Stack } from '../harness/stack';
import { OPERATOR } from '../domain/access';
import { parseEnvironmentList } from '../domain/bulk';
import { activeKeyOf, type TenantSnapshot } from '../domain/model';
import { tenantWorkflowId, type StagedKey } from '../workflows/messages';
import { tenantVaultKeyName } from '../vault/names';
import { arg, cpuSeconds, percentile, pool, temporalServerMemory, workerMemory } from './support';

const REGION = 'default';
const ALICE = { kind: 'user', email: 'alice@bench.example' } as const;
const POLL_MS = 250;
/** Snapshot queries and history reads at once while waiting or counting: enough to keep up, few enough not to crowd the worker. */
const READ_CONCURRENCY = 16;
/** Applies of one tenant in flight at once: below Temporal's limit of in-flight updates per workflow (10 by default). */
const APPLIES_IN_FLIGHT = 5;

interface Failure {
  tenant: string;
  phase: 'set-up' | 'key change' | 're-protection' | 'check';
  error: string;
}

type Memory = (field: 'VmRSS' | 'VmHWM') => number;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50);
const round = (n: number, digits = 2): number => Number(n.toFixed(digits));
/** An error with its causes (a Temporal failure says what went wrong only in its cause chain). */
const message = (err: unknown): string => {
  const parts: string[] = [];
  for (let cause: unknown = err, depth = 0; cause !== undefined && depth < 6; depth++) {
    if (!(cause instanceof Error)) {
      parts.push(String(cause));
      break;
    }
    const type = (cause as { type?: unknown }).type;
    parts.push(`${cause.name}${typeof type === 'string' ? `[${type}]` : ''}: ${cause.message}`);
    cause = cause.cause;
  }
  return parts.join(' <- ').slice(0, 800);
};

/** A tenant's new 2048-bit RSA key, as PKCS#8 (Node's generation runs on libuv's thread pool, so many overlap). */
function newKeyDer(): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    generateKeyPair('rsa', { modulusLength: 2048 }, (err, _publicKey, privateKey) => (err ? reject(err) : resolve(privateKey.export({ type: 'pkcs8', format: 'der' })))),
  );
}

/** Samples a process's resident memory every 100 ms; a process gone meanwhile (a supervisor restart) is skipped. */
function sampler(memory: Memory): { before: number; stop: () => { before: number; peak: number; lifetime: number } } {
  const read = (field: 'VmRSS' | 'VmHWM') => {
    try {
      return memory(field);
    } catch {
      return NaN;
    }
  };
  const before = read('VmRSS');
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, read('VmRSS'))), 100);
  return { before, stop: () => (clearInterval(timer), { before: Math.round(before), peak: Math.round(peak), lifetime: Math.round(read('VmHWM')) }) };
}

/** Rejects once the run's deadline passes, saying what was still pending. */
function beforeDeadline<T>(work: Promise<T>, deadline: number, phase: string, pending: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`The run's deadline passed during ${phase}. Still pending: ${pending()}`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

export interface ManyTenantsFigures {
  tenants: number;
  environmentsPerTenant: number;
  totalEnvironments: number;
  setupConcurrency: number;
  changeConcurrency: number;
  setupSeconds: number;
  /** Mean seconds one tenant spent in each step of its set-up (the steps of a tenant run one after another). */
  setupStepSecondsPerTenant: { createTenant: number; firstKey: number; bulkCreate: number; applies: number };
  /** CPU seconds each process spent during the set-up (2 cores: at most twice the wall time in all). */
  setupCpuSeconds: { worker: number; temporalServer: number; bench: number };
  /** Every tenant's new key made before the clock starts (not timed in the key change; see docs/PERFORMANCE.md). */
  keyGenerationSeconds: number;
  /** From the first key change request to the last tenant's key Active (the workflows' own time of it). */
  keyChangeSeconds: number;
  /** The same, to when this bench had seen every key Active (adds up to one poll, 250 ms, and visibility's lag). */
  keyChangeObservedSeconds: number;
  /** CPU seconds each process spent from the first key change request until every key was seen Active. */
  keyChangeCpuSeconds: { worker: number; temporalServer: number; bench: number };
  /** From the first request to the last request accepted (staged in the vault, key change answered). */
  allRequestsAcceptedSeconds: number;
  environmentsReprotectedPerSecond: number;
  /** Per tenant, from its own key change request to its key Active. */
  tenantSecondsSlowest: number;
  tenantSecondsMedian: number;
  tenantSecondsP95: number;
  slowestTenant: string;
  workflowRuns: number;
  historyEventsLargestRun: number;
  historyEventsMedianTenant: number;
  workerRssMb: { beforeKeyChange: number; peakDuringKeyChange: number; lifetimePeak: number };
  temporalServerRssMb: { beforeKeyChange: number; peakDuringKeyChange: number; lifetimePeak: number };
  checked: { tenantsActive: number; environmentsOnNewKeyByWorkflow: number; environmentsOnNewKeyOnDisk: number; cliSample: { tenants: string[]; environmentsOnNewKey: number; environments: number } };
  baselineSeconds: number;
  baselineEnvironmentsPerSecond: number;
  ratio: number;
  failures: Failure[];
}

export async function manyTenantsRun(tenantCount: number, envCount: number, options: { setupConcurrency: number; changeConcurrency: number; deadlineMinutes: number }): Promise<ManyTenantsFigures> {
  const deadline = Date.now() + options.deadlineMinutes * 60_000;
  const stack: Stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s' });
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
  const plane = new ControlPlane(client, 'cmk', loadRequestSigner(stack.secretsDir, {}));
  const config = loadConfig(stack.env);
  const { policy } = config;
  const parts = buildParts(config);
  const tenants = Array.from({ length: tenantCount }, (_, i) => `tenant-${String(i).padStart(4, '0')}`);
  const envs = Array.from({ length: envCount }, (_, i) => `env-${i}`);
  const failures: Failure[] = [];
  const fail = (tenant: string, phase: Failure['phase'], err: unknown) => failures.push({ tenant, phase, error: message(err) });

  /** Staged disabled in the vault, as the API service stages a generated key (the workflow enables it). */
  const stage = async (tenant: string, name: string, der: Buffer): Promise<StagedKey> => {
    const key = await parts.vault.importKey(tenantVaultKeyName(tenant, REGION), der, { purpose: 'tenant', enabled: false, tags: { tenant, region: REGION, name, stagedBy: ALICE.email } });
    return { vaultKey: { name: key.name, version: key.version }, thumbprint: key.thumbprint };
  };

  /** CPU seconds so far of the worker, the Temporal dev server and this bench (key generation, client, checks). */
  const cpu = () => ({ worker: cpuSeconds(stackWorkerPid(stack.dataDir)), temporalServer: cpuSeconds(stackTemporalPid(stack.dataDir)), bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 });
  const cpuSince = (from: ReturnType<typeof cpu>) => {
    const now = cpu();
    return { worker: round(now.worker - from.worker, 1), temporalServer: round(now.temporalServer - from.temporalServer, 1), bench: round(now.bench - from.bench, 1) };
  };

  try {
    // ---------------------------------------------------------------------------------------------- set-up
    const steps = { createTenant: 0, firstKey: 0, bulkCreate: 0, applies: 0 };
    const ready: string[] = [];
    const setupDone = new Set<string>();
    const setupStart = Date.now();
    const setupCpuFrom = cpu();
    const setUp = async (tenant: string): Promise<void> => {
      let at = Date.now();
      const lap = (step: keyof typeof steps) => {
        const now = Date.now();
        steps[step] += (now - at) / 1000;
        at = now;
      };
      try {
        await plane.createTenant({ actor: OPERATOR, tenant, displayName: `Bench ${tenant}`, homeRegion: REGION, admins: [{ email: ALICE.email, role: 'global' }] });
        lap('createTenant');
        await plane.changeKey(tenant, { actor: ALICE, policy, region: REGION, name: 'k1', source: 'generated', staged: await stage(tenant, 'k1', await newKeyDer()) });
        lap('firstKey');
        // One bulk creation per tenant, as `cmk env create --from-file` sends it.
        const created = await plane.createEnvironments(tenant, { actor: ALICE, policy, operation: randomUUID(), region: REGION, list: parseEnvironmentList(envs.join('\n')).list });
        if (created.created !== envCount) throw new Error(`bulk creation made ${created.created} of ${envCount}: ${JSON.stringify(created.refused.slice(0, 3))}`);
        lap('bulkCreate');
        // Read once, so that no apply reads the tenant first. A few applies of one tenant are sent at once: its
        // workflow runs them one after another, but starts the next as soon as one ends, without a round trip.
        const snapshot = await plane.snapshot(tenant);
        await pool(snapshot?.environments ?? [], APPLIES_IN_FLIGHT, async (env) => {
          const applied = await plane.environmentOperation(tenant, { actor: ALICE, policy, env: env.id, operation: 'apply', acceptRisk: true }, env);
          if (applied.protection !== 'tenant') throw new Error(`${env.id} is protected by the ${applied.protection} key after its apply`);
        });
        lap('applies');
        ready.push(tenant);
      } catch (err) {
        fail(tenant, 'set-up', err);
      } finally {
        setupDone.add(tenant);
      }
    };
    await beforeDeadline(pool(tenants, options.setupConcurrency, setUp), deadline, 'set-up', () => `${tenants.length - setupDone.size} tenant(s) not set up yet, e.g. ${tenants.filter((t) => !setupDone.has(t)).slice(0, 10).join(', ')}`);
    const setupSeconds = (Date.now() - setupStart) / 1000;
    const setupCpu = cpuSince(setupCpuFrom);
    if (ready.length === 0) throw new Error(`No tenant was set up: ${JSON.stringify(failures.slice(0, 5))}`);

    // ---------------------------------------------------------------------------------------------- key change
    const generationStart = Date.now();
    const keys = new Map<string, Buffer>();
    await pool(ready, ready.length, async (tenant) => void keys.set(tenant, await newKeyDer()));
    const keyGenerationSeconds = (Date.now() - generationStart) / 1000;
    await sleep(1100); // R5: CMK_KEY_CHANGE_INTERVAL (1 s) after each tenant's first key.

    const workerRss = sampler(workerMemory(stack.dataDir));
    const serverRss = sampler(temporalServerMemory(stack.dataDir));
    const requestedAt = new Map<string, number>();
    const wanted = new Map<string, string>();
    const accepted = new Map<string, number>();
    const active = new Map<string, { finishedAt: number; seenAt: number; onNewKey: number; refused: number }>();
    const given = new Set<string>(); // failed, or seen Active
    let requestsDone = false;

    const started = Date.now();
    const changeCpuFrom = cpu();
    const requests = pool(ready, options.changeConcurrency, async (tenant) => {
      requestedAt.set(tenant, Date.now());
      try {
        const staged = await stage(tenant, 'k2', keys.get(tenant)!);
        wanted.set(tenant, staged.thumbprint);
        await plane.changeKey(tenant, { actor: ALICE, policy, region: REGION, name: 'k2', source: 'generated', staged });
        accepted.set(tenant, Date.now());
      } catch (err) {
        fail(tenant, 'key change', err);
        given.add(tenant);
      }
    }).finally(() => (requestsDone = true));

    /** Tenants still Installing per visibility; the others are asked directly (visibility may lag either way). */
    const installing = async (): Promise<Set<string>> => {
      const ids = new Set<string>();
      for await (const run of client.workflow.list({ query: `WorkflowType = 'tenantWorkflow' AND ExecutionStatus = 'Running' AND CmkKeyStates = '${REGION}:Installing'` })) ids.add(run.workflowId);
      return ids;
    };
    const confirm = async (tenant: string): Promise<void> => {
      const snapshot: TenantSnapshot | undefined = await plane.snapshot(tenant);
      const key = activeKeyOf(snapshot?.regions[REGION]);
      if (!snapshot || !key || key.thumbprint !== wanted.get(tenant) || key.state !== 'Active') return;
      const progress = snapshot.reprotections?.[REGION];
      const onNewKey = snapshot.environments.filter((e) => e.keyThumbprint === key.thumbprint && e.protection === 'tenant').length;
      active.set(tenant, { finishedAt: progress?.finishedAt ? Date.parse(progress.finishedAt) : Date.now(), seenAt: Date.now(), onNewKey, refused: progress?.refused.length ?? 0 });
      if (progress && progress.refused.length > 0) fail(tenant, 're-protection', `${progress.refused.length} environment(s) refused: ${JSON.stringify(progress.refused.slice(0, 3))}`);
      if (onNewKey !== envCount) fail(tenant, 'check', `${onNewKey} of ${envCount} environments on the new key once it was Active`);
      given.add(tenant);
    };
    const watching = (async () => {
      while (!requestsDone || given.size < ready.length) {
        await sleep(POLL_MS);
        const stillInstalling = await installing();
        const ask = ready.filter((t) => accepted.has(t) && !given.has(t) && !stillInstalling.has(tenantWorkflowId(t)));
        await pool(ask, READ_CONCURRENCY, (t) => confirm(t).catch((err: unknown) => void console.error(`${t}: ${message(err)}`)));
      }
    })();
    const pendingNow = () => {
      const waiting = ready.filter((t) => !given.has(t));
      return `${waiting.length} of ${ready.length} tenant(s) not Active, e.g. ${waiting.slice(0, 10).map((t) => `${t} (${accepted.has(t) ? 'change accepted' : requestedAt.has(t) ? 'change requested' : 'not requested'})`).join(', ')}`;
    };
    await beforeDeadline(Promise.all([requests, watching]), deadline, 'the key change', pendingNow);
    const observedSeconds = (Date.now() - started) / 1000;
    const changeCpu = cpuSince(changeCpuFrom);
    const worker = workerRss.stop();
    const server = serverRss.stop();

    const finished = [...active.entries()];
    if (finished.length === 0) throw new Error(`No tenant's new key became Active: ${JSON.stringify(failures.slice(0, 5))}`);
    const perTenant = finished.map(([t, a]) => ({ tenant: t, seconds: (a.finishedAt - requestedAt.get(t)!) / 1000 })).sort((a, b) => a.seconds - b.seconds);
    const lastActive = Math.max(...finished.map(([, a]) => a.finishedAt));
    const keyChangeSeconds = (lastActive - started) / 1000;

    // ---------------------------------------------------------------------------------------------- checks
    // On disk: every environment's key record names the tenant's new key (the database engine's word, not the workflow's).
    let onDisk = 0;
    await pool(finished, READ_CONCURRENCY, async ([tenant]) => {
      for (const env of envs) if ((await parts.databases.describe(tenant, env))?.protector.thumbprint === wanted.get(tenant)) onDisk += 1;
    });
    // And as a user sees it: `cmk env list --json` for a few tenants (first, middle, last).
    const sample = [...new Set([finished[0]?.[0], finished[Math.floor(finished.length / 2)]?.[0], finished.at(-1)?.[0]])].filter((t): t is string => t !== undefined);
    let cliOnNewKey = 0;
    let cliEnvironments = 0;
    for (const tenant of sample) {
      const listed = await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE.email });
      if (listed.code !== 0) {
        fail(tenant, 'check', `cmk env list: ${listed.stderr.trim()}`);
        continue;
      }
      const rows = listed.json().environments as Array<{ keyThumbprint: string }>;
      cliEnvironments += rows.length;
      cliOnNewKey += rows.filter((e) => e.keyThumbprint === wanted.get(tenant)).length;
    }

    // History: every run of every tenant's workflow (it continues as new when its history grows).
    const runs: Array<{ tenant: string; events: number }> = [];
    const listedRuns: Array<{ workflowId: string; runId: string }> = [];
    for await (const run of client.workflow.list({ query: `WorkflowType = 'tenantWorkflow'` })) listedRuns.push({ workflowId: run.workflowId, runId: run.runId });
    await pool(listedRuns, READ_CONCURRENCY, async ({ workflowId, runId }) => {
      const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
      runs.push({ tenant: workflowId, events: history.events?.length ?? 0 });
    });
    const largestPerTenant = new Map<string, number>();
    for (const r of runs) largestPerTenant.set(r.tenant, Math.max(largestPerTenant.get(r.tenant) ?? 0, r.events));

    // ---------------------------------------------------------------------------------------------- baseline
    // The same re-wrap, every environment of every tenant onto a fresh key, one after another, in this process.
    const der = await newKeyDer();
    const fresh = await parts.vault.importKey('tenant-bench-baseline', der, { purpose: 'tenant', enabled: true });
    const baselineStart = Date.now();
    for (const [tenant] of finished) {
      for (const env of envs) await parts.databases.reprotect(tenant, env, { kind: 'tenant', name: fresh.name, version: fresh.version, thumbprint: fresh.thumbprint });
    }
    const baselineSeconds = (Date.now() - baselineStart) / 1000;

    const total = finished.length * envCount;
    const perStep = (s: number) => round(s / Math.max(1, ready.length));
    const seconds = perTenant.map((p) => p.seconds);
    return {
      tenants: tenantCount,
      environmentsPerTenant: envCount,
      totalEnvironments: tenantCount * envCount,
      setupConcurrency: Math.min(options.setupConcurrency, tenantCount),
      changeConcurrency: Math.min(options.changeConcurrency, ready.length),
      setupSeconds: round(setupSeconds),
      setupStepSecondsPerTenant: { createTenant: perStep(steps.createTenant), firstKey: perStep(steps.firstKey), bulkCreate: perStep(steps.bulkCreate), applies: perStep(steps.applies) },
      setupCpuSeconds: setupCpu,
      keyGenerationSeconds: round(keyGenerationSeconds),
      keyChangeSeconds: round(keyChangeSeconds),
      keyChangeObservedSeconds: round(observedSeconds),
      keyChangeCpuSeconds: changeCpu,
      allRequestsAcceptedSeconds: round((Math.max(...accepted.values()) - started) / 1000),
      environmentsReprotectedPerSecond: round(total / keyChangeSeconds, 1),
      tenantSecondsSlowest: round(seconds.at(-1) ?? NaN),
      tenantSecondsMedian: round(percentile(seconds, 50)),
      tenantSecondsP95: round(percentile(seconds, 95)),
      slowestTenant: perTenant.at(-1)?.tenant ?? '',
      workflowRuns: runs.length,
      historyEventsLargestRun: Math.max(...runs.map((r) => r.events)),
      historyEventsMedianTenant: median([...largestPerTenant.values()]),
      workerRssMb: { beforeKeyChange: worker.before, peakDuringKeyChange: worker.peak, lifetimePeak: worker.lifetime },
      temporalServerRssMb: { beforeKeyChange: server.before, peakDuringKeyChange: server.peak, lifetimePeak: server.lifetime },
      checked: {
        tenantsActive: finished.length,
        environmentsOnNewKeyByWorkflow: finished.reduce((n, [, a]) => n + a.onNewKey, 0),
        environmentsOnNewKeyOnDisk: onDisk,
        cliSample: { tenants: sample, environmentsOnNewKey: cliOnNewKey, environments: cliEnvironments },
      },
      baselineSeconds: round(baselineSeconds),
      baselineEnvironmentsPerSecond: round(total / baselineSeconds, 1),
      ratio: round(keyChangeSeconds / baselineSeconds),
      failures,
    };
  } catch (err) {
    // What the stack's processes said (a worker's error, the dev server's complaint).
    console.error(stack.output().slice(-4000));
    if (failures.length > 0) console.error(`Tenants that failed before this: ${JSON.stringify(failures.slice(0, 20), null, 2)}`);
    throw err;
  } finally {
    // `--stack-log FILE`: everything the stack's processes printed (a worker's errors, its restarts), for diagnosis.
    const logAt = process.argv.indexOf('--stack-log');
    if (logAt > 0 && process.argv[logAt + 1]) writeFileSync(process.argv[logAt + 1]!, stack.output());
    await connection.close();
    await stack.stop();
  }
}

/** Each numeric figure of `later` over the same of `earlier` (nested objects too); other figures are left out. */
function growth(earlier: object, later: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(later)) {
    const before: unknown = (earlier as Record<string, unknown>)[key];
    if (typeof value === 'number' && typeof before === 'number') out[key] = before === 0 ? null : round(value / before);
    else if (value && before && typeof value === 'object' && typeof before === 'object' && !Array.isArray(value)) out[key] = growth(before, value);
  }
  return out;
}

export async function manyTenantsBench(): Promise<void> {
  const envCount = arg('envs', 10);
  const json = process.argv.includes('--json');
  const setupConcurrency = arg('setup-concurrency', 32);
  const growthAt = process.argv.indexOf('--growth');
  const counts = growthAt > 0 ? (/^\d[\d,]*$/.test(process.argv[growthAt + 1] ?? '') ? process.argv[growthAt + 1]!.split(',').map(Number) : [10, 100, 1000]) : [arg('tenants', 1000)];
  const results: ManyTenantsFigures[] = [];
  for (const tenants of counts) {
    const figures = await manyTenantsRun(tenants, envCount, {
      setupConcurrency,
      changeConcurrency: arg('change-concurrency', tenants),
      deadlineMinutes: arg('deadline-minutes', 5 + (tenants * envCount) / 250),
    });
    results.push(figures);
    // Each run's figures as soon as it ends: a growth run to 1,000 tenants takes half an hour.
    if (counts.length > 1) console.error(json ? JSON.stringify(figures) : `${tenants} tenants done: key change ${figures.keyChangeSeconds} s, set-up ${figures.setupSeconds} s`);
  }
  const report =
    results.length === 1
      ? results[0]!
      : { runs: results, growth: Object.fromEntries(results.slice(1).map((r, i) => [`${r.tenants}/${results[i]!.tenants}`, growth(results[i]!, r)])) };
  console.log(json ? JSON.stringify(report) : JSON.stringify(report, null, 2));
  if (results.some((r) => r.failures.length > 0)) {
    console.error(`Some tenants failed (see "failures" above): the figures count only the tenants that finished.`);
    process.exitCode = 1;
  }
}
