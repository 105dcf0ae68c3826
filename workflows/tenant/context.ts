/**
 * What every concern of the tenant workflow shares: the tenant's state (carried across continue-as-new) and the
 * helpers every handler uses — one handler at a time, the region's activities, mail (R4), the audit trail, signed
 * requests, search attributes and the operator's row. Built once per run by `tenantWorkflow` and passed to each
 * concern's `register…(ctx)`.
 */
import { ApplicationFailure, condition, log, patched, setCurrentDetails, upsertSearchAttributes, uuid4, workflowInfo } from '@temporalio/workflow';
import type { AuditEntry } from '../../audit/trail';
import { redactAuditEntry } from '../../domain/audit-redaction';
import { SEARCH_ATTRIBUTES, regionTaskQueue, tenantWorkflowId, type CarriedTenantState, type ForgedRequests } from '../messages';
import { authOf, checkSignature, FORGED_REQUEST_MESSAGE, TRUST_NOT_LOADED_MESSAGE, type RequestAuth, type RequestTrust } from '../../domain/signed';
import { SpentLedger } from '../../domain/spent-signatures';
import { describeActor, notificationRecipients, systemAdminsOf, type Actor } from '../../domain/access';
import { activeKeyOf, type ReprotectionProgress, type TenantSnapshot } from '../../domain/model';
import type { Policy } from '../../domain/policy';
import type { Refusal } from '../../domain/rules';
import type { Notification } from '../../domain/notifications';
import { notifyAdministrators, recordAudit, refusalOf, regionActivities, type RegionActivities } from './proxies';
import { deadlineAttributes } from './deadlines';

/** What an audit record says beyond who, what, when and the outcome. Never secrets: ids, thumbprints, counts. */
export interface AuditFacts {
  region?: string | null;
  environment?: string | null;
  thumbprints?: string[];
  details?: Record<string, string | number | boolean | null>;
}

/** System administrators' own mails per mail activity (each names only their environments: a few hundred bytes). */
const PERSONAL_MAILS_PER_ACTIVITY = 200;
/** Notifications with more system administrators than one activity carries send further activities (issue 19). */
const PERSONAL_MAIL_PATCH = 'mail-per-system-admin';

/** Workflows started before the audit trail existed replay without its activity calls. */
const AUDIT_PATCH = 'audit-trail';

export interface TenantContext {
  readonly carried: CarriedTenantState;
  /** The tenant's snapshot (`carried.snapshot`): what queries answer and handlers change. */
  readonly tenant: TenantSnapshot;
  /** Per region, its latest re-protection's progress (part of the snapshot). */
  readonly reprotections: Record<string, ReprotectionProgress>;
  /** The worker's keys and durations; null in a run from before signed requests until `refreshTrust` loads them. */
  trust: RequestTrust | null;
  /** Whether this run publishes the deadline search attributes and wakes to unset them (decided at its start). */
  readonly publishesDeadlines: boolean;
  /** Requests refused as not signed by the API service (query `forgedRequests`). */
  readonly forged: ForgedRequests;
  /** Signatures of accepted requests still inside their window: a captured request does not work twice. */
  readonly spentRequests: SpentLedger;
  /** A handler that awaits the outside world is running (see `exclusively`). */
  busy: boolean;
  /** Regions whose environments are being re-protected in the background after a key change. */
  readonly reprotecting: Set<string>;
  /** Regions whose running re-protection a rollback has superseded: it stops after the batches in flight. */
  readonly superseded: Set<string>;
  /** Environments whose creation (one, or a bulk list's) was accepted but is not finished: another create answers ALREADY_EXISTS. */
  readonly provisioning: Set<string>;
  /** The activities on the workflow's own task queue. */
  readonly anyRegion: RegionActivities;
  /** R1: the activities on the region's task queue once the deployment names its regions, else `anyRegion`. */
  inRegion(region: string): RegionActivities;
  /** The durations a rule applies: the worker's own, or (runs from before signed requests) the request's. */
  policyOf(request: { policy: Policy }): Policy;
  /** Handlers that await the outside world run one at a time, in the order they were accepted. */
  exclusively<T>(work: () => Promise<T>): Promise<T>;
  /** Every validator's first check: the API service signed this request (docs/SECURITY.md). */
  refuseUnsigned(name: string, request: unknown): void;
  /**
   * R4 mail to the administrators (and the environments' system administrators); never throws. With `theirs`, each
   * system administrator gets their own mail, built for their environments only, instead of the administrators' one.
   * `alsoTo`: addresses beyond the tenant's (the operators', for a drift).
   */
  notify(notification: Notification, envIds?: string | string[], theirs?: (envs: string[]) => Notification, alsoTo?: readonly string[]): Promise<void>;
  /** One record in the audit trail (who, what, when, outcome, thumbprints). */
  audit(action: string, actor: Actor | 'cmk', outcome: AuditEntry['outcome'], facts?: AuditFacts & { code?: string; message?: string }): Promise<void>;
  /** An accepted request's handler, audited: completed with its facts, or failed with the code it failed with. */
  audited<R extends { actor: Actor }, T>(action: string | ((request: R) => string), facts: (request: R, result?: T) => AuditFacts, handler: (request: R) => Promise<T>): (request: R) => Promise<T>;
  /** Search attributes and the operator's row, after every change of state. */
  publishSearchAttributes(): void;
  /** What the workflow does now, for the operator's row in the Temporal UI. */
  currentDetails(): string;
}

export function refuseIf(refusal: Refusal | null): void {
  if (refusal) throw ApplicationFailure.create({ type: refusal.code, message: refusal.message, nonRetryable: true });
}

export const iso = (ms: number): string => new Date(ms).toISOString();
const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
const day = (at: string | number): string => new Date(at).toISOString().slice(0, 10);

export function createTenantContext(carried: CarriedTenantState, trust: RequestTrust | null, publishesDeadlines: boolean): TenantContext {
  const tenant = carried.snapshot;
  // Carried again at continue-as-new from the ledger (tenant.ts), in its compact form.
  const spentRequests = new SpentLedger(carried.spentRequests, carried.spentSignatures);
  delete carried.spentRequests;
  delete carried.spentSignatures;
  /**
   * R1: a region's vault and database work runs on that region's task queue, served by workers configured with the
   * region's vault and servers — once the deployment names its regions (every request carries them in its policy).
   * Without, everything runs on the workflow's own queue, as before regions had queues.
   */
  const byQueue = new Map<string, RegionActivities>();

  const ctx: TenantContext = {
    carried,
    tenant,
    reprotections: (tenant.reprotections ??= {}),
    trust,
    publishesDeadlines,
    forged: { refused: 0, last: null },
    spentRequests,
    busy: false,
    reprotecting: new Set<string>(),
    superseded: new Set<string>(),
    provisioning: new Set<string>(),
    anyRegion: regionActivities(undefined),
    inRegion,
    policyOf: (request) => ctx.trust?.policy ?? request.policy,
    exclusively,
    refuseUnsigned,
    notify,
    audit,
    audited,
    publishSearchAttributes,
    currentDetails,
  };

  function inRegion(region: string): RegionActivities {
    if (!carried.regions) return ctx.anyRegion;
    const queue = regionTaskQueue(workflowInfo().taskQueue, region);
    let proxies = byQueue.get(queue);
    if (!proxies) byQueue.set(queue, (proxies = regionActivities(queue)));
    return proxies;
  }

  /** The deployment's regions as the latest request states them (a deployment may start routing by region later). */
  function followRegions(request: { policy?: Policy }): void {
    if (request.policy && !ctx.trust) {
      if (request.policy.regions) carried.regions = [...request.policy.regions];
      else delete carried.regions;
    }
  }

  async function exclusively<T>(work: () => Promise<T>): Promise<T> {
    await condition(() => !ctx.busy);
    ctx.busy = true;
    try {
      return await work();
    } finally {
      ctx.busy = false;
    }
  }

  /**
   * The API service signed this request, for this workflow and message, recently, and it was not accepted before.
   * The refusal cannot reach history (a refused update leaves none), so it is logged and counted for operators.
   */
  function refuseUnsigned(name: string, request: unknown): void {
    // A run from before signed requests cannot check anything yet: nothing passes until `refreshTrust` (retryable).
    if (!ctx.trust) return refuseIf({ code: 'OPERATION_IN_PROGRESS', message: TRUST_NOT_LOADED_MESSAGE });
    const auth = authOf(request);
    let why = checkSignature(ctx.trust.publicKeys, workflowInfo().workflowId, name, request, auth, Date.now());
    if (!why && spentRequests.isSpent((auth as RequestAuth).signature)) why = 'it was already accepted once';
    if (!why) return;
    ctx.forged.refused += 1;
    ctx.forged.last = { at: iso(Date.now()), message: name, reason: why };
    log.warn('Refused a request the cmk API service did not sign (Temporal frontend).', { update: name, reason: why });
    refuseIf({ code: 'FORBIDDEN', message: FORGED_REQUEST_MESSAGE });
  }

  /** An accepted request's signature is spent; those past the window are forgotten (they are refused as too old). */
  function spend(request: { auth?: RequestAuth }): void {
    if (!ctx.trust || !request.auth) return;
    spentRequests.spend(request.auth, Date.now());
  }

  /**
   * R4: every global and service administrator, and the system administrators of the environments concerned. The
   * activity records each recipient's mail in the outbox and never throws for the provider (refused recipients and
   * outages are delivery states there); whatever still fails here is logged, never thrown: what the mail reports has
   * taken effect, and no outside fault may fail the tenant (DESIGN.md §6).
   */
  async function notify(notification: Notification, envIds?: string | string[], theirs?: (envs: string[]) => Notification, alsoTo: readonly string[] = []): Promise<void> {
    const personal = theirs
      ? systemAdminsOf(tenant, typeof envIds === 'string' ? [envIds] : (envIds ?? [])).map(({ email, envs }) => {
          const { subject, body } = theirs(envs);
          return { to: email, subject, body };
        })
      : [];
    // One activity for the administrators and the first system administrators; a tenant with very many of them gets
    // further ones, so that no payload nears its size limit (histories recorded before never had them).
    const first = personal.splice(0, PERSONAL_MAILS_PER_ACTIVITY);
    const tenants = theirs ? notificationRecipients(tenant) : notificationRecipients(tenant, envIds);
    await send(notification, alsoTo.length ? [...new Set([...tenants, ...alsoTo])].sort() : tenants, first);
    if (personal.length > 0 && patched(PERSONAL_MAIL_PATCH)) {
      while (personal.length > 0) await send(notification, [], personal.splice(0, PERSONAL_MAILS_PER_ACTIVITY));
    }
  }

  async function send(notification: Notification, recipients: string[], personal: Array<{ to: string; subject: string; body: string }>): Promise<void> {
    carried.notificationSeq += 1;
    const notificationId = `${tenantWorkflowId(tenant.tenant)}#${carried.notificationSeq}`;
    try {
      await notifyAdministrators.executeWithOptions({ summary: `R4 mail: ${notification.event}` }, [{
        notificationId,
        tenant: tenant.tenant,
        recipients,
        ...(personal.length > 0 ? { personal } : {}),
        ...notification,
        occurredAt: iso(Date.now()),
      }]);
    } catch (err) {
      log.error('A notification could not be recorded in the outbox; the operation it reports stands.', { notificationId, event: notification.event, error: String(err) });
    }
  }

  async function audit(action: string, actor: Actor | 'cmk', outcome: AuditEntry['outcome'], facts: AuditFacts & { code?: string; message?: string } = {}): Promise<void> {
    if (!patched(AUDIT_PATCH)) return;
    const entry: AuditEntry = {
      id: `${tenantWorkflowId(tenant.tenant)}/${uuid4()}`,
      at: iso(Date.now()),
      actor: actor === 'cmk' ? 'cmk' : describeActor(actor),
      action,
      outcome,
      tenant: tenant.tenant,
      region: facts.region ?? null,
      environment: facts.environment ?? null,
      code: facts.code ?? null,
      message: facts.message?.slice(0, 500) ?? null,
      thumbprints: facts.thumbprints ?? [],
      ...(facts.details ? { details: facts.details } : {}),
    };
    // Redacted here, where the record is made: a key name or address the trail cannot keep never jams it.
    await recordAudit([redactAuditEntry(entry)]);
  }

  // Refusals never reach a handler; the API service records those.
  function audited<R extends { actor: Actor }, T>(action: string | ((request: R) => string), facts: (request: R, result?: T) => AuditFacts, handler: (request: R) => Promise<T>) {
    return async (request: R): Promise<T> => {
      spend(request as { auth?: RequestAuth });
      followRegions(request as { policy?: Policy });
      const name = typeof action === 'string' ? action : action(request);
      let result: T;
      try {
        result = await handler(request);
      } catch (err) {
        const failure = refusalOf(err);
        await audit(name, request.actor, 'failed', { ...facts(request), code: failure?.type ?? 'INTERNAL', message: failure?.message ?? 'The operation failed.' });
        throw err;
      }
      await audit(name, request.actor, 'completed', facts(request, result));
      return result;
    };
  }

  function publishSearchAttributes(): void {
    const regions = Object.values(tenant.regions);
    const reprotections = Object.values(ctx.reprotections);
    upsertSearchAttributes([
      { key: SEARCH_ATTRIBUTES.tenant, value: tenant.tenant },
      { key: SEARCH_ATTRIBUTES.keyStates, value: regions.map((r) => `${r.region}:${activeKeyOf(r)?.state ?? 'none'}`) },
      { key: SEARCH_ATTRIBUTES.activeKeyThumbprints, value: regions.flatMap((r) => (r.activeThumbprint ? [r.activeThumbprint] : [])) },
      { key: SEARCH_ATTRIBUTES.environmentCount, value: tenant.environments.length },
      { key: SEARCH_ATTRIBUTES.lockedEnvironmentCount, value: tenant.environments.filter((e) => e.state === 'Locked').length },
      { key: SEARCH_ATTRIBUTES.reprotectionRemaining, value: sum(reprotections.map((p) => p.remaining)) },
      { key: SEARCH_ATTRIBUTES.reprotectionRefused, value: reprotections.flatMap((p) => p.refused.map((r) => r.env)).slice(0, 20) },
      ...(publishesDeadlines ? deadlineAttributes(tenant, carried.policy, Date.now()) : []),
    ]);
    setCurrentDetails(currentDetails());
  }

  /** Running operations and re-protections, then what the workflow waits for (markdown). Ids, counts and dates only. */
  function currentDetails(): string {
    const lines: string[] = [];
    for (const [region, operation] of Object.entries(tenant.operations)) {
      const progress = ctx.reprotections[region];
      if (progress && progress.finishedAt === null && ctx.reprotecting.has(region)) {
        lines.push(`re-protecting ${region}: ${progress.total - progress.remaining}/${progress.total}, ${progress.refused.length} refused (key "${progress.keyName}")`);
      } else lines.push(`running in ${region}: ${operation}`);
    }
    for (const env of tenant.environments) if (env.runningOperation) lines.push(`running on env ${env.id}: ${env.runningOperation}`);
    const locked = tenant.environments.filter((e) => e.state === 'Locked' && e.lock);
    const byDeadline = new Map<string, number>();
    for (const env of locked) byDeadline.set(day(env.lock!.deleteAt), (byDeadline.get(day(env.lock!.deleteAt)) ?? 0) + 1);
    for (const [date, count] of [...byDeadline].sort()) lines.push(`waiting: deletion of ${count} locked environment(s) on ${date} (R9)`);
    for (const region of Object.values(tenant.regions)) {
      if (region.rollbackUntil) lines.push(`waiting: rollback window of ${region.region} ends ${region.rollbackUntil} (R6)`);
    }
    if (lines.length === 0) lines.push(`idle: ${tenant.environments.filter((e) => e.state !== 'Deleted').length} environment(s), keys ${Object.values(tenant.regions).map((r) => `${r.region}:${activeKeyOf(r)?.state ?? 'none'}`).join(' ') || 'none'}`);
    return [`Tenant ${tenant.displayName} (${tenant.tenant})`, ...lines].join('\n\n');
  }

  return ctx;
}
