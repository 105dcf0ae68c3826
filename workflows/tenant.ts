/**
 * The tenant's entity workflow: the one source of truth for its administrators, environments and, per region, its
 * keys (R1). Every request is an update whose validator applies the rules before anything reaches history (R12, R5,
 * R11 …); handlers that touch the outside world run one at a time; durable timers end the rollback window (R6).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { AuditEntry } from '../audit/trail';
import { redactAuditEntry } from '../domain/audit-redaction';
import type { Activities } from '../activities';
import {
  ENVIRONMENT_OPERATION_STATES,
  queries,
  SEARCH_ATTRIBUTES,
  regionTaskQueue,
  tenantWorkflowId,
  updates,
  type CarriedTenantState,
  type AdminChangeRequest,
  type AdminChangeResult,
  type BackupRequest,
  type BackupResult,
  type EnvironmentCreateRequest,
  type EnvironmentOperationRequest,
  type KeyChangeResult,
  type PurgeRequest,
  type KeyChangeRequest,
  type LockRequest,
  type LockResult,
  type PurgeResult,
  type ReactivateRequest,
  type RollbackRequest,
  type RollbackResult,
  type TenantWorkflowInput,
  type UnlockRequest,
  type ForgedRequests,
} from './messages';
import { authOf, checkSignature, FORGED_REQUEST_MESSAGE, REQUEST_MAX_AGE_MS, TRUST_NOT_LOADED_MESSAGE, type RequestAuth, type RequestTrust } from '../domain/signed';
import {
  activeKeyOf,
  checkAdminChange,
  checkBackup,
  checkEnvironmentCreate,
  checkEnvironmentOperation,
  checkKeyChange,
  checkLock,
  checkPurge,
  checkReactivate,
  checkRollback,
  checkUnlock,
  deletionWarningTimes,
  describeActor,
  emptyRegion,
  lockAllowedAt,
  nextKeyChangeAllowedAt,
  normaliseEmail,
  notificationRecipients,
  usableKeyOf,
  DEFAULT_POLICY,
  type Actor,
  type BackgroundFailure,
  type EnvironmentOperation,
  type EnvironmentRecord,
  type Policy,
  type Refusal,
  type RegionKeys,
  type ReprotectionProgress,
  type TenantKey,
  type TenantSnapshot,
} from '../domain/rules';
import {
  adminChangedMail,
  backgroundFailureMail,
  deletionWarningMail,
  environmentOperationMail,
  environmentsDeletedMail,
  environmentUnlockedMail,
  keyChangedMail,
  keyReactivatedMail,
  keyRolledBackMail,
  tenantCreatedMail,
  tenantLockedMail,
  type Notification,
} from '../domain/notifications';
import { ERROR_CODES } from '../domain/codes';
import { packEnvironments, unpackEnvironments } from '../domain/carried';

const RETRY: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes: [...ERROR_CODES] };

/**
 * The activities that touch a region's vault and databases (R1), on the task queue given: the region's own when the
 * deployment routes by region (`Policy.regions`), else the workflow's. Proxies are plain objects, so making them
 * per call is deterministic.
 */
function regionActivities(taskQueue: string | undefined) {
  const on = taskQueue ? { taskQueue } : {};
  return {
    /** Vault and database calls: quick, retried with backoff on faults; refusals (our codes) are not retried. */
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '1 minute', retry: RETRY }), ['activateStagedKey', 'deleteTenantKey', 'provisionEnvironmentDatabase', 'revertToProviderKey', 'verifyLockPossession']),
    /**
     * Re-protection after a key change, a batch of environments per activity: re-wrapping one DEK takes
     * milliseconds, so one activity per environment would spend most of the time (and most of the history) on
     * orchestration. Each batch heartbeats its progress; a worker that dies is noticed within the heartbeat timeout
     * and the retry resumes from the last heartbeat. Faults are retried with backoff for as long as it takes.
     */
    reprotectEnvironments: proxyActivities<Activities>({ ...on, startToCloseTimeout: '10 minutes', heartbeatTimeout: '10 seconds', retry: RETRY }).reprotectEnvironments,
    /** The one-environment-per-activity re-protection of workflows started before batches (see `startReprotection`). */
    reprotectEnvironment: proxyActivities<Activities>({ ...on, startToCloseTimeout: '20 seconds', retry: RETRY }).reprotectEnvironment,
    // Re-encrypting every page of a database takes as long as the database is large: hours for a large one, so
    // longer than an attempt. Each poll of the scan heartbeats; a dead worker is noticed within the heartbeat timeout,
    // and a retry (also after 30 minutes) waits for the scan already running instead of starting another.
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', heartbeatTimeout: '1 minute', retry: RETRY }), ['applyTenantKey', 'rekeyEnvironmentDatabase']),
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', retry: RETRY }), ['withdrawTenantKeys', 'bringEnvironmentOnline', 'backupEnvironment', 'restoreEnvironment']),
    // A lock's and a deletion's work on many environments (offline marks, crypto-shredding), checkpointed by heartbeat.
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', heartbeatTimeout: '30 seconds', retry: RETRY }), ['takeEnvironmentsOffline', 'destroyEnvironments']),
  };
}

function pick<T extends object, K extends keyof T>(from: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, from[k]])) as Pick<T, K>;
}

/** Environments per re-protection activity, and batches running at once. */
const REPROTECT_BATCH_SIZE = 50;
const REPROTECT_PARALLEL_BATCHES = 2;

/** Environments re-protected at once after a key change, one per activity (workflows started before batches). */
const REPROTECT_CONCURRENCY = 8;

/** A refused R9 deletion is tried again this much later (and at every purge). */
const DELETION_RETRY_MS = 3_600_000;

/** What a refused activity said: its stable code and message (an ActivityFailure's cause), for the records and mail. */
function failureOf(err: unknown, at: string): BackgroundFailure {
  const failure = err instanceof ApplicationFailure ? err : err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
  return { at, code: failure?.type ?? 'INTERNAL', message: (failure?.message ?? String(err)).slice(0, 500) };
}

/** Mail: retried for as long as it takes; the outbox entry IDs make every retry harmless. */
const { notifyAdministrators } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

/** Audit records: handed to the trail's single writer; retried until they are (the record IDs make retries harmless). */
const { recordAudit } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** What an audit record says beyond who, what, when and the outcome. Never secrets: ids, thumbprints, counts. */
interface AuditFacts {
  region?: string | null;
  environment?: string | null;
  thumbprints?: string[];
  details?: Record<string, string | number | boolean | null>;
}

/** Workflows started before the audit trail existed replay without its activity calls. */
const AUDIT_PATCH = 'audit-trail';

/**
 * Runs started before the deadline search attributes neither publish them nor wake at the end of an embargo or a
 * key-change interval to unset them (both add commands).
 */
const DEADLINES_PATCH = 'deadline-search-attributes';

const day = (at: string | number): string => new Date(at).toISOString().slice(0, 10);
const latest = (values: Array<number | null>): number | null => values.reduce<number | null>((a, b) => (b === null ? a : a === null ? b : Math.max(a, b)), null);

/**
 * Runs started since signed requests read what they trust (keys, durations) from their worker first; older runs
 * replay without it, refuse every request until an update `refreshTrust` loads it, then check as new runs do
 * (docs/SECURITY.md).
 */
const SIGNED_REQUESTS_PATCH = 'signed-requests';

/** Locks accepted since then have their possession proof checked again by an activity; older histories replay without. */
const LOCK_POSSESSION_PATCH = 'lock-possession-recheck';

/** Local: the worker's own configuration, read once per run. */
const { requestTrust } = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });

const iso = (ms: number): string => new Date(ms).toISOString();
const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

function refuseIf(refusal: Refusal | null): void {
  if (refusal) throw ApplicationFailure.create({ type: refusal.code, message: refusal.message, nonRetryable: true });
}

export async function tenantWorkflow(input: TenantWorkflowInput): Promise<void> {
  const signsRequests = patched(SIGNED_REQUESTS_PATCH);
  // Decided once per run, at its start and before anything it awaits, so that every later use agrees on replay.
  // (Decided after the local activity below, a replaying worker met the marker before the call: nondeterminism.)
  const publishesDeadlines = patched(DEADLINES_PATCH);
  let trust: RequestTrust | null = signsRequests ? await requestTrust() : null;
  // A first run must have been started by the API service; a continued one was started by this workflow itself.
  if (trust && !workflowInfo().continuedFromExecutionRunId) {
    const why = checkSignature(trust.publicKeys, workflowInfo().workflowId, workflowInfo().workflowType, input, authOf(input), workflowInfo().startTime.getTime());
    if (why) {
      log.warn('Refused a tenant workflow start the cmk API service did not sign (Temporal frontend).', { reason: why });
      throw ApplicationFailure.create({ type: 'FORBIDDEN', message: `${FORGED_REQUEST_MESSAGE} No tenant was created: its start request ${why}.`, nonRetryable: true });
    }
  }
  const carried: CarriedTenantState = input.carried ?? {
    snapshot: {
      tenant: input.tenant,
      displayName: input.displayName,
      homeRegion: input.homeRegion,
      createdAt: iso(Date.now()),
      admins: input.admins,
      environments: [],
      regions: {},
      operations: {},
      reprotections: {},
    },
    notificationSeq: 0,
    policy: DEFAULT_POLICY,
  };
  if (carried.packedEnvironments) {
    carried.snapshot.environments = unpackEnvironments(carried.packedEnvironments);
    delete carried.packedEnvironments;
  }
  const tenant: TenantSnapshot = carried.snapshot;
  if (input.regions && !carried.regions) carried.regions = input.regions;
  /** Durations and regions are the worker's, whatever a request says (R14, §6). */
  function adoptTrust(loaded: RequestTrust): void {
    carried.policy = loaded.policy;
    if (loaded.policy.regions) carried.regions = [...loaded.policy.regions];
    else delete carried.regions;
  }
  if (trust) adoptTrust(trust);
  /** The durations a rule applies: the worker's own, or (runs from before signed requests) the request's. */
  const policyOf = (request: { policy: Policy }): Policy => trust?.policy ?? request.policy;
  /** Signatures of accepted requests still inside their window: a captured request does not work twice. */
  const spentSignatures: Record<string, string> = (carried.spentSignatures ??= {});
  const forged: ForgedRequests = { refused: 0, last: null };

  /**
   * Every validator's first check: the API service signed this request, for this workflow and message, recently, and
   * it was not accepted before. The refusal cannot reach history (a refused update leaves none), so it is logged
   * and counted for operators (query `forgedRequests`).
   */
  function refuseUnsigned(name: string, request: unknown): void {
    // A run from before signed requests cannot check anything yet: nothing passes until `refreshTrust` (retryable).
    if (!trust) return refuseIf({ code: 'OPERATION_IN_PROGRESS', message: TRUST_NOT_LOADED_MESSAGE });
    const auth = authOf(request);
    let why = checkSignature(trust.publicKeys, workflowInfo().workflowId, name, request, auth, Date.now());
    if (!why && spentSignatures[(auth as RequestAuth).signature]) why = 'it was already accepted once';
    if (!why) return;
    forged.refused += 1;
    forged.last = { at: iso(Date.now()), message: name, reason: why };
    log.warn('Refused a request the cmk API service did not sign (Temporal frontend).', { update: name, reason: why });
    refuseIf({ code: 'FORBIDDEN', message: FORGED_REQUEST_MESSAGE });
  }

  /** An accepted request's signature is spent; those past the window are forgotten (they are refused as too old). */
  function spend(request: { auth?: RequestAuth }): void {
    if (!trust || !request.auth) return;
    const now = Date.now();
    for (const [signature, signedAt] of Object.entries(spentSignatures)) if (Date.parse(signedAt) < now - 2 * REQUEST_MAX_AGE_MS) delete spentSignatures[signature];
    spentSignatures[request.auth.signature] = request.auth.signedAt;
  }
  /**
   * R1: a region's vault and database work runs on that region's task queue, served by workers configured with the
   * region's vault and servers — once the deployment names its regions (every request carries them in its policy).
   * Without, everything runs on the workflow's own queue, as before regions had queues.
   */
  const byQueue = new Map<string, ReturnType<typeof regionActivities>>();
  const anyRegion = regionActivities(undefined);
  function inRegion(region: string): ReturnType<typeof regionActivities> {
    if (!carried.regions) return anyRegion;
    const queue = regionTaskQueue(workflowInfo().taskQueue, region);
    let proxies = byQueue.get(queue);
    if (!proxies) byQueue.set(queue, (proxies = regionActivities(queue)));
    return proxies;
  }
  /** The deployment's regions as the latest request states them (a deployment may start routing by region later). */
  function followRegions(request: { policy?: Policy }): void {
    if (request.policy && !trust) {
      if (request.policy.regions) carried.regions = [...request.policy.regions];
      else delete carried.regions;
    }
  }
  const reprotections: Record<string, ReprotectionProgress> = (tenant.reprotections ??= {});
  /** Environments whose creation was accepted but is not finished: a second create answers ALREADY_EXISTS. */
  const provisioning = new Set<string>();
  let busy = false;
  /** Regions whose environments are being re-protected in the background after a key change. */
  const reprotecting = new Set<string>();
  /** Regions whose running re-protection a rollback has superseded: it stops after the batches in flight. */
  const superseded = new Set<string>();

  /** Handlers that await the outside world run one at a time, in the order they were accepted. */
  async function exclusively<T>(work: () => Promise<T>): Promise<T> {
    await condition(() => !busy);
    busy = true;
    try {
      return await work();
    } finally {
      busy = false;
    }
  }

  /**
   * R4: every global and service administrator, and the system administrators of the environments concerned. The
   * activity records each recipient's mail in the outbox and never throws for the provider (refused recipients and
   * outages are delivery states there); whatever still fails here is logged, never thrown: what the mail reports has
   * taken effect, and no outside fault may fail the tenant (DESIGN.md §6).
   */
  async function notify(notification: Notification, envIds?: string | string[]): Promise<void> {
    carried.notificationSeq += 1;
    const notificationId = `${tenantWorkflowId(tenant.tenant)}#${carried.notificationSeq}`;
    try {
      await notifyAdministrators.executeWithOptions({ summary: `R4 mail: ${notification.event}` }, [{
        notificationId,
        tenant: tenant.tenant,
        recipients: notificationRecipients(tenant, envIds),
        ...notification,
        occurredAt: iso(Date.now()),
      }]);
    } catch (err) {
      log.error('A notification could not be recorded in the outbox; the operation it reports stands.', { notificationId, event: notification.event, error: String(err) });
    }
  }

  /** One record in the audit trail (who, what, when, outcome, thumbprints). */
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

  /**
   * An accepted request's handler, audited: completed with its facts, or failed with the code it failed with.
   * Refusals never reach a handler; the API service records those.
   */
  function audited<R extends { actor: Actor }, T>(action: string | ((request: R) => string), facts: (request: R, result?: T) => AuditFacts, handler: (request: R) => Promise<T>) {
    return async (request: R): Promise<T> => {
      spend(request as { auth?: RequestAuth });
      followRegions(request as { policy?: Policy });
      const name = typeof action === 'string' ? action : action(request);
      let result: T;
      try {
        result = await handler(request);
      } catch (err) {
        const failure = err instanceof ApplicationFailure ? err : err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
        await audit(name, request.actor, 'failed', { ...facts(request), code: failure?.type ?? 'INTERNAL', message: failure?.message ?? 'The operation failed.' });
        throw err;
      }
      await audit(name, request.actor, 'completed', facts(request, result));
      return result;
    };
  }

  function publishSearchAttributes(): void {
    const regions = Object.values(tenant.regions);
    upsertSearchAttributes([
      { key: SEARCH_ATTRIBUTES.tenant, value: tenant.tenant },
      { key: SEARCH_ATTRIBUTES.keyStates, value: regions.map((r) => `${r.region}:${activeKeyOf(r)?.state ?? 'none'}`) },
      { key: SEARCH_ATTRIBUTES.activeKeyThumbprints, value: regions.flatMap((r) => (r.activeThumbprint ? [r.activeThumbprint] : [])) },
      { key: SEARCH_ATTRIBUTES.environmentCount, value: tenant.environments.length },
      { key: SEARCH_ATTRIBUTES.lockedEnvironmentCount, value: tenant.environments.filter((e) => e.state === 'Locked').length },
      { key: SEARCH_ATTRIBUTES.reprotectionRemaining, value: sum(Object.values(reprotections).map((p) => p.remaining)) },
      { key: SEARCH_ATTRIBUTES.reprotectionRefused, value: Object.values(reprotections).flatMap((p) => p.refused.map((r) => r.env)).slice(0, 20) },
      ...(publishesDeadlines ? deadlineAttributes() : []),
    ]);
    setCurrentDetails(currentDetails());
  }

  /** R5, R6, R9 deadlines as search attributes: set while they lie ahead (a deletion also once overdue), else unset. */
  function deadlineAttributes() {
    const now = Date.now();
    const regions = Object.values(tenant.regions);
    const ahead = (at: number | null) => (at !== null && at > now ? at : null);
    const deletions = tenant.environments.flatMap((e) => (e.state === 'Locked' && e.lock ? [Date.parse(e.lock.deleteAt)] : []));
    const nextDeletion = deletions.length ? Math.min(...deletions) : null;
    const embargo = latest(regions.map((r) => ahead(lockAllowedAt(r, carried.policy))));
    const keyChange = latest(regions.map((r) => ahead(nextKeyChangeAllowedAt(r, carried.policy))));
    const rollback = latest(regions.map((r) => ahead(r.rollbackUntil ? Date.parse(r.rollbackUntil) : null)));
    return [
      { key: SEARCH_ATTRIBUTES.nextDeletionAt, value: nextDeletion === null ? null : new Date(nextDeletion) },
      { key: SEARCH_ATTRIBUTES.lockEmbargoEndsAt, value: embargo === null ? null : new Date(embargo) },
      { key: SEARCH_ATTRIBUTES.keyChangeAllowedAt, value: keyChange === null ? null : new Date(keyChange) },
      { key: SEARCH_ATTRIBUTES.rollbackUntil, value: rollback === null ? null : iso(rollback) },
    ];
  }

  /**
   * What the workflow does now, for the operator's row in the Temporal UI (current details, markdown): running
   * operations and re-protections, then what it waits for. Ids, counts and dates only.
   */
  function currentDetails(): string {
    const lines: string[] = [];
    for (const [region, operation] of Object.entries(tenant.operations)) {
      const progress = reprotections[region];
      if (progress && progress.finishedAt === null && reprotecting.has(region)) {
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

  // ------------------------------------------------------------------------------------------ queries

  setHandler(queries.snapshot, () => tenant);
  setHandler(queries.compactSnapshot, () => {
    const { environments, ...rest } = tenant;
    return { ...rest, packedEnvironments: packEnvironments(environments) };
  });
  setHandler(queries.environmentSnapshot, ({ env, caller }) => {
    const { environments, ...rest } = tenant;
    return { ...rest, packedEnvironments: packEnvironments(environments.filter((e) => e.id === env || (caller !== null && e.systemAdmin === caller))) };
  });
  setHandler(queries.reprotection, () => reprotections);
  setHandler(queries.forgedRequests, () => forged);

  // ------------------------------------------------------------------------------------------ trust

  /**
   * Runs started before signed requests: the worker's trust, loaded as a new run loads it at its start, one handler
   * at a time with the others. No recorded history holds this update, so its local activity needs no patch.
   */
  setHandler(
    updates.refreshTrust,
    () =>
      exclusively(async () => {
        if (trust) return;
        const loaded = await requestTrust();
        adoptTrust(loaded);
        trust = loaded;
        log.info('Loaded the worker’s request-signing keys and durations into a run started before signed requests.');
      }),
    {
      // Nothing to do once loaded: refused, so that repeats leave no history.
      validator: () => {
        if (trust) throw ApplicationFailure.create({ type: 'ALREADY_EXISTS', message: 'This tenant’s workflow already checks signed requests.', nonRetryable: true });
      },
    },
  );

  // ------------------------------------------------------------------------------------------ administrators

  setHandler(
    updates.changeAdmin,
    audited<AdminChangeRequest, AdminChangeResult>('tenant.admin', (r) => ({ details: { change: r.change, email: normaliseEmail(r.email), role: r.role } }), (request) =>
      exclusively(async () => {
        const email = normaliseEmail(request.email);
        const at = iso(Date.now());
        const before = tenant.admins.find((a) => a.email === email);
        let role = request.role ?? before?.role ?? 'global';
        if (request.change === 'add') {
          tenant.admins = [...tenant.admins.filter((a) => a.email !== email), { email, role }];
        } else {
          role = before?.role ?? role;
          // The removed administrator is told too: they should know they lost access.
          await notify(adminChangedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, change: 'removed', email, role, by: describeActor(request.actor), at }));
          tenant.admins = tenant.admins.filter((a) => a.email !== email);
          return { admins: tenant.admins };
        }
        await notify(adminChangedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, change: 'added', email, role, by: describeActor(request.actor), at }));
        return { admins: tenant.admins };
      }),
    ),
    {
      validator: (request) => {
        refuseUnsigned(updates.changeAdmin.name, request);
        refuseIf(checkAdminChange(tenant, request, Date.now()));
      },
    },
  );

  // ------------------------------------------------------------------------------------------ environments

  setHandler(
    updates.createEnvironment,
    audited<EnvironmentCreateRequest, EnvironmentRecord>('env.create', (r, env) => ({ region: r.region, environment: r.env, ...(env ? { thumbprints: [env.keyThumbprint] } : {}) }), async (request) => {
      provisioning.add(request.env);
      try {
        return await exclusively(async () => {
          const created = await inRegion(request.region).provisionEnvironmentDatabase({ tenant: tenant.tenant, env: request.env, region: request.region });
          const record: EnvironmentRecord = {
            id: request.env,
            region: request.region,
            state: 'Online',
            protection: created.protection,
            keyThumbprint: created.keyThumbprint,
            systemAdmin: request.systemAdmin === null ? null : normaliseEmail(request.systemAdmin),
            createdAt: iso(Date.now()),
          };
          tenant.environments.push(record);
          publishSearchAttributes();
          return record;
        });
      } finally {
        provisioning.delete(request.env);
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.createEnvironment.name, request);
        const pending = [...provisioning].map((id) => ({ id }) as EnvironmentRecord);
        refuseIf(checkEnvironmentCreate({ ...tenant, environments: [...tenant.environments, ...pending] }, request));
      },
    },
  );

  async function environmentOperation(request: EnvironmentOperationRequest): Promise<EnvironmentRecord> {
    const env = tenant.environments.find((e) => e.id === request.env)!;
    const at = () => iso(Date.now());
    const done = await runOnEnvironment(env, request.operation);
    env.protection = done.protection;
    env.keyThumbprint = done.keyThumbprint;
    publishSearchAttributes();
    await notify(
      environmentOperationMail({ operation: request.operation, tenantName: tenant.displayName, env: env.id, thumbprint: env.keyThumbprint, by: describeActor(request.actor), at: at() }),
      env.id,
    );
    // Keys that no record depends on any more, and that no rollback may need, leave the vault.
    const region = tenant.regions[env.region];
    if (region) await retireUnused(region);
    return env;
  }

  function runOnEnvironment(env: EnvironmentRecord, operation: EnvironmentOperation) {
    const ids = { tenant: tenant.tenant, env: env.id };
    if (operation === 'revert') return inRegion(env.region).revertToProviderKey.executeWithOptions({ summary: `R7 revert of env ${env.id} to the provider key` }, [{ ...ids, region: env.region }]);
    if (operation === 'rekey') {
      // An environment a refused re-protection left on an older tenant key moves to the active one with its new DEK.
      const active = usableKeyOf(tenant.regions[env.region]);
      const behind = env.protection === 'tenant' && active && active.thumbprint !== env.keyThumbprint && active.state !== 'Locked';
      if (!behind || !patched('rekey-moves-left-behind')) return inRegion(env.region).rekeyEnvironmentDatabase.executeWithOptions({ summary: `rekey of env ${env.id}: new DEK` }, [ids]);
      return inRegion(env.region).applyTenantKey.executeWithOptions({ summary: `rekey of env ${env.id} onto the active key "${active.name}"` }, [{ ...ids, tenantKey: { ...active.vaultKey, thumbprint: active.thumbprint } }]);
    }
    const key = activeKeyOf(tenant.regions[env.region])!;
    return inRegion(env.region).applyTenantKey.executeWithOptions({ summary: `R7 apply of key "${key.name}" to env ${env.id}` }, [{ ...ids, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } }]);
  }

  setHandler(
    updates.environmentOperation,
    audited<EnvironmentOperationRequest, EnvironmentRecord>((r) => `env.${r.operation}`, (r, env) => ({ environment: r.env, ...(env ? { region: env.region, thumbprints: [env.keyThumbprint] } : {}) }), async (request) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      // Marked before the first await: a different request for this environment answers OPERATION_IN_PROGRESS,
      // the same one (same update ID, see environmentOperationUpdateId) attaches to this one.
      env.state = ENVIRONMENT_OPERATION_STATES[request.operation];
      env.operationSeq = (env.operationSeq ?? 0) + 1;
      env.runningOperation = request.operation;
      try {
        return await exclusively(() => environmentOperation(request));
      } finally {
        env.state = 'Online';
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.environmentOperation.name, request);
        refuseIf(checkEnvironmentOperation(tenant, request));
      },
    },
  );

  // ------------------------------------------------------------------------------------------ keys (R3, R5, R6)

  async function changeKey(request: KeyChangeRequest) {
    const region: RegionKeys = (tenant.regions[request.region] ??= emptyRegion(request.region));
    await inRegion(request.region).activateStagedKey.executeWithOptions({ summary: `R3 activate key "${request.name}" in ${request.region}` }, [{ vaultKey: request.staged.vaultKey, thumbprint: request.staged.thumbprint }]);

    const now = Date.now();
    const by = describeActor(request.actor);
    const replaced = activeKeyOf(region);
    // A key kept for an earlier change's rollback can no longer be rolled back to (rollback goes one step back).
    const olderRollback = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint && k !== replaced);
    if (olderRollback) await retire(region, olderRollback);
    if (replaced) {
      replaced.state = 'Retired';
      replaced.retiredAt = iso(now);
    }
    const key: TenantKey = {
      name: request.name,
      thumbprint: request.staged.thumbprint,
      vaultKey: request.staged.vaultKey,
      state: 'Installing',
      source: request.source,
      createdAt: iso(now),
      createdBy: by,
      activatedAt: iso(now),
      activatedBy: by,
      retiredAt: null,
      inVault: true,
    };
    region.keys.push(key);
    region.activeThumbprint = key.thumbprint;
    // R7: every environment on the tenant key moves to the new key, in the background; the key is Installing
    // until they all have, and Active at once when there are none.
    const targets = tenant.environments.filter((e) => e.region === region.region && e.protection === 'tenant' && e.state !== 'Locked' && e.state !== 'Deleted');
    if (targets.length === 0) key.state = 'Active';
    else startReprotection(region, key, targets);
    // A key a lock withdrew is gone from the vault: nothing to roll back to.
    const rollbackTo = replaced?.inVault ? replaced : null;
    region.rollbackThumbprint = rollbackTo?.thumbprint ?? null;
    region.rollbackUntil = rollbackTo ? iso(now + policyOf(request).lockEmbargoMs) : null;
    region.lastKeyChangeAt = iso(now);
    region.embargoStartedAt = iso(now);
    carried.policy = policyOf(request);
    publishSearchAttributes();

    await notify(
      keyChangedMail({
        tenantName: tenant.displayName,
        tenant: tenant.tenant,
        region: region.region,
        keyName: key.name,
        thumbprint: key.thumbprint,
        by,
        at: iso(now),
        lockAllowedAt: iso(lockAllowedAt(region, policyOf(request)) ?? now),
        nextChangeAllowedAt: iso(nextKeyChangeAllowedAt(region, policyOf(request)) ?? now),
      }),
    );
    return { region: region.region, key };
  }

  function startReprotection(region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
    reprotecting.add(region.region);
    tenant.operations[region.region] = `re-protecting ${targets.length} environment(s) with the key "${key.name}"`;
    targets.forEach((e) => (e.state = 'Reprotecting'));
    if (patched('reprotect-in-batches')) reprotectInBatches(region, key, targets);
    else reprotectOneByOne(region, key, targets);
  }

  /**
   * R7 after a key change: batches of environments, a few at a time, each batch one heartbeating activity. Every
   * batch's outcome lands in the environments' records and in the progress (query, `key show`, search attributes).
   */
  function reprotectInBatches(region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
    const progress: ReprotectionProgress = {
      region: region.region,
      keyName: key.name,
      keyThumbprint: key.thumbprint,
      startedAt: iso(Date.now()),
      finishedAt: null,
      total: targets.length,
      done: 0,
      refused: [],
      remaining: targets.length,
    };
    reprotections[region.region] = progress;
    publishSearchAttributes();
    const byId = new Map(targets.map((e) => [e.id, e]));
    const batches: string[][] = [];
    for (let i = 0; i < targets.length; i += REPROTECT_BATCH_SIZE) batches.push(targets.slice(i, i + REPROTECT_BATCH_SIZE).map((e) => e.id));
    const lane = async (): Promise<void> => {
      for (let batch = batches.shift(); batch; batch = batches.shift()) {
        if (superseded.has(region.region)) {
          // A rollback replaces this re-protection: what it has not started stays as it is, for the rollback to move.
          for (const env of batch) {
            const record = byId.get(env);
            if (record?.state === 'Reprotecting') record.state = 'Online';
          }
          progress.remaining -= batch.length;
          continue;
        }
        let outcome: { reprotected: Array<{ env: string; keyThumbprint: string }>; refused: ReprotectionProgress['refused'] };
        try {
          outcome = await inRegion(region.region).reprotectEnvironments.executeWithOptions({ summary: `R7 re-protect ${batch.length} environment(s) of ${region.region} with key "${key.name}"` }, [
            { tenant: tenant.tenant, envs: batch, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } },
          ]);
        } catch (err) {
          // Only a refusal of the whole batch ends here (faults are retried): its environments keep their old key.
          // An activity's refusal arrives as an ActivityFailure whose cause carries the stable code.
          const refusal = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
          const code = refusal?.type ?? 'INTERNAL';
          const message = refusal?.message ?? String(err);
          outcome = { reprotected: [], refused: batch.map((env) => ({ env, code, message })) };
        }
        for (const { env, keyThumbprint } of outcome.reprotected) {
          const record = byId.get(env);
          if (record) record.keyThumbprint = keyThumbprint;
        }
        for (const refusal of outcome.refused) {
          log.warn('An environment could not be re-protected with the new key; it stays on its previous key.', { ...refusal });
        }
        for (const env of batch) {
          const record = byId.get(env);
          if (record?.state === 'Reprotecting') record.state = 'Online';
        }
        progress.done += outcome.reprotected.length;
        progress.refused.push(...outcome.refused);
        progress.remaining -= batch.length;
        publishSearchAttributes();
      }
    };
    const lanes = Array.from({ length: Math.min(REPROTECT_PARALLEL_BATCHES, batches.length) }, lane);
    void Promise.all(lanes)
      .then(async () => {
        progress.finishedAt = iso(Date.now());
        await finishReprotection(region, key);
        if (progress.refused.length > 0) await reportLeftBehind(region, key, progress);
      })
      // Nothing here may fail the tenant (DESIGN.md §6); what was refused is in the progress, the records and the mail.
      .catch((err) => log.error('The end of a re-protection failed; the tenant workflow goes on.', { region: region.region, error: String(err) }));
  }

  /** Environments a re-protection could not move: the administrators learn which, why, and how to move them. */
  async function reportLeftBehind(region: RegionKeys, key: TenantKey, progress: ReprotectionProgress): Promise<void> {
    const first = progress.refused[0]!;
    const ids = progress.refused.map((r) => r.env);
    await notify(
      backgroundFailureMail({
        tenantName: tenant.displayName,
        tenant: tenant.tenant,
        what: `${ids.length} environment(s) in region ${region.region} could not be re-protected with the key "${key.name}": ${ids.slice(0, 20).join(', ')}`,
        reason: `${first.code}: ${first.message}`,
        repair:
          'They stay on their previous key, which stays in the vault while they depend on it (`cmk key show` lists them). ' +
          'Once the cause is repaired, an administrator moves each to the active key with `cmk env rekey`.',
        at: progress.finishedAt ?? iso(Date.now()),
      }),
      ids,
    );
  }

  /** Every environment has been dealt with: the key is Active, and keys nothing depends on leave the vault. */
  async function finishReprotection(region: RegionKeys, key: TenantKey): Promise<void> {
    if (region.activeThumbprint === key.thumbprint) key.state = 'Active';
    reprotecting.delete(region.region);
    delete tenant.operations[region.region];
    publishSearchAttributes();
    await exclusively(() => retireUnused(region));
  }

  /** Re-protection as workflows started before batches did it; kept so that their histories replay. */
  function reprotectOneByOne(region: RegionKeys, key: TenantKey, targets: EnvironmentRecord[]): void {
    publishSearchAttributes();
    const queue = [...targets];
    const lane = async (): Promise<void> => {
      for (let env = queue.shift(); env; env = queue.shift()) {
        // Faults are retried with backoff; only a refusal (e.g. its key record is gone) ends here, and then the
        // environment stays on its old key, which stays in the vault because a record still depends on it.
        try {
          const done = await inRegion(region.region).reprotectEnvironment({ tenant: tenant.tenant, env: env.id, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } });
          env.keyThumbprint = done.keyThumbprint;
        } catch (err) {
          log.warn('An environment could not be re-protected with the new key; it stays on its previous key.', { env: env.id, error: String(err) });
        } finally {
          env.state = 'Online';
        }
      }
    };
    void Promise.all(Array.from({ length: Math.min(REPROTECT_CONCURRENCY, targets.length) }, lane))
      .then(() => finishReprotection(region, key))
      .catch((err) => log.error('The end of a re-protection failed; the tenant workflow goes on.', { region: region.region, error: String(err) }));
  }

  /** Replaced keys that no environment depends on and that are outside the rollback window leave the vault. */
  async function retireUnused(region: RegionKeys): Promise<void> {
    for (const key of region.keys) {
      if (key.thumbprint !== region.activeThumbprint && key.thumbprint !== region.rollbackThumbprint) await retire(region, key);
    }
  }

  /** Takes a replaced key out of the vault once nothing depends on it (its rollback window is over). */
  async function retire(region: RegionKeys, key: TenantKey): Promise<void> {
    const inUse = tenant.environments.some((e) => e.region === region.region && e.protection === 'tenant' && e.keyThumbprint === key.thumbprint);
    if (inUse || !key.inVault) return;
    try {
      await inRegion(region.region).deleteTenantKey.executeWithOptions({ summary: `retire replaced key "${key.name}" of ${region.region} from the vault` }, [{ vaultKey: key.vaultKey }]);
    } catch (err) {
      // The vault refused (its faults are retried by the activity's policy): the key stays there, unused and marked,
      // and the next retirement of unused keys (after any environment operation, e.g. `env rekey`) tries again.
      const first = !key.retireFailure;
      key.retireFailure = failureOf(err, iso(Date.now()));
      log.warn('A replaced key could not be removed from the vault; it is tried again later.', { region: region.region, thumbprint: key.thumbprint, ...key.retireFailure });
      if (first) {
        await notify(
          backgroundFailureMail({
            tenantName: tenant.displayName,
            tenant: tenant.tenant,
            what: `the replaced key "${key.name}" (thumbprint ${key.thumbprint}) could not be removed from the vault of region ${region.region}`,
            reason: `${key.retireFailure.code}: ${key.retireFailure.message}`,
            repair: 'It stays in the vault, protecting nothing. cmk removes it at the next operation on an environment of this region (for example `cmk env rekey`); the provider operator can check the vault.',
            at: key.retireFailure.at,
          }),
        );
      }
      return;
    }
    key.inVault = false;
    delete key.retireFailure;
  }

  setHandler(
    updates.changeKey,
    audited<KeyChangeRequest, KeyChangeResult>(
      (r) => (r.source === 'generated' ? 'key.generate' : 'key.upload'),
      (r) => ({ region: r.region, thumbprints: [r.staged.thumbprint], details: { name: r.name, source: r.source } }),
      async (request) => {
        // Marked before the first await, so that a second change validated meanwhile answers OPERATION_IN_PROGRESS.
        tenant.operations[request.region] = `a key change to "${request.name}"`;
        try {
          return await exclusively(() => changeKey(request));
        } finally {
          if (!reprotecting.has(request.region)) delete tenant.operations[request.region];
        }
      },
    ),
    {
      validator: (request) => {
        refuseUnsigned(updates.changeKey.name, request);
        refuseIf(checkKeyChange(tenant, { actor: request.actor, region: request.region, thumbprint: request.staged.thumbprint }, Date.now(), policyOf(request)));
      },
    },
  );

  setHandler(
    updates.rollbackKey,
    audited<RollbackRequest, RollbackResult>(
      'key.rollback',
      (r, res) => ({ region: r.region, thumbprints: res ? [res.key.thumbprint, res.rolledBack.thumbprint] : [] }),
      async (request) => {
        // The change's re-protection, if it still runs, stops after its batches in flight; then the rollback runs.
        superseded.add(request.region);
        try {
          await condition(() => !reprotecting.has(request.region));
        } finally {
          superseded.delete(request.region);
        }
        tenant.operations[request.region] = 'a rollback';
        try {
          return await exclusively(() => rollback(request));
        } finally {
          if (!reprotecting.has(request.region)) delete tenant.operations[request.region];
        }
      },
    ),
    {
      validator: (request) => {
        refuseUnsigned(updates.rollbackKey.name, request);
        if (superseded.has(request.region)) refuseIf({ code: 'OPERATION_IN_PROGRESS', message: `A rollback is already in progress in region ${request.region}.` });
        refuseIf(checkRollback(tenant, request, Date.now()));
      },
    },
  );

  /** R6's purpose: the key the last change replaced is active again; R6 restarts, R5 does not (DESIGN.md §3). */
  async function rollback(request: RollbackRequest): Promise<RollbackResult> {
    const region = tenant.regions[request.region]!;
    const now = Date.now();
    const at = iso(now);
    const by = describeActor(request.actor);
    const current = activeKeyOf(region)!;
    const previous = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint)!;
    current.state = 'Retired';
    current.retiredAt = at;
    previous.state = 'Installing';
    previous.retiredAt = null;
    previous.activatedAt = at;
    previous.activatedBy = by;
    region.activeThumbprint = previous.thumbprint;
    // One step back only: nothing to roll back to from here.
    region.rollbackThumbprint = null;
    region.rollbackUntil = null;
    region.embargoStartedAt = at;
    carried.policy = policyOf(request);
    const targets = tenant.environments.filter((e) => e.region === region.region && e.protection === 'tenant' && e.state !== 'Locked' && e.state !== 'Deleted');
    if (targets.length === 0) previous.state = 'Active';
    else startReprotection(region, previous, targets);
    publishSearchAttributes();
    await notify(
      keyRolledBackMail({
        tenantName: tenant.displayName,
        tenant: tenant.tenant,
        region: region.region,
        keyName: previous.name,
        thumbprint: previous.thumbprint,
        rolledBackName: current.name,
        rolledBackThumbprint: current.thumbprint,
        by,
        at,
        lockAllowedAt: iso(lockAllowedAt(region, policyOf(request)) ?? now),
      }),
      targets.map((e) => e.id),
    );
    // With nothing to re-protect, the rolled-back key leaves the vault now; otherwise when the re-protection ends.
    if (targets.length === 0) await retireUnused(region);
    return { region: region.region, key: previous, rolledBack: { name: current.name, thumbprint: current.thumbprint } };
  }

  // ------------------------------------------------------------------------------------------ lock (R8–R11, R15)

  const usedChallenges: Record<string, string> = (carried.usedChallenges ??= {});

  setHandler(
    updates.lockTenant,
    audited<LockRequest, LockResult>('tenant.lock', (r, res) => ({ region: r.region, thumbprints: res?.withdrawnKeys ?? [], details: res ? { sealed: res.sealed.length, lockedByDecisionOnly: res.lockedByDecisionOnly.length } : undefined }), async (request) => {
      // Spent and marked before the first await: the same challenge cannot lock twice, nor another change slip in.
      usedChallenges[request.proof.challengeId] = request.proof.expiresAt;
      tenant.operations[request.region] = 'a lock';
      try {
        return await exclusively(() => lock(request));
      } finally {
        delete tenant.operations[request.region];
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.lockTenant.name, request);
        refuseIf(checkLock(tenant, request, Date.now(), policyOf(request), new Set(Object.keys(usedChallenges))));
      },
    },
  );

  async function lock(request: LockRequest): Promise<LockResult> {
    if (patched(LOCK_POSSESSION_PATCH)) {
      // The proof once more, against the vault, before anything is locked: a request's word is not enough (§6).
      const key = usableKeyOf(tenant.regions[request.region])!;
      await inRegion(request.region).verifyLockPossession({
        tenant: tenant.tenant,
        region: request.region,
        user: request.actor.kind === 'user' ? normaliseEmail(request.actor.email) : '',
        challengeId: request.proof.challengeId,
        expiresAt: request.proof.expiresAt,
        acceptedAt: iso(Date.now()),
        possession: request.possession ?? null,
        vaultKey: key.vaultKey,
      });
    }
    const now = Date.now();
    const at = iso(now);
    const by = describeActor(request.actor);
    const region = tenant.regions[request.region]!;
    for (const [id, expiresAt] of Object.entries(usedChallenges)) if (Date.parse(expiresAt) < now) delete usedChallenges[id];

    const envs = tenant.environments.filter((e) => e.region === region.region && e.state !== 'Deleted');
    const deleteAt = iso(now + policyOf(request).lockedRetentionMs);
    const warnAt = deletionWarningTimes(now, policyOf(request).lockedRetentionMs).map(iso);
    // Locked from here: every request for them answers ENVIRONMENT_LOCKED (the data path reads this state too).
    for (const env of envs) {
      env.state = 'Locked';
      env.lock = { lockedAt: at, lockedBy: by, sealed: env.protection === 'tenant', deleteAt, warnAt, warningsSent: 0 };
    }
    publishSearchAttributes();
    // Offline first (SQL Server keeps a DEK in memory while a database is online), then the keys leave the vault.
    await inRegion(request.region).takeEnvironmentsOffline.executeWithOptions({ summary: `R8 lock of ${region.region}: ${envs.length} environment(s) offline` }, [
      { tenant: tenant.tenant, envs: envs.map((e) => e.id), mark: { lockedAt: at, deleteAt } },
    ]);
    const withdrawn = region.keys.filter((k) => k.inVault);
    await inRegion(request.region).withdrawTenantKeys.executeWithOptions({ summary: `R8 lock of ${region.region}: withdraw ${withdrawn.length} key version(s)` }, [{ vaultKeys: withdrawn.map((k) => k.vaultKey) }]);
    for (const key of withdrawn) key.inVault = false;
    const active = activeKeyOf(region)!;
    active.state = 'Locked';
    active.lockedAt = at;
    // Nothing is left to roll back to: the previous key left the vault with the active one.
    region.rollbackThumbprint = null;
    region.rollbackUntil = null;
    publishSearchAttributes();

    const result: LockResult = {
      tenant: tenant.tenant,
      region: region.region,
      lockedAt: at,
      unlockAllowedAt: iso(now + policyOf(request).unlockDelayMs),
      deleteAt,
      sealed: envs.filter((e) => e.lock?.sealed).map((e) => e.id),
      lockedByDecisionOnly: envs.filter((e) => !e.lock?.sealed).map((e) => e.id),
      withdrawnKeys: withdrawn.map((k) => k.thumbprint),
    };
    await notify(tenantLockedMail({ tenantName: tenant.displayName, ...result, by, at }), envs.map((e) => e.id));
    return result;
  }

  setHandler(
    updates.reactivateKey,
    audited<ReactivateRequest, KeyChangeResult>('key.reactivate', (r: ReactivateRequest) => ({ region: r.region, thumbprints: [r.staged.thumbprint] }), async (request: ReactivateRequest) => {
      tenant.operations[request.region] = 'a key re-activation';
      try {
        return await exclusively(async () => {
          const region = tenant.regions[request.region]!;
          const key = activeKeyOf(region)!;
          await inRegion(request.region).activateStagedKey({ vaultKey: request.staged.vaultKey, thumbprint: request.staged.thumbprint });
          // The same key under a new vault version: R5 and R6 do not restart (DESIGN.md §3).
          key.vaultKey = request.staged.vaultKey;
          key.inVault = true;
          key.state = 'Active';
          key.reactivatedAt = iso(Date.now());
          publishSearchAttributes();
          const by = describeActor(request.actor);
          await notify(keyReactivatedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, region: region.region, keyName: key.name, thumbprint: key.thumbprint, by, at: key.reactivatedAt }));
          return { region: region.region, key };
        });
      } finally {
        delete tenant.operations[request.region];
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.reactivateKey.name, request);
        refuseIf(checkReactivate(tenant, { actor: request.actor, region: request.region, thumbprint: request.staged.thumbprint }));
      },
    },
  );

  setHandler(
    updates.unlockEnvironment,
    audited<UnlockRequest, EnvironmentRecord>('env.unlock', (r: UnlockRequest, env?: EnvironmentRecord) => ({ environment: r.env, ...(env ? { region: env.region, thumbprints: [env.keyThumbprint] } : {}) }), async (request: UnlockRequest) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      env.runningOperation = 'unlock';
      try {
        return await exclusively(async () => {
          const key = usableKeyOf(tenant.regions[env.region]);
          const tenantKey = env.protection === 'tenant' && key ? { ...key.vaultKey, thumbprint: key.thumbprint } : null;
          const done = await inRegion(env.region).bringEnvironmentOnline.executeWithOptions({ summary: `R10 unlock of env ${env.id}` }, [{ tenant: tenant.tenant, env: env.id, tenantKey }]);
          // It keeps the protection it had (DESIGN.md §3).
          env.protection = done.protection;
          env.keyThumbprint = done.keyThumbprint;
          env.state = 'Online';
          delete env.lock;
          publishSearchAttributes();
          await notify(environmentUnlockedMail({ tenantName: tenant.displayName, env: env.id, by: describeActor(request.actor), at: iso(Date.now()) }), env.id);
          return env;
        });
      } finally {
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.unlockEnvironment.name, request);
        refuseIf(checkUnlock(tenant, request, Date.now(), policyOf(request)));
      },
    },
  );

  setHandler(
    updates.environmentBackup,
    audited<BackupRequest, BackupResult>((r: BackupRequest) => `env.${r.operation}`, (r: BackupRequest) => ({ environment: r.env, details: { backupId: r.backupId } }), async (request: BackupRequest) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      env.runningOperation = request.operation;
      try {
        return await exclusively(async () => {
          const ids = { tenant: tenant.tenant, env: env.id };
          if (request.operation === 'backup') return { environment: env, backup: await inRegion(env.region).backupEnvironment(ids) };
          const backup = await inRegion(env.region).restoreEnvironment({ ...ids, backupId: request.backupId });
          if (env.protection === 'tenant') {
            // The restored DEK may be one the provider once held (a backup from before the apply): a new DEK, every
            // page re-encrypted, so that nothing the provider held opens what is written from now on (R7, §6).
            const done = await inRegion(env.region).rekeyEnvironmentDatabase(ids);
            env.keyThumbprint = done.keyThumbprint;
          }
          return { environment: env, backup };
        });
      } finally {
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        refuseUnsigned(updates.environmentBackup.name, request);
        refuseIf(checkBackup(tenant, request));
      },
    },
  );

  setHandler(
    updates.purgeOverdue,
    audited<PurgeRequest, PurgeResult>('env.purge', (_r, res?: PurgeResult) => ({ details: res ? { deleted: res.deleted.join(',').slice(0, 900) } : undefined }), (): Promise<PurgeResult> =>
      exclusively(async () => {
        const deleted = await deleteOverdue();
        const stillLocked = tenant.environments.flatMap((e) => (e.state === 'Locked' && e.lock ? [{ env: e.id, deleteAt: e.lock.deleteAt }] : []));
        return { tenant: tenant.tenant, deleted, stillLocked };
      }),
    ),
    {
      validator: (request) => {
        refuseUnsigned(updates.purgeOverdue.name, request);
        refuseIf(checkPurge(request.actor));
      },
    },
  );

  /** R9: one mail per deadline for every warning now due (7 days and 1 day before, scaled). */
  async function sendDueDeletionWarnings(): Promise<void> {
    const now = Date.now();
    const due = new Map<string, EnvironmentRecord[]>();
    for (const env of tenant.environments) {
      const lock = env.state === 'Locked' ? env.lock : undefined;
      if (!lock || lock.warningsSent >= lock.warnAt.length || Date.parse(lock.warnAt[lock.warningsSent]!) > now) continue;
      // Past the deadline itself, the deletion mail says it all.
      if (Date.parse(lock.deleteAt) <= now) {
        lock.warningsSent = lock.warnAt.length;
        continue;
      }
      // Warnings that all fell due at once (e.g. after an outage) make one mail, not several.
      while (lock.warningsSent < lock.warnAt.length && Date.parse(lock.warnAt[lock.warningsSent]!) <= now) lock.warningsSent += 1;
      due.set(lock.deleteAt, [...(due.get(lock.deleteAt) ?? []), env]);
    }
    for (const [deleteAt, envs] of due) {
      const ids = envs.map((e) => e.id);
      await notify(deletionWarningMail({ tenantName: tenant.displayName, tenant: tenant.tenant, envs: ids, deleteAt }), ids);
    }
  }

  /** R9: locked environments past their deadline are destroyed with their backups, shown as Deleted, and mailed. */
  async function deleteOverdue(): Promise<string[]> {
    const now = Date.now();
    const overdue = tenant.environments.filter((e) => e.state === 'Locked' && e.lock && Date.parse(e.lock.deleteAt) <= now);
    if (overdue.length === 0) return [];
    // Routed by region: each region's databases are destroyed by that region's workers.
    const groups: Array<[string | null, EnvironmentRecord[]]> = carried.regions
      ? [...new Set(overdue.map((e) => e.region))].map((region) => [region, overdue.filter((e) => e.region === region)])
      : [[null, overdue]];
    const destroyed: EnvironmentRecord[] = [];
    for (const [region, envs] of groups) {
      try {
        await (region === null ? anyRegion : inRegion(region)).destroyEnvironments.executeWithOptions({ summary: `R9 deletion of env ${envs.map((e) => e.id).slice(0, 5).join(', ')}${envs.length > 5 ? ` and ${envs.length - 5} more` : ''}` }, [
          { tenant: tenant.tenant, envs: envs.map((e) => e.id) },
        ]);
        destroyed.push(...envs);
      } catch (err) {
        // Refused (faults are retried by the activity's policy): they stay Locked and offline, marked, and are tried
        // again in an hour and at every purge; the administrators learn it once.
        await deletionRefused(envs, failureOf(err, iso(Date.now())));
      }
    }
    if (destroyed.length === 0) return [];
    const ids = destroyed.map((e) => e.id);
    const at = iso(Date.now());
    for (const env of destroyed) {
      env.state = 'Deleted';
      env.deletedAt = at;
      delete env.lock;
    }
    publishSearchAttributes();
    await notify(environmentsDeletedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, envs: ids, at }), ids);
    // R9 acts on its own: the deletion is the control plane's, recorded once per environment.
    for (const env of destroyed) await audit('env.delete', 'cmk', 'completed', { region: env.region, environment: env.id });
    return ids;
  }

  async function deletionRefused(envs: EnvironmentRecord[], failure: BackgroundFailure): Promise<void> {
    const ids = envs.map((e) => e.id);
    const first = envs.filter((e) => !e.lock?.deletionFailure).map((e) => e.id);
    for (const env of envs) if (env.lock) env.lock.deletionFailure = { ...failure, retryAt: iso(Date.parse(failure.at) + DELETION_RETRY_MS) };
    log.warn('Locked environments past their deadline could not be deleted; tried again later.', { envs: ids, ...failure });
    if (first.length === 0) return;
    await notify(
      backgroundFailureMail({
        tenantName: tenant.displayName,
        tenant: tenant.tenant,
        what: `the locked environments past their deletion deadline could not be deleted: ${first.join(', ')}`,
        reason: `${failure.code}: ${failure.message}`,
        repair: 'They stay locked and offline. cmk tries again every hour; the provider operator can run the purge once the cause is repaired.',
        at: failure.at,
      }),
      first,
    );
  }

  // ------------------------------------------------------------------------------------------ life

  if (!input.carried) {
    publishSearchAttributes();
    await notify(
      tenantCreatedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, admins: tenant.admins, by: describeActor(input.createdBy), at: tenant.createdAt }),
    );
    await audit('tenant.create', input.createdBy, 'completed', { region: tenant.homeRegion, details: { administrators: tenant.admins.length } });
  }

  for (;;) {
    const due = nextDeadline();
    // Also for a run continued as new, which starts without a static summary of its own (SDK 1.24 carries none).
    setCurrentDetails(currentDetails());
    const wake = () => workflowInfo().continueAsNewSuggested || nextDeadline() !== due;
    if (due === null) await condition(wake);
    else await condition(wake, Math.max(1, due - Date.now()), { summary: deadlineSummary(due) });
    await exclusively(async () => {
      for (const region of Object.values(tenant.regions)) {
        if (!region.rollbackUntil || Date.parse(region.rollbackUntil) > Date.now()) continue;
        // R6's rollback window is over: the replaced key goes, unless a key record still depends on it.
        const key = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint);
        region.rollbackThumbprint = null;
        region.rollbackUntil = null;
        if (key) await retire(region, key);
      }
      await sendDueDeletionWarnings();
      await deleteOverdue();
      // An embargo or a key-change interval that ended leaves its search attribute; the row says so too.
      if (publishesDeadlines) publishSearchAttributes();
    });
    if (workflowInfo().continueAsNewSuggested) {
      await condition(() => allHandlersFinished() && !busy && reprotecting.size === 0);
      // Packed, so that 10,000 environments stay well under the payload size limit.
      const { environments, ...rest } = tenant;
      await continueAsNew<typeof tenantWorkflow>({ ...input, carried: { ...carried, snapshot: { ...rest, environments: [] }, packedEnvironments: packEnvironments(environments) } });
    }
  }

  /**
   * The next durable timer: the end of a rollback window (R6), a deletion warning or a deletion (R9). An unlock
   * removes its environment's deadlines, which cancels the timer (the condition wakes and waits for the next one).
   */
  function nextDeadline(): number | null {
    const deadlines = labelledDeadlines().map((d) => d.at);
    return deadlines.length ? Math.min(...deadlines) : null;
  }

  /** Every deadline the workflow waits for, named by its rule (the timer's summary in the Temporal UI). */
  function labelledDeadlines(): Array<{ at: number; what: string }> {
    const deadlines = Object.values(tenant.regions).flatMap((r) => (r.rollbackUntil ? [{ at: Date.parse(r.rollbackUntil), what: `R6 rollback window ends (${r.region})` }] : []));
    for (const env of tenant.environments) {
      const lock = env.state === 'Locked' ? env.lock : undefined;
      if (!lock) continue;
      const warning = lock.warnAt[lock.warningsSent];
      const what = warning ? `R9 deletion warning for env ${env.id}` : lock.deletionFailure ? `R9 deletion of env ${env.id} (retry)` : `R9 deletion of env ${env.id}`;
      deadlines.push({ at: Date.parse(warning ?? lock.deletionFailure?.retryAt ?? lock.deleteAt), what });
    }
    if (publishesDeadlines) {
      // Only to unset their search attributes: nothing else happens when an embargo or an interval ends.
      const now = Date.now();
      for (const r of Object.values(tenant.regions)) {
        const embargo = lockAllowedAt(r, carried.policy);
        if (embargo !== null && embargo > now) deadlines.push({ at: embargo, what: `R6 lock embargo ends (${r.region})` });
        const change = nextKeyChangeAllowedAt(r, carried.policy);
        if (change !== null && change > now) deadlines.push({ at: change, what: `R5 key change allowed again (${r.region})` });
      }
    }
    return deadlines;
  }

  function deadlineSummary(at: number): string {
    const what = [...new Set(labelledDeadlines().filter((d) => d.at === at).map((d) => d.what))];
    return (what.length > 3 ? [...what.slice(0, 3), `and ${what.length - 3} more`] : what).join('; ');
  }
}
