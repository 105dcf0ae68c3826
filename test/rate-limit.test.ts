/**
 * Rate limits (api/ratelimit.ts) and the status cache, on the real HTTP server of the API service (api/server.ts)
 * with real local tokens: token buckets per identity (a caller without a token counts by address) and per tenant,
 * HTTP 429 with Retry-After and RATE_LIMITED, the CLI's exit 3; `GET /v1/status` asks Temporal once for many callers.
 * The service behind the routes is a double: what is tested here happens before any route handler runs.
 */
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { createAuthenticator } from '../api/auth';
import { RateLimiter } from '../api/ratelimit';
import { createApiServer } from '../api/server';
import type { ApiService } from '../api/service';
import type { CodecEndpoint } from '../api/codec';
import { issueToken, loadOrCreateTokenSigningKey, publicKeyOf } from '../common/tokens';
import { loadConfig, type RateLimitConfig } from '../config';
import { describeActor, type Actor } from '../domain/access';
import { runCmk } from '../harness/stack';

const secretsDir = mkdtempSync(join(tmpdir(), 'cmk-rate-'));
const signingKey = loadOrCreateTokenSigningKey(secretsDir);
const auth = loadConfig({ CMK_SECRETS_DIR: secretsDir }).auth;
const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const CAROL = 'carol@contoso.example';

/** Counts Temporal's describeTaskQueue calls; each answers when `release` is called (or at once after that). */
function temporalDouble() {
  let released = false;
  const waiting: Array<() => void> = [];
  const double = {
    calls: 0,
    release: () => {
      released = true;
      waiting.splice(0).forEach((go) => go());
    },
    client: {
      options: { namespace: 'default' },
      workflowService: {
        describeTaskQueue: async () => {
          double.calls += 1;
          if (!released) await new Promise<void>((go) => waiting.push(go));
          return { pollers: [{}] };
        },
      },
    } as unknown as Client,
  };
  return double;
}

const service = {
  showKey: async (actor: Actor, tenant: string) => ({ tenant, caller: describeActor(actor) }),
  mailSummary: async () => ({ pending: 0, rejected: 0, oldestPendingSince: null }),
} as unknown as ApiService;
const codec: CodecEndpoint = { maxBodyBytes: 1024, handleCors: () => false, encode: async () => ({}), decode: async () => ({}) };

const servers: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all(servers.map((close) => close()));
});

async function serve(limits: RateLimitConfig | null, temporal = temporalDouble()) {
  const server = createApiServer({
    service,
    temporal: temporal.client,
    taskQueue: 'cmk',
    authenticate: createAuthenticator(auth, publicKeyOf(signingKey)),
    loopbackOnly: true,
    codec,
    audit: async () => undefined,
    log: () => undefined,
    ...(limits ? { rateLimits: new RateLimiter(limits) } : {}),
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = async (path: string, as?: string) => {
    const headers: Record<string, string> = as ? { authorization: `Bearer ${await issueToken(signingKey, { email: as, issuer: auth.issuer, audience: auth.audience, ttlSeconds: 300 })}` } : {};
    const response = await fetch(`${url}${path}`, { headers });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as { error?: { code: string; message: string } } };
  };
  return { url, call, temporal };
}

const OFF = { perSecond: 0, burst: 1 };

test('an identity gets its burst, then 429 RATE_LIMITED with Retry-After; other identities are unaffected; the bucket refills', async () => {
  const { call } = await serve({ identity: { perSecond: 0.5, burst: 5 }, tenant: OFF });
  for (let i = 0; i < 5; i += 1) expect((await call('/v1/tenants/contoso/key', ALICE)).status).toBe(200);
  const refused = await call('/v1/tenants/contoso/key', ALICE);
  expect(refused.status).toBe(429);
  expect(refused.body.error).toEqual({ code: 'RATE_LIMITED', message: expect.stringMatching(/^Too many requests.*\.$/) });
  expect(refused.retryAfter).toMatch(/^[1-9]\d*$/);
  // Bob's own bucket is full.
  expect((await call('/v1/tenants/contoso/key', BOB)).status).toBe(200);
  // After waiting, Alice gets in again (polled: no duration is asserted).
  const deadline = Date.now() + 30_000;
  let status = 429;
  while (status === 429 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    status = (await call('/v1/tenants/contoso/key', ALICE)).status;
  }
  expect(status).toBe(200);
});

test('callers without a valid token share their address bucket, on the public routes and on refused tokens', async () => {
  const { call, temporal } = await serve({ identity: { perSecond: 0.01, burst: 3 }, tenant: OFF });
  temporal.release();
  expect((await call('/v1/status')).status).toBe(200);
  expect((await call('/openapi.json')).status).toBe(200);
  expect((await call('/v1/tenants/contoso/key')).status).toBe(401);
  const refused = await call('/v1/status');
  expect([refused.status, refused.body.error?.code]).toEqual([429, 'RATE_LIMITED']);
  // A signed-in caller is counted by identity, not by address.
  expect((await call('/v1/tenants/contoso/key', ALICE)).status).toBe(200);
});

test("a tenant's callers share its bucket; other tenants are unaffected", async () => {
  const { call } = await serve({ identity: OFF, tenant: { perSecond: 0.01, burst: 4 } });
  for (const as of [ALICE, ALICE, BOB, BOB]) expect((await call('/v1/tenants/contoso/key', as)).status).toBe(200);
  const refused = await call('/v1/tenants/contoso/key', CAROL);
  expect([refused.status, refused.body.error?.code]).toEqual([429, 'RATE_LIMITED']);
  expect(refused.body.error?.message).toMatch(/tenant contoso/);
  expect((await call('/v1/tenants/fabrikam/key', CAROL)).status).toBe(200);
});

test('the CLI answers RATE_LIMITED with exit 3', async () => {
  const { url, call } = await serve({ identity: { perSecond: 0.01, burst: 1 }, tenant: OFF });
  expect((await call('/v1/tenants/contoso/key', ALICE)).status).toBe(200);
  const env = { ...(process.env as Record<string, string>), CMK_API_URL: url, CMK_SECRETS_DIR: secretsDir, CMK_USER: ALICE };
  const result = await runCmk(['key', 'show', '--tenant', 'contoso', '--json'], env);
  expect(result.stderr).toMatch(/^RATE_LIMITED: Too many requests/m);
  expect([result.code, result.json().error.code]).toEqual([3, 'RATE_LIMITED']);
});

test('configuration: CMK_RATE_LIMIT and its burst, per tenant too; 0 turns a limit off; nonsense is refused', () => {
  expect(loadConfig({}).rateLimits).toEqual({ identity: { perSecond: 10, burst: 50 }, tenant: { perSecond: 30, burst: 150 } });
  const set = loadConfig({ CMK_RATE_LIMIT: '600/m', CMK_RATE_LIMIT_BURST: '20', CMK_RATE_LIMIT_TENANT: '0' }).rateLimits;
  expect(set.identity).toEqual({ perSecond: 10, burst: 20 });
  expect(set.tenant.perSecond).toBe(0);
  expect(() => loadConfig({ CMK_RATE_LIMIT: 'lots' })).toThrow(/CMK_RATE_LIMIT="lots" is not a rate/);
  expect(() => loadConfig({ CMK_RATE_LIMIT_BURST: '0' })).toThrow(/CMK_RATE_LIMIT_BURST/);
});

test('GET /v1/status: concurrent callers share one round of Temporal calls, and the answer is kept briefly', async () => {
  const { call, temporal } = await serve(null);
  const answers = Array.from({ length: 5 }, () => call('/v1/status'));
  // Every request is in before Temporal answers the first.
  const deadline = Date.now() + 10_000;
  while (temporal.calls === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  temporal.release();
  for (const answer of await Promise.all(answers)) expect(answer.body).toMatchObject({ ready: true, api: 'ok' });
  expect(temporal.calls).toBe(1);
  // Once the cache has lapsed, the next call asks Temporal again (polled).
  while (temporal.calls === 1 && Date.now() < deadline + 10_000) {
    await new Promise((r) => setTimeout(r, 250));
    await call('/v1/status');
  }
  expect(temporal.calls).toBe(2);
});
