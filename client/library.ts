/**
 * The typed client library: how an API layer starts, updates and queries the control plane's workflows. The API
 * service (api/) is built on it; other API layers may use it directly. It speaks Temporal; it never sees key
 * material — callers stage keys in the vault and pass references.
 */
import {
  QueryNotRegisteredError,
  WorkflowFailedError,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, type UpdateDefinition } from '@temporalio/common';
import type { RequestSigner } from '../common/request-signing';
import { FORGED_REQUEST_MESSAGE, TRUST_NOT_LOADED_MESSAGE, type RequestAuth } from '../domain/signed';
import { CmkError } from '../common/errors';
import { isErrorCode } from '../domain/codes';
import {
  environmentOperationUpdateId,
  queries,
  tenantWorkflowId,
  updates,
  type AdminChangeRequest,
  type AdminChangeResult,
  type BackupRequest,
  type BackupResult,
  type LockRequest,
  type LockAllRegionsRequest,
  type LockApprovalChangeRequest,
  type LockApprovalState,
  type LockApprovedResult,
  type LockAskRequest,
  type LockDecisionRequest,
  type LockAllRegionsResult,
  type LockResult,
  type PurgeRequest,
  type PurgeResult,
  type ReactivateRequest,
  type UnlockRequest,
  type EnvironmentDeleteRequest,
  type EnvironmentCreateRequest,
  type EnvironmentOperationRequest,
  type KeyChangeRequest,
  type KeyActivateRequest,
  type KeyChangeResult,
  type RollbackRequest,
  type RollbackResult,
  AUDIT_WORKFLOW_ID,
  auditMessages,
  MAIL_RETRY_WORKFLOW_TYPE,
  mailRetryWorkflowId,
  type EnvironmentScope,
  type EnvironmentCreationProgress,
  type EnvironmentsCreateRequest,
  type EnvironmentsCreateResult,
  environmentsCreateUpdateId,
  DRIFT_WORKFLOW_TYPE,
  driftCheckWorkflowId,
  type DriftCheckReport,
  type DriftRecordRequest,
  type DriftRecordResult,
} from '../workflows/messages';
import type { AuditEntry } from '../audit/trail';
import type { AuditReadRequest, AuditReadResult } from '../activities/audit';
import type { auditTrailWorkflow, driftCheckWorkflow, mailRetryWorkflow } from '../workflows';
import type { MailRetryReport } from '../mail/types';
import { normaliseEmail } from '../domain/ids';
import type { EnvironmentRecord, PendingLock, TenantSnapshot } from '../domain/model';
import { checkTenantCreate, type TenantCreateCheck } from '../domain/rules';
import type { tenantWorkflow } from '../workflows';
import { unpackEnvironments } from '../domain/carried';

export interface ControlPlaneOptions {
  /**
   * How long an update is sent again while the tenant's workflow tasks are failing (Temporal refuses updates then):
   * a worker restarting or overloaded completes a task within this, a broken one does not. Default 30 s.
   */
  failingTaskRetryMs?: number;
}

/**
 * Every start, update and signal is signed with the request-signing key (domain/signed.ts): the workflows accept
 * nothing else, so the Temporal frontend is no way around the API service's checks (DESIGN.md §6).
 */
export class ControlPlane {
  constructor(
    private readonly temporal: Client,
    private readonly taskQueue: string,
    private readonly signer: RequestSigner,
    private readonly options: ControlPlaneOptions = {},
  ) {}

  /**
   * A signed update of the tenant's workflow. A run started before signed requests refuses it until it has loaded
   * its worker's trust: then it is told to (`refreshTrust`), and the request is signed and sent once more.
   */
  private async tenantUpdate<Ret, Req extends object>(tenant: string, update: UpdateDefinition<Ret, [Req]>, request: Req, updateId?: string): Promise<Ret> {
    const send = async () => {
      const signed = await this.signer.signed(tenantWorkflowId(tenant), update.name, request);
      return this.tenantHandle(tenant).executeUpdate(update, { args: [signed], ...(updateId ? { updateId } : {}) });
    };
    const patience = this.options.failingTaskRetryMs ?? FAILING_TASK_RETRY_MS;
    try {
      return await sendUntilHandled(send, patience);
    } catch (err) {
      if (!isTrustNotLoaded(err)) throw err;
      await this.refreshTrust(tenant);
      return sendUntilHandled(send, patience);
    }
  }

  /**
   * Has a tenant's run from before signed requests load its worker's trust. Whatever it answers (already loaded, an
   * outage), the request sent next says what holds, so nothing is thrown here.
   */
  async refreshTrust(tenant: string): Promise<void> {
    await this.tenantHandle(tenant)
      .executeUpdate(updates.refreshTrust)
      .catch(() => undefined);
  }

  private tenantHandle(tenant: string): WorkflowHandle<typeof tenantWorkflow> {
    return this.temporal.workflow.getHandle<typeof tenantWorkflow>(tenantWorkflowId(tenant));
  }

  /** Starts the tenant's workflow; never alters an existing tenant (ALREADY_EXISTS). */
  async createTenant(request: TenantCreateCheck): Promise<TenantSnapshot> {
    const refusal = checkTenantCreate(request);
    if (refusal) throw new CmkError(refusal.code, refusal.message);
    const admins = request.admins.map((a) => ({ email: normaliseEmail(a.email), role: a.role }));
    const workflowId = tenantWorkflowId(request.tenant);
    const input = { tenant: request.tenant, displayName: request.displayName, homeRegion: request.homeRegion, admins, createdBy: request.actor, ...(request.regions ? { regions: request.regions } : {}) };
    const start = async (workflowIdReusePolicy: 'REJECT_DUPLICATE' | 'ALLOW_DUPLICATE_FAILED_ONLY') =>
      this.temporal.workflow.start<typeof tenantWorkflow>('tenantWorkflow', {
        workflowId,
        taskQueue: this.taskQueue,
        args: [await this.signer.signed(workflowId, 'tenantWorkflow', input)],
        workflowIdReusePolicy,
        workflowIdConflictPolicy: 'FAIL',
        // The operator's row in the Temporal UI (encrypted by the codec like every payload; no secret in it).
        staticSummary: `Tenant ${request.displayName} (${request.tenant}): keys and environments`,
        staticDetails: tenantDetails(request.tenant, request.homeRegion),
      });
    try {
      // A closed run is still the tenant (terminated by mistake, or failed): it is repaired by a reset, never
      // replaced by a fresh run that would forget its keys and environments.
      await start('REJECT_DUPLICATE');
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // Except a run started through the frontend with a forged input: it failed at once and created no tenant.
      if (!(await this.onlyForgedStart(workflowId))) throw await this.alreadyExists(request.tenant);
      try {
        await start('ALLOW_DUPLICATE_FAILED_ONLY');
      } catch (again) {
        if (again instanceof WorkflowExecutionAlreadyStartedError) throw await this.alreadyExists(request.tenant);
        throw again;
      }
    }
    return this.firstAnswer(request.tenant);
  }

  /**
   * The new tenant, once its workflow answers. The workflow sets its queries only after its first task has checked
   * the start (a forged start is never read as a tenant), so a query delivered with that task, as when the worker
   * picks it up late, finds none yet: asked again while the run is running, for up to a minute.
   */
  private async firstAnswer(tenant: string): Promise<TenantSnapshot> {
    const deadline = Date.now() + 60_000;
    for (let wait = 50; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        const snapshot = await this.snapshot(tenant);
        if (snapshot) return snapshot;
        throw new Error(`Tenant ${tenant} was started but its workflow is not found.`);
      } catch (err) {
        if (Date.now() + wait > deadline || (await this.tenantHandle(tenant).describe()).status.name !== 'RUNNING') throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Whether the latest run under this tenant's ID is a start the workflow refused as forged (it created no tenant). */
  private async onlyForgedStart(workflowId: string): Promise<boolean> {
    const handle = this.temporal.workflow.getHandle(workflowId);
    if ((await handle.describe()).status.name !== 'FAILED') return false;
    try {
      await handle.result();
      return false;
    } catch (err) {
      const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
      return cause instanceof ApplicationFailure && cause.type === 'FORBIDDEN' && cause.message.startsWith(FORGED_REQUEST_MESSAGE);
    }
  }

  /** ALREADY_EXISTS, saying when the existing tenant's workflow is closed and needs an operator. */
  private async alreadyExists(tenant: string): Promise<CmkError> {
    const closed = await this.closedStatus(tenant);
    return new CmkError(
      'ALREADY_EXISTS',
      closed
        ? `Tenant ${tenant} already exists; its workflow is ${closed}, and the provider's operator must repair it (docs/RUNBOOK.md). Nothing was changed.`
        : `Tenant ${tenant} already exists.`,
    );
  }

  /** 'terminated', 'failed', … when the tenant's workflow exists but is closed; undefined when running or absent. */
  private async closedStatus(tenant: string): Promise<string | undefined> {
    try {
      const status = (await this.tenantHandle(tenant).describe()).status.name;
      return status === 'RUNNING' ? undefined : status.toLowerCase().replace(/_/g, ' ');
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * A worker older than `environmentSnapshot` answers the whole tenant instead.
   */
  private async scopedQuery(handle: WorkflowHandle<typeof tenantWorkflow>, scope: EnvironmentScope) {
    try {
      return await handle.query(queries.environmentSnapshot, scope);
    } catch (err) {
      if (err instanceof QueryNotRegisteredError) return handle.query(queries.compactSnapshot);
      throw err;
    }
  }

  /**
   * The tenant's state, or undefined when there is no such tenant; with a scope, only the environments a request
   * about that environment needs (`queries.environmentSnapshot`). Read packed (`compactSnapshot`): the plain
   * snapshot of 10,000 environments is over Temporal's 2 MB payload limit. Workers older than that query answer the
   * plain one.
   */
  async snapshot(tenant: string, scope?: EnvironmentScope): Promise<TenantSnapshot | undefined> {
    const handle = this.tenantHandle(tenant);
    try {
      const { packedEnvironments, ...rest } = scope ? await this.scopedQuery(handle, scope) : await handle.query(queries.compactSnapshot);
      return { ...rest, environments: unpackEnvironments(packedEnvironments) };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      if (err instanceof QueryNotRegisteredError) return handle.query(queries.snapshot);
      throw err;
    }
  }

  changeAdmin(tenant: string, request: AdminChangeRequest): Promise<AdminChangeResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.changeAdmin, request));
  }

  createEnvironment(tenant: string, request: EnvironmentCreateRequest): Promise<EnvironmentRecord> {
    // No update ID: Temporal would answer a later repeat with the first result; the validator answers ALREADY_EXISTS.
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.createEnvironment, request));
  }

  /**
   * `env create --from-file`: the whole list in one update. The update ID names the caller's operation, so a request
   * sent again (a dropped connection) attaches to the one running and returns its result.
   */
  createEnvironments(tenant: string, request: EnvironmentsCreateRequest): Promise<EnvironmentsCreateResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.createEnvironments, request, environmentsCreateUpdateId(request.operation)));
  }

  /** A bulk creation's progress; null before the workflow accepted it, or once its run has continued as new. */
  async environmentCreation(tenant: string, operation: string): Promise<EnvironmentCreationProgress | null> {
    try {
      return await this.tenantHandle(tenant).query(queries.environmentCreation, operation);
    } catch (err) {
      // A worker older than bulk creation: nothing to report.
      if (err instanceof QueryNotRegisteredError) return null;
      throw err;
    }
  }

  /**
   * Apply, revert or rekey. `current` is the environment as the caller last read it: a repeat of the operation
   * running on it attaches to that one (same update ID) and returns when it is done; a different one is refused
   * with OPERATION_IN_PROGRESS by the workflow. Without it, the tenant's state is read first.
   */
  async environmentOperation(tenant: string, request: EnvironmentOperationRequest, current?: EnvironmentRecord): Promise<EnvironmentRecord> {
    return this.update(tenant, async () => {
      const env = current ?? (await this.snapshot(tenant, { env: request.env, caller: null }))?.environments.find((e) => e.id === request.env);
      // An unknown environment gets a fresh ID; the workflow's validator answers NOT_FOUND.
      const updateId = environmentOperationUpdateId(env ?? { id: request.env }, request.operation);
      return this.tenantUpdate(tenant, updates.environmentOperation, request, updateId);
    });
  }

  changeKey(tenant: string, request: KeyChangeRequest): Promise<KeyChangeResult> {
    return this.update(tenant, () =>
      // One staged key version is one request: a retried call attaches to it instead of changing the key twice.
      this.tenantUpdate(tenant, updates.changeKey, request, `key-change/${request.staged.vaultKey.version}`),
    );
  }

  /** `key upload --no-activate`: the staged key kept Available; one staged version is one request. */
  addKey(tenant: string, request: KeyChangeRequest): Promise<KeyChangeResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.addKey, request, `key-add/${request.staged.vaultKey.version}`));
  }

  /** `key activate`: an Available key becomes the active key; a repeat while it runs attaches to it. */
  activateKey(tenant: string, request: KeyActivateRequest): Promise<KeyChangeResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.activateKey, request, `key-activate/${request.region}/${request.thumbprint}`));
  }

  /**
   * R8. No update ID on purpose: the workflow's validator refuses a challenge that was already spent (KEY_MISMATCH),
   * whereas a repeated update ID would quietly hand back the first lock's result to a replayed signature.
   */
  lockTenant(tenant: string, request: LockRequest): Promise<LockResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.lockTenant, request));
  }

  /** `tenant lock --all-regions`: every region at once, all or none (no update ID, as `lockTenant`). */
  lockAllRegions(tenant: string, request: LockAllRegionsRequest): Promise<LockAllRegionsResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.lockAllRegions, request));
  }

  /** The two-administrator lock policy (issue 19). */
  setLockApproval(tenant: string, request: LockApprovalChangeRequest): Promise<LockApprovalState> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.setLockApproval, request));
  }

  /** A lock under the two-administrator policy: kept waiting for approval (no update ID: the challenge is single use). */
  requestLock(tenant: string, request: LockAskRequest): Promise<PendingLock> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.requestLock, request));
  }

  /** One approval per lock request: a retried call attaches to it. */
  approveLock(tenant: string, request: LockDecisionRequest & { id: string }): Promise<LockApprovedResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.approveLock, request, `lock-approve/${request.id}`));
  }

  cancelLock(tenant: string, request: LockDecisionRequest & { id: string }): Promise<PendingLock> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.cancelLock, request, `lock-cancel/${request.id}`));
  }

  /**
   * R6's purpose: the replaced key active again. One rollback per key change: a retried call attaches to it (the
   * update ID names the key being rolled back).
   */
  rollbackKey(tenant: string, request: RollbackRequest, activeThumbprint: string): Promise<RollbackResult> {
    return this.update(tenant, () =>
      this.tenantUpdate(tenant, updates.rollbackKey, request, `key-rollback/${request.region}/${activeThumbprint}`),
    );
  }

  /** Hands records to the audit trail's single writer, starting it if it does not run yet. */
  async recordAudit(entries: AuditEntry[]): Promise<void> {
    await this.temporal.workflow.signalWithStart<typeof auditTrailWorkflow, [AuditEntry[], RequestAuth?]>('auditTrailWorkflow', {
      workflowId: AUDIT_WORKFLOW_ID,
      taskQueue: this.taskQueue,
      args: [{}],
      signal: auditMessages.record,
      signalArgs: [entries, await this.signer.sign(AUDIT_WORKFLOW_ID, auditMessages.record.name, entries)],
    });
  }

  /**
   * Reads (or verifies) the audit trail once every record handed in before is written. Signed; a run from before
   * signed records is told to load its worker's trust first, as in `tenantUpdate`.
   */
  async readAudit(request: AuditReadRequest): Promise<AuditReadResult> {
    const send = async () => {
      const start = new WithStartWorkflowOperation<typeof auditTrailWorkflow>('auditTrailWorkflow', {
        workflowId: AUDIT_WORKFLOW_ID,
        taskQueue: this.taskQueue,
        args: [{}],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      const signed = await this.signer.signed(AUDIT_WORKFLOW_ID, auditMessages.read.name, request);
      return this.temporal.workflow.executeUpdateWithStart(auditMessages.read, { args: [signed], startWorkflowOperation: start });
    };
    try {
      return await sendUntilHandled(send);
    } catch (err) {
      if (!isTrustNotLoaded(err)) throw err;
      await this.temporal.workflow
        .getHandle(AUDIT_WORKFLOW_ID)
        .executeUpdate(auditMessages.refreshTrust)
        .catch(() => undefined);
      return sendUntilHandled(send);
    }
  }

  /** R10: the withdrawn key uploaded again, staged by the caller. */
  reactivateKey(tenant: string, request: ReactivateRequest): Promise<KeyChangeResult> {
    return this.update(tenant, () =>
      this.tenantUpdate(tenant, updates.reactivateKey, request, `key-reactivate/${request.staged.vaultKey.version}`),
    );
  }

  /** R10 `env unlock`: one lock is unlocked once; a repeat while it runs attaches to it. */
  unlockEnvironment(tenant: string, request: UnlockRequest, current?: EnvironmentRecord): Promise<EnvironmentRecord> {
    const updateId = current?.lock ? `unlock/${request.env}/${current.lock.lockedAt}` : undefined;
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.unlockEnvironment, request, updateId));
  }

  /** `env delete`: one locked environment destroyed once; a repeat while it runs attaches to it. */
  deleteEnvironment(tenant: string, request: EnvironmentDeleteRequest, current?: EnvironmentRecord): Promise<EnvironmentRecord> {
    const updateId = current?.lock ? `env-delete/${request.env}/${current.lock.lockedAt}` : undefined;
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.deleteEnvironment, request, updateId));
  }

  /** `env backup` / `env restore`, serialised with the environment's other operations by its workflow. */
  environmentBackup(tenant: string, request: BackupRequest): Promise<BackupResult> {
    return this.update(tenant, () => this.tenantUpdate(tenant, updates.environmentBackup, request));
  }

  /** R9's daily safety net for one tenant; undefined when its workflow no longer runs. */
  purgeOverdue(tenant: string, request: PurgeRequest): Promise<PurgeResult | undefined> {
    return this.updateIfRunning(tenant, updates.purgeOverdue, request);
  }

  /** The drift check's findings for one tenant, kept (and a new drift mailed) by its workflow; undefined when it no longer runs. */
  recordDrift(tenant: string, request: DriftRecordRequest): Promise<DriftRecordResult | undefined> {
    return this.updateIfRunning(tenant, updates.recordDrift, request);
  }

  /** The tenants whose workflow runs (Temporal's visibility), for the drift check's pass over all of them. */
  async runningTenants(): Promise<string[]> {
    const tenants: string[] = [];
    const prefix = tenantWorkflowId('');
    for await (const run of this.temporal.workflow.list({ query: `WorkflowType = 'tenantWorkflow' AND ExecutionStatus = 'Running'` })) {
      if (run.workflowId.startsWith(prefix)) tenants.push(run.workflowId.slice(prefix.length));
    }
    return [...new Set(tenants)].sort();
  }

  /** `cmk drift check`: the tenant's environments compared now by the workflows' worker; a check already running for it is joined. */
  checkDrift(tenant: string): Promise<DriftCheckReport> {
    return this.temporal.workflow.execute<typeof driftCheckWorkflow>(DRIFT_WORKFLOW_TYPE, {
      workflowId: driftCheckWorkflowId(tenant),
      taskQueue: this.taskQueue,
      args: [{ tenant }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  }

  /** An operator's update of one tenant; undefined when its workflow no longer runs. */
  private async updateIfRunning<Ret, Req extends object>(tenant: string, update: UpdateDefinition<Ret, [Req]>, request: Req): Promise<Ret | undefined> {
    try {
      return await this.tenantUpdate(tenant, update, request);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw asRefusal(err) ?? err;
    }
  }

  /**
   * `cmk mail retry`: the tenant's pending and rejected mails, tried now by the workflows' worker (it holds the
   * mailer's credentials, the API does not). A retry already running for the tenant is joined, not doubled.
   */
  retryMail(tenant: string): Promise<MailRetryReport> {
    return this.temporal.workflow.execute<typeof mailRetryWorkflow>(MAIL_RETRY_WORKFLOW_TYPE, {
      workflowId: mailRetryWorkflowId(tenant),
      taskQueue: this.taskQueue,
      args: [{ tenant, now: true }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  }

  /** Runs an update, turning a refusal (validator or handler) into a CmkError with its stable code. */
  private async update<T>(tenant: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        const closed = await this.closedStatus(tenant);
        if (closed) throw new CmkError('TENANT_UNAVAILABLE', `Tenant ${tenant} cannot take requests: its workflow is ${closed}. The provider's operator must repair it (docs/RUNBOOK.md); nothing was changed.`);
        throw new CmkError('NOT_FOUND', `Tenant ${tenant} does not exist.`);
      }
      // Temporal admits a bounded number of in-flight updates per workflow; past it the tenant is simply busy.
      if (isResourceExhausted(err)) throw new CmkError('OPERATION_IN_PROGRESS', `Tenant ${tenant} is busy with other requests; try again in a moment.`);
      if (isWorkflowTaskFailing(err)) {
        throw new CmkError(
          'TENANT_UNAVAILABLE',
          `Tenant ${tenant} cannot take requests right now: its workflow's last tasks failed (a worker restarting or overloaded). Nothing was changed; try again in a minute, and if this persists the provider's operator must look (docs/RUNBOOK.md).`,
        );
      }
      throw asRefusal(err) ?? err;
    }
  }
}

/** The static details of a tenant's workflow: where to look for what it does (markdown, shown by the Temporal UI). */
function tenantDetails(tenant: string, homeRegion: string): string {
  return [
    `Home region **${homeRegion}**. The entity workflow of tenant \`${tenant}\`: administrators, environments and keys (R1–R15).`,
    `State: query \`snapshot\`, or \`cmk key show --tenant ${tenant}\` and \`cmk env list --tenant ${tenant}\`.`,
    'Deadlines: search attributes `CmkNextDeletionAt`, `CmkLockEmbargoEndsAt`, `CmkKeyChangeAllowedAt`, `CmkRollbackUntil`.',
    'When it fails or is stuck: docs/RUNBOOK.md.',
  ].join('\n\n');
}

/** gRPC status code 8, as the Temporal client's ServiceError causes carry it. */
const GRPC_RESOURCE_EXHAUSTED = 8;

function isResourceExhausted(err: unknown): boolean {
  for (let cause: unknown = err, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if ((cause as { code?: unknown }).code === GRPC_RESOURCE_EXHAUSTED) return true;
  }
  return false;
}

/**
 * A run that has just continued as new loads its worker's trust (a local activity) before it registers its handlers,
 * and the SDK rejects an update that finds no handler by the end of the activation it arrived in. Rejected, it was
 * never applied (nothing in history): it is sent again, for a few seconds, until the new run has its handlers.
 */
async function sendUntilHandled<T>(send: () => Promise<T>, failingTaskRetryMs = FAILING_TASK_RETRY_MS): Promise<T> {
  const failingTaskDeadline = Date.now() + failingTaskRetryMs;
  for (let attempt = 0, failingTask = 0; ; ) {
    try {
      return await send();
    } catch (err) {
      // Both refusals come before the update is admitted (nothing in history), so sending it again is safe.
      let wait: number;
      if (isNoHandlerYet(err) && attempt < NO_HANDLER_RETRIES) wait = Math.min(1000, 50 * 2 ** attempt++);
      else if (isWorkflowTaskFailing(err) && Date.now() < failingTaskDeadline) wait = Math.min(2000, 100 * 2 ** failingTask++, Math.max(0, failingTaskDeadline - Date.now()));
      else throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/** A worker that restarts, or one overloaded past the workflow task timeout, completes a task well within this. */
const FAILING_TASK_RETRY_MS = 30_000;

/** gRPC status code 9, with which Temporal refuses an update while the run's workflow task keeps failing. */
const GRPC_FAILED_PRECONDITION = 9;

/**
 * Temporal's refusal of an update to a run whose workflow task has failed or timed out several times in a row
 * ("Unable to perform workflow execution update due to Workflow Task in failed state."): it lasts until a task
 * completes. Told apart from the other FAILED_PRECONDITION refusals by its sentence, the only thing that says it.
 */
function isWorkflowTaskFailing(err: unknown): boolean {
  for (let cause: unknown = err, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if ((cause as { code?: unknown }).code === GRPC_FAILED_PRECONDITION && cause.message.includes('Workflow Task in failed state')) return true;
  }
  return false;
}

/** About 10 s in all: a run's first activation, with its one local activity, takes far less. */
const NO_HANDLER_RETRIES = 14;

function isNoHandlerYet(err: unknown): boolean {
  for (let cause: unknown = err, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (cause.message.startsWith('No registered handler for update')) return true;
  }
  return false;
}

/** The refusal of a run that has not loaded its worker's trust yet (domain/signed.ts). */
function isTrustNotLoaded(err: unknown): boolean {
  const refusal = asRefusal(err);
  return refusal?.code === 'OPERATION_IN_PROGRESS' && refusal.message === TRUST_NOT_LOADED_MESSAGE;
}

/** The CmkError a workflow refusal carries, if it is one. */
export function asRefusal(err: unknown): CmkError | undefined {
  let cause: unknown = err;
  for (let depth = 0; cause && depth < 5; depth++) {
    if (cause instanceof ApplicationFailure && isErrorCode(cause.type)) return new CmkError(cause.type, cause.message);
    cause = cause instanceof WorkflowUpdateFailedError || cause instanceof Error ? (cause as Error).cause : undefined;
  }
  return undefined;
}
