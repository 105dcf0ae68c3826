/**
 * The audit trail's activities. `recordAudit` hands records to the trail's single writer (the audit workflow,
 * through the sink); `appendAuditRecords` and `readAuditTrail` run only in that workflow, so exactly one writer
 * appends (audit/trail.ts keeps the hash chain and the signed head).
 */
import { ApplicationFailure } from '@temporalio/common';
import { AUDIT_RECORD_REFUSED } from '../domain/audit-redaction';
import { AuditEntryRefusedError, type AuditEntry, type AuditHead, type AuditRecord, type AuditTrail, type AuditVerification } from '../audit/trail';

/** Where the tenant workflows send their records: the audit workflow (a signal), or a trail directly in tests. */
export interface AuditSink {
  report(entries: AuditEntry[]): Promise<void>;
}

export interface AuditReadRequest {
  /** Only this tenant's records; null: all (the operator). */
  tenant: string | null;
  afterSeq: number | null;
  limit: number;
  verify: boolean;
  /** The head the audit workflow last saw written (set by the workflow, not the caller): verify compares with it. */
  knownHead?: AuditHead | null;
}

export interface AuditReadResult {
  records: AuditRecord[];
  /** `placeholders`: records the trail refused even after redaction, kept as `audit.unrecordable` (the workflow's count). */
  verification: (AuditVerification & { placeholders?: number }) | null;
}

export interface AuditAppendResult {
  written: number;
  /** The trail's head after this append: the audit workflow keeps it, outside the data dir. */
  head: AuditHead;
  /** Set when the trail, before this append, was not the one `known` describes: it was deleted or rolled back. */
  headProblem: string | null;
}


/** At most this many records per answer: a page stays far below Temporal's payload limit. */
export const MAX_AUDIT_PAGE = 500;

export function createAuditActivities(deps: { auditSink?: AuditSink; auditTrail?: AuditTrail }) {
  const trail = (): AuditTrail => {
    if (!deps.auditTrail) throw new Error('This worker keeps no audit trail (it is not the trail writer).');
    return deps.auditTrail;
  };
  return {
    async recordAudit(entries: AuditEntry[]): Promise<void> {
      if (!deps.auditSink) throw new Error('This worker has no audit sink configured.');
      await deps.auditSink.report(entries);
    },
    async appendAuditRecords(entries: AuditEntry[], known: AuditHead | null = null): Promise<AuditAppendResult> {
      const headProblem = trail().checkKnownHead(known);
      try {
        const written = trail().append(entries).length;
        return { written, head: trail().head(), headProblem };
      } catch (err) {
        // Content: the same entry fails again, so the workflow writes the others and a placeholder for it.
        // Anything else (a disk fault, a trail that does not verify) is retried by the workflow's policy.
        if (err instanceof AuditEntryRefusedError) throw ApplicationFailure.create({ type: AUDIT_RECORD_REFUSED, message: err.message, nonRetryable: true, details: [err.index] });
        throw err;
      }
    },
    async readAuditTrail(request: AuditReadRequest): Promise<AuditReadResult> {
      const records = trail().list({
        ...(request.tenant !== null ? { tenant: request.tenant } : {}),
        ...(request.afterSeq !== null ? { afterSeq: request.afterSeq } : {}),
        limit: Math.min(Math.max(1, request.limit), MAX_AUDIT_PAGE),
      });
      const verification = request.verify ? trail().verify(request.knownHead ?? null) : null;
      return { records: request.verify ? [] : records, verification };
    },
  };
}
