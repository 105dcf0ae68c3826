/**
 * The audit trail's activities. `recordAudit` hands records to the trail's single writer (the audit workflow,
 * through the sink); `appendAuditRecords` and `readAuditTrail` run only in that workflow, so exactly one writer
 * appends (audit/trail.ts keeps the hash chain and the signed head).
 */
import type { AuditEntry, AuditRecord, AuditTrail, AuditVerification } from '../audit/trail';

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
}

export interface AuditReadResult {
  records: AuditRecord[];
  verification: AuditVerification | null;
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
    async appendAuditRecords(entries: AuditEntry[]): Promise<number> {
      return trail().append(entries).length;
    },
    async readAuditTrail(request: AuditReadRequest): Promise<AuditReadResult> {
      const records = trail().list({
        ...(request.tenant !== null ? { tenant: request.tenant } : {}),
        ...(request.afterSeq !== null ? { afterSeq: request.afterSeq } : {}),
        limit: Math.min(Math.max(1, request.limit), MAX_AUDIT_PAGE),
      });
      const verification = request.verify ? trail().verify() : null;
      return { records: request.verify ? [] : records, verification };
    },
  };
}
