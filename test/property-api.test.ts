/**
 * Property tests over every POST route of the API service, against the real embedded stack (Temporal dev server,
 * worker, API): hostile bodies and path segments (harness/hostile.ts) always answer below 500, with JSON and a
 * stable code; the API stays up; and refused requests change nothing the tenant can see (`key show`, `env list`).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { startStack, type Stack } from '../harness/stack';
import {
  apiTargets,
  BODY_LIMITS,
  buildKeyFileCorpus,
  checkApiAnswer,
  explainedChanges,
  postRoutesOf,
  send,
  unexplainedEnvChanges,
  withKek,
  type AcceptedLog,
  type ApiRoute,
  type ApiWorld,
} from '../harness/hostile';

/** Runs per route: with ~20 routes and ~50 ms a request, the whole file stays well under three minutes. */
const RUNS_PER_ROUTE = 20;
const STRAY_PATH_RUNS = 60;
/** The same inputs on every CI run (CMK_PROPERTY_SEED to explore others); `npm run fuzz` draws fresh ones. */
const SEED = Number(process.env.CMK_PROPERTY_SEED ?? 20261129);

const TENANT = 'fuzz';
const ALICE = 'alice@fuzz.example';
const BOB = 'bob@fuzz.example';
const SAM = 'sam@fuzz.example';

let stack: Stack;
let world: ApiWorld;
let routes: ApiRoute[];
const accepted: AcceptedLog = [];
const before: { key?: Record<string, unknown>; envs?: Array<Record<string, unknown>> } = {};

async function cmkJson(args: string[], as?: string): Promise<Record<string, unknown>> {
  const result = await stack.cmk([...args, '--json'], as ? { as } : {});
  if (result.code !== 0) throw new Error(`cmk ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.json();
}

const keyShow = () => cmkJson(['key', 'show', '--tenant', TENANT], ALICE);
const envList = async () => (await cmkJson(['env', 'list', '--tenant', TENANT], ALICE)).environments as Array<Record<string, unknown>>;

beforeAll(async () => {
  const [started, corpus] = await Promise.all([startStack(), buildKeyFileCorpus()]);
  stack = started;
  await cmkJson(['tenant', 'create', '--tenant', TENANT, '--name', 'Fuzz Ltd', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`]);
  await cmkJson(['env', 'create', '--tenant', TENANT, '--env', 'prod', '--admin', SAM]);
  // A real key-exchange key, so that .byok uploads reach the vault's unwrap.
  const kekPath = join(mkdtempSync(join(tmpdir(), 'cmk-fuzz-')), 'kek.pem');
  const kek = await cmkJson(['key', 'kek', '--tenant', TENANT, '--out', kekPath], ALICE);
  world = {
    tenant: TENANT,
    displayName: 'Fuzz Ltd',
    env: 'prod',
    admin: ALICE,
    sysadmin: SAM,
    second: BOB,
    corpus: withKek(corpus, readFileSync(kekPath, 'utf8'), String(kek.kid)),
    request: (method, path, options) => stack.api(method, path, options),
  };
  const openapi = await stack.api('GET', '/openapi.json');
  routes = postRoutesOf(openapi.body);
  before.key = await keyShow();
  before.envs = await envList();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

test('the OpenAPI document lists the POST routes to fuzz', () => {
  expect(routes.length).toBeGreaterThanOrEqual(15);
  expect(routes.map((r) => r.path)).toEqual(expect.arrayContaining(['/v1/tenants', '/v1/tenants/{tenant}/keys/upload', '/v1/tenants/{tenant}/keys/reactivate', '/codec/decode']));
  expect(routes.find((r) => r.path === '/v1/tenants/{tenant}/keys/upload')!.fields).toEqual(expect.arrayContaining(['name', 'fileName', 'file', 'password']));
});

test('every POST route answers hostile bodies and path segments below 500, with a stable code', async () => {
  const failures: string[] = [];
  for (const target of apiTargets(world, routes, accepted)) {
    const details = await target.check({ numRuns: target.name === 'stray paths' ? STRAY_PATH_RUNS : RUNS_PER_ROUTE, seed: SEED });
    if (details.failed) failures.push(`${target.name}\n${fc.defaultReportMessage(details)}`);
  }
  expect(failures).toEqual([]);
}, 240_000);

test('bodies over every limit are refused with a stable code, on every POST route', async () => {
  const failures: string[] = [];
  for (const route of routes) {
    const path = route.path.replace('{tenant}', TENANT).replace('{env}', 'no-such-env');
    for (const limit of BODY_LIMITS) {
      const request = { route: route.path, method: 'POST', path, params: { tenant: TENANT, env: 'no-such-env' }, body: 'x'.repeat(limit + 1), as: ALICE };
      try {
        const res = await send(world, request);
        if (checkApiAnswer(request, res) === 'accepted') accepted.push({ route: route.path, params: request.params, as: ALICE, body: res.body });
      } catch (err) {
        failures.push(`${route.path} with ${limit + 1} bytes: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  expect(failures).toEqual([]);
}, 120_000);

test('the API is still up, logged no internal error, and refused requests changed nothing', async () => {
  const status = await stack.api('GET', '/v1/status');
  expect(status.status).toBe(200);
  expect(status.body).toMatchObject({ ready: true, api: 'ok' });
  expect(stack.output()).not.toMatch(/internal error/);

  const changes = explainedChanges(world, accepted);
  if (!changes.keyMayChange) expect(await keyShow()).toEqual(before.key);
  expect(unexplainedEnvChanges(before.envs!, await envList(), changes)).toEqual([]);
}, 60_000);
