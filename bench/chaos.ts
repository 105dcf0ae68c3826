/**
 * `npm run chaos [-- --scenario a,b,c,d,e,p] [--envs 500] [--cluster] [--json FILE] [--kills 10] [--mail-outage 600s]
 * [--retention 4m]`: the fault suite (issue 15; docs/RELIABILITY.md "Fault suite"). Each scenario starts its own stack
 * (the embedded one as `npm start` does, or `npm run cluster`'s topology with --cluster), sets a tenant up, injects its
 * fault while cmk works, and checks what a tenant must never see: environments lost, left on a deleted key or with
 * their rows changed; mail sent twice to a recipient or lost; vault calls above 1.5× the minimum; a tenant workflow
 * that is not Running. It prints a table and exits 1 if any bound is broken. Not a test and not in `npm test` (it is
 * long); test/chaos.test.ts runs each scenario small with the same checks.
 *
 *   a  the worker SIGKILLed at random moments (--kills, default 10) while N environments are re-protected
 *   b  the Temporal server SIGKILLed (3 times at most) and restarted during that (embedded: the dev server; cluster:
 *      the history service)
 *   p  (cluster only) PostgreSQL crashed (immediate shutdown, 3 times at most) and restarted during that
 *   c  the vault answering 429 (Retry-After) or 503 to 20 % of calls during that (CMK_CHAOS_VAULT_FAULTS, test only)
 *   d  the mail provider (a SendGrid stand-in) answering 503 for --mail-outage while keys and environments change
 *   e  a recipient rejected and the provider's key revoked (401) through the deletion warnings and the R9 deletion
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { ControlPlane } from '../client/library';
import { loadRequestSigner } from '../common/request-signing';
import { loadConfig } from '../config';
import { parseDuration } from '../domain/policy';
import { Outbox } from '../mail/outbox';
import { buildParts } from '../worker/parts';
import { tenantWorkflowId } from '../workflows/messages';
import { clusterPaths, clusterPorts } from '../stack/cluster';
import { freePort, runCmk, startStack, type CliResult } from '../harness/stack';
import { FakeSendGrid, SENDGRID_TEST_KEY } from '../harness/sendgrid-double';

const root = join(__dirname, '..');

export type ScenarioId = 'a' | 'b' | 'c' | 'd' | 'e' | 'p';
export const SCENARIOS: Record<ScenarioId, string> = {
  a: 'worker SIGKILLed during re-protection',
  b: 'Temporal server SIGKILLed and restarted during re-protection',
  p: 'PostgreSQL crashed and restarted during re-protection',
  c: 'vault answers 429/503 to 20 % of calls during re-protection',
  d: 'mail provider down (503) while keys and environments change',
  e: 'recipient rejected, provider key revoked (401) through deletion warnings and deletion',
};

export interface ChaosOptions {
  envs: number;
  cluster: boolean;
  /** a: how many times the worker is killed; b/p: how many times the server (or PostgreSQL) is. */
  kills: number;
  mailOutageMs: number;
  /** e: the R9 retention (the warnings fall 7/28 and 1/28 of it before the deletion). */
  retentionMs: number;
  log?: (line: string) => void;
}

export interface ChaosResult {
  scenario: ScenarioId;
  topology: 'embedded' | 'cluster';
  environments: number;
  faults: string;
  lost: number;
  onDeletedKey: number;
  rowsChanged: number;
  duplicateMails: number;
  mailsLost: number;
  mailsRejected: number;
  mails: number;
  /** Vault wrap/unwrap calls during the re-protections over the minimum (one unwrap and one wrap per environment). */
  vaultCalls: number | null;
  vaultMinimum: number | null;
  seconds: number;
  workflow: string;
  broken: string[];
}

// ------------------------------------------------------------------------------------------------- stacks

interface ChaosStack {
  env: Record<string, string>;
  dataDir: string;
  runDir: string;
  cmk: (args: string[], as?: string) => Promise<CliResult>;
  stop: () => Promise<void>;
  output: () => string;
}

async function embeddedStack(extra: Record<string, string>): Promise<ChaosStack> {
  const stack = await startStack(extra);
  return {
    env: stack.env,
    dataDir: stack.dataDir,
    runDir: join(stack.dataDir, 'run'),
    cmk: (args, as) => stack.cmk(args, as ? { as } : {}),
    stop: () => stack.stop(),
    output: stack.output,
  };
}

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/** `npm run cluster` (stack/cluster.ts) in a fresh data dir, its binaries from CMK_CLUSTER_BIN_DIR (never built here). */
async function clusterStack(extra: Record<string, string>): Promise<ChaosStack> {
  const binDir = process.env.CMK_CLUSTER_BIN_DIR || clusterPaths(join(root, 'var'), {}).bin;
  if (!existsSync(join(binDir, 'temporal-server'))) throw new Error(`--cluster needs the Temporal server binaries in ${binDir} (CMK_CLUSTER_BIN_DIR; \`npm run cluster\` builds them once).`);
  const base = mkdtempSync(join(tmpdir(), 'cmk-chaos-cluster-'));
  chmodSync(base, 0o755); // PostgreSQL runs as its own user and must reach its directory below this one.
  let frontend = 0;
  for (;;) {
    // Below 32000: Temporal keeps the membership ports (frontend − 300 …) in a PostgreSQL smallint (at most 32767).
    frontend = 22000 + Math.floor(Math.random() * 10000);
    const p = clusterPorts(frontend, {});
    const all = [...Object.values(p.grpc), ...Object.values(p.membership), ...Object.values(p.metrics), p.http, p.postgres];
    if ((await Promise.all(all.map(portIsFree))).every(Boolean)) break;
  }
  const dataDir = join(base, 'var');
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    CMK_DATA_DIR: dataDir,
    CMK_SECRETS_DIR: join(base, 'secrets'),
    CMK_CLUSTER_BIN_DIR: binDir,
    CMK_API_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: `127.0.0.1:${frontend}`,
    // The cluster routes vault and database work to the region's worker: the runner's requests name the same policy.
    CMK_REGIONS: 'default',
    ...extra,
  };
  delete env.CMK_USER;
  delete env.CMK_API_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'stack', 'cluster.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster not ready in 5 minutes:\n${output}`)), 300_000);
    child.stdout.on('data', () => output.includes('cmk cluster ready') && (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`cluster exited (${code}) before it was ready:\n${output}`))));
  });
  return {
    env,
    dataDir,
    runDir: join(dataDir, 'cluster', 'run'),
    cmk: (args, as) => runCmk(args, { ...env, ...(as ? { CMK_USER: as } : {}) }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
    output: () => output,
  };
}

/** The stack's processes whose command line matches `pattern` (from its run/stack.json; a PID may have been reused). */
function processes(stack: ChaosStack, pattern: RegExp): number[] {
  let pids: number[] = [];
  try {
    pids = (JSON.parse(readFileSync(join(stack.runDir, 'stack.json'), 'utf8')) as { pids: number[] }).pids;
  } catch {
    return [];
  }
  return pids.filter((pid) => {
    try {
      return pattern.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s.`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------- scenarios

const ALICE = 'alice@chaos.example';
const BOB = 'bob@chaos.example';
const CAROL = 'carol@chaos.example';
const BAD = 'nobody@rejected.chaos.example';
const SAM = 'sam@chaos.example';
const TENANT = 'chaos';
const NAME = 'Chaos Ltd';
const WORKER = /worker[/\\]main\.ts/;
/** npm start's supervisor stops the stack after 6 deaths of one part in a minute: kills stay at least this far apart. */
const KILL_SPACING_MS = 12_500;

export async function runScenario(scenario: ScenarioId, options: ChaosOptions): Promise<ChaosResult> {
  const say = options.log ?? (() => undefined);
  const topology = options.cluster ? 'cluster' : 'embedded';
  if (scenario === 'p' && !options.cluster) throw new Error('Scenario p (PostgreSQL restarted) needs --cluster: the embedded stack has no PostgreSQL.');
  const sendgrid = new FakeSendGrid();
  const sendgridUrl = await sendgrid.start();
  if (scenario === 'e') sendgrid.rejectAddresses.add(BAD);
  const env: Record<string, string> = {
    CMK_CHAOS: '1',
    CMK_KEY_CHANGE_INTERVAL: '1s',
    CMK_MAILER: 'sendgrid',
    CMK_SENDGRID_BASE_URL: sendgridUrl,
    CMK_SENDGRID_API_KEY: SENDGRID_TEST_KEY,
    CMK_MAIL_FROM: 'cmk@chaos.example',
    ...(scenario === 'c' ? { CMK_CHAOS_VAULT_FAULTS: '0.2' } : {}),
    ...(scenario === 'e' ? { CMK_LOCK_EMBARGO: '5s', CMK_LOCKED_RETENTION: `${Math.round(options.retentionMs / 1000)}s`, CMK_UNLOCK_DELAY: '5s' } : {}),
  };
  say(`[${scenario}/${topology}] starting the stack…`);
  const stack = options.cluster ? await clusterStack(env) : await embeddedStack(env);
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, dataConverter: loadDataConverter(stack.env.CMK_SECRETS_DIR!) });
  const plane = new ControlPlane(client, 'cmk', loadRequestSigner(stack.env.CMK_SECRETS_DIR!, stack.env));
  const config = loadConfig(stack.env);
  // The runner's own parts (not wrapped: its reads are not the vault calls under test).
  const parts = buildParts(config);
  const work = mkdtempSync(join(tmpdir(), 'cmk-chaos-'));
  const pw = join(work, 'pw');
  writeFileSync(pw, 'a long and secret password\n');
  const broken: string[] = [];
  const faults: string[] = [];
  const envs = Array.from({ length: options.envs }, (_, i) => `env-${i}`);
  const ok = async (args: string[], as?: string, attempts = 3): Promise<CliResult> => {
    // A client retries what failed for a reason other than a refusal (exit 3), as a person would.
    for (let i = 1; ; i++) {
      const r = await stack.cmk(args, as);
      if (r.code === 0) return r;
      if (r.code === 3 || i >= attempts) throw new Error(`cmk ${args.slice(0, 2).join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
      await sleep(2000);
    }
  };
  const batches = async (items: string[], each: (item: string) => Promise<unknown>) => {
    for (let i = 0; i < items.length; i += 8) await Promise.all(items.slice(i, i + 8).map(each));
  };
  const snapshot = () => until('the tenant snapshot', 120_000, () => plane.snapshot(TENANT));
  const activeKey = async () => (await snapshot()).regions.default!.keys.at(-1)!;
  let vaultWindow: [number, number] | undefined;
  /** When the runner first saw each worker process. */
  const firstSeen = new Map<number, number>();
  let rounds = 0;
  let seconds = 0;

  try {
    // ----------------------------------------------------------------------------------- set-up (not timed)
    say(`[${scenario}/${topology}] setting up ${options.envs} environments…`);
    await ok(['tenant', 'create', '--tenant', TENANT, '--name', NAME, '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`, ...(scenario === 'e' ? ['--admin', `${BAD}:service`] : [])]);
    await ok(['key', 'generate', '--tenant', TENANT, '--name', 'k1', '--password-file', pw, '--out', join(work, 'k1.pfx'), '--wait'], ALICE);
    const actor = { kind: 'user', email: ALICE } as const;
    const records = new Map<string, Awaited<ReturnType<typeof plane.createEnvironment>>>();
    await batches(envs, async (e) => records.set(e, await plane.createEnvironment(TENANT, { actor: { kind: 'operator' }, policy: config.policy, env: e, region: 'default', systemAdmin: e === 'env-0' ? SAM : null })));
    await batches(envs, (e) => parts.databases.writeRow(TENANT, e, `row of ${e}`));
    // e: half the environments on the tenant key (sealed by the lock), half on the provider key (locked by decision).
    const applied = scenario === 'e' ? envs.filter((_, i) => i % 2 === 0) : envs;
    await batches(applied, (e) => plane.environmentOperation(TENANT, { actor, policy: config.policy, env: e, operation: 'apply', acceptRisk: true }, records.get(e)));
    const before = new Map<string, string[]>();
    await batches(envs, async (e) => before.set(e, (await parts.databases.readRows(TENANT, e)).map((r) => r.text)));
    await sleep(1100); // R5 at 1 s

    // ------------------------------------------------------------------------------------------ the fault
    const started = Date.now();
    if (scenario === 'e') {
      await lockThroughDeletion();
    } else {
      if (scenario === 'd') {
        sendgrid.down = 503;
        faults.push(`SendGrid 503 for ${Math.round(options.mailOutageMs / 1000)} s`);
        setTimeout(() => (sendgrid.down = null), options.mailOutageMs).unref();
      }
      await reprotectUnderFault();
      if (scenario === 'd') {
        // More mail during the outage: an environment's own events and an administrator change.
        await ok(['env', 'revert', '--tenant', TENANT, '--env', 'env-0'], ALICE);
        await ok(['env', 'apply', '--accept-risk', '--tenant', TENANT, '--env', 'env-0'], ALICE);
        await ok(['tenant', 'admin', 'add', '--tenant', TENANT, '--admin', `${CAROL}:service`], ALICE);
        await until('the end of the mail outage', options.mailOutageMs + 60_000, () => Promise.resolve(sendgrid.down === null ? true : undefined));
        const pending = (await new Outbox({ dataDir: stack.dataDir }).list(TENANT)).filter((m) => m.delivery === 'pending').length;
        faults.push(`${pending} mails pending when it ended`);
      }
    }
    // Every mail settled: delivered, or rejected with a reason (the Schedule cmk-mail-retry retries pending mail).
    say(`[${scenario}/${topology}] waiting for every mail to be delivered or rejected…`);
    const outbox = new Outbox({ dataDir: stack.dataDir });
    await until('every mail delivered or rejected', Math.max(20 * 60_000, options.mailOutageMs * 2), async () => ((await outbox.list(TENANT)).some((m) => m.delivery === 'pending') ? undefined : true), 2000).catch((err: Error) =>
      broken.push(err.message),
    );
    seconds = (Date.now() - started) / 1000;

    // ----------------------------------------------------------------------------------------- the checks
    say(`[${scenario}/${topology}] checking…`);
    const final = await snapshot();
    const active = final.regions.default!.keys.at(-1)!;
    let lost = 0;
    let onDeletedKey = 0;
    let rowsChanged = 0;
    for (const e of envs) {
      const view = final.environments.find((v) => v.id === e);
      if (scenario === 'e') {
        // R9: every environment deleted, none lost on the way.
        if (view?.state !== 'Deleted') lost += 1;
        continue;
      }
      const path = join(stack.dataDir, 'environments', TENANT, e, 'key-record.json');
      if (!view || view.state !== 'Online' || !existsSync(path)) {
        lost += 1;
        continue;
      }
      const record = JSON.parse(readFileSync(path, 'utf8')) as { protector: { kind: string; name: string; version: string; thumbprint: string }; pending?: unknown };
      const key = await parts.vault.getKey(record.protector);
      if (!key || !key.enabled || record.protector.thumbprint !== active.thumbprint || view.keyThumbprint !== active.thumbprint || record.pending !== undefined) onDeletedKey += 1;
      const rows = (await parts.databases.readRows(TENANT, e)).map((r) => r.text);
      if (JSON.stringify(rows) !== JSON.stringify(before.get(e))) rowsChanged += 1;
    }
    // Mail: by (notification ID, recipient) at the stand-in; expected is every mail the outbox recorded.
    const received = new Map<string, number>();
    for (const m of sendgrid.delivered()) received.set(`${m.id}|${m.to}`, (received.get(`${m.id}|${m.to}`) ?? 0) + 1);
    const duplicateMails = [...received.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
    const mails = await outbox.list(TENANT);
    const mailsLost = mails.filter((m) => !received.has(`${m.id}|${m.to}`) && !(m.delivery === 'rejected' && m.reason)).length;
    const mailsRejected = mails.filter((m) => m.delivery === 'rejected').length;
    if (scenario === 'e') {
      if (!mails.some((m) => m.to === BAD && m.delivery === 'rejected')) broken.push(`no mail to ${BAD} is listed rejected`);
      // The warnings (two, or one when both fell due together) and the deletion were mailed to the others.
      for (const event of ['deletion-warning', 'environment-deleted'] as const) {
        if (!mails.some((m) => m.event === event && m.to === ALICE && m.delivery === 'delivered')) broken.push(`no ${event} mail delivered to ${ALICE}`);
      }
    }
    if (scenario !== 'e' && active.state !== 'Active') broken.push(`the last key is ${active.state}, not Active`);
    const workflow = (await client.workflow.getHandle(tenantWorkflowId(TENANT)).describe()).status.name;
    // And the tenant goes on working: the next request succeeds.
    const next = await stack.cmk(['env', 'create', '--tenant', TENANT, '--env', 'after-chaos'], ALICE);
    if (next.code !== 0) broken.push(`the next request failed: ${next.stderr.trim()}`);

    let vaultCalls: number | null = null;
    let vaultMinimum: number | null = null;
    if (vaultWindow) {
      const [from, to] = vaultWindow;
      const log = join(stack.dataDir, 'chaos', 'vault-calls.log');
      const lines = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
      vaultCalls = lines.map((l) => l.split(' ')).filter(([at, , op]) => Number(at) >= from && Number(at) <= to && (op === 'wrapKey' || op === 'unwrapKey')).length;
      vaultMinimum = 2 * options.envs * rounds;
      if (scenario === 'c') faults.push(`${lines.filter((l) => !l.endsWith(' 0')).length} of ${lines.length} vault calls answered 429/503 (whole run)`);
    }
    const result: ChaosResult = {
      scenario,
      topology,
      environments: options.envs,
      faults: faults.join('; '),
      lost,
      onDeletedKey,
      rowsChanged,
      duplicateMails,
      mailsLost,
      mailsRejected,
      mails: mails.length,
      vaultCalls,
      vaultMinimum,
      seconds,
      workflow,
      broken,
    };
    for (const [name, value] of [['environments lost', lost], ['environments left on a deleted key', onDeletedKey], ['environments with rows changed', rowsChanged], ['duplicate mails', duplicateMails], ['mails lost', mailsLost]] as const) {
      if (value !== 0) broken.push(`${value} ${name}`);
    }
    if (vaultCalls !== null && vaultMinimum !== null && vaultCalls > 1.5 * vaultMinimum) broken.push(`${vaultCalls} vault calls, over 1.5 × ${vaultMinimum}`);
    if (workflow !== 'RUNNING') broken.push(`the tenant workflow is ${workflow}`);
    return result;
  } catch (err) {
    say(stack.output().slice(-3000));
    throw err;
  } finally {
    await connection.close().catch(() => undefined);
    await stack.stop();
    await sendgrid.stop();
  }

  /** One or more key changes (a new round when the faults outlast one re-protection), each waited for until Active. */
  async function reprotectUnderFault(): Promise<void> {
    const windowStart = Date.now();
    // The worker --kills times; the Temporal server or PostgreSQL at most 3 (each restart takes the whole cluster's time).
    const kills = scenario === 'a' ? options.kills : scenario === 'b' || scenario === 'p' ? Math.min(3, options.kills) : 0;
    let killed = 0;
    let midway = 0;
    let lastKill = 0;
    do {
      // A kill must be possible during the round: wait out the spacing first (and R5's 1 s between key changes).
      if (rounds > 0) await sleep(Math.max(1100, KILL_SPACING_MS - (Date.now() - lastKill)));
      rounds += 1;
      const name = `k${rounds + 1}`;
      // The moment of each kill: a random share of the environments re-protected, once the spacing allows. Small
      // fleets are re-protected before the key change returns: there, the kill falls while the change is in flight.
      let target = Math.random() * 0.9;
      const inFlight = killed < kills && Date.now() - lastKill >= KILL_SPACING_MS && options.envs < 100 ? sleep(Math.random() * 1500).then(() => killNow(0)) : undefined;
      const thumbprint = await keyChange(name);
      await inFlight;
      for (;;) {
        if (killed < kills && Date.now() - lastKill >= KILL_SPACING_MS) {
          const moved = (await plane.snapshot(TENANT).catch(() => undefined))?.environments.filter((v) => v.keyThumbprint === thumbprint).length ?? 0;
          if (moved >= target * options.envs && killNow(moved)) target = moved / options.envs + Math.random() * (1 - moved / options.envs) * 0.9;
        }
        const current = await activeKey().catch(() => undefined);
        if (current?.name === name && current.state === 'Active') break;
        if (Date.now() - windowStart > 60 * 60_000) throw new Error('re-protection did not finish within an hour');
        await sleep(250);
      }
    } while (killed < kills);
    vaultWindow = [windowStart, Date.now()];
    if (kills) faults.push(`${killed} × ${scenario === 'a' ? 'worker' : scenario === 'b' ? (options.cluster ? 'history service' : 'dev server') : 'PostgreSQL'} killed (${midway} with environments still to move, the others as the key was being made Active) over ${rounds} key change(s)`);

    function killNow(moved: number): boolean {
      if (!kill()) return false;
      killed += 1;
      if (moved < options.envs) midway += 1;
      lastKill = Date.now();
      say(`[${scenario}/${topology}] kill ${killed}/${kills} at ${moved}/${options.envs} re-protected`);
      return true;
    }
  }

  /**
   * A key change as a careful client makes it: when the command fails for another reason than a refusal (the server
   * was killed under it), the tenant says whether it took effect before it is tried again. Its thumbprint.
   */
  async function keyChange(name: string): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const r = await stack.cmk(['key', 'generate', '--tenant', TENANT, '--name', name, '--password-file', pw, '--out', join(work, `${name}.pfx`), '--json'], ALICE);
      if (r.code === 0) {
        say(`[${scenario}/${topology}] key ${name} ${String(r.json().activeKey.state)}; re-protecting ${options.envs} environments…`);
        return r.json().activeKey.thumbprint as string;
      }
      const taken = await until('the tenant after a failed key change', 120_000, async () => (await plane.snapshot(TENANT))?.regions.default?.keys.find((k) => k.name === name) ?? null);
      if (taken) {
        say(`[${scenario}/${topology}] key ${name}: the command failed (${r.stderr.trim().split('\n').at(-1)}) but the change took effect`);
        return taken.thumbprint;
      }
      if (r.code === 3 || attempt >= 3) throw new Error(`cmk key generate failed (${r.code}): ${r.stderr.trim()}`);
      await sleep(2000);
    }
  }

  /** One fault of the scenario's kind; false when its process is not up (yet) again. */
  function kill(): boolean {
    if (scenario === 'a') {
      // A worker that has been up for a few seconds (started, connected, polling), at random among them.
      const now = Date.now();
      const workers = processes(stack, WORKER).filter((pid) => now - (firstSeen.get(pid) ?? firstSeen.set(pid, now).get(pid)!) >= 4000);
      const pid = workers[Math.floor(Math.random() * workers.length)];
      if (!pid) return false;
      process.kill(pid, 'SIGKILL');
      return true;
    }
    if (scenario === 'b') {
      const [pid] = processes(stack, options.cluster ? /--service=history/ : /start-dev/);
      if (!pid) return false;
      process.kill(pid, 'SIGKILL');
      return true;
    }
    // p: PostgreSQL's postmaster, immediate shutdown (SIGQUIT: no checkpoint, crash recovery at the next start).
    const [pid] = processes(stack, /bin\/postgres\0-D/);
    if (!pid) return false;
    process.kill(pid, 'SIGQUIT');
    return true;
  }


  /** e: lock, then the provider's key revoked from before the first warning until after the deletion. */
  async function lockThroughDeletion(): Promise<void> {
    await sleep(6000); // the 5-second embargo (R6) after the key change
    await ok(['tenant', 'lock', '--tenant', TENANT, '--confirm', NAME, '--file', join(work, 'k1.pfx'), '--password-file', pw], ALICE);
    sendgrid.down = 401;
    faults.push(`${BAD} refused (400); SendGrid key revoked (401) from the lock until the deletion`);
    say(`[${scenario}/${topology}] locked; SendGrid answers 401 until every environment is deleted…`);
    await until('the R9 deletion', options.retentionMs + 10 * 60_000, async () => ((await plane.snapshot(TENANT))?.environments.filter((v) => envs.includes(v.id)).every((v) => v.state === 'Deleted') ? true : undefined), 2000);
    await sleep(5000);
    sendgrid.down = null;
  }
}

// -------------------------------------------------------------------------------------------------- main

function table(results: ChaosResult[]): string {
  const head = ['scenario', 'topology', 'envs', 'lost', 'deleted key', 'rows changed', 'dup mails', 'mails lost', 'rejected', 'vault calls / min', 'time (s)', 'workflow', 'ok'];
  const rows = results.map((r) => [
    `${r.scenario} ${SCENARIOS[r.scenario]}`,
    r.topology,
    String(r.environments),
    String(r.lost),
    String(r.onDeletedKey),
    String(r.rowsChanged),
    String(r.duplicateMails),
    String(r.mailsLost),
    `${r.mailsRejected}/${r.mails}`,
    r.vaultCalls === null ? '—' : `${r.vaultCalls} / ${r.vaultMinimum} (${(r.vaultCalls / r.vaultMinimum!).toFixed(2)}×)`,
    r.seconds.toFixed(0),
    r.workflow,
    r.broken.length ? `NO: ${r.broken.join('; ')}` : 'yes',
  ]);
  return [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value.`);
    return v;
  };
  const known = new Set(['--cluster', '--json', '--scenario', '--envs', '--kills', '--mail-outage', '--retention']);
  const unknown = argv.filter((a, i) => a.startsWith('--') && !known.has(a) && !(i > 0 && known.has(argv[i - 1]!)));
  if (unknown.length) throw new Error(`Unknown option ${unknown.join(', ')}. Options: ${[...known].join(', ')}.`);
  const cluster = argv.includes('--cluster');
  const all: ScenarioId[] = cluster ? ['a', 'b', 'p', 'c', 'd', 'e'] : ['a', 'b', 'c', 'd', 'e'];
  const only = value('scenario')?.split(',');
  if (only?.some((id) => !(all as string[]).includes(id))) throw new Error(`--scenario takes one or more of ${all.join(', ')}, separated by commas.`);
  const duration = (name: string, fallback: string) => {
    const ms = parseDuration(value(name) ?? fallback);
    if (ms === undefined) throw new Error(`--${name} must be a duration such as 600s or 4m.`);
    return ms;
  };
  const options: ChaosOptions = {
    envs: Number(value('envs') ?? 500),
    cluster,
    kills: Number(value('kills') ?? 10),
    mailOutageMs: duration('mail-outage', '600s'),
    retentionMs: duration('retention', '4m'),
    log: (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`),
  };
  if (!Number.isInteger(options.envs) || options.envs < 1) throw new Error('--envs must be a whole number of at least 1.');
  const began = Date.now();
  const results: ChaosResult[] = [];
  for (const scenario of (only as ScenarioId[] | undefined) ?? all) {
    const result = await runScenario(scenario, options);
    results.push(result);
    options.log?.(`[${scenario}] ${result.broken.length ? `BROKEN: ${result.broken.join('; ')}` : 'every bound held'}: ${JSON.stringify(result)}`);
  }
  const total = (Date.now() - began) / 1000;
  process.stdout.write(`${table(results)}\n\nFaults: ${results.map((r) => `${r.scenario}: ${r.faults || '—'}`).join(' · ')}\nWhole suite: ${total.toFixed(0)} s\n`);
  const json = value('json');
  if (json) writeFileSync(json, `${JSON.stringify({ date: new Date().toISOString(), totalSeconds: total, options: { ...options, log: undefined }, results }, null, 2)}\n`);
  if (results.some((r) => r.broken.length)) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
