/**
 * The tenant's entity workflow: the one source of truth for its administrators, environments and, per region, its
 * keys (R1). Every request is an update whose validator applies the rules before anything reaches history (R12, R5,
 * R11 …); handlers that touch the outside world run one at a time; durable timers end the rollback window (R6).
 *
 * This module holds the run itself: the patches it decides at its start, its trust, its state, the queries, the
 * registration of each concern (workflows/tenant/), the main loop and continue-as-new.
 */
import { ApplicationFailure, allHandlersFinished, condition, continueAsNew, log, patched, setCurrentDetails, setHandler, workflowInfo } from '@temporalio/workflow';
import { queries, updates, type CarriedTenantState, type TenantWorkflowInput } from './messages';
import { authOf, checkSignature, FORGED_REQUEST_MESSAGE, type RequestTrust } from '../domain/signed';
import { describeActor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { tenantCreatedMail } from '../domain/notifications';
import { packEnvironments, unpackEnvironments } from '../domain/carried';
import { riskAcceptanceOf } from '../domain/model';
import { createTenantContext, iso } from './tenant/context';
import { requestTrust } from './tenant/proxies';
import { deadlineSummary, labelledDeadlines, nextDeadline } from './tenant/deadlines';
import { retire } from './tenant/retirement';
import { registerAdmins } from './tenant/admins';
import { registerBackups, registerEnvironments } from './tenant/environments';
import { registerKeyActivation, registerKeys } from './tenant/keys';
import { deleteOverdue, registerEnvironmentDeletion, registerLock, registerPurge, sendDueDeletionWarnings } from './tenant/lock';
import { registerBulkCreate } from './tenant/bulk';
import { registerDrift } from './tenant/drift';
import { expireLockRequest, registerLockApproval } from './tenant/lock-approval';

/**
 * Runs started before the deadline search attributes neither publish them nor wake at the end of an embargo or a
 * key-change interval to unset them (both add commands).
 */
const DEADLINES_PATCH = 'deadline-search-attributes';

/**
 * Runs started since signed requests read what they trust (keys, durations) from their worker first; older runs
 * replay without it, refuse every request until an update `refreshTrust` loads it, then check as new runs do
 * (docs/SECURITY.md).
 */
const SIGNED_REQUESTS_PATCH = 'signed-requests';
/** Bytes of carried state past which each continue-as-new warns (Temporal's limit is 2 MB, its own warning 512 KB). */
const CARRIED_WARN_BYTES = 1_500_000;

export async function tenantWorkflow(input: TenantWorkflowInput): Promise<void> {
  const signsRequests = patched(SIGNED_REQUESTS_PATCH);
  // Decided once per run, at its start and before anything it awaits, so that every later use agrees on replay.
  // (Decided after the local activity below, a replaying worker met the marker before the call: nondeterminism.)
  const publishesDeadlines = patched(DEADLINES_PATCH);
  const trust: RequestTrust | null = signsRequests ? await requestTrust() : null;
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
  if (input.regions && !carried.regions) carried.regions = input.regions;
  /** Durations and regions are the worker's, whatever a request says (R14, §6). */
  function adoptTrust(loaded: RequestTrust): void {
    carried.policy = loaded.policy;
    if (loaded.policy.regions) carried.regions = [...loaded.policy.regions];
    else delete carried.regions;
  }
  if (trust) adoptTrust(trust);
  const ctx = createTenantContext(carried, trust, publishesDeadlines);
  const { tenant } = ctx;
  const acceptance = () => {
    const accepted = riskAcceptanceOf(tenant);
    return accepted ? { riskAcceptance: accepted } : {};
  };

  // ------------------------------------------------------------------------------------------ queries

  setHandler(queries.snapshot, () => tenant);
  // The risk's acceptance as the whole tenant implies it (issue 19), so that a snapshot of some environments says the same.
  setHandler(queries.compactSnapshot, () => {
    const { environments, ...rest } = tenant;
    return { ...rest, ...acceptance(), packedEnvironments: packEnvironments(environments) };
  });
  setHandler(queries.environmentSnapshot, ({ env, caller }) => {
    const { environments, ...rest } = tenant;
    return { ...rest, ...acceptance(), packedEnvironments: packEnvironments(environments.filter((e) => e.id === env || (caller !== null && e.systemAdmin === caller))) };
  });
  setHandler(queries.reprotection, () => ctx.reprotections);
  setHandler(queries.forgedRequests, () => ctx.forged);

  // ------------------------------------------------------------------------------------------ trust

  /**
   * Runs started before signed requests: the worker's trust, loaded as a new run loads it at its start, one handler
   * at a time with the others. No recorded history holds this update, so its local activity needs no patch.
   */
  setHandler(
    updates.refreshTrust,
    () =>
      ctx.exclusively(async () => {
        if (ctx.trust) return;
        const loaded = await requestTrust();
        adoptTrust(loaded);
        ctx.trust = loaded;
        log.info('Loaded the worker’s request-signing keys and durations into a run started before signed requests.');
      }),
    {
      // Nothing to do once loaded: refused, so that repeats leave no history.
      validator: () => {
        if (ctx.trust) throw ApplicationFailure.create({ type: 'ALREADY_EXISTS', message: 'This tenant’s workflow already checks signed requests.', nonRetryable: true });
      },
    },
  );

  // ------------------------------------------------------------------------------------------ the concerns
  // In this order: updates that arrive with a run's first task wait for their handler and then run in the order
  // their handlers are registered, so the order is part of what recorded histories replay. (A run that loads its
  // trust first registers them in a later activation: the SDK rejects an update that arrived before, and the client
  // library sends it again — `sendUntilHandled` in client/library.ts.)
  registerAdmins(ctx);
  registerEnvironments(ctx);
  registerKeys(ctx);
  registerLock(ctx);
  registerBackups(ctx);
  registerPurge(ctx);
  registerEnvironmentDeletion(ctx);
  registerKeyActivation(ctx);
  registerBulkCreate(ctx);
  registerDrift(ctx);
  registerLockApproval(ctx);

  // ------------------------------------------------------------------------------------------ life

  if (!input.carried) {
    ctx.publishSearchAttributes();
    await ctx.notify(
      tenantCreatedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, admins: tenant.admins, by: describeActor(input.createdBy), at: tenant.createdAt }),
    );
    await ctx.audit('tenant.create', input.createdBy, 'completed', { region: tenant.homeRegion, details: { administrators: tenant.admins.length } });
  }

  /**
   * Every deadline the durable timer waits for: the end of a rollback window (R6), a deletion warning or a deletion
   * (R9). An unlock removes its environment's deadlines, which cancels the timer (the condition wakes and waits for
   * the next one).
   */
  const deadlines = () => labelledDeadlines(tenant, carried.policy, publishesDeadlines, Date.now());

  for (;;) {
    const due = nextDeadline(deadlines());
    // Also for a run continued as new, which starts without a static summary of its own (SDK 1.24 carries none).
    setCurrentDetails(ctx.currentDetails());
    const wake = () => workflowInfo().continueAsNewSuggested || nextDeadline(deadlines()) !== due;
    if (due === null) await condition(wake);
    else await condition(wake, Math.max(1, due - Date.now()), { summary: deadlineSummary(deadlines(), due) });
    await ctx.exclusively(async () => {
      for (const region of Object.values(tenant.regions)) {
        if (!region.rollbackUntil || Date.parse(region.rollbackUntil) > Date.now()) continue;
        // R6's rollback window is over: the replaced key goes, unless a key record still depends on it.
        const key = region.keys.find((k) => k.thumbprint === region.rollbackThumbprint);
        region.rollbackThumbprint = null;
        region.rollbackUntil = null;
        if (key) await retire(ctx, region, key);
      }
      await sendDueDeletionWarnings(ctx);
      await deleteOverdue(ctx);
      await expireLockRequest(ctx);
      // An embargo or a key-change interval that ended leaves its search attribute; the row says so too.
      if (publishesDeadlines) ctx.publishSearchAttributes();
    });
    if (workflowInfo().continueAsNewSuggested) {
      await condition(() => allHandlersFinished() && !ctx.busy && ctx.reprotecting.size === 0);
      // Packed, so that 10,000 environments stay well under the payload size limit.
      const { environments, ...rest } = tenant;
      const next: CarriedTenantState = { ...carried, snapshot: { ...rest, environments: [] }, packedEnvironments: packEnvironments(environments), spentRequests: ctx.spentRequests.carried() };
      warnIfCarriedIsLarge(next);
      await continueAsNew<typeof tenantWorkflow>({ ...input, carried: next });
    }
  }
}

/**
 * Temporal refuses a continue-as-new whose input passes 2 MB, on every attempt: the tenant would stop taking requests.
 * Operators hear of it well before (issue 20 found 10,000 applies in a quarter of an hour at 2.1 MB).
 */
function warnIfCarriedIsLarge(next: CarriedTenantState): void {
  const bytes = JSON.stringify(next).length;
  if (bytes < CARRIED_WARN_BYTES) return;
  log.warn('The tenant state carried across continue-as-new nears the 2 MB payload limit.', {
    bytes,
    environments: next.packedEnvironments?.rows.length ?? 0,
    environmentsBytes: JSON.stringify(next.packedEnvironments ?? null).length,
    spentRequests: Object.keys(next.spentRequests ?? {}).length,
  });
}
