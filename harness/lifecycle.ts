/**
 * The model-based test of the tenant lifecycle (issue 14): random sequences of requests by random administrators —
 * key changes, rollback, apply/revert/rekey, lock with its proof of possession, re-activation, unlock, administrator
 * changes, data, and days passing — against the REAL tenant workflow on the time-skipping test server (real
 * activities over a local vault, encrypted SQLite databases and the outbox in a temporary data dir), each answer
 * compared with the reference model of harness/lifecycle-model.ts. Shared by test/model-lifecycle.test.ts (a fixed
 * seed, a small budget) and `npm run fuzz -- --model` (many more runs), which may not import test/.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporal } from '@temporalio/proto';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { createActivities } from '../activities';
import { ChallengeIssuer } from '../api/challenges';
import { ApiService } from '../api/service';
import { AuditTrail } from '../audit/trail';
import { ControlPlane } from '../client/library';
import { dataConverterFor, loadCodecKeyRing } from '../codec';
import { CmkError } from '../common/errors';
import { RequestSigner, requestTrustFor } from '../common/request-signing';
import { loadConfig } from '../config';
import { DEFAULT_POLICY } from '../domain/policy';
import type { Actor } from '../domain/access';
import type { TenantSnapshot } from '../domain/model';
import { registerSearchAttributes } from '../stack/search-attributes';
import { temporalTestServerPath } from '../stack/tools';
import { tenantVaultKeyName } from '../vault/names';
import { buildParts } from '../worker/parts';
import { workflowBundleOptions } from '../worker/workflow-bundle';
import { tenantWorkflowId, type StagedKey } from '../workflows/messages';
import { accept, advance, answer, deadlines, emailOf, environmentLine, initialModel, viewOf, type Answer, type LifecycleModel, type LifecycleView, type Request, type Role, type Who } from './lifecycle-model';

const { EventType } = temporal.api.enums.v1;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const REGION = 'emea';
const DISPLAY_NAME = 'Contoso Ltd';
/** How far from a deadline (R5, R6, R9, R15) a sleep lands: the workflow's clock runs on while requests are made. */
const MARGIN = 10 * MINUTE;
/** Background work (re-protection, retiring keys, R9's deletions) ends well within this on the real activities. */
const SETTLE_MS = 60_000;

// ------------------------------------------------------------------------------------------------ the server

/** The time-skipping server, one worker with the real activities, and the client library on top: one per process. */
export interface LifecycleServer {
  env: TestWorkflowEnvironment;
  plane: ControlPlane;
  api: ApiService;
  parts: ReturnType<typeof buildParts>;
  challenges: ChallengeIssuer;
  close: () => Promise<void>;
}

export async function startLifecycleServer(): Promise<LifecycleServer> {
  // Fresh keys for this process: payloads encrypted as in production, requests signed as the API service signs them.
  const dataConverter = dataConverterFor(loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${randomBytes(32).toString('base64')}` }));
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: temporalTestServerPath() } }, client: { dataConverter } });
  try {
    await registerSearchAttributes(env.connection, 'default');
    const workflowBundle = await bundleWorkflowCode(workflowBundleOptions());
    const base = mkdtempSync(join(tmpdir(), 'cmk-model-'));
    const config = loadConfig({ CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') });
    const parts = buildParts(config);
    const signer = new RequestSigner(randomBytes(32), () => env.currentTimeMs());
    const challenges = new ChallengeIssuer(randomBytes(32));
    const auditTrail = new AuditTrail(join(config.dataDir, 'audit'), randomBytes(32));
    const audit = async (entries: Parameters<AuditTrail['append']>[0]) => void auditTrail.append(entries);
    const taskQueue = `model-${process.pid}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle,
      dataConverter,
      activities: createActivities({ ...parts, auditTrail, auditSink: { report: audit }, requestTrust: requestTrustFor(signer, DEFAULT_POLICY, {}), challenges }),
    });
    const running = worker.run();
    const plane = new ControlPlane(env.client, taskQueue, signer);
    // `env data` is served by the API service straight from the database engine: the model reaches it there.
    const api = new ApiService({ config, controlPlane: plane, vault: parts.vault, databases: parts.databases, outbox: parts.outbox, challenges, audit });
    const close = async () => {
      worker.shutdown();
      await running;
      await env.teardown();
    };
    return { env, plane, api, parts, challenges, close };
  } catch (err) {
    await env.teardown();
    throw err;
  }
}

// ------------------------------------------------------------------------------------------------ keys

interface PoolKey {
  privateKey: KeyObject;
  /** DESIGN.md §4: lowercase hex SHA-256 of the public key's DER (SubjectPublicKeyInfo). */
  thumbprint: string;
}

/** 2048-bit keys are slow to make: made once per process, as many as a run has needed so far. */
const pool: PoolKey[] = [];
function poolKey(index: number): PoolKey {
  while (pool.length <= index) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const thumbprint = createHash('sha256').update(createPublicKey(privateKey).export({ type: 'spki', format: 'der' })).digest('hex');
    pool.push({ privateKey, thumbprint });
  }
  return pool[index]!;
}
const byThumbprint = (thumbprint: string): PoolKey | undefined => pool.find((k) => k.thumbprint === thumbprint);

// ------------------------------------------------------------------------------------------------ one tenant

const actorOf = (who: Who): Actor => (who === 'operator' ? { kind: 'operator' } : { kind: 'user', email: emailOf(who) });

interface Outcome {
  answer: Answer;
  message?: string;
  rows?: string[];
}

/** The real system of one run: a fresh tenant (alice global, bob service; prod with its system administrator sam, dev). */
export class LifecycleSystem {
  private fresh = 0;
  /** Commands run so far (the fuzz script's figure). */
  steps = 0;
  /** Told each request's kind and answer (`key.change accepted`, `tenant.lock LOCK_EMBARGO`…): the figures of a long run. */
  observe?: (what: string) => void;
  private constructor(
    readonly server: LifecycleServer,
    readonly tenant: string,
  ) {}

  private static count = 0;

  static async create(server: LifecycleServer): Promise<{ system: LifecycleSystem; model: LifecycleModel }> {
    const tenant = `model-${process.pid}-${++LifecycleSystem.count}`;
    const { plane, parts } = server;
    const operator: Actor = { kind: 'operator' };
    await plane.createTenant({ actor: operator, tenant, displayName: DISPLAY_NAME, homeRegion: REGION, admins: [{ email: emailOf('alice'), role: 'global' }, { email: emailOf('bob'), role: 'service' }] });
    const environments = [
      { id: 'prod', systemAdmin: emailOf('sam'), rows: ['first row of prod'] },
      { id: 'dev', systemAdmin: null, rows: ['first row of dev'] },
    ];
    for (const e of environments) {
      await plane.createEnvironment(tenant, { actor: operator, policy: DEFAULT_POLICY, env: e.id, region: REGION, systemAdmin: e.systemAdmin });
      for (const text of e.rows) await parts.databases.writeRow(tenant, e.id, text);
    }
    const system = new LifecycleSystem(server, tenant);
    return { system, model: initialModel(await server.env.currentTimeMs(), DISPLAY_NAME, environments) };
  }

  /** A key this run has not used yet. */
  freshKey(): string {
    return poolKey(this.fresh++).thumbprint;
  }

  now(): Promise<number> {
    return this.server.env.currentTimeMs();
  }

  private async stage(thumbprint: string): Promise<StagedKey> {
    const key = byThumbprint(thumbprint);
    if (!key) throw new Error(`no private key for thumbprint ${thumbprint}`);
    const info = await this.server.parts.vault.importKey(tenantVaultKeyName(this.tenant, REGION), key.privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: false });
    if (info.thumbprint !== thumbprint) throw new Error(`the vault's thumbprint ${info.thumbprint} is not DESIGN.md §4's ${thumbprint}`);
    return { vaultKey: { name: info.name, version: info.version }, thumbprint };
  }

  /** Sends the request as the API service would, and says what came back: accepted, or the refusal's code. */
  async send(r: Request): Promise<Outcome> {
    try {
      const rows = await this.perform(r);
      return { answer: 'accepted', ...(rows ? { rows } : {}) };
    } catch (err) {
      if (err instanceof CmkError) return { answer: err.code, message: err.message };
      throw err;
    }
  }

  private async perform(r: Request): Promise<string[] | undefined> {
    const { plane, api } = this.server;
    const { tenant } = this;
    const base = { actor: actorOf(r.who), policy: DEFAULT_POLICY };
    switch (r.kind) {
      case 'key.change':
        await plane.changeKey(tenant, { ...base, region: REGION, name: `key-${r.key.slice(0, 8)}`, source: 'generated', staged: await this.stage(r.key) });
        return;
      case 'key.rollback': {
        const active = (await plane.snapshot(tenant))?.regions[REGION]?.activeThumbprint ?? 'none';
        await plane.rollbackKey(tenant, { ...base, region: REGION }, active);
        return;
      }
      case 'key.reactivate':
        await plane.reactivateKey(tenant, { ...base, region: REGION, staged: await this.stage(r.key) });
        return;
      case 'tenant.lock':
        await plane.lockTenant(tenant, { ...base, region: REGION, confirm: r.confirm, ...(await this.proof(r)) });
        return;
      case 'admin.add':
      case 'admin.remove':
        await plane.changeAdmin(tenant, { ...base, change: r.kind === 'admin.add' ? 'add' : 'remove', email: r.email, role: r.kind === 'admin.add' ? r.role : null });
        return;
      case 'env.unlock':
        await plane.unlockEnvironment(tenant, { ...base, env: r.env });
        return;
      case 'env.data':
        return (await api.environmentData(actorOf(r.who), tenant, r.env, r.write ?? undefined)).rows.map((row) => row.text);
      default:
        await plane.environmentOperation(tenant, { ...base, env: r.env, operation: r.kind === 'env.apply' ? 'apply' : r.kind === 'env.revert' ? 'revert' : 'rekey', acceptRisk: true });
    }
  }

  /**
   * The proof the API service hands over after checking a signature (R8): a challenge for this tenant, user and
   * operation, signed with the private key of the key it names (a key nobody holds when it names none).
   */
  private async proof(r: Extract<Request, { kind: 'tenant.lock' }>) {
    const user = r.who === 'operator' ? '' : emailOf(r.who);
    const claims = { id: randomUUID(), tenant: this.tenant, region: REGION, user, operation: 'lock' as const, expiresAt: new Date((await this.now()) + 5 * MINUTE).toISOString() };
    const challenge = await this.server.challenges.seal(claims);
    const key = (r.proves && byThumbprint(r.proves)?.privateKey) || generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const proof = { challengeId: claims.id, tenant: claims.tenant, region: claims.region, user, operation: claims.operation, expiresAt: claims.expiresAt, verifiedThumbprint: r.proves };
    return { proof, possession: { challenge, signature: sign('sha256', Buffer.from(challenge, 'utf8'), key).toString('base64') } };
  }

  async snapshot(): Promise<TenantSnapshot> {
    const snapshot = await this.server.plane.snapshot(this.tenant);
    if (!snapshot) throw new Error(`tenant ${this.tenant} does not answer`);
    return snapshot;
  }

  /** What the model predicts, read from the workflow. */
  async view(): Promise<LifecycleView> {
    const snapshot = await this.snapshot();
    const region = snapshot.regions[REGION];
    const active = region?.keys.find((k) => k.thumbprint === region.activeThumbprint) ?? null;
    return {
      active: active?.thumbprint ?? null,
      withdrawn: active?.state === 'Locked',
      admins: snapshot.admins.map((a) => `${a.email}:${a.role}`).sort(),
      environments: snapshot.environments.map((e) => environmentLine(e.id, e.state, e.protection, e.keyThumbprint)),
    };
  }

  /**
   * Waits for what a request or the passing time set going in the background — the re-protection after a key change
   * (as `--wait` does), keys leaving the vault, R9's deletions — and for the workflow to be idle.
   */
  async settle(): Promise<void> {
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const snapshot = await this.snapshot();
      const now = await this.now();
      const active = snapshot.regions[REGION]?.keys.find((k) => k.thumbprint === snapshot.regions[REGION]?.activeThumbprint);
      const busy =
        Object.keys(snapshot.operations).length > 0 ||
        active?.state === 'Installing' ||
        snapshot.environments.some((e) => e.runningOperation || !['Online', 'Locked', 'Deleted'].includes(e.state) || (e.state === 'Locked' && e.lock && Date.parse(e.lock.deleteAt) <= now));
      if (!busy && (await this.idle())) return;
      if (Date.now() > deadline) throw new Error(`tenant ${this.tenant} did not settle within ${SETTLE_MS / 1000} s: ${JSON.stringify(snapshot.operations)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** No workflow task or activity scheduled or running (a query answers from the last completed task). */
  private async idle(): Promise<boolean> {
    const handle = this.server.env.client.workflow.getHandle(tenantWorkflowId(this.tenant));
    const { raw } = await handle.describe();
    if ((raw.pendingActivities ?? []).length > 0) return false;
    const last = (await handle.fetchHistory()).events?.at(-1)?.eventType;
    const busy = [EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED];
    return last !== undefined && last !== null && !busy.includes(last);
  }

  /** Every row the model holds is still there, in every environment that can be read. */
  async checkRows(m: LifecycleModel): Promise<void> {
    for (const e of m.environments.filter((x) => x.state === 'Online')) {
      const rows = (await this.server.parts.databases.readRows(this.tenant, e.id)).map((r) => r.text);
      if (JSON.stringify(rows) !== JSON.stringify(e.rows)) throw new Error(`rows of ${e.id}: expected ${JSON.stringify(e.rows)}, found ${JSON.stringify(rows)}`);
    }
  }

  /** Terminated once idle: the time-skipping server stops skipping for good under a terminated running activity. */
  async close(): Promise<void> {
    await this.settle().catch(() => undefined);
    await this.server.env.client.workflow.getHandle(tenantWorkflowId(this.tenant)).terminate('model run finished');
  }
}

// ------------------------------------------------------------------------------------------------ commands

type LifecycleCommand = fc.AsyncCommand<LifecycleModel, LifecycleSystem>;

/** The comparison every command ends with: the workflow's state is the model's. */
async function compareState(m: LifecycleModel, s: LifecycleSystem, after: string): Promise<void> {
  const expected = viewOf(m);
  const actual = await s.view();
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`after ${after}, the workflow's state is not the model's:\n  model:    ${JSON.stringify(expected)}\n  workflow: ${JSON.stringify(actual)}`);
  }
}

/** Every command may run in any state: a refusal is as much the point as an acceptance. */
abstract class Step implements LifecycleCommand {
  check(): boolean {
    return true;
  }
  abstract run(m: LifecycleModel, s: LifecycleSystem): Promise<void>;
  abstract describe(): string;

  /** One command per line in a counterexample. */
  toString(): string {
    return `\n  ${this.describe()}`;
  }
}

/** A request: the model says what must come back, the workflow answers, then both states are compared. */
abstract class RequestCommand extends Step {
  /** The concrete request, once the model's state is known (which key is "the active one", "a new one"…). */
  protected abstract request(m: LifecycleModel, s: LifecycleSystem): Request;

  async run(m: LifecycleModel, s: LifecycleSystem): Promise<void> {
    s.steps++;
    advance(m, await s.now());
    const r = this.request(m, s);
    const expected = answer(m, r);
    const got = await s.send(r);
    s.observe?.(`${r.kind} ${got.answer}`);
    if (got.answer !== expected) {
      throw new Error(`${this.describe()}: the model expects ${expected}, the workflow answered ${got.answer}${got.message ? ` (${got.message})` : ''}`);
    }
    if (expected === 'accepted') {
      accept(m, r);
      await s.settle();
      if (r.kind === 'env.data') {
        const rows = m.environments.find((e) => e.id === r.env)!.rows;
        if (JSON.stringify(got.rows) !== JSON.stringify(rows)) throw new Error(`${this.describe()}: rows ${JSON.stringify(got.rows)}, the model holds ${JSON.stringify(rows)}`);
      }
    }
    await compareState(m, s, this.describe());
  }
}

class ChangeKey extends RequestCommand {
  constructor(
    readonly who: Who,
    readonly again: boolean,
  ) {
    super();
  }
  protected request(m: LifecycleModel, s: LifecycleSystem): Request {
    return { kind: 'key.change', who: this.who, key: this.again && m.keysSet.length > 0 ? m.keysSet[0]! : s.freshKey() };
  }
  describe() {
    return `${this.who}: key generate (${this.again ? 'the first key again' : 'a new key'})`;
  }
}

class Rollback extends RequestCommand {
  constructor(readonly who: Who) {
    super();
  }
  protected request(): Request {
    return { kind: 'key.rollback', who: this.who };
  }
  describe() {
    return `${this.who}: key rollback`;
  }
}

type ProofKind = 'active key' | 'another key' | 'no signature';

class Lock extends RequestCommand {
  constructor(
    readonly who: Who,
    readonly nameRight: boolean,
    readonly proofOf: ProofKind,
  ) {
    super();
  }
  protected request(m: LifecycleModel, s: LifecycleSystem): Request {
    const other = m.keysSet.find((k) => k !== m.active) ?? s.freshKey();
    const proves = this.proofOf === 'active key' ? m.active : this.proofOf === 'another key' ? other : null;
    return { kind: 'tenant.lock', who: this.who, confirm: this.nameRight ? DISPLAY_NAME : DISPLAY_NAME.toLowerCase(), proves };
  }
  describe() {
    return `${this.who}: tenant lock (${this.nameRight ? 'right name' : 'wrong name'}, proof by ${this.proofOf})`;
  }
}

class Reactivate extends RequestCommand {
  constructor(
    readonly who: Who,
    readonly sameKey: boolean,
  ) {
    super();
  }
  protected request(m: LifecycleModel, s: LifecycleSystem): Request {
    return { kind: 'key.reactivate', who: this.who, key: this.sameKey && m.active ? m.active : s.freshKey() };
  }
  describe() {
    return `${this.who}: key reactivate (${this.sameKey ? 'the withdrawn key' : 'another key'})`;
  }
}

class OnEnvironment extends RequestCommand {
  constructor(
    readonly who: Who,
    readonly kind: 'env.apply' | 'env.revert' | 'env.rekey' | 'env.unlock',
    readonly env: string,
  ) {
    super();
  }
  protected request(): Request {
    return { kind: this.kind, who: this.who, env: this.env };
  }
  describe() {
    return `${this.who}: ${this.kind.replace('.', ' ')} ${this.env}`;
  }
}

class Data extends RequestCommand {
  private static written = 0;
  constructor(
    readonly who: Who,
    readonly env: string,
    readonly write: boolean,
  ) {
    super();
  }
  protected request(): Request {
    return { kind: 'env.data', who: this.who, env: this.env, write: this.write ? `row ${++Data.written}` : null };
  }
  describe() {
    return `${this.who}: env data ${this.env}${this.write ? ' --write' : ''}`;
  }
}

class AdminChange extends RequestCommand {
  constructor(
    readonly who: Who,
    readonly add: boolean,
    readonly whom: Exclude<Who, 'operator'>,
    readonly role: Role,
  ) {
    super();
  }
  protected request(): Request {
    const email = emailOf(this.whom);
    return this.add ? { kind: 'admin.add', who: this.who, email, role: this.role } : { kind: 'admin.remove', who: this.who, email };
  }
  describe() {
    return `${this.who}: tenant admin ${this.add ? `add ${this.whom}:${this.role}` : `remove ${this.whom}`}`;
  }
}

/** How long a sleep is: fixed amounts, or just past the next moment an answer changes by time alone. */
export type Span = '10m' | '1h' | '1d' | '3d' | '28d' | 'next deadline';
const SPANS: Record<Exclude<Span, 'next deadline'>, number> = { '10m': 10 * MINUTE, '1h': HOUR, '1d': DAY, '3d': 3 * DAY, '28d': 28 * DAY };

class Sleep extends Step {
  constructor(readonly span: Span) {
    super();
  }
  async run(m: LifecycleModel, s: LifecycleSystem): Promise<void> {
    s.steps++;
    const now = await s.now();
    advance(m, now);
    const ahead = deadlines(m).filter((t) => t > now);
    let target = this.span === 'next deadline' ? (ahead.length > 0 ? Math.min(...ahead) + MARGIN : now + HOUR) : now + SPANS[this.span];
    // Never within MARGIN of a deadline: which side of it the workflow's clock is on would be a coin toss.
    for (let near = deadlines(m).find((t) => Math.abs(t - target) < MARGIN); near !== undefined; near = deadlines(m).find((t) => Math.abs(t - target) < MARGIN)) {
      target = near + MARGIN;
    }
    await s.server.env.sleep(target - now);
    await s.settle();
    advance(m, await s.now());
    await compareState(m, s, this.describe());
  }
  describe() {
    return `sleep ${this.span}`;
  }
}

// ------------------------------------------------------------------------------------------------ the property

// Mostly the tenant's administrators (the paths past FORBIDDEN are the long ones), sometimes anyone else.
const who = fc.constantFrom<Who>('alice', 'alice', 'alice', 'bob', 'bob', 'bob', 'carol', 'sam', 'operator');
const env = fc.constantFrom('prod', 'prod', 'dev', 'dev', 'nope');

/** The command generators; those on the way to a lock and back (key change, apply, lock, re-activation, time) come twice. */
export function lifecycleCommands(): Array<fc.Arbitrary<LifecycleCommand>> {
  const keyChange = fc.tuple(who, fc.constantFrom(false, false, false, true)).map(([w, again]) => new ChangeKey(w, again));
  const lock = fc
    .tuple(who, fc.constantFrom(true, true, true, false), fc.constantFrom<ProofKind>('active key', 'active key', 'active key', 'another key', 'no signature'))
    .map(([w, n, p]) => new Lock(w, n, p));
  const onEnvironment = fc
    .tuple(who, fc.constantFrom<OnEnvironment['kind']>('env.apply', 'env.apply', 'env.revert', 'env.rekey', 'env.unlock', 'env.unlock'), env)
    .map(([w, k, e]) => new OnEnvironment(w, k, e));
  // 28 days rarely: past them a lock's environments are gone (R9), and the way back (R10, R15) is the rarer path.
  const sleep = fc.constantFrom<Span>('10m', '1h', '1d', '1d', '3d', '3d', '28d', 'next deadline', 'next deadline').map((span) => new Sleep(span));
  const reactivate = fc.tuple(who, fc.constantFrom(true, true, true, false)).map(([w, same]) => new Reactivate(w, same));
  return [
    keyChange,
    keyChange,
    who.map((w) => new Rollback(w)),
    lock,
    lock,
    reactivate,
    reactivate,
    onEnvironment,
    onEnvironment,
    fc.tuple(who, env, fc.boolean()).map(([w, e, write]) => new Data(w, e, write)),
    fc.tuple(who, fc.boolean(), fc.constantFrom<Exclude<Who, 'operator'>>('alice', 'bob', 'carol', 'sam'), fc.constantFrom<Role>('global', 'service')).map(([w, add, whom, role]) => new AdminChange(w, add, whom, role)),
    sleep,
    sleep,
  ];
}

/** What a long run counts: runs started, the commands each ran, each request's kind and answer. */
export interface LifecycleHooks {
  beforeRun?: () => void;
  steps?: (count: number) => void;
  outcome?: (what: string) => void;
}

/** One run: a fresh tenant, the commands, then every row the model holds is read back from the databases. */
export function lifecycleProperty(server: LifecycleServer, maxCommands: number, hooks: LifecycleHooks = {}) {
  return fc.asyncProperty(fc.commands(lifecycleCommands(), { maxCommands, size: 'medium' }), async (commands) => {
    hooks.beforeRun?.();
    const { system, model } = await LifecycleSystem.create(server);
    system.observe = hooks.outcome;
    try {
      await fc.asyncModelRun(() => ({ model, real: system }), commands);
      await system.checkRows(model);
    } finally {
      hooks.steps?.(system.steps);
      await system.close();
    }
  });
}
