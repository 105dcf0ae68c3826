/**
 * The audit trail's single writer. Tenant workflows (accepted requests) and the API service (its refusals, codec
 * decodes, data writes) signal records here; this workflow appends them in order through one activity at a time,
 * and answers reads (an update) only once everything received before is written.
 */
import { allHandlersFinished, ApplicationFailure, condition, continueAsNew, log, patched, proxyActivities, proxyLocalActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AuditReadRequest, AuditReadResult } from '../activities/audit';
import type { AuditEntry } from '../audit/trail';
import { auditMessages } from './messages';
import { authOf, checkSignature, FORGED_REQUEST_MESSAGE, TRUST_NOT_LOADED_MESSAGE, type RequestAuth, type RequestTrust } from './signed';

/** The worker's request-signing public keys (workflows/signed.ts), read once per run. */
const { requestTrust } = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });

const { appendAuditRecords, readAuditTrail } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // The trail refuses to extend a chain that does not verify: retried, and visible as a failing activity in the UI.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Records per append: one fsync per batch. */
const BATCH = 200;

export async function auditTrailWorkflow(input: { pending?: AuditEntry[] } = {}): Promise<void> {
  // Runs from before signed records replay without the check (their histories have no such step).
  let trust: RequestTrust | null = patched('signed-audit-records') ? await requestTrust() : null;
  // Anyone may start this workflow through the frontend: only a run continued by this workflow carries records over.
  const pending: AuditEntry[] = [...(trust && !workflowInfo().continuedFromExecutionRunId ? [] : (input.pending ?? []))];
  let appending = false;
  let dropped = 0;

  setHandler(auditMessages.record, (entries: AuditEntry[], auth?: RequestAuth) => {
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
      return readAuditTrail(request);
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

  for (;;) {
    await condition(() => pending.length > 0 || workflowInfo().continueAsNewSuggested);
    while (pending.length > 0) {
      const batch = pending.slice(0, BATCH);
      appending = true;
      try {
        await appendAuditRecords(batch);
        pending.splice(0, batch.length);
      } finally {
        appending = false;
      }
    }
    if (workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof auditTrailWorkflow>({ pending });
    }
  }
}
