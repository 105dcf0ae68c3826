/** What a caller hands the audit trail (audit/trail.ts keeps it): pure data, read by workflows, the API and the trail. */
export type AuditOutcome = 'accepted' | 'refused' | 'completed' | 'failed';

/** What a caller hands in. `id` is unique per event and makes append idempotent (an activity may be retried). */
export interface AuditEntry {
  /** e.g. "tenant/contoso/key.change/abc" — unique; re-appending the same id is a no-op. */
  id: string;
  /** ISO time of the event. */
  at: string;
  /** E-mail or "operator". */
  actor: string;
  /** e.g. "key.generate", "env.apply", "codec.decode". */
  action: string;
  outcome: AuditOutcome;
  tenant: string | null;
  region?: string | null;
  environment?: string | null;
  /** Stable refusal/failure code, e.g. "FORBIDDEN". */
  code?: string | null;
  /** A sentence; never secrets. */
  message?: string | null;
  /** Lowercase hex SHA-256. */
  thumbprints?: string[];
  details?: Record<string, string | number | boolean | null>;
}
