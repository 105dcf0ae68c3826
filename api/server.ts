/**
 * The API service: the HTTP face of the control plane that the `cmk` CLI (and the provider's gateway) call.
 * Authentication precedes routing: every route but the health check (`GET /v1/status`) and the OpenAPI document
 * (`GET /openapi.json`) needs a verified bearer token (api/auth.ts). Each route is described once, in apiRoutes:
 * fastify's router, the OpenAPI document (@fastify/swagger, from each route's TypeBox schemas in api/schemas.ts) and
 * the audit trail's names for refusals all read that table, and tsc checks that each handler answers its schema.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { Type, type Static } from '@sinclair/typebox';
import type { Client } from '@temporalio/client';
import { CmkError, isCmkError } from '../common/errors';
import { ACTIONS, describeActor, type Action, type Actor } from '../domain/access';
import { isValidId } from '../domain/ids';
import type { AdminRole, EnvironmentOperation } from '../domain/model';
import type { AuditEntry } from '../audit/trail';
import { quotable, redactAuditEntry } from '../domain/audit-redaction';
import { BodyTooLargeError, optionalString, readJsonBody, requiredString } from './http';
import { httpStatusOf } from '../domain/codes';
import * as S from './schemas';
import { bodyOf, ErrorDocument } from './schemas';
import type { Authenticator } from './auth';
import type { ApiService } from './service';
import { openApiOptions } from './openapi';
import { route, type Route } from './route';
import type { CodecEndpoint } from './codec';
import { regionTaskQueue } from '../workflows/messages';
import type { ApiMetrics } from './metrics';
import { RateLimitedError, type RateLimiter } from './ratelimit';

export interface ServerDependencies {
  service: ApiService;
  temporal: Client;
  taskQueue: string;
  /** R1: the regions whose task queues must have a worker (Policy.regions); none when the deployment routes nothing. */
  regions?: readonly string[];
  authenticate: Authenticator;
  /** Loopback callers only (the embedded default, whose local signing key is for this machine). */
  loopbackOnly: boolean;
  codec: CodecEndpoint;
  /** Hands audit records to the trail's single writer (the worker). */
  audit: (entries: AuditEntry[]) => Promise<void>;
  log: (line: string) => void;
  /** Requests by route template and status, for Prometheus (CMK_API_METRICS_PORT); none when unset. */
  metrics?: ApiMetrics;
  /** Token buckets per identity and per tenant (CMK_RATE_LIMIT…); none: no limit. */
  rateLimits?: RateLimiter;
}

export type { Route };

const SMALL_BODY = 16 * 1024;
/** 64 KiB of key file in base64 (87,382 characters) plus its JSON framing. */
const KEY_FILE_BODY = 96 * 1024;

function role(text: string | undefined): AdminRole | null {
  if (text === undefined) return null;
  // Never the caller's raw text: this refusal is audited, and it comes before authorisation.
  if (text !== 'global' && text !== 'service') throw new CmkError('INVALID_ARGUMENT', `${quotedOr(text, 'That')} is not an administrator role (global or service).`);
  return text;
}

/** A caller's text quoted in a refusal only when short and plain (domain/audit-redaction.ts); else `instead`. */
const quotedOr = (text: unknown, instead: string): string => {
  const q = quotable(text, 20);
  return q === null ? instead : `"${q}"`;
};

function adminList(value: unknown): Array<{ email: string; role: AdminRole }> {
  if (!Array.isArray(value) || value.length > 100) throw new CmkError('INVALID_ARGUMENT', '"admins" must be a list of at most 100 {email, role}.');
  return value.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new CmkError('INVALID_ARGUMENT', '"admins" must be a list of {email, role}.');
    const e = entry as Record<string, unknown>;
    return { email: requiredString(e, 'email'), role: role(requiredString(e, 'role')) ?? 'global' };
  });
}

function base64Field(body: Record<string, unknown>, field: string): Buffer {
  const text = requiredString(body, field);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new CmkError('INVALID_ARGUMENT', `"${field}" must be base64.`);
  return Buffer.from(text, 'base64');
}

/** The route table; `document` gives the OpenAPI document fastify builds from it. */
export function apiRoutes(deps: Pick<ServerDependencies, 'service' | 'temporal' | 'taskQueue' | 'codec'>, document: () => Static<typeof S.OpenApi>): Route[] {
  const { service } = deps;
  const region = (q: URLSearchParams) => q.get('region') ?? undefined;
  const REGION = 'region ID (default: the home region)';
  const regionBody = bodyOf({ region: REGION }, ['region']);
  const regionQuery = Type.Object({ region: Type.Optional(Type.String({ description: REGION })) });
  const pageQuery = Type.Object({ limit: Type.Optional(Type.String({ description: 'at most this many records' })), after: Type.Optional(Type.String({ description: 'records after this sequence number' })) });
  const payloadsBody = bodyOf({ payloads: 'list of {metadata, data}, base64 as in the Temporal codec protocol' });
  const environmentRoutes = (['apply', 'revert', 'rekey'] as const).map(
    (operation) =>
      route({
        method: 'POST',
        path: `/v1/tenants/{tenant}/environments/{env}/${operation}`,
        summary: { apply: 'Apply the tenant key to an environment (R7)', revert: 'Return an environment to the provider key (R7)', rekey: 'New DEK for an environment, every page re-encrypted' }[operation],
        audited: `env.${operation}`,
        response: S.EnvironmentShown,
        handle: ({ actor, params }) => service.environmentOperation(actor, params.tenant!, params.env!, operation as EnvironmentOperation),
      }),
  );
  const currentStatus = shortLived(STATUS_CACHE_MS, () => status(deps));
  return [
    route({ method: 'GET', path: '/v1/status', summary: 'Health: the API answers, Temporal answers, a worker polls', public: true, response: S.Status, handle: currentStatus }),
    route({ method: 'GET', path: '/openapi.json', summary: 'This document', public: true, response: S.OpenApi, handle: async () => document() }),
    route({
      method: 'POST',
      path: '/v1/tenants',
      summary: 'Create a tenant (never alters an existing one)',
      audited: 'tenant.create',
      body: bodyOf({ tenant: 'tenant ID', name: 'display name', region: REGION, admins: 'list of {email, role: global|service}' }, ['region']),
      response: S.TenantCreated,
      handle: async ({ actor, body }) => {
        const b = await body();
        return service.createTenant(actor, { tenant: requiredString(b, 'tenant'), name: requiredString(b, 'name'), region: optionalString(b, 'region'), admins: adminList(b.admins) });
      },
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}', summary: "The tenant: administrators, and environments per region (an extension)", response: S.TenantShown, handle: ({ actor, params }) => service.showTenant(actor, params.tenant!) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/admins',
      summary: "Add or remove one of the tenant's global and service administrators",
      audited: 'tenant.admin',
      body: bodyOf({ change: 'add | remove', email: 'e-mail address', role: 'global | service' }, ['role']),
      response: S.AdminsChanged,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const change = requiredString(b, 'change');
        if (change !== 'add' && change !== 'remove') throw new CmkError('INVALID_ARGUMENT', '"change" must be add or remove.');
        return service.changeAdmin(actor, params.tenant!, { change, email: requiredString(b, 'email'), role: role(optionalString(b, 'role')) });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/environments',
      summary: 'Create an environment (a new database on the provider key)',
      audited: 'env.create',
      body: bodyOf({ env: 'environment ID', region: REGION, admin: "the environment's system administrator" }, ['region', 'admin']),
      response: S.EnvironmentShown,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.createEnvironment(actor, params.tenant!, { env: requiredString(b, 'env'), region: optionalString(b, 'region'), admin: optionalString(b, 'admin') });
      },
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}/environments', summary: 'List environments', query: regionQuery, response: S.EnvironmentList, handle: ({ actor, params, query }) => service.listEnvironments(actor, params.tenant!, { region: region(query) }) }),
    ...environmentRoutes,
    route({ method: 'GET', path: '/v1/tenants/{tenant}/environments/{env}/data', summary: "Read an environment's rows", response: S.EnvironmentRows, handle: ({ actor, params }) => service.environmentData(actor, params.tenant!, params.env!, undefined) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/environments/{env}/data',
      summary: 'Write a row into an environment',
      audited: 'env.data',
      body: bodyOf({ text: 'the row (1 to 10,000 characters)' }),
      response: S.EnvironmentRows,
      handle: async ({ actor, params, body }) => service.environmentData(actor, params.tenant!, params.env!, requiredString(await body(), 'text')),
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}/key', summary: 'The active key of a region', query: regionQuery, response: S.KeyReport, handle: ({ actor, params, query }) => service.showKey(actor, params.tenant!, { region: region(query) }) }),
    route({
      method: 'GET',
      path: '/v1/tenants/{tenant}/key/installed',
      summary: 'Wait (up to 25 s) for the re-protection after a key change',
      query: regionQuery,
      response: S.KeyReport,
      handle: ({ actor, params, query }) => service.waitForKey(actor, params.tenant!, { region: region(query), timeoutMs: 25_000 }),
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/generate',
      summary: 'Generate a key; the .pfx comes back once (R3)',
      audited: 'key.generate',
      body: bodyOf({ name: 'key name', password: 'the .pfx password (at least 12 characters)', region: REGION }, ['region']),
      response: S.GeneratedKeyReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.generateKey(actor, params.tenant!, { name: requiredString(b, 'name'), password: requiredString(b, 'password'), region: optionalString(b, 'region') });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/upload',
      summary: 'Upload your own key, .pfx or .byok (R2, R3)',
      audited: 'key.upload',
      body: bodyOf({ name: 'key name', fileName: 'ends in .pfx or .byok', file: 'the file, base64 (at most 64 KiB)', password: 'the .pfx password', region: REGION }, ['password', 'region']),
      response: S.KeyReport,
      maxBodyBytes: KEY_FILE_BODY,
      tooLarge: 'INVALID_KEY_FILE',
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.uploadKey(actor, params.tenant!, {
          name: requiredString(b, 'name'),
          fileName: requiredString(b, 'fileName'),
          file: base64Field(b, 'file'),
          password: optionalString(b, 'password'),
          region: optionalString(b, 'region'),
        });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/kek',
      summary: 'A key-exchange key for a .byok',
      audited: 'key.kek',
      body: regionBody,
      response: S.Kek,
      handle: async ({ actor, params, body }) => service.createKek(actor, params.tenant!, { region: optionalString(await body(), 'region') }),
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/rollback',
      summary: 'Roll back to the key the last change replaced, within the embargo (R6)',
      audited: 'key.rollback',
      body: regionBody,
      response: S.RolledBackKeyReport,
      handle: async ({ actor, params, body }) => service.rollbackKey(actor, params.tenant!, { region: optionalString(await body(), 'region') }),
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/access',
      summary: 'May the caller do this? (FORBIDDEN / NOT_FOUND before the CLI reads local files)',
      body: bodyOf({ action: 'an action name', env: 'environment ID' }, ['env']),
      response: S.AccessAllowed,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const action = requiredString(b, 'action');
        if (!ACTIONS.has(action as Action)) throw new CmkError('INVALID_ARGUMENT', `${quotedOr(action, 'That')} is not an action.`);
        return service.checkAccess(actor, params.tenant!, action as Action, optionalString(b, 'env'));
      },
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}/mail', summary: "The tenant's mail", response: S.MailList, handle: ({ actor, params }) => service.listMail(actor, params.tenant!) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/mail/retry',
      summary: "Retry the tenant's pending and rejected mail now (operator)",
      audited: 'mail.retry',
      response: S.MailRetried,
      handle: ({ actor, params }) => service.retryMail(actor, params.tenant!),
    }),
    route({
      method: 'GET',
      path: '/v1/tenants/{tenant}/audit',
      summary: "The tenant's audit trail (newest last; ?limit=N, ?after=SEQ)",
      query: pageQuery,
      response: S.AuditList,
      handle: ({ actor, params, query }) => service.listAudit(actor, params.tenant!, { limit: query.get('limit'), after: query.get('after') }),
    }),
    route({
      method: 'GET',
      path: '/v1/audit',
      summary: 'The whole audit trail, every tenant and the codec decodes (operators only)',
      query: pageQuery,
      response: S.AuditList,
      handle: ({ actor, query }) => service.listAudit(actor, null, { limit: query.get('limit'), after: query.get('after') }),
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}/audit/verify', summary: 'Verify the audit trail: hash chain and signed head', response: S.AuditVerification, handle: ({ actor, params }) => service.verifyAudit(actor, params.tenant!) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/challenges',
      summary: 'A single-use challenge to sign with the active key (proof of possession, R8)',
      body: bodyOf({ operation: 'lock', region: REGION }, ['region']),
      response: S.Challenge,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.issueChallenge(actor, params.tenant!, { operation: requiredString(b, 'operation'), region: optionalString(b, 'region') });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/lock',
      summary: 'Lock the tenant in a region (R8)',
      audited: 'tenant.lock',
      body: bodyOf({ confirm: "the tenant's display name", challenge: 'from /challenges', signature: 'RSASSA-PKCS1-v1_5 SHA-256 over the challenge, base64', region: REGION }, ['region']),
      response: S.LockReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.lockTenant(actor, params.tenant!, { region: optionalString(b, 'region'), confirm: requiredString(b, 'confirm'), challenge: requiredString(b, 'challenge'), signature: base64Field(b, 'signature') });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/reactivate',
      summary: 'Re-activate the same key after a lock (R10)',
      audited: 'key.reactivate',
      body: bodyOf({ fileName: 'ends in .pfx or .byok', file: 'the file, base64 (at most 64 KiB)', password: 'the .pfx password', region: REGION }, ['password', 'region']),
      response: S.ReactivationReport,
      maxBodyBytes: KEY_FILE_BODY,
      tooLarge: 'INVALID_KEY_FILE',
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.reactivateKey(actor, params.tenant!, { fileName: requiredString(b, 'fileName'), file: base64Field(b, 'file'), password: optionalString(b, 'password'), region: optionalString(b, 'region') });
      },
    }),
    route({ method: 'POST', path: '/v1/tenants/{tenant}/environments/{env}/unlock', summary: 'Unlock one environment (R10, R15)', audited: 'env.unlock', response: S.EnvironmentShown, handle: ({ actor, params }) => service.unlockEnvironment(actor, params.tenant!, params.env!) }),
    route({ method: 'POST', path: '/v1/tenants/{tenant}/environments/{env}/backup', summary: 'Back up an environment', audited: 'env.backup', response: S.BackupReport, handle: ({ actor, params }) => service.environmentBackup(actor, params.tenant!, params.env!, 'backup', null) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/environments/{env}/restore',
      summary: 'Restore an environment from a backup (the newest by default)',
      audited: 'env.restore',
      body: bodyOf({ backupId: 'backup ID' }, ['backupId']),
      response: S.BackupReport,
      handle: async ({ actor, params, body }) => service.environmentBackup(actor, params.tenant!, params.env!, 'restore', optionalString(await body(), 'backupId') ?? null),
    }),
    // The codec endpoint's answers are its own (api/codec.ts `CodecEndpoint`, which test doubles implement loosely).
    {
      method: 'POST',
      path: '/codec/encode',
      summary: 'Temporal remote codec: encrypt payloads (operators only)',
      body: payloadsBody,
      response: S.Payloads,
      maxBodyBytes: deps.codec.maxBodyBytes,
      handle: async ({ actor, body, req }) => deps.codec.encode(actor, await body(), req),
    },
    {
      method: 'POST',
      path: '/codec/decode',
      summary: 'Temporal remote codec: decrypt payloads (operators only; every call audited)',
      body: payloadsBody,
      response: S.Payloads,
      maxBodyBytes: deps.codec.maxBodyBytes,
      handle: async ({ actor, body, req }) => deps.codec.decode(actor, await body(), req),
    },
    {
      method: 'POST',
      path: '/codec/{capability}/encode',
      summary: "The embedded Temporal UI's codec: encrypt payloads (the stack's capability, loopback and the UI's origin only)",
      body: payloadsBody,
      response: S.Payloads,
      maxBodyBytes: deps.codec.maxBodyBytes,
      handle: async ({ actor, body, req }) => deps.codec.encode(actor, await body(), req),
    },
    {
      method: 'POST',
      path: '/codec/{capability}/decode',
      summary: "The embedded Temporal UI's codec: decrypt payloads (the stack's capability, loopback and the UI's origin only; every call audited)",
      body: payloadsBody,
      response: S.Payloads,
      maxBodyBytes: deps.codec.maxBodyBytes,
      handle: async ({ actor, body, req }) => deps.codec.decode(actor, await body(), req),
    },
  ];
}

/** A template's path parameters, in order, and the regular expression that matches it. */
function compile(entry: Route): { pattern: RegExp; names: string[] } {
  const names: string[] = [];
  const source = entry.path.replace(/[.]/g, '\\.').replace(/\{(\w+)\}/g, (_m, name: string) => {
    names.push(name);
    return '([^/]+)';
  });
  return { pattern: new RegExp(`^${source}$`), names };
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1' || (address?.startsWith('127.') ?? false);
}

type CompiledRoute = { route: Route } & ReturnType<typeof compile>;

/** What the onRequest hook learnt of a request (its caller, its route), for the handler. */
interface Admitted {
  pathname: string;
  query: URLSearchParams;
  actor: Actor;
  found: CompiledRoute;
}

/**
 * The request URL as the caller sent it. fastify's router refuses malformed percent-encoding (400, before any hook),
 * which would answer before authentication with its own words: the router gets a copy with every stray `%` escaped,
 * and the path parameters are read from this original (INVALID_ARGUMENT after authentication, as the route says).
 */
const originalUrls = new WeakMap<IncomingMessage, string>();
function routableUrl(req: IncomingMessage): string {
  const url = req.url ?? '/';
  originalUrls.set(req, url);
  try {
    decodeURI(url);
    return url;
  } catch {
    return url.replace(/%(?![0-9A-Fa-f]{2})/g, '%25').replace(/%([89A-Fa-f][0-9A-Fa-f])/g, '%25$1');
  }
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** Every answer: JSON, never cached. The text is made here (JSON.stringify), so no schema drops a property. */
function answer(reply: FastifyReply, status: number, payload: unknown): FastifyReply {
  return reply.code(status).header('content-type', JSON_TYPE).header('cache-control', 'no-store').send(JSON.stringify(payload));
}

/** Malformed HTTP is answered as Node answers it (a bare status line, then close), not with fastify's own JSON. */
function clientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const statusLine: Record<string, string> = {
    HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
    HPE_CHUNK_EXTENSIONS_OVERFLOW: '413 Payload Too Large',
    ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
  };
  if (socket.writable && socket.bytesWritten === 0) socket.write(`HTTP/1.1 ${statusLine[err.code ?? ''] ?? '400 Bad Request'}\r\nConnection: close\r\n\r\n`);
  socket.destroy(err);
}

/** fastify's template (`:tenant`) from the table's OpenAPI one (`{tenant}`). */
const fastifyPath = (path: string) => path.replace(/\{(\w+)\}/g, ':$1');

export function createApiServer(deps: ServerDependencies): Server {
  const admitted = new WeakMap<IncomingMessage, Admitted>();

  let ready: Promise<unknown> = Promise.resolve();
  const instance = fastify({
    // The server stays ours (the callers listen and close it); requests wait until every route is registered.
    serverFactory: (handler) =>
      createServer((req, res) => {
        ready.then(
          () => handler(req, res),
          (err: unknown) => {
            deps.log(`internal error: the API routes could not be registered: ${err instanceof Error ? err.message : String(err)}`);
            res.destroy();
          },
        );
      }),
    logger: false,
    requestIdHeader: false,
    // A GET route answers HEAD with 405, as it always has.
    exposeHeadRoutes: false,
    rewriteUrl: routableUrl,
    clientErrorHandler: clientError,
    // Path parameters of any length reach the route, whose checks refuse junk in their own words.
    routerOptions: { maxParamLength: 1 << 20 },
  });
  const routes: CompiledRoute[] = apiRoutes(deps, () => instance.swagger() as Static<typeof S.OpenApi>).map((route) => ({ route, ...compile(route) }));

  // Schemas describe (the document, the client's types); the handlers' own field checks refuse, in today's words.
  instance.setValidatorCompiler(() => () => true);
  instance.setSerializerCompiler(() => (data: unknown) => JSON.stringify(data));
  // Bodies are read by the route that wants one, within its limit (api/http.ts), after authentication.
  instance.removeAllContentTypeParsers();
  instance.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  instance.setErrorHandler((err: unknown, request, reply) => {
    if (isCmkError(err)) {
      if (err instanceof RateLimitedError) void reply.header('retry-after', String(err.retryAfterSeconds));
      if (err instanceof BodyTooLargeError) void reply.header('connection', 'close');
      return answer(reply, httpStatusOf(err.code), { error: { code: err.code, message: err.message } });
    }
    // Unexpected faults are logged by kind and message only: request bodies may hold key material.
    deps.log(`internal error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    return answer(reply, 500, { error: { code: 'INTERNAL', message: 'The control plane could not complete the request; see the API service log.' } });
  });

  instance.addHook('onRequest', async (request, reply) => {
    const req = request.raw;
    // The body is JSON whatever its label (api/http.ts): fastify would refuse a label it cannot parse (415) before the
    // route's own checks, so it never sees one.
    delete req.headers['content-type'];
    const url = new URL(originalUrls.get(req) ?? req.url ?? '/', 'http://localhost');
    const matches = routes.filter((r) => r.pattern.test(url.pathname));
    if (deps.metrics) {
      // Labelled by route template, never by path: IDs stay out of the series.
      const answered = deps.metrics.begin(req.method ?? 'GET');
      const template = matches[0]?.route.path ?? 'unmatched';
      reply.raw.once('close', () => answered(template, reply.raw.statusCode));
    }
    if (deps.loopbackOnly && !isLoopback(req.socket.remoteAddress)) {
      return answer(reply, 403, { error: { code: 'FORBIDDEN', message: 'The embedded API service answers loopback callers only.' } });
    }
    if (url.pathname.startsWith('/codec/') && deps.codec.handleCors(req, reply.raw)) {
      // The codec endpoint answered a preflight or a foreign origin itself.
      return reply.hijack();
    }
    const found = matches.find((r) => r.route.method === req.method);
    // Callers without a verified identity share their address's bucket (RATE_LIMITED comes right after authentication).
    const chargeAddress = () => deps.rateLimits?.charge(`address:${req.socket.remoteAddress ?? 'unknown'}`);
    if (found?.route.public) {
      chargeAddress();
      admitted.set(req, { pathname: url.pathname, query: url.searchParams, actor: { kind: 'operator' }, found });
      return;
    }
    // Authentication precedes routing: an unauthenticated caller learns nothing about which routes exist.
    let actor: Actor;
    try {
      // The embedded UI sends no token: its codec path's capability is the operator's credential (api/codec.ts).
      actor = deps.codec.capabilityActor?.(url.pathname, req) ?? (await deps.authenticate(req.headers.authorization));
    } catch (err) {
      chargeAddress();
      throw err;
    }
    deps.rateLimits?.charge(describeActor(actor));
    if (!found) return answer(reply, matches.length ? 405 : 404, { error: { code: 'NOT_FOUND', message: `No such API route: ${req.method} ${url.pathname}.` } });
    admitted.set(req, { pathname: url.pathname, query: url.searchParams, actor, found });
  });

  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const req = request.raw;
    const seen = admitted.get(req);
    // The hook admits every request that reaches a handler; without it, the router and the table disagree.
    if (!seen) throw new Error(`no admitted request for ${req.method} ${req.url}`);
    const { actor, found, pathname, query } = seen;
    const { route, pattern, names } = found;
    if (route.public) return answer(reply, 200, await route.handle({ actor, params: {}, query, body: async () => ({}), req }));
    const values = (pattern.exec(pathname) ?? []).slice(1);
    const params: Record<string, string> = {};
    names.forEach((name, i) => {
      try {
        params[name] = decodeURIComponent(values[i] ?? '');
      } catch {
        throw new CmkError('INVALID_ARGUMENT', `The ${name} in the path is not valid percent-encoding.`);
      }
    });
    // Only well-formed IDs get a bucket of their own: junk path segments answer NOT_FOUND or INVALID_ARGUMENT anyway.
    if (isValidId(params.tenant)) deps.rateLimits?.chargeTenant(params.tenant);
    // Kept once read, so that a refusal's audit record can name the region the request asked for (every audited
    // route is a POST that names it in its body).
    let parsedBody: Record<string, unknown> | undefined;
    const body = async () => (parsedBody ??= await readJsonBody(req, route.maxBodyBytes ?? SMALL_BODY, route.tooLarge ?? 'INVALID_ARGUMENT'));
    try {
      return answer(reply, 200, await route.handle({ actor, params, query, body, req }));
    } catch (err) {
      // Refusals of state-changing requests go to the audit trail; accepted ones are recorded by the workflow that did them.
      if (route.audited && isCmkError(err)) {
        const region = parsedBody?.region;
        await reportRefusal(route.audited, actor, { ...params, ...(typeof region === 'string' ? { region } : {}) }, err);
      }
      throw err;
    }
  };
  // The table and fastify's router agree; should they not, the table decides, as the hook did.
  instance.setNotFoundHandler(serve);

  ready = (async () => {
    await instance.register(swagger, openApiOptions);
    for (const { route } of routes) {
      const parameters = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      instance.route({
        method: route.method,
        url: fastifyPath(route.path),
        schema: {
          summary: route.summary,
          ...(route.public ? { security: [] } : {}),
          ...(parameters.length ? { params: Type.Object(Object.fromEntries(parameters.map((name) => [name, Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })]))) } : {}),
          ...(route.query ? { querystring: route.query } : {}),
          ...(route.body ? { body: route.body } : {}),
          response: { 200: { ...route.response, description: route.response.description ?? 'Done' }, default: ErrorDocument },
        },
        handler: serve,
      });
    }
    await instance.ready();
  })();
  ready.catch(() => undefined); // reported per request by the server above

  return instance.server;

  async function reportRefusal(action: string, actor: Actor, params: Record<string, string>, err: CmkError): Promise<void> {
    const entry: AuditEntry = {
      id: `refusal/${randomUUID()}`,
      at: new Date().toISOString(),
      actor: describeActor(actor),
      action,
      outcome: 'refused',
      // Path parameters may be anything a caller typed: only well-formed IDs name a tenant or environment.
      tenant: isValidId(params.tenant) ? params.tenant : null,
      environment: isValidId(params.env) ? params.env : null,
      // The region the request named, if any (without one, the tenant's home region was meant).
      region: isValidId(params.region) ? params.region : null,
      code: err.code,
      message: err.message.slice(0, 500),
    };
    try {
      await deps.audit([redactAuditEntry(entry)]);
    } catch (auditErr) {
      // The refusal stands either way; a trail that cannot be reached is an operator's alarm, not the caller's error.
      deps.log(`audit: could not record a refusal: ${auditErr instanceof Error ? auditErr.message : String(auditErr)}`);
    }
  }
}

/**
 * How long one answer of `GET /v1/status` is served again. The route needs no token and costs Temporal calls, so
 * repeated and concurrent calls share one: whoever polls it, Temporal sees at most one round every this long.
 */
const STATUS_CACHE_MS = 2000;

/** `compute`'s answer, shared by concurrent callers and kept `ttlMs` after it comes. */
function shortLived<T>(ttlMs: number, compute: () => Promise<T>): () => Promise<T> {
  let current: { answer: Promise<T>; until: number } | null = null;
  return () => {
    if (current && Date.now() < current.until) return current.answer;
    const entry = { answer: compute(), until: Number.POSITIVE_INFINITY };
    current = entry;
    entry.answer.then(
      () => (entry.until = Date.now() + ttlMs),
      () => {
        if (current === entry) current = null;
      },
    );
    return entry.answer;
  };
}

/**
 * `cmk status`: the API answers, Temporal answers, and a worker polls the task queue — and, when the deployment
 * routes by region (R1), each region's queue, since a region without a worker would leave its requests waiting.
 */
async function status({ temporal, taskQueue, regions, service }: Pick<ServerDependencies, 'temporal' | 'taskQueue' | 'regions' | 'service'>) {
  const pollersOf = async (name: string, taskQueueType: number): Promise<number> => {
    const described = await temporal.workflowService.describeTaskQueue({ namespace: temporal.options.namespace, taskQueue: { name }, taskQueueType });
    return described.pollers?.length ?? 0;
  };
  let temporalOk = false;
  let pollers = 0;
  const regionPollers: Record<string, number> = {};
  try {
    pollers = await pollersOf(taskQueue, 1); // TASK_QUEUE_TYPE_WORKFLOW
    for (const region of regions ?? []) regionPollers[region] = await pollersOf(regionTaskQueue(taskQueue, region), 2); // TASK_QUEUE_TYPE_ACTIVITY
    temporalOk = true;
  } catch {
    temporalOk = false;
  }
  const regionsReady = Object.values(regionPollers).every((n) => n > 0);
  // Mail failing is a warning, not an outage of cmk: `ready` does not depend on it.
  const mail = await service.mailSummary().catch(() => null);
  const warnings = mail && (mail.pending || mail.rejected) ? [`mail: ${mail.pending} pending${mail.oldestPendingSince ? ` since ${mail.oldestPendingSince}` : ''}, ${mail.rejected} rejected (cmk mail list --tenant T; cmk mail retry --tenant T)`] : [];
  return {
    ready: temporalOk && pollers > 0 && regionsReady,
    api: 'ok',
    temporal: { ok: temporalOk, namespace: temporal.options.namespace },
    worker: { taskQueue, pollers, ...(regions ? { regions: Object.fromEntries(Object.entries(regionPollers).map(([r, n]) => [r, { taskQueue: regionTaskQueue(taskQueue, r), pollers: n }])) } : {}) },
    ...(mail ? { mail } : {}),
    warnings,
  };
}
