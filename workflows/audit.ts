/**
 * The audit trail's single writer. Tenant workflows (accepted requests) and the API service (its refusals, codec
 * decodes, data writes) signal records here; this workflow appends them in order through one activity at a time,
 * and answers reads (an update) only once everything received before is written.
 */
import { allHandlersFinished, condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AuditReadRequest, AuditReadResult } from '../activities/audit';
import type { AuditEntry } from '../audit/trail';
import { auditMessages } from './messages';

const { appendAuditRecords, readAuditTrail } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // The trail refuses to extend a chain that does not verify: retried, and visible as a failing activity in the UI.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Records per append: one fsync per batch. */
const BATCH = 200;

export async function auditTrailWorkflow(input: { pending?: AuditEntry[] } = {}): Promise<void> {
  const pending: AuditEntry[] = [...(input.pending ?? [])];
  let appending = false;

  setHandler(auditMessages.record, (entries: AuditEntry[]) => {
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
        if (!Number.isInteger(request.limit) || request.limit < 1) throw new Error('limit must be a positive integer');
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
