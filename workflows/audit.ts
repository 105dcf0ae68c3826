/**
 * The audit trail's single writer. Tenant workflows (accepted requests) and the API service (its refusals, codec
 * decodes, data reads and writes) signal records here; this workflow appends them in order through one activity at
 * a time, and answers reads (an update) only once everything received before is written.
 *
 * It never retries a record for ever: a record the trail refuses for its content (a producer that skipped the
 * redaction) is replaced by a placeholder (`audit.unrecordable`) and raises an alarm, so the records after it are
 * written and reads answer. It also keeps the head it last saw written, outside the data dir: a trail deleted or
 * rolled back behind its back fails verify, for good.
 */
import { ActivityFailure, allHandlersFinished, ApplicationFailure, condition, continueAsNew, log, patched, proxyActivities, proxyLocalActivities, setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AuditAppendResult, AuditReadRequest, AuditReadResult } from '../activities/audit';
import type { AuditEntry, AuditHead } from '../audit/trail';
import { AUDIT_RECORD_REFUSED, AUDIT_UNRECORDABLE, placeholderEntry } from '../domain/audit-redaction';
import { auditMessages } from './messages';
import { authOf, checkSignature, FORGED_REQUEST_MESSAGE, TRUST_NOT_LOADED_MESSAGE, type RequestAuth, type RequestTrust } from '../domain/signed';

/** The worker's request-signing public keys (domain/signed.ts), read once per run. */
const { requestTrust } = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });

const { appendAuditRecords, readAuditTrail } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // A disk fault, or a trail that does not verify (append refuses to extend it): retried, and visible as a failing
  // activity in the UI. A record refused for its content fails at once (non-retryable) and becomes a placeholder.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Records per append: one fsync per batch. */
const BATCH = 200;
/** Problems kept across continue-as-new: the first ones say what happened; the alarm stays either way. */
const MAX_TRAIL_PROBLEMS = 20;
/** Workflows started before placeholders existed never took this path; the marker keeps their replays unchanged. */
const PLACEHOLDER_PATCH = 'audit-placeholders';
/**
 * Record signals one run takes before it continues as new. A worker that replays this run (restarted, or its cache
 * full) checks each signal's signature again (about 4 ms each in the workflows' sandbox, less once memoised on that
 * worker: domain/signed.ts): Temporal's own suggestion comes near 4,000 events, and 1,300 events already took
 * 5.4-7 s a replay on 2 busy cores — past the SDK's 5 s limit for one activation (the task failed, and once the
 * worker crashed) — while 100 tenants changed keys (docs/PERFORMANCE.md). Small runs also replay fast when a
 * continue-as-new is refused because records kept arriving in the same task. Runs from before replay as they were.
 */
export const AUDIT_SIGNALS_PER_RUN = 100;
const BOUNDED_RUNS_PATCH = 'audit-bounded-runs';

export interface AuditTrailState {
  pending?: AuditEntry[];
  /** The head last seen written (seq and hash, from the append activity). */
  head?: AuditHead | null;
  /** Records the trail refused even as made, written as placeholders. */
  placeholders?: number;
  /** A trail found deleted or rolled back since the head above: kept, so verify fails until an operator looks. */
  trailProblems?: string[];
}

/** The index of the entry the trail refused for its content, or null for any other failure. */
function refusedIndex(err: unknown): number | null {
  const failure = err instanceof ActivityFailure ? err.cause : err;
  if (!(failure instanceof ApplicationFailure) || failure.type !== AUDIT_RECORD_REFUSED) return null;
  const index = failure.details?.[0];
  return typeof index === 'number' && Number.isInteger(index) && index >= 0 ? index : 0;
}

export async function auditTrailWorkflow(input: AuditTrailState = {}): Promise<void> {
  // Runs from before signed records replay without the check (their histories have no such step).
  // Both decided before anything is awaited, so that a replay meets each marker where the run made it.
  const boundedRuns = patched(BOUNDED_RUNS_PATCH);
  let trust: RequestTrust | null = patched('signed-audit-records') ? await requestTrust() : null;
  // Anyone may start this workflow through the frontend: only a run continued by this workflow carries its state
  // over (records, and the head it saw written: a forged one would hide a rolled-back trail).
  const carried: AuditTrailState = trust && !workflowInfo().continuedFromExecutionRunId ? {} : input;
  const pending: AuditEntry[] = [...(carried.pending ?? [])];
  let head: AuditHead | null = carried.head ?? null;
  let placeholders = carried.placeholders ?? 0;
  const trailProblems: string[] = [...(carried.trailProblems ?? [])];
  let appending = false;
  let dropped = 0;
  let signalsThisRun = 0;
  const runIsFull = () => workflowInfo().continueAsNewSuggested || (boundedRuns && signalsThisRun >= AUDIT_SIGNALS_PER_RUN);
  const canCarryOver = () => boundedRuns && runIsFull() && allHandlersFinished() && pending.length <= BATCH;

  setHandler(auditMessages.record, (entries: AuditEntry[], auth?: RequestAuth) => {
    signalsThisRun += 1;
    // No freshness window: records wait in Temporal while this workflow's worker is down, and each has its own ID.
    const why = trust ? checkSignature(trust.publicKeys, workflowInfo().workflowId, auditMessages.record.name, entries, auth, null) : Array.isArray(entries) ? null : 'it is not a list of records';
    if (why) {
      // A signal cannot be refused: records the API service and the workers did not sign are dropped, and counted.
      dropped += 1;
      log.warn('Dropped audit records that the cmk API service did not sign (Temporal frontend).', { reason: why, dropped });
      return;
    }
    pending.push(...entries);
  });
  setHandler(
    auditMessages.read,
    async (request: AuditReadRequest): Promise<AuditReadResult> => {
      await condition(() => pending.length === 0 && !appending);
      const result = await readAuditTrail({ ...request, knownHead: head });
      const verification = result.verification;
      if (!verification) return result;
      const known = trailProblems.map((problem) => ({ seq: null, line: null, problem }));
      return { ...result, verification: { ...verification, ok: verification.ok && known.length === 0, problems: [...known, ...verification.problems], placeholders } };
    },
    {
      validator: (request: AuditReadRequest) => {
        // Signed like the tenant workflows' requests; a run from before signed records reads nothing until `refreshTrust`.
        if (!trust) throw ApplicationFailure.create({ type: 'OPERATION_IN_PROGRESS', message: TRUST_NOT_LOADED_MESSAGE, nonRetryable: true });
        const why = checkSignature(trust.publicKeys, workflowInfo().workflowId, auditMessages.read.name, request, authOf(request), Date.now());
        if (why) {
          log.warn('Refused an audit read the cmk API service did not sign (Temporal frontend).', { reason: why });
          throw ApplicationFailure.create({ type: 'FORBIDDEN', message: FORGED_REQUEST_MESSAGE, nonRetryable: true });
        }
        if (!Number.isInteger(request.limit) || request.limit < 1) throw new Error('limit must be a positive integer');
      },
    },
  );
  // A run from before signed records loads its worker's trust (no recorded history holds this update: no patch).
  setHandler(
    auditMessages.refreshTrust,
    async () => {
      trust ??= await requestTrust();
    },
    {
      validator: () => {
        if (trust) throw ApplicationFailure.create({ type: 'ALREADY_EXISTS', message: 'The audit workflow already checks signed requests.', nonRetryable: true });
      },
    },
  );

  /** The failed entry at `index` becomes a placeholder; a placeholder the trail refuses too is dropped, loudly. */
  function replaceRefused(index: number, reason: string): void {
    const bad = pending[index];
    if (!bad) return;
    if (bad.action === AUDIT_UNRECORDABLE) {
      log.error('audit: a placeholder record could not be written either; it is dropped', { id: bad.id, reason });
      pending.splice(index, 1);
      return;
    }
    placeholders += 1;
    log.error('audit: a record could not be written as made; a placeholder takes its place', { id: bad.id, action: bad.action, tenant: bad.tenant, reason });
    pending[index] = placeholderEntry(bad, reason, new Date().toISOString(), `audit-placeholder/${uuid4()}`);
  }

  function took(result: AuditAppendResult | number): void {
    // Histories recorded before the head was kept returned a count.
    if (typeof result === 'number') return;
    if (result.headProblem) {
      log.error('audit: the trail was deleted or rolled back behind its writer', { problem: result.headProblem });
      if (trailProblems.length < MAX_TRAIL_PROBLEMS) trailProblems.push(result.headProblem);
    }
    head = result.head;
  }

  for (;;) {
    await condition(() => pending.length > 0 || runIsFull());
    while (pending.length > 0) {
      // A full run with no read waiting carries what is pending over (below) rather than write batch after batch of
      // a stream that may not pause — at most one batch, so that the carried state stays far below Temporal's 2 MB.
      if (canCarryOver()) break;
      const batch = pending.slice(0, BATCH);
      appending = true;
      try {
        took(await appendAuditRecords(batch, head));
        pending.splice(0, batch.length);
      } catch (err) {
        const index = refusedIndex(err);
        if (index === null || !patched(PLACEHOLDER_PATCH)) throw err;
        const failure = err instanceof ActivityFailure ? err.cause : err;
        replaceRefused(Math.min(index, batch.length - 1), failure instanceof Error ? failure.message : 'refused');
      } finally {
        appending = false;
      }
    }
    if (runIsFull()) {
      // A read waits for the records received before it to be written, and only this loop writes them: records that
      // arrive meanwhile are drained first, else that read (and so allHandlersFinished) would wait for ever.
      await condition(() => allHandlersFinished() || pending.length > 0);
      // With no read waiting, records still pending are carried over: under a steady stream of them (every tenant
      // busy at once) waiting for an empty queue would put the continue-as-new off for as long as the stream lasts.
      if (pending.length > 0 && !canCarryOver()) continue;
      await continueAsNew<typeof auditTrailWorkflow>({ pending, head, placeholders, trailProblems });
    }
  }
}
