/**
 * The API service: the HTTP face of the control plane that the `cmk` CLI (and the provider's gateway) call.
 * Loopback only in the embedded default, where the caller's asserted identity (`x-cmk-as`) is trusted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Client } from '@temporalio/client';
import { CmkError } from '../common/errors';
import { ACTIONS, isValidEmail, OPERATOR, type Action, type Actor, type AdminRole, type EnvironmentOperation } from '../workflows/rules';
import { optionalString, readJsonBody, requiredString, sendError, sendJson } from './http';
import type { ApiService } from './service';

export const IDENTITY_HEADER = 'x-cmk-as';

export interface ServerDependencies {
  service: ApiService;
  temporal: Client;
  taskQueue: string;
  log: (line: string) => void;
}

type Handler = (ctx: { actor: Actor; params: string[]; query: URLSearchParams; req: IncomingMessage }) => Promise<unknown>;
interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  handle: Handler;
}

const SEGMENT = '([^/]+)';
const path = (template: string): RegExp => new RegExp(`^${template.replace(/:\w+/g, SEGMENT)}$`);

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1' || (address?.startsWith('127.') ?? false);
}

function actorOf(req: IncomingMessage): Actor {
  const asserted = req.headers[IDENTITY_HEADER];
  if (asserted === undefined || asserted === '') return OPERATOR;
  if (typeof asserted !== 'string' || !isValidEmail(asserted)) throw new CmkError('INVALID_ARGUMENT', 'The caller (--as) must be an e-mail address.');
  return { kind: 'user', email: asserted.toLowerCase() };
}

function role(text: string | undefined): AdminRole | null {
  if (text === undefined) return null;
  if (text !== 'global' && text !== 'service') throw new CmkError('INVALID_ARGUMENT', `"${text}" is not an administrator role (global or service).`);
  return text;
}

function adminList(value: unknown): Array<{ email: string; role: AdminRole }> {
  if (!Array.isArray(value)) throw new CmkError('INVALID_ARGUMENT', '"admins" must be a list of {email, role}.');
  return value.map((entry: unknown) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    return { email: requiredString(e, 'email'), role: role(requiredString(e, 'role')) ?? 'global' };
  });
}

function base64Field(body: Record<string, unknown>, field: string): Buffer {
  const text = requiredString(body, field);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new CmkError('INVALID_ARGUMENT', `"${field}" must be base64.`);
  return Buffer.from(text, 'base64');
}

export function createApiServer(deps: ServerDependencies): Server {
  const { service } = deps;
  const region = (q: URLSearchParams) => q.get('region') ?? undefined;
  const routes: Route[] = [
    { method: 'GET', pattern: path('/v1/status'), handle: () => status(deps) },
    {
      method: 'POST',
      pattern: path('/v1/tenants'),
      handle: async ({ actor, req }) => {
        const b = await readJsonBody(req);
        return service.createTenant(actor, { tenant: requiredString(b, 'tenant'), name: requiredString(b, 'name'), region: optionalString(b, 'region'), admins: adminList(b.admins) });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/admins'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        const change = requiredString(b, 'change');
        if (change !== 'add' && change !== 'remove') throw new CmkError('INVALID_ARGUMENT', '"change" must be add or remove.');
        return service.changeAdmin(actor, t!, { change, email: requiredString(b, 'email'), role: role(optionalString(b, 'role')) });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/environments'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.createEnvironment(actor, t!, { env: requiredString(b, 'env'), region: optionalString(b, 'region'), admin: optionalString(b, 'admin') });
      },
    },
    { method: 'GET', pattern: path('/v1/tenants/:t/environments'), handle: ({ actor, params: [t], query }) => service.listEnvironments(actor, t!, { region: region(query) }) },
    {
      method: 'POST',
      pattern: /^\/v1\/tenants\/([^/]+)\/environments\/([^/]+)\/(apply|revert|rekey)$/,
      handle: ({ actor, params: [t, e, operation] }) => service.environmentOperation(actor, t!, e!, operation as EnvironmentOperation),
    },
    { method: 'GET', pattern: path('/v1/tenants/:t/environments/:e/data'), handle: ({ actor, params: [t, e] }) => service.environmentData(actor, t!, e!, undefined) },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/environments/:e/data'),
      handle: async ({ actor, params: [t, e], req }) => service.environmentData(actor, t!, e!, requiredString(await readJsonBody(req), 'text')),
    },
    { method: 'GET', pattern: path('/v1/tenants/:t/key'), handle: ({ actor, params: [t], query }) => service.showKey(actor, t!, { region: region(query) }) },
    {
      method: 'GET',
      pattern: path('/v1/tenants/:t/key/installed'),
      handle: ({ actor, params: [t], query }) => service.waitForKey(actor, t!, { region: region(query), timeoutMs: 25_000 }),
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/keys/generate'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.generateKey(actor, t!, { name: requiredString(b, 'name'), password: requiredString(b, 'password'), region: optionalString(b, 'region') });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/keys/upload'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.uploadKey(actor, t!, {
          name: requiredString(b, 'name'),
          fileName: requiredString(b, 'fileName'),
          file: base64Field(b, 'file'),
          password: optionalString(b, 'password'),
          region: optionalString(b, 'region'),
        });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/keys/kek'),
      handle: async ({ actor, params: [t], req }) => service.createKek(actor, t!, { region: optionalString(await readJsonBody(req), 'region') }),
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/access'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        const action = requiredString(b, 'action');
        if (!ACTIONS.has(action as Action)) throw new CmkError('INVALID_ARGUMENT', `"${action}" is not an action.`);
        return service.checkAccess(actor, t!, action as Action, optionalString(b, 'env'));
      },
    },
    { method: 'GET', pattern: path('/v1/tenants/:t/mail'), handle: ({ actor, params: [t] }) => service.listMail(actor, t!) },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/challenges'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.issueChallenge(actor, t!, { operation: requiredString(b, 'operation'), region: optionalString(b, 'region') });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/lock'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.lockTenant(actor, t!, { region: optionalString(b, 'region'), confirm: requiredString(b, 'confirm'), challenge: requiredString(b, 'challenge'), signature: base64Field(b, 'signature') });
      },
    },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/keys/reactivate'),
      handle: async ({ actor, params: [t], req }) => {
        const b = await readJsonBody(req);
        return service.reactivateKey(actor, t!, { fileName: requiredString(b, 'fileName'), file: base64Field(b, 'file'), password: optionalString(b, 'password'), region: optionalString(b, 'region') });
      },
    },
    { method: 'POST', pattern: path('/v1/tenants/:t/environments/:e/unlock'), handle: ({ actor, params: [t, e] }) => service.unlockEnvironment(actor, t!, e!) },
    { method: 'POST', pattern: path('/v1/tenants/:t/environments/:e/backup'), handle: ({ actor, params: [t, e] }) => service.environmentBackup(actor, t!, e!, 'backup', null) },
    {
      method: 'POST',
      pattern: path('/v1/tenants/:t/environments/:e/restore'),
      handle: async ({ actor, params: [t, e], req }) => service.environmentBackup(actor, t!, e!, 'restore', optionalString(await readJsonBody(req), 'backupId') ?? null),
    },
  ];

  return createServer((req, res) => {
    void serve(req, res).catch((err: unknown) => sendError(res, err, deps.log));
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isLoopback(req.socket.remoteAddress)) {
      sendJson(res, 403, { error: { code: 'FORBIDDEN', message: 'The embedded API service answers loopback callers only.' } });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const candidates = routes.filter((r) => r.pattern.test(url.pathname));
    const route = candidates.find((r) => r.method === req.method);
    if (!route) {
      sendJson(res, candidates.length ? 405 : 404, { error: { code: 'NOT_FOUND', message: `No such API route: ${req.method} ${url.pathname}.` } });
      return;
    }
    const params = (route.pattern.exec(url.pathname) ?? []).slice(1).map((p) => decodeURIComponent(p));
    const result = await route.handle({ actor: actorOf(req), params, query: url.searchParams, req });
    sendJson(res, 200, result);
  }
}

/** `cmk status`: the API answers, Temporal answers, and a worker polls the task queue. */
async function status({ temporal, taskQueue }: ServerDependencies) {
  let temporalOk = false;
  let pollers = 0;
  try {
    const described = await temporal.workflowService.describeTaskQueue({
      namespace: temporal.options.namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
    });
    temporalOk = true;
    pollers = described.pollers?.length ?? 0;
  } catch {
    temporalOk = false;
  }
  return { ready: temporalOk && pollers > 0, api: 'ok', temporal: { ok: temporalOk, namespace: temporal.options.namespace }, worker: { taskQueue, pollers } };
}
