/**
 * Defence in depth, end to end on `npm start`'s stack with the real `cmk` bin: bearer tokens before routing, the
 * codec endpoint (operators only, CORS for the UI origin, every decode audited, the real Temporal CLI decoding
 * through it), body limits, `key rollback` (R6's purpose), and the audit trail verified and then tampered with.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectAligned } from './support/columns';
import { startStack, type Stack } from '../harness/stack';
import { onceTimeAllows } from './support/deadline';
import { temporalCliPath } from '../stack/tools';
import { tenantWorkflowId } from '../workflows/messages';

let stack: Stack;
const work = mkdtempSync(join(tmpdir(), 'cmk-security-e2e-'));
const ALICE = 'alice@northwind.example';
const BOB = 'bob@northwind.example';
const SAM = 'sam@northwind.example';
const MALLORY = 'mallory@elsewhere.example';
const tenant = 'northwind';
const UI_ORIGIN = 'http://127.0.0.1:18233';

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '2s', CMK_LOCK_EMBARGO: '10m', CMK_CODEC_CORS_ORIGIN: UI_ORIGIN });
  const password = join(work, 'pw.txt');
  writeFileSync(password, 'northwind key password 1\n');
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Northwind', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

const token = async (as: string | null): Promise<string> => {
  const issued = await stack.cmk(['token', 'issue', ...(as ? ['--as', as] : ['--operator'])]);
  expect(issued.code).toBe(0);
  return issued.stdout.trim().split('\n').pop()!;
};
const raw = (method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
  fetch(`http://127.0.0.1:${stack.env.CMK_API_PORT}${path}`, { method, headers, body }).then(async (r) => ({ status: r.status, headers: r.headers, body: (await r.json().catch(() => ({}))) as Record<string, any> })); // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON of any shape

test('authentication precedes routing: 401 without a token on every route but health and the OpenAPI document', async () => {
  for (const [method, path] of [['GET', `/v1/tenants/${tenant}/key`], ['POST', '/v1/tenants'], ['GET', '/v1/no-such-route'], ['POST', '/codec/decode'], ['GET', '/v1/audit']]) {
    const r = await raw(method!, path!);
    expect([path, r.status, r.body.error?.code]).toEqual([path, 401, 'UNAUTHENTICATED']);
  }
  expect((await raw('GET', '/v1/status')).status).toBe(200);
  const openapi = await raw('GET', '/openapi.json');
  expect(openapi.status).toBe(200);
  expect(openapi.body.openapi).toBe('3.1.0');
  expect(Object.keys(openapi.body.paths)).toEqual(expect.arrayContaining(['/v1/tenants/{tenant}/keys/rollback', '/v1/tenants/{tenant}/audit', '/codec/decode']));
  // A forged or expired token is no better than none.
  expect((await raw('GET', `/v1/tenants/${tenant}/key`, { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcGVyYXRvciJ9.' })).status).toBe(401);
  expect((await stack.cmk(['key', 'show', '--tenant', tenant], { env: { CMK_TOKEN: 'not.a.token' } })).stderr).toMatch(/^UNAUTHENTICATED: /m);
});

test('tokens: `cmk token issue` prints one as its last line; --token / CMK_TOKEN act as its subject; a valid token without the privilege is FORBIDDEN', async () => {
  const bob = await token(BOB);
  const viaFlag = await stack.cmk(['key', 'show', '--tenant', tenant, '--json', '--token', bob]);
  expect(viaFlag.code).toBe(0);
  const mallory = await token(MALLORY);
  const refused = await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { env: { CMK_TOKEN: mallory } });
  expect([refused.code, refused.json().error.code]).toEqual([3, 'FORBIDDEN']);
  // The operator may not do key operations (R12), whatever the token says about it.
  const operator = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--json']);
  expect([operator.code, operator.json().error.code]).toEqual([3, 'FORBIDDEN']);
  expect((await stack.cmk(['key', 'show', '--tenant', tenant, '--as', BOB, '--token', bob])).code).toBe(2);
  expect((await stack.cmk(['token', 'issue'])).code).toBe(2);
  // With an external issuer configured, local tokens and --as are refused before anything is sent.
  const external = await stack.cmk(['token', 'issue', '--as', BOB, '--json'], { env: { CMK_AUTH_JWKS_URL: 'https://login.example/jwks', CMK_AUTH_ISSUER: 'https://login.example' } });
  expect([external.code, external.json().error.code]).toEqual([3, 'FORBIDDEN']);
});

test('bodies are limited: a key file over 64 KiB is INVALID_KEY_FILE, a large body elsewhere INVALID_ARGUMENT; nothing changes', async () => {
  const before = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json();
  const big = await stack.api('POST', `/v1/tenants/${tenant}/keys/upload`, { as: ALICE, body: { name: 'big', fileName: 'big.pfx', file: Buffer.alloc(70 * 1024, 1).toString('base64') } });
  expect([big.status, big.body.error.code]).toEqual([400, 'INVALID_KEY_FILE']);
  const chatty = await stack.api('POST', `/v1/tenants/${tenant}/admins`, { as: ALICE, body: { change: 'add', email: `${'x'.repeat(20_000)}@example.com` } });
  expect([chatty.status, chatty.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
  expect((await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json()).toEqual(before);
});

test('key rollback: another administrator puts the replaced key back within the embargo; R6 restarts, R5 does not', async () => {
  const password = join(work, 'pw.txt');
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'first', '--password-file', password, '--out', join(work, 'first.pfx'), '--wait'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  const first = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json();
  // Nothing to roll back to yet: the first key replaced the provider key, not a key of the tenant's.
  const nothing = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--json'], { as: BOB });
  expect([nothing.code, nothing.json().error.code]).toEqual([3, 'NOT_FOUND']);
  const second = await onceTimeAllows('R5 (2 s here) lets the second key in', () => stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'second', '--password-file', password, '--out', join(work, 'second.pfx'), '--wait', '--json'], { as: BOB }));
  expect(second.code).toBe(0);
  expect(second.json().rollbackAvailableUntil).toEqual(expect.any(String));
  // The one who made the change cannot undo it alone (R6: another administrator).
  const own = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--json'], { as: BOB });
  expect([own.code, own.json().error.code]).toEqual([3, 'FORBIDDEN']);
  const sam = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--json'], { as: SAM });
  expect([sam.code, sam.json().error.code]).toEqual([3, 'FORBIDDEN']);

  const rolled = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--wait', '--json'], { as: ALICE });
  expect(rolled.code).toBe(0);
  const r = rolled.json();
  expect(r.activeKey).toMatchObject({ name: 'first', thumbprint: first.activeKey.thumbprint, state: 'Active', activatedBy: ALICE });
  expect(r.rolledBack).toEqual({ name: 'second', thumbprint: second.json().activeKey.thumbprint });
  // R5 counts from the last generate or upload (bob's), not from the rollback; R6 restarts at the rollback.
  expect(r.nextKeyChangeAllowedAt).toBe(second.json().nextKeyChangeAllowedAt);
  expect(Date.parse(r.lockAllowedAt)).toBeGreaterThan(Date.parse(second.json().lockAllowedAt));
  expect(r.rollbackAvailableUntil ?? null).toBeNull();
  const envs = (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments;
  expect(envs.find((e: { id: string }) => e.id === 'prod')).toMatchObject({ state: 'Online', protection: 'tenant', keyThumbprint: first.activeKey.thumbprint });
  // The environment still opens: its DEK is wrapped by the key put back.
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'after the rollback'], { as: SAM })).code).toBe(0);
  // One step back only.
  const again = await stack.cmk(['key', 'rollback', '--tenant', tenant, '--json'], { as: BOB });
  expect([again.code, again.json().error.code]).toEqual([3, 'NOT_FOUND']);
  const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails.filter((m: { event: string }) => m.event === 'key-rolled-back');
  expect(mails.map((m: { to: string }) => m.to).sort()).toEqual([ALICE, BOB, SAM].sort());
}, 180_000);

test('the audit trail: accepted and refused requests, who and what, never secrets; verify passes', async () => {
  // A refusal names the region the request asked for, from its body (or query).
  expect((await stack.cmk(['key', 'rollback', '--tenant', tenant, '--region', 'default', '--json'], { as: SAM })).json().error.code).toBe('FORBIDDEN');
  const list = await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: BOB });
  expect(list.code).toBe(0);
  const records = list.json().records as Array<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON records
  const summary = records.map((r) => `${r.actor} ${r.action} ${r.outcome}${r.code ? ` ${r.code}` : ''}`);
  expect(summary).toEqual(
    expect.arrayContaining([
      'operator tenant.create completed',
      `${ALICE} key.generate completed`,
      `${SAM} env.apply completed`,
      `${BOB} key.rollback refused FORBIDDEN`,
      `${ALICE} key.rollback completed`,
      `${BOB} key.rollback refused NOT_FOUND`,
      `${ALICE} key.upload refused INVALID_KEY_FILE`,
      `${SAM} env.data completed`,
    ]),
  );
  expect(records.every((r) => r.tenant === tenant)).toBe(true);
  expect(records.at(-1)).toMatchObject({ actor: SAM, action: 'key.rollback', outcome: 'refused', code: 'FORBIDDEN', region: 'default' });
  expect(records.find((r) => r.action === 'key.rollback' && r.outcome === 'completed')!.thumbprints).toHaveLength(2);
  expect(JSON.stringify(records)).not.toMatch(/northwind key password|after the rollback/);
  // Sequence numbers only grow, and a page after the last one is empty.
  const seqs = records.map((r) => r.seq as number);
  expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  expect((await stack.cmk(['audit', 'list', '--tenant', tenant, '--after', String(seqs.at(-1)), '--json'], { as: BOB })).json().records).toEqual([]);
  // Read by a person: aligned columns under a heading, the refusal's code beside its outcome.
  const [heading, ...rows] = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500'], { as: BOB })).stdout.trimEnd().split('\n');
  expect(heading).toMatch(/^# +AT +TENANT +ACTOR +ACTION +OUTCOME +WHERE +THUMBPRINTS$/);
  expect(rows).toHaveLength(records.length);
  expectAligned(heading!, rows, ['AT', 'TENANT', 'ACTOR', 'ACTION', 'OUTCOME', 'WHERE']);
  expect(rows).toContainEqual(expect.stringMatching(new RegExp(`^\\d+ +\\S+ +${tenant} +${BOB.replace('.', '\\.')} +key\\.rollback +refused FORBIDDEN +-$`)));
  // Another tenant's administrator, and a system administrator, may not read it.
  expect((await stack.cmk(['audit', 'list', '--tenant', tenant, '--json'], { as: SAM })).json().error.code).toBe('FORBIDDEN');
  expect((await stack.cmk(['audit', 'list', '--all', '--json'], { as: ALICE })).json().error.code).toBe('FORBIDDEN');
  const verify = await stack.cmk(['audit', 'verify', '--tenant', tenant, '--json'], { as: ALICE });
  expect([verify.code, verify.json().ok, verify.json().problems]).toEqual([0, true, []]);
});

test('the codec endpoint: operators only, CORS for the UI origin only, and every decode audited; the Temporal CLI decodes through it', async () => {
  const history = await raw('GET', '/openapi.json'); // warm-up; the real history comes from the Temporal CLI below
  expect(history.status).toBe(200);
  const alice = await token(ALICE);
  const operator = await token(null);
  const payloads = { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hello"').toString('base64') }] };
  const asAlice = await raw('POST', '/codec/encode', { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, JSON.stringify(payloads));
  expect([asAlice.status, asAlice.body.error.code]).toEqual([403, 'FORBIDDEN']);
  const encoded = await raw('POST', '/codec/encode', { authorization: `Bearer ${operator}`, 'content-type': 'application/json' }, JSON.stringify(payloads));
  expect(encoded.status).toBe(200);
  expect(Buffer.from(encoded.body.payloads[0].metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
  const decoded = await raw('POST', '/codec/decode', { authorization: `Bearer ${operator}`, 'content-type': 'application/json', 'x-namespace': 'default' }, JSON.stringify(encoded.body));
  expect(decoded.body).toEqual(payloads);
  const refusedDecode = await raw('POST', '/codec/decode', { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, JSON.stringify(encoded.body));
  expect(refusedDecode.status).toBe(403);

  const preflight = await raw('OPTIONS', '/codec/decode', { origin: UI_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-namespace' });
  expect(preflight.status).toBe(204);
  expect(preflight.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
  expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/);
  const foreign = await raw('OPTIONS', '/codec/decode', { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
  expect(foreign.status).toBe(403);
  expect(foreign.headers.get('access-control-allow-origin')).toBeNull();

  // The real Temporal CLI shows the tenant's history decoded only with the operator's token.
  const show = (auth: string) =>
    spawnSync(temporalCliPath(), ['workflow', 'show', '--workflow-id', tenantWorkflowId(tenant), '--address', stack.env.TEMPORAL_ADDRESS!, '--output', 'json', '--codec-endpoint', `http://127.0.0.1:${stack.env.CMK_API_PORT}/codec`, '--codec-auth', auth], { encoding: 'utf8' });
  // (JSON output shows metadata base64-encoded: "json/plain" and "binary/encrypted".)
  const [plainEncoding, encryptedEncoding] = ['json/plain', 'binary/encrypted'].map((e) => Buffer.from(e).toString('base64'));
  const withOperator = show(`Bearer ${operator}`);
  expect(withOperator.status).toBe(0);
  expect(withOperator.stdout).toContain(plainEncoding);
  expect(withOperator.stdout).not.toContain(encryptedEncoding);
  const payloadText = (json: string): string => {
    const out: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') {
        for (const [k, v] of Object.entries(node)) {
          if (k === 'data' && typeof v === 'string') out.push(Buffer.from(v, 'base64').toString('utf8'));
          else walk(v);
        }
      }
    };
    walk(JSON.parse(json));
    return out.join('\n');
  };
  expect(payloadText(withOperator.stdout)).toContain('"displayName":"Northwind"');
  const withAlice = show(`Bearer ${alice}`);
  expect(withAlice.stdout).not.toContain(plainEncoding);

  const all = (await stack.cmk(['audit', 'list', '--all', '--limit', '500', '--json'])).json().records as Array<{ action: string; actor: string; details?: Record<string, unknown> }>;
  const decodes = all.filter((r) => r.action === 'codec.decode');
  expect(decodes.length).toBeGreaterThanOrEqual(2);
  expect(decodes.every((r) => r.actor === 'operator')).toBe(true);
  expect(decodes[0]!.details).toMatchObject({ namespace: 'default' });
});

test('audit verify fails (exit 1) on an edited, removed or reordered record, and passes again once restored', async () => {
  const trail = join(stack.dataDir, 'audit', 'trail.jsonl');
  const original = readFileSync(trail, 'utf8');
  const lines = original.trimEnd().split('\n');
  expect(lines.length).toBeGreaterThan(5);
  const verify = () => stack.cmk(['audit', 'verify', '--tenant', tenant, '--json'], { as: ALICE });
  const tampered: Record<string, string[]> = {
    edited: lines.map((l, i) => (i === 2 ? l.replace(ALICE, MALLORY).replace(BOB, MALLORY).replace('"operator"', `"${MALLORY}"`) : l)),
    removed: lines.filter((_l, i) => i !== 3),
    reordered: [lines[0]!, lines[2]!, lines[1]!, ...lines.slice(3)],
    truncated: lines.slice(0, -1),
  };
  for (const [kind, content] of Object.entries(tampered)) {
    expect(content.join('\n')).not.toBe(lines.join('\n'));
    writeFileSync(trail, `${content.join('\n')}\n`);
    const r = await verify();
    expect([kind, r.code, r.json().ok]).toEqual([kind, 1, false]);
    expect(r.json().problems.length).toBeGreaterThan(0);
    const human = await stack.cmk(['audit', 'verify', '--tenant', tenant], { as: ALICE });
    expect(human.stdout).toMatch(/does NOT verify/);
  }
  writeFileSync(trail, original);
  const restored = await verify();
  expect([restored.code, restored.json().ok]).toEqual([0, true]);
});
