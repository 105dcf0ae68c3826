/**
 * The API service's route table: each route's method, path, TypeBox schemas (api/schemas.ts), body limit and what it
 * does (api/service.ts), read by fastify's router, the OpenAPI document and the audit trail's names for refusals
 * (api/server.ts); and the health check `/v1/status`.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { Client } from '@temporalio/client';
import { CmkError } from '../common/errors';
import { ACTIONS, type Action } from '../domain/access';
import type { AdminRole, EnvironmentOperation } from '../domain/model';
import { quotable } from '../domain/audit-redaction';
import { optionalString, requiredString } from './http';
import * as S from './schemas';
import { bodyOf } from './schemas';
import type { ApiService } from './service';
import { route, type Route } from './route';
import type { CodecEndpoint } from './codec';
import type { ConsoleSessions } from './console-sessions';
import type { ConsoleOidc, Redirect } from './console-oidc';
import { regionTaskQueue } from '../workflows/messages';
import { BULK_MAX_BYTES } from '../domain/bulk';

/** What the route table reads: the service, Temporal and the task queues (for the health check), the codec endpoint. */
export interface RouteDependencies {
  service: ApiService;
  temporal: Client;
  taskQueue: string;
  /** R1: the regions whose task queues must have a worker (Policy.regions); none when the deployment routes nothing. */
  regions?: readonly string[];
  codec: CodecEndpoint;
  /** The console's sign-in links and sessions (api/console-sessions.ts); none: the /v1/console routes answer NOT_FOUND. */
  consoleSessions?: ConsoleSessions;
  /** The console's sign-in through the external issuer (api/console-oidc.ts); none: sign-in links only. */
  consoleOidc?: ConsoleOidc;
}

export const SMALL_BODY = 16 * 1024;
/** 64 KiB of key file in base64 (87,382 characters) plus its JSON framing. */
const KEY_FILE_BODY = 96 * 1024;
/** A list of 10,000 environments (at most 1 MiB, domain/bulk.ts) as a JSON string: escaped newlines, framing. */
const ENVIRONMENT_LIST_BODY = BULK_MAX_BYTES + 64 * 1024;

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

/** A lock request's ID, as the workflow made it (a UUID); anything else is refused, never echoed at length. */
function lockRequestId(body: Record<string, unknown>): string | undefined {
  const id = optionalString(body, 'id');
  if (id !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) throw new CmkError('INVALID_ARGUMENT', '"id" must be the lock request\'s ID, as `cmk tenant policy` shows it.');
  return id;
}

/** `"dryRun": true` (issue 19) on the routes that take it; anything but a boolean is refused, never taken for "no". */
function dryRunOf(body: Record<string, unknown>): boolean {
  if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new CmkError('INVALID_ARGUMENT', '"dryRun" must be true or false.');
  return body.dryRun === true;
}

const DRY_RUN = 'true: check and report what would happen (a DryRunReport); nothing is changed';

function base64Field(body: Record<string, unknown>, field: string): Buffer {
  const text = requiredString(body, field);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new CmkError('INVALID_ARGUMENT', `"${field}" must be base64.`);
  return Buffer.from(text, 'base64');
}

/** The route table; `document` gives the OpenAPI document fastify builds from it. */
export function apiRoutes(deps: RouteDependencies, document: () => Static<typeof S.OpenApi>): Route[] {
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
        ...(operation === 'rekey'
          ? {}
          : { body: bodyOf({ dryRun: DRY_RUN, ...(operation === 'apply' ? { acceptRisk: 'true: the opt-in warning of a first apply is accepted (asked once per tenant; RISK_NOT_ACCEPTED without)' } : {}) }, ['dryRun', 'acceptRisk']) }),
        response: S.OrDryRun(S.EnvironmentShown),
        handle: async ({ actor, params, body }) => {
          const b = await body();
          const acceptRisk = operation === 'apply' ? b.acceptRisk : undefined;
          // A rekey has no dry run: asked for one, it refuses rather than rekey for real.
          if (dryRunOf(b)) {
            if (operation === 'rekey') throw new CmkError('INVALID_ARGUMENT', 'env rekey has no dry run.');
            return service.environmentOperationDryRun(actor, params.tenant!, params.env!, operation, { acceptRisk });
          }
          return service.environmentOperation(actor, params.tenant!, params.env!, operation as EnvironmentOperation, { acceptRisk });
        },
      }),
  );
  const currentStatus = shortLived(STATUS_CACHE_MS, () => status(deps));
  const sessions = (): ConsoleSessions => {
    if (!deps.consoleSessions) throw new CmkError('NOT_FOUND', 'This API service serves no console.');
    return deps.consoleSessions;
  };
  const navigate = (to: Redirect, setHeader: (name: string, value: string) => void) => {
    for (const cookie of to.cookies) setHeader('set-cookie', cookie);
    return { location: to.location };
  };
  const signInAtIssuer = (): ConsoleOidc => {
    sessions();
    if (!deps.consoleOidc) throw new CmkError('NOT_FOUND', "This console signs in with links from `cmk console` only: no issuer is configured (CMK_CONSOLE_OIDC_CLIENT_ID).");
    return deps.consoleOidc;
  };
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
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/environments/bulk',
      summary: 'Create many environments in one operation, all or none for a bad line (`env create --from-file`)',
      audited: 'env.create.bulk',
      body: bodyOf(
        { list: 'one environment ID a line, optionally ID,ADMIN_EMAIL; blank lines and # comments ignored (at most 10,000 environments, 1 MiB)', region: REGION, operation: 'an ID of your choosing for the progress route (default: a new UUID)' },
        ['region', 'operation'],
      ),
      response: S.EnvironmentsCreated,
      maxBodyBytes: ENVIRONMENT_LIST_BODY,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.createEnvironments(actor, params.tenant!, { list: requiredString(b, 'list'), region: optionalString(b, 'region'), operation: optionalString(b, 'operation') });
      },
    }),
    route({
      method: 'GET',
      path: '/v1/tenants/{tenant}/environments/bulk/{operation}/progress',
      summary: "A bulk creation's progress: created so far of the total",
      response: S.EnvironmentCreation,
      handle: ({ actor, params }) => service.environmentCreation(actor, params.tenant!, params.operation!),
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
    route({ method: 'GET', path: '/v1/tenants/{tenant}/keys/history', summary: 'Every key the tenant has had in a region, newest first', query: regionQuery, response: S.KeyHistory, handle: ({ actor, params, query }) => service.keyHistory(actor, params.tenant!, { region: region(query) }) }),
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
      body: bodyOf({ name: 'key name', password: 'the .pfx password (at least 12 characters)', region: REGION, dryRun: DRY_RUN }, ['region', 'dryRun']),
      response: S.OrDryRun(S.GeneratedKeyReport),
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const request = { name: requiredString(b, 'name'), password: requiredString(b, 'password'), region: optionalString(b, 'region') };
        return dryRunOf(b) ? service.generateKeyDryRun(actor, params.tenant!, request) : service.generateKey(actor, params.tenant!, request);
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/upload',
      summary: 'Upload your own key, .pfx or .byok (R2, R3)',
      audited: 'key.upload',
      body: bodyOf({ name: 'key name', fileName: 'ends in .pfx or .byok', file: 'the file, base64 (at most 64 KiB)', password: 'the .pfx password', region: REGION, activate: 'false: keep it Available until /keys/activate (default true)', dryRun: DRY_RUN }, ['password', 'region', 'activate', 'dryRun']),
      response: S.OrDryRun(S.UploadedKeyReport),
      maxBodyBytes: KEY_FILE_BODY,
      tooLarge: 'INVALID_KEY_FILE',
      handle: async ({ actor, params, body }) => {
        const b = await body();
        if (b.activate !== undefined && typeof b.activate !== 'boolean') throw new CmkError('INVALID_ARGUMENT', '"activate" must be true or false.');
        const request = {
          name: requiredString(b, 'name'),
          fileName: requiredString(b, 'fileName'),
          file: base64Field(b, 'file'),
          password: optionalString(b, 'password'),
          region: optionalString(b, 'region'),
          activate: b.activate as boolean | undefined,
        };
        return dryRunOf(b) ? service.uploadKeyDryRun(actor, params.tenant!, request) : service.uploadKey(actor, params.tenant!, request);
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/keys/activate',
      summary: 'Activate a key uploaded with activate: false (R5, R6, R11 apply here)',
      audited: 'key.activate',
      body: bodyOf({ thumbprint: "the Available key's thumbprint", region: REGION }, ['region']),
      response: S.KeyReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        return service.activateKey(actor, params.tenant!, { thumbprint: requiredString(b, 'thumbprint'), region: optionalString(b, 'region') });
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
      body: bodyOf({ region: REGION, dryRun: DRY_RUN }, ['region', 'dryRun']),
      response: S.OrDryRun(S.RolledBackKeyReport),
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const request = { region: optionalString(b, 'region') };
        return dryRunOf(b) ? service.rollbackKeyDryRun(actor, params.tenant!, request) : service.rollbackKey(actor, params.tenant!, request);
      },
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
      method: 'POST',
      path: '/v1/tenants/{tenant}/drift-check',
      summary: "Compare the tenant's environments with their databases and the vault now (reads only)",
      audited: 'drift.check',
      response: S.DriftChecked,
      handle: ({ actor, params }) => service.checkDrift(actor, params.tenant!),
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
      body: bodyOf(
        { confirm: "the tenant's display name", challenge: 'from /challenges (optional with dryRun)', signature: 'RSASSA-PKCS1-v1_5 SHA-256 over the challenge, base64 (optional with dryRun)', region: REGION, dryRun: DRY_RUN },
        ['region', 'dryRun'],
      ),
      response: S.OrDryRun(Type.Union([S.LockReport, S.PendingLockReport], { description: 'Locked (LockResult), or, under the two-administrator policy, waiting for approval' })),
      handle: async ({ actor, params, body }) => {
        const b = await body();
        if (dryRunOf(b)) {
          // Without a proof, the report says what proof the real lock needs; with one, it is verified (not spent).
          const proof = b.challenge === undefined && b.signature === undefined ? {} : { challenge: requiredString(b, 'challenge'), signature: base64Field(b, 'signature') };
          return service.lockTenantDryRun(actor, params.tenant!, { region: optionalString(b, 'region'), confirm: requiredString(b, 'confirm'), ...proof });
        }
        return service.lockTenant(actor, params.tenant!, { region: optionalString(b, 'region'), confirm: requiredString(b, 'confirm'), challenge: requiredString(b, 'challenge'), signature: base64Field(b, 'signature') });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/lock/all-regions',
      summary: 'Lock the tenant in every region at once, all or none (R8; `tenant lock --all-regions`)',
      audited: 'tenant.lock',
      body: bodyOf({ confirm: "the tenant's display name", proofs: 'one per region: { region, challenge (from /challenges for that region), signature (base64, by that region\'s active key) }' }),
      response: Type.Union([S.LockAllRegionsReport, S.PendingLockReport], { description: 'Every region locked, or, under the two-administrator policy, waiting for approval' }),
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const proofs = b.proofs;
        // A tenant has a few regions; far more proofs than any deployment has regions is not a request of ours.
        // Empty is a request too: the service then says what stands in the way (a locked region, a region without a key).
        if (!Array.isArray(proofs) || proofs.length > 64) throw new CmkError('INVALID_ARGUMENT', '"proofs" must list one proof per region (at most 64).');
        return service.lockAllRegions(actor, params.tenant!, {
          confirm: requiredString(b, 'confirm'),
          proofs: proofs.map((p: unknown) => {
            if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new CmkError('INVALID_ARGUMENT', 'Each proof is an object { region, challenge, signature }.');
            const proof = p as Record<string, unknown>;
            return { region: requiredString(proof, 'region'), challenge: requiredString(proof, 'challenge'), signature: base64Field(proof, 'signature') };
          }),
        });
      },
    }),
    route({ method: 'GET', path: '/v1/tenants/{tenant}/policy', summary: "The tenant's lock policy: how many administrators a lock takes, and the lock waiting for approval", response: S.LockPolicyReport, handle: ({ actor, params }) => service.lockPolicy(actor, params.tenant!) }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/policy',
      summary: 'Set how many global or service administrators a lock takes (1 or 2; a lowering holds after the approval window)',
      audited: 'tenant.policy',
      body: bodyOf({ lockApproval: '1: one administrator locks; 2: a second one approves every lock' }),
      response: S.LockPolicyReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        if (typeof b.lockApproval !== 'number') throw new CmkError('INVALID_ARGUMENT', '"lockApproval" must be 1 or 2.');
        return service.setLockPolicy(actor, params.tenant!, { lockApproval: b.lockApproval });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/lock/approve',
      summary: 'Approve the lock waiting for a second administrator; it is carried out at once',
      audited: 'tenant.lock',
      body: bodyOf({ confirm: "the tenant's display name", id: 'the lock request to approve (optional: the one waiting)' }, ['id']),
      response: S.LockApprovedReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const id = lockRequestId(b);
        return service.approveLock(actor, params.tenant!, { confirm: requiredString(b, 'confirm'), ...(id === undefined ? {} : { id }) });
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/lock/cancel',
      summary: 'Cancel the lock waiting for approval; nothing is locked',
      audited: 'tenant.lock.cancel',
      body: bodyOf({ id: 'the lock request to cancel (optional: the one waiting)' }, ['id']),
      response: S.LockCancelledReport,
      handle: async ({ actor, params, body }) => {
        const b = await body();
        const id = lockRequestId(b);
        return service.cancelLock(actor, params.tenant!, id === undefined ? {} : { id });
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
    route({
      method: 'POST',
      path: '/v1/tenants/{tenant}/environments/{env}/delete',
      summary: 'Delete a locked environment now, with its backups and key record (as R9 does at the deadline)',
      audited: 'env.delete',
      body: bodyOf({ confirm: "the environment's ID again" }),
      response: S.EnvironmentShown,
      handle: async ({ actor, params, body }) => service.deleteEnvironment(actor, params.tenant!, params.env!, { confirm: requiredString(await body(), 'confirm') }),
    }),
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
    route({
      method: 'POST',
      path: '/v1/console/links',
      summary: 'A one-time sign-in link to the console for the caller (valid 5 minutes; `cmk console`)',
      body: bodyOf({ tenant: 'the tenant the console opens on' }, ['tenant']),
      response: S.ConsoleLink,
      handle: async ({ actor, body }) => {
        const tenant = optionalString(await body(), 'tenant');
        if (tenant !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(tenant)) throw new CmkError('INVALID_ARGUMENT', `${quotedOr(tenant, 'That')} is not a tenant ID.`);
        const { ticket, expiresAt } = sessions().issueLink(actor);
        // The ticket rides in the fragment: browsers send neither it nor the path's fragment to any server or Referer.
        return { path: `/#/sign-in/${ticket}${tenant ? `/${tenant}` : ''}`, expiresAt };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/console/session',
      summary: 'Exchange a sign-in link for a console session (an HttpOnly cookie; the CSRF token in the answer)',
      public: true,
      body: bodyOf({ ticket: "the sign-in link's ticket" }),
      response: S.ConsoleSession,
      handle: async ({ body, req, setHeader }) => {
        // A page of another site must not sign this browser in as someone else (login CSRF).
        sessions().refuseForeignOrigin(req);
        const { cookie, session } = sessions().redeem(requiredString(await body(), 'ticket'));
        setHeader('set-cookie', cookie);
        return session;
      },
    }),
    route({
      method: 'GET',
      path: '/v1/console/session',
      summary: "The caller's console session (who, until when, its CSRF token)",
      response: S.ConsoleSession,
      handle: async ({ req }) => {
        const view = sessions().viewOf(req);
        if (!view) throw new CmkError('UNAUTHENTICATED', 'No console session: sign in to the console first.');
        return view;
      },
    }),
    route({
      method: 'GET',
      path: '/v1/console/sign-in-options',
      summary: 'How the console signs in here: links from `cmk console`, and the organisation\'s issuer when configured',
      public: true,
      response: S.SignInOptions,
      handle: async () => {
        sessions();
        return { links: true, issuer: deps.consoleOidc ? { name: deps.consoleOidc.issuerName, start: '/v1/console/oidc/start' } : null };
      },
    }),
    route({
      method: 'GET',
      path: '/v1/console/oidc/start',
      summary: "Sign in to the console at the organisation's issuer (OpenID Connect code + PKCE): a redirect there",
      public: true,
      redirect: true,
      query: Type.Object({ tenant: Type.Optional(Type.String({ description: 'the tenant the console opens on' })), popup: Type.Optional(Type.String({ description: '1: the sign-in runs in a window of its own' })) }),
      response: S.SeeOther,
      handle: async ({ query, setHeader }) => {
        const oidc = signInAtIssuer();
        const tenant = query.get('tenant');
        return navigate(await oidc.start({ tenant: tenant !== null && /^[a-z0-9][a-z0-9-]{0,62}$/.test(tenant) ? tenant : null, popup: query.get('popup') === '1' }), setHeader);
      },
    }),
    route({
      method: 'GET',
      path: '/v1/console/oidc/callback',
      summary: "Where the issuer sends the browser back: a console session for the ID token's verified e-mail, then the console",
      public: true,
      redirect: true,
      query: Type.Object({ code: Type.Optional(Type.String()), state: Type.Optional(Type.String()), error: Type.Optional(Type.String()), iss: Type.Optional(Type.String()) }),
      response: S.SeeOther,
      handle: async ({ req, query, setHeader }) => {
        return navigate(await signInAtIssuer().finish(req, query), setHeader);
      },
    }),
    route({
      method: 'POST',
      path: '/v1/console/sign-out',
      summary: 'End the console session',
      response: S.SignedOut,
      handle: async ({ req, setHeader }) => {
        setHeader('set-cookie', sessions().close(req));
        return { signedOut: true };
      },
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
async function status({ temporal, taskQueue, regions, service }: RouteDependencies) {
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
