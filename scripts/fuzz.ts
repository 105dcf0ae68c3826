/**
 * `npm run fuzz`: the long run of the property tests' generators (harness/hostile.ts). The key-file parsers run
 * in-process; the API runs against an embedded stack this script starts (Temporal dev server, worker, API).
 *
 *   npm run fuzz                                   # about 5 minutes: 40% parsers, 60% API, split evenly by target
 *   npm run fuzz -- --seconds 120 --runs 5000      # time budget, and a cap on runs per target
 *   npm run fuzz -- --target parsePfx --seed 42 --path "17:3:0"   # replay a failure the summary printed
 *   npm run fuzz -- --no-api                       # parsers only (no stack)
 *   npm run fuzz -- --model --seconds 900          # only the model-based test of the tenant lifecycle (harness/lifecycle.ts)
 *
 * Fails (exit 1) on any property violation, an unhandled rejection or uncaught exception, a parser run slower than
 * SLOW_RUN_MS, a request answered >= 500 or not at all, an API that is down at the end, or a refused request that
 * changed what the tenant sees; with --model, a workflow answer or state the lifecycle model did not predict. A run that never returns (a hang) is reported by a watchdog thread, which stops the
 * stack and kills this process (exit 137): the target and seed it prints reproduce it.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import {
  apiTargets,
  buildKeyFileCorpus,
  explainedChanges,
  keyFileTargets,
  postRoutesOf,
  REQUEST_TIMEOUT_MS,
  unexplainedEnvChanges,
  withKek,
  type AcceptedLog,
  type ApiWorld,
  type AsyncTarget,
  type FuzzParams,
  type Observer,
  type SyncTarget,
} from '../harness/hostile';
import { startStack, type Stack } from '../harness/stack';
import { lifecycleProperty, startLifecycleServer } from '../harness/lifecycle';

/** A parser run this slow is a failure even though it ended (the designed worst case, a KDF budget, is ~3 s). */
const SLOW_RUN_MS = 10_000;
/** A run this long is a hang: the watchdog stops everything. Parsers are synchronous; requests time out on their own. */
const HANG_MS = { parser: 60_000, api: REQUEST_TIMEOUT_MS + 30_000, model: 5 * 60_000 };
/** Commands per model run at most: longer than the jest budget's 40, so that more runs get past a lock and back. */
const MODEL_MAX_COMMANDS = 60;

interface Options {
  seconds: number;
  runs: number | undefined;
  target: string | undefined;
  seed: number | undefined;
  path: string | undefined;
  api: boolean;
  parsers: boolean;
  model: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { seconds: 300, runs: undefined, target: undefined, seed: undefined, path: undefined, api: true, parsers: true, model: false };
  const number = (flag: string, text: string | undefined, min = 0): number => {
    const value = Number(text);
    if (text === undefined || text.trim() === '' || !Number.isFinite(value) || value < min) usage(`${flag} takes a number`);
    return value;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => argv[++i];
    if (flag === '--seconds') options.seconds = number(flag, value());
    else if (flag === '--runs') options.runs = Math.max(1, Math.floor(number(flag, value())));
    else if (flag === '--target') options.target = value();
    else if (flag === '--seed') options.seed = number(flag, value(), -(2 ** 31)) | 0;
    else if (flag === '--path') options.path = value();
    else if (flag === '--no-api') options.api = false;
    else if (flag === '--no-parsers') options.parsers = false;
    else if (flag === '--model') options.model = true;
    else usage(`unknown option ${flag}`);
  }
  return options;
}

function usage(problem: string): never {
  process.stderr.write(`fuzz: ${problem}\nusage: npm run fuzz -- [--seconds S] [--runs N] [--target NAME] [--seed N] [--path P] [--no-api] [--no-parsers] [--model]\n`);
  process.exit(2);
}

// ------------------------------------------------------------------------------------------------ bookkeeping

interface TargetReport {
  name: string;
  kind: 'parser' | 'api' | 'model';
  runs: number;
  seed: number;
  ms: number;
  slowestRunMs: number;
  outcomes: Map<string, number>;
}

interface Failure {
  target: string;
  message: string;
  seed?: number;
  path?: string | null;
}

const failures: Failure[] = [];
const reports: TargetReport[] = [];

/**
 * A thread that watches the main one: when a run has not ended after its limit (a synchronous parser stuck in a loop
 * cannot be interrupted from inside), it prints what was running, stops the stack, and kills this process.
 */
const WATCHDOG = `
const { workerData, parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const beat = new Int32Array(workerData.shared);
let stackPid = 0;
parentPort.on('message', (m) => { if (m && typeof m.stackPid === 'number') stackPid = m.stackPid; });
setInterval(() => {
  const started = Atomics.load(beat, 0);
  if (started < 0) return;
  const limit = Atomics.load(beat, 2);
  const running = Date.now() - workerData.t0 - started;
  if (running <= limit) return;
  const name = workerData.names[Atomics.load(beat, 1)] ?? '?';
  const seed = Atomics.load(beat, 3);
  writeSync(2, '\\nfuzz: HANG: a run of ' + name + ' has not ended after ' + Math.round(running / 1000) + ' s (seed ' + seed + ').\\n' +
    'fuzz: reproduce with: npm run fuzz -- --target "' + name + '" --seed ' + seed + '\\n');
  if (stackPid) { try { process.kill(stackPid, 'SIGTERM'); } catch {} Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5000); }
  process.kill(process.pid, 'SIGKILL');
}, 500);
`;

class Watchdog {
  private readonly beat = new Int32Array(new SharedArrayBuffer(16));
  private readonly t0 = Date.now();
  private readonly worker: Worker;

  constructor(private readonly names: string[]) {
    Atomics.store(this.beat, 0, -1);
    this.worker = new Worker(WATCHDOG, { eval: true, workerData: { shared: this.beat.buffer, t0: this.t0, names } });
    this.worker.unref();
  }

  watchStack(pid: number | undefined): void {
    if (pid) this.worker.postMessage({ stackPid: pid });
  }

  /** A run of target `name` (seeded `seed`) starts now and may last `limitMs`. */
  running(name: string, seed: number, limitMs: number): void {
    Atomics.store(this.beat, 1, this.names.indexOf(name));
    Atomics.store(this.beat, 2, limitMs);
    Atomics.store(this.beat, 3, seed);
    Atomics.store(this.beat, 0, Date.now() - this.t0);
  }

  idle(): void {
    Atomics.store(this.beat, 0, -1);
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}

/** Per-run timing and outcome counts for one target, fed by the target's observer. */
function observe(report: TargetReport, watchdog: Watchdog, hangMs: number): Observer {
  let last = 0;
  return {
    beforeRun: () => {
      const now = Date.now();
      if (last) report.slowestRunMs = Math.max(report.slowestRunMs, now - last);
      last = now;
      watchdog.running(report.name, report.seed, hangMs);
    },
    outcome: (what) => {
      report.outcomes.set(what, (report.outcomes.get(what) ?? 0) + 1);
      if (last) report.slowestRunMs = Math.max(report.slowestRunMs, Date.now() - last);
      last = 0;
    },
  };
}

function record(report: TargetReport, details: fc.RunDetails<unknown>): void {
  report.runs = details.numRuns;
  if (details.failed) {
    const message = fc.defaultReportMessage(details) ?? String(details.errorInstance);
    failures.push({ target: report.name, message: message.length > 3000 ? `${message.slice(0, 3000)}…` : message, seed: details.seed, path: details.counterexamplePath });
  }
  if (report.kind === 'parser' && report.slowestRunMs > SLOW_RUN_MS) {
    failures.push({ target: report.name, message: `one run took ${report.slowestRunMs} ms (limit ${SLOW_RUN_MS} ms): a slow path`, seed: report.seed });
  }
}

const randomSeed = (): number => (Date.now() ^ (Math.random() * 0x100000000)) | 0;

function paramsFor(options: Options, timeLimitMs: number): FuzzParams {
  return {
    numRuns: options.runs ?? 2 ** 31 - 1,
    timeLimitMs,
    ...(options.path !== undefined ? { path: options.path } : {}),
  };
}

// ------------------------------------------------------------------------------------------------ the runs

async function runParsers(targets: SyncTarget[], options: Options, watchdog: Watchdog, budgetMs: number): Promise<void> {
  for (const target of targets) {
    const report: TargetReport = { name: target.name, kind: 'parser', runs: 0, seed: options.seed ?? randomSeed(), ms: 0, slowestRunMs: 0, outcomes: new Map() };
    reports.push(report);
    const started = Date.now();
    const details = target.check({ ...paramsFor(options, budgetMs / targets.length), seed: report.seed }, observe(report, watchdog, HANG_MS.parser));
    watchdog.idle();
    report.ms = Date.now() - started;
    record(report, details);
    printProgress(report);
    // Let pending callbacks (an unhandled rejection, say) surface between targets.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const TENANT = 'fuzz';
const ALICE = 'alice@fuzz.example';

async function setUpWorld(stack: Stack): Promise<ApiWorld> {
  const cmk = async (args: string[], as?: string) => {
    const result = await stack.cmk([...args, '--json'], as ? { as } : {});
    if (result.code !== 0) throw new Error(`cmk ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.json();
  };
  await cmk(['tenant', 'create', '--tenant', TENANT, '--name', 'Fuzz Ltd', '--admin', `${ALICE}:global`, '--admin', 'bob@fuzz.example:service']);
  await cmk(['env', 'create', '--tenant', TENANT, '--env', 'prod', '--admin', 'sam@fuzz.example']);
  const kekPath = join(mkdtempSync(join(tmpdir(), 'cmk-fuzz-')), 'kek.pem');
  const kek = await cmk(['key', 'kek', '--tenant', TENANT, '--out', kekPath], ALICE);
  const corpus = withKek(await buildKeyFileCorpus(), readFileSync(kekPath, 'utf8'), String(kek.kid));
  return {
    tenant: TENANT,
    displayName: 'Fuzz Ltd',
    env: 'prod',
    admin: ALICE,
    sysadmin: 'sam@fuzz.example',
    second: 'bob@fuzz.example',
    corpus,
    request: (method, path, opts) => stack.api(method, path, opts),
  };
}

async function runApi(stack: Stack, world: ApiWorld, targets: AsyncTarget[], accepted: AcceptedLog, options: Options, watchdog: Watchdog, budgetMs: number): Promise<void> {
  const snapshot = async () => ({
    key: (await stack.cmk(['key', 'show', '--tenant', TENANT, '--json'], { as: ALICE })).stdout,
    envs: (await stack.cmk(['env', 'list', '--tenant', TENANT, '--json'], { as: ALICE })).json().environments as Array<Record<string, unknown>>,
  });
  const before = await snapshot();
  for (const target of targets) {
    const report: TargetReport = { name: target.name, kind: 'api', runs: 0, seed: options.seed ?? randomSeed(), ms: 0, slowestRunMs: 0, outcomes: new Map() };
    reports.push(report);
    const started = Date.now();
    const details = await target.check({ ...paramsFor(options, budgetMs / targets.length), seed: report.seed }, observe(report, watchdog, HANG_MS.api));
    watchdog.idle();
    report.ms = Date.now() - started;
    record(report, details);
    printProgress(report);
  }
  // Whole-run properties: still up, no internal error logged, refused requests changed nothing.
  const status = await stack.api('GET', '/v1/status').catch((err: unknown) => ({ status: 0, text: String(err), body: {} as Record<string, unknown> }));
  if (status.status !== 200 || status.body.ready !== true) failures.push({ target: 'API', message: `GET /v1/status after the fuzz answered ${status.status}: ${status.text.slice(0, 300)}` });
  const internal = stack.output().split('\n').filter((line) => /internal error/.test(line));
  if (internal.length > 0) failures.push({ target: 'API', message: `the API logged ${internal.length} internal error(s), first: ${internal[0]!.slice(0, 300)}` });
  const after = await snapshot();
  const changes = explainedChanges(world, accepted);
  if (!changes.keyMayChange && after.key !== before.key) failures.push({ target: 'API', message: `key show changed though no key change was accepted:\n${before.key}\n→ ${after.key}` });
  for (const problem of unexplainedEnvChanges(before.envs, after.envs, changes)) failures.push({ target: 'API', message: problem });
}

/**
 * The model-based test of the tenant lifecycle on its own time-skipping server: whole runs (a fresh tenant, up to
 * MODEL_MAX_COMMANDS requests and sleeps) until the budget or --runs is spent; a failure is shrunk and printed.
 */
async function runModel(options: Options, watchdog: Watchdog, budgetMs: number): Promise<void> {
  const report: TargetReport = { name: 'model-lifecycle', kind: 'model', runs: 0, seed: options.seed ?? randomSeed(), ms: 0, slowestRunMs: 0, outcomes: new Map() };
  reports.push(report);
  const server = await startLifecycleServer();
  let steps = 0;
  try {
    const started = Date.now();
    let runStarted = 0;
    const property = lifecycleProperty(server, MODEL_MAX_COMMANDS, {
      beforeRun: () => {
        runStarted = Date.now();
        watchdog.running(report.name, report.seed, HANG_MS.model);
      },
      steps: (count) => {
        steps += count;
        report.slowestRunMs = Math.max(report.slowestRunMs, Date.now() - runStarted);
      },
      outcome: (what) => report.outcomes.set(what, (report.outcomes.get(what) ?? 0) + 1),
    });
    const details = await fc.check(property, {
      includeErrorInReport: true,
      seed: report.seed,
      numRuns: options.runs ?? 2 ** 31 - 1,
      ...(options.path !== undefined ? { path: options.path } : {}),
      plugins: [fc.interruptAfterTimeLimit(budgetMs)],
    });
    watchdog.idle();
    report.ms = Date.now() - started;
    record(report, details);
    report.outcomes.set('steps', steps);
    printProgress(report);
  } finally {
    await server.close();
  }
}

// ------------------------------------------------------------------------------------------------ output

function printProgress(report: TargetReport): void {
  const outcomes = [...report.outcomes.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  process.stdout.write(`fuzz: ${report.name}: ${report.runs} runs in ${(report.ms / 1000).toFixed(1)} s (slowest ${report.slowestRunMs} ms) — ${outcomes}\n`);
}

function printSummary(started: number, accepted: AcceptedLog): void {
  const width = Math.max(...reports.map((r) => r.name.length), 10);
  process.stdout.write(`\nfuzz summary (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  process.stdout.write(`${'target'.padEnd(width)}  ${'runs'.padStart(7)}  ${'slowest'.padStart(8)}  seed\n`);
  for (const r of reports) process.stdout.write(`${r.name.padEnd(width)}  ${String(r.runs).padStart(7)}  ${`${r.slowestRunMs} ms`.padStart(8)}  ${r.seed}\n`);
  const total = reports.reduce((sum, r) => sum + r.runs, 0);
  process.stdout.write(`${'total'.padEnd(width)}  ${String(total).padStart(7)}\n`);
  if (accepted.length > 0) {
    const byRoute = new Map<string, number>();
    for (const a of accepted) byRoute.set(a.route, (byRoute.get(a.route) ?? 0) + 1);
    process.stdout.write(`accepted requests (inputs that happened to be valid): ${[...byRoute.entries()].map(([r, n]) => `${r} ${n}`).join(', ')}\n`);
  }
  if (failures.length === 0) {
    process.stdout.write('no failures\n');
    return;
  }
  process.stdout.write(`\n${failures.length} failure(s):\n`);
  for (const f of failures) {
    process.stdout.write(`\n--- ${f.target}${f.seed !== undefined ? ` (seed ${f.seed}${f.path ? `, path ${f.path}` : ''})` : ''}\n${f.message}\n`);
    if (f.seed !== undefined && f.target !== 'API' && f.target !== 'process') {
      const kind = reports.find((r) => r.name === f.target)?.kind;
      const where = kind === 'model' ? ' --model' : kind === 'parser' ? ' --no-api' : '';
      process.stdout.write(`reproduce: npm run fuzz -- ${kind === 'model' ? '' : `--target "${f.target}" `}--seed ${f.seed}${f.path ? ` --path "${f.path}"` : ''}${where}\n`);
    }
  }
}

// ------------------------------------------------------------------------------------------------ main

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  process.on('unhandledRejection', (reason) => failures.push({ target: 'process', message: `unhandled rejection: ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}` }));
  process.on('uncaughtException', (err) => failures.push({ target: 'process', message: `uncaught exception: ${err.stack ?? err.message}` }));
  // --target: the target of that exact name, else every target whose name contains it.
  const selected = <T extends { name: string }>(targets: T[]) => {
    const wanted = options.target;
    if (wanted === undefined) return targets;
    const exact = targets.filter((t) => t.name === wanted);
    return exact.length > 0 ? exact : targets.filter((t) => t.name.includes(wanted));
  };

  if (options.model || options.target === 'model-lifecycle') {
    // The lifecycle model alone: its own time-skipping server, no stack, no parsers.
    const watchdog = new Watchdog(['model-lifecycle']);
    try {
      await runModel(options, watchdog, options.seconds * 1000);
    } catch (err) {
      failures.push({ target: 'fuzz', message: `the run itself failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}` });
    } finally {
      await watchdog.stop();
    }
    printSummary(started, []);
    return failures.length === 0 ? 0 : 1;
  }
  const corpus = await buildKeyFileCorpus();
  const parserTargets = options.parsers ? selected(keyFileTargets(corpus)) : [];
  const accepted: AcceptedLog = [];
  let stack: Stack | undefined;
  let watchdog: Watchdog | undefined;
  try {
    let apiPart: { world: ApiWorld; targets: AsyncTarget[] } | undefined;
    if (options.api) {
      process.stdout.write('fuzz: starting the embedded stack…\n');
      stack = await startStack();
      const world = await setUpWorld(stack);
      const routes = postRoutesOf((await stack.api('GET', '/openapi.json')).body);
      const targets = selected(apiTargets(world, routes, accepted));
      if (targets.length > 0) apiPart = { world, targets };
    }
    const names = [...parserTargets.map((t) => t.name), ...(apiPart?.targets.map((t) => t.name) ?? [])];
    if (names.length === 0) usage(`no target matches ${JSON.stringify(options.target)}`);
    watchdog = new Watchdog(names);
    watchdog.watchStack(stack?.process.pid);
    const budgetMs = options.seconds * 1000;
    const parserShare = apiPart ? (parserTargets.length > 0 ? 0.4 : 0) : 1;
    process.stdout.write(`fuzz: ${names.length} targets, ${options.seconds} s${options.runs ? `, at most ${options.runs} runs each` : ''}\n`);
    if (parserTargets.length > 0) await runParsers(parserTargets, options, watchdog, budgetMs * parserShare);
    if (stack && apiPart) await runApi(stack, apiPart.world, apiPart.targets, accepted, options, watchdog, budgetMs * (1 - parserShare));
  } catch (err) {
    failures.push({ target: 'fuzz', message: `the run itself failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}` });
  } finally {
    await stack?.stop();
    await watchdog?.stop();
  }
  printSummary(started, accepted);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fuzz: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
