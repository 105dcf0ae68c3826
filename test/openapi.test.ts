/**
 * /openapi.json (issue 14): built by @fastify/swagger from the route table's TypeBox schemas, it documents for EVERY
 * operation the request (path parameters, body fields) and both answers: the success document and the refusal.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { createAuthenticator } from '../api/auth';
import type { CodecEndpoint } from '../api/codec';
import { createApiServer } from '../api/server';
import type { ApiService } from '../api/service';
import { loadOrCreateTokenSigningKey, publicKeyOf } from '../common/tokens';
import { loadConfig } from '../config';

interface Operation {
  summary?: string;
  security?: unknown[];
  parameters?: Array<{ name: string; in: string }>;
  requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Record<string, unknown> }> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

let document: Document;
const server = (() => {
  const secretsDir = mkdtempSync(join(tmpdir(), 'cmk-openapi-'));
  const codec: CodecEndpoint = { maxBodyBytes: 1024, handleCors: () => false, encode: async () => ({}), decode: async () => ({}) };
  return createApiServer({
    service: {} as ApiService,
    temporal: {} as Client,
    taskQueue: 'cmk',
    authenticate: createAuthenticator(loadConfig({ CMK_SECRETS_DIR: secretsDir }).auth, publicKeyOf(loadOrCreateTokenSigningKey(secretsDir))),
    loopbackOnly: true,
    codec,
    audit: async () => undefined,
    log: () => undefined,
  });
})();

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/openapi.json`);
  expect(response.status).toBe(200);
  document = (await response.json()) as Document;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const operations = () => Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, path, method, op })));

test('OpenAPI 3.1.0, every route of the table, path templates in {braces}', () => {
  expect(document.openapi).toBe('3.1.0');
  expect(operations().length).toBe(52);
  expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/v1/status', '/openapi.json', '/v1/tenants/{tenant}/keys/rollback', '/v1/tenants/{tenant}/environments/{env}/delete', '/codec/{capability}/decode', '/v1/console/links', '/v1/console/session', '/v1/console/sign-out', '/v1/console/sign-in-options', '/v1/console/oidc/start', '/v1/console/oidc/callback', '/v1/tenants/{tenant}/environments/bulk', '/v1/tenants/{tenant}/environments/bulk/{operation}/progress']));
  expect(document.components.schemas.Error).toBeDefined();
});

test('every operation has a response schema for success (200, or 303 to a Location for a browser navigation) and for the refusal document (default)', () => {
  const navigations = operations().filter(({ op }) => op.responses?.['303']);
  expect(navigations.map((n) => n.name).sort()).toEqual(['GET /v1/console/oidc/callback', 'GET /v1/console/oidc/start']);
  for (const { op } of navigations) expect((op.responses?.['303'] as { headers?: Record<string, unknown> }).headers?.location).toEqual({ schema: { type: 'string' } });
  for (const { name, op } of operations()) {
    const ok = op.responses?.['303'] ? {} : op.responses?.['200']?.content?.['application/json']?.schema;
    const refused = op.responses?.default?.content?.['application/json']?.schema as { properties?: { error?: { properties?: Record<string, unknown> } } } | undefined;
    expect({ name, ok: typeof ok }).toEqual({ name, ok: 'object' });
    expect({ name, refused: Object.keys(refused?.properties?.error?.properties ?? {}) }).toEqual({ name, refused: ['code', 'message'] });
  }
});

test('requests: path parameters named, body fields listed for the POST routes that read one; the public routes need no token', () => {
  for (const { name, path, op } of operations()) {
    const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    expect({ name, parameters: (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name) }).toEqual({ name, parameters: templated });
  }
  const byName = Object.fromEntries(operations().map(({ name, op }) => [name, op]));
  expect(Object.keys(byName['POST /v1/tenants/{tenant}/keys/upload']?.requestBody?.content?.['application/json']?.schema?.properties ?? {})).toEqual(['name', 'fileName', 'file', 'password', 'region', 'activate', 'dryRun']);
  // Issue 19: the six commands with a dry run take `dryRun` and may answer a DryRunReport; rekey takes none.
  const dryRunRoutes = ['keys/generate', 'keys/upload', 'keys/rollback', 'environments/{env}/apply', 'environments/{env}/revert', 'lock'].map((p) => `POST /v1/tenants/{tenant}/${p}`);
  for (const name of dryRunRoutes) {
    const op = byName[name];
    expect({ name, dryRun: Object.keys(op?.requestBody?.content?.['application/json']?.schema?.properties ?? {}).includes('dryRun') }).toEqual({ name, dryRun: true });
    const answers = (op?.responses?.['200']?.content?.['application/json']?.schema as { anyOf?: Array<{ properties?: Record<string, unknown> }> } | undefined)?.anyOf ?? [];
    expect({ name, report: answers.some((a) => a.properties?.wouldSucceed !== undefined && a.properties?.mails !== undefined) }).toEqual({ name, report: true });
  }
  expect(byName['POST /v1/tenants/{tenant}/environments/{env}/rekey']?.requestBody).toBeUndefined();
  expect(byName['POST /v1/tenants/{tenant}/mail/retry']?.requestBody).toBeUndefined();
  expect(byName['GET /v1/status']?.security).toEqual([]);
  expect(byName['GET /openapi.json']?.security).toEqual([]);
  expect(byName['GET /v1/tenants/{tenant}/key']?.security).toBeUndefined();
  // A success schema that says what the CLI reads: the key report's fields.
  expect(Object.keys((byName['GET /v1/tenants/{tenant}/key']?.responses?.['200']?.content?.['application/json']?.schema?.properties ?? {}) as object)).toEqual(
    expect.arrayContaining(['tenant', 'region', 'activeKey', 'nextKeyChangeAllowedAt', 'lockAllowedAt']),
  );
});
