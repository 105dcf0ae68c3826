/**
 * The API service: the HTTP face of the control plane that the `cmk` CLI (and the provider's gateway) call.
 * Authentication precedes routing: every route but the health check (`GET /v1/status`) and the OpenAPI document
 * (`GET /openapi.json`) needs a verified bearer token (api/auth.ts). Each route is described once, in apiRoutes (api/routes.ts):
 * fastify's router, the OpenAPI document (@fastify/swagger, from each route's TypeBox schemas in api/schemas.ts) and
 * the audit trail's names for refusals all read that table, and tsc checks that each handler answers its schema.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { Type, type Static } from '@sinclair/typebox';
import { CmkError, isCmkError } from '../common/errors';
import { describeActor, type Actor } from '../domain/access';
import { isValidId } from '../domain/ids';
import type { AuditEntry } from '../audit/trail';
import { redactAuditEntry } from '../domain/audit-redaction';
import { BodyTooLargeError, readJsonBody } from './http';
import { httpStatusOf } from '../domain/codes';
import type * as S from './schemas';
import { ErrorDocument } from './schemas';
import type { Authenticator } from './auth';
import { openApiOptions } from './openapi';
import type { Route } from './route';
import type { ApiMetrics } from './metrics';
import { RateLimitedError, type RateLimiter } from './ratelimit';
import { apiRoutes, SMALL_BODY, type RouteDependencies } from './routes';
import type { ConsoleAssets } from './console-assets';

export interface ServerDependencies extends RouteDependencies {
  authenticate: Authenticator;
  /** Loopback callers only (the embedded default, whose local signing key is for this machine). */
  loopbackOnly: boolean;
  /** Hands audit records to the trail's single writer (the worker). */
  audit: (entries: AuditEntry[]) => Promise<void>;
  log: (line: string) => void;
  /** Requests by route template and status, for Prometheus (CMK_API_METRICS_PORT); none when unset. */
  metrics?: ApiMetrics;
  /** Token buckets per identity and per tenant (CMK_RATE_LIMIT…); none: no limit. */
  rateLimits?: RateLimiter;
  /** The console's page and assets at `/` and `/assets/` (api/console-assets.ts); none: those paths are API paths. */
  consoleAssets?: ConsoleAssets;
}

export type { Route };

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
    // Callers without a verified identity share their address's bucket (RATE_LIMITED comes right after authentication).
    const chargeAddress = () => deps.rateLimits?.charge(`address:${req.socket.remoteAddress ?? 'unknown'}`);
    if (deps.consoleAssets && (req.method === 'GET' || req.method === 'HEAD')) {
      const file = deps.consoleAssets.serve(url.pathname);
      if (file) {
        chargeAddress();
        return reply.code(file.status).headers(file.headers).send(req.method === 'HEAD' ? '' : file.body);
      }
    }
    if (url.pathname.startsWith('/codec/') && deps.codec.handleCors(req, reply.raw)) {
      // The codec endpoint answered a preflight or a foreign origin itself.
      return reply.hijack();
    }
    const found = matches.find((r) => r.route.method === req.method);
    if (found?.route.public) {
      chargeAddress();
      admitted.set(req, { pathname: url.pathname, query: url.searchParams, actor: { kind: 'operator' }, found });
      return;
    }
    // Authentication precedes routing: an unauthenticated caller learns nothing about which routes exist.
    let actor: Actor;
    try {
      // The embedded UI sends no token: its codec path's capability is the operator's credential (api/codec.ts). The
      // console sends none either: its session cookie (with its CSRF header) is (api/console-sessions.ts).
      actor =
        deps.codec.capabilityActor?.(url.pathname, req) ??
        (req.headers.authorization === undefined ? deps.consoleSessions?.actorOf(req) : undefined) ??
        (await deps.authenticate(req.headers.authorization));
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
    const setHeader = (name: string, value: string) => void reply.header(name, value);
    if (route.public) {
      const publicBody = async () => (route.body ? readJsonBody(req, SMALL_BODY) : {});
      const result = await route.handle({ actor, params: {}, query, body: publicBody, req, setHeader });
      if (route.redirect) return reply.code(303).headers({ location: (result as { location: string }).location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).send();
      return answer(reply, 200, result);
    }
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
      return answer(reply, 200, await route.handle({ actor, params, query, body, req, setHeader }));
    } catch (err) {
      // Refusals of state-changing requests go to the audit trail; accepted ones are recorded by the workflow that did them.
      if (route.audited && isCmkError(err)) {
        const region = parsedBody?.region;
        // A dry run refused by authorisation is the same attempt as the real one, and says so (docs/DRY-RUN.md).
        await reportRefusal(route.audited, actor, { ...params, ...(typeof region === 'string' ? { region } : {}) }, err, parsedBody?.dryRun === true);
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
          response: route.redirect
            ? { 303: { description: route.response.description ?? 'See Other', headers: { location: { type: 'string' } } }, default: ErrorDocument }
            : { 200: { ...route.response, description: route.response.description ?? 'Done' }, default: ErrorDocument },
        },
        handler: serve,
      });
    }
    await instance.ready();
  })();
  ready.catch(() => undefined); // reported per request by the server above

  return instance.server;

  async function reportRefusal(action: string, actor: Actor, params: Record<string, string>, err: CmkError, dryRun: boolean): Promise<void> {
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
      ...(dryRun ? { details: { dryRun: true } } : {}),
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
