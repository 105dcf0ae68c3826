/**
 * What the audit trail can keep, and the redaction every producer passes its records through (API refusals, the
 * tenant workflow's `audit()`, codec decodes, data reads and writes), so that no record ever fails on its content:
 * a field the trail cannot keep is replaced where the record is made, with a marker saying so, and its name goes
 * into `details.redacted`. audit/trail.ts refuses by the same rules, as the last guard.
 *
 * Pure: imported by workflows (deterministic), the API service and the trail alike.
 */
import type { AuditEntry, AuditOutcome } from './audit-entry';

/** The failure type of an entry the trail refuses for its content: never retried (it would be refused again). */
export const AUDIT_RECORD_REFUSED = 'AUDIT_RECORD_REFUSED';
/** The action of the record that stands in for one the trail refused. */
export const AUDIT_UNRECORDABLE = 'audit.unrecordable';

export const AUDIT_LIMITS = { maxString: 1000, maxThumbprints: 64, maxDetails: 64 } as const;

export const REDACTED_KEY_MATERIAL = '[redacted: looks like key material]';
export const REDACTED_TOO_LONG = '[redacted: too long]';
export const REDACTED_NOT_TEXT = '[redacted: not text]';

export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['accepted', 'refused', 'completed', 'failed'];
const SECRET_NAMES = new Set(['password', 'pfx', 'privatekey', 'dek', 'secret', 'token']);
const PEM = /-----BEGIN/i;
const HEX64 = /^[0-9a-f]{64}$/;
/**
 * IDs, e-mail addresses and record IDs: no space, no newline, so no PEM block fits in one. Such a value in an
 * identifying field (`id`, `actor`, `tenant`, `region`, `environment`) is kept even when it contains "-----BEGIN"
 * (`a-----begin` is a valid tenant ID, `-----begin@x.test` a valid address): redacting it would hide who acted where.
 */
const TOKEN = /^[A-Za-z0-9@._+/:-]{1,320}$/;
export const IDENTIFYING_FIELDS = ['id', 'actor', 'tenant', 'region', 'environment'] as const;

/** Why the trail cannot keep this string in this field; null when it can. */
export function auditStringProblem(value: string, identifying = false): 'too long' | 'key material' | null {
  if (value.length > AUDIT_LIMITS.maxString) return 'too long';
  if (PEM.test(value) && !(identifying && TOKEN.test(value))) return 'key material';
  return null;
}

/** password, pfx, privateKey, dek, secret, token — alone or as the last word of a name (dbPassword, client_secret). */
export function looksLikeSecretName(key: string): boolean {
  if (SECRET_NAMES.has(key.toLowerCase().replace(/[^a-z0-9]/g, ''))) return true;
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return SECRET_NAMES.has(words.at(-1) ?? '') || words.slice(-2).join('') === 'privatekey';
}

/** A details key the trail keeps: short, plain, not a secret's name. */
export const isKeepableDetailsKey = (key: string): boolean => /^[A-Za-z0-9_.-]{1,64}$/.test(key) && key !== '__proto__' && !looksLikeSecretName(key);

const marker = (problem: 'too long' | 'key material'): string => (problem === 'too long' ? REDACTED_TOO_LONG : REDACTED_KEY_MATERIAL);

/**
 * A caller's text, fit to quote in a refusal message: at most `max` printable ASCII characters, never a PEM
 * marker; null when nothing of it is fit (then the message should not quote it at all).
 */
export function quotable(text: unknown, max = 40): string | null {
  if (typeof text !== 'string') return null;
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  const cut = printable.length > max ? `${printable.slice(0, max)}…` : printable;
  return cut.length === 0 || PEM.test(cut) || cut.includes('-----') ? null : cut;
}

/**
 * The entry as the trail can keep it: every string field checked, a field it cannot keep replaced by a marker
 * (IDs by null), secret-looking or unusable details dropped, invalid thumbprints dropped; `details.redacted` names
 * what was changed. The frame (`id`, `at`, `action`, `outcome`) is the producer's own and passes as given; a frame
 * the trail still refuses becomes a placeholder in the audit workflow.
 */
export function redactAuditEntry(entry: AuditEntry): AuditEntry {
  const redacted: string[] = [];
  const out: AuditEntry = { id: entry.id, at: entry.at, actor: entry.actor, action: entry.action, outcome: entry.outcome, tenant: entry.tenant };

  if (typeof out.actor === 'string') {
    const problem = auditStringProblem(out.actor, true);
    if (problem) {
      out.actor = marker(problem);
      redacted.push('actor');
    }
  }
  const idField = (name: 'tenant' | 'region' | 'environment', value: string | null | undefined): string | null | undefined => {
    if (typeof value !== 'string' || !auditStringProblem(value, true)) return value;
    redacted.push(name);
    return null;
  };
  out.tenant = idField('tenant', entry.tenant) ?? null;
  if (entry.region !== undefined) out.region = idField('region', entry.region);
  if (entry.environment !== undefined) out.environment = idField('environment', entry.environment);
  for (const name of ['code', 'message'] as const) {
    const value = entry[name];
    if (value === undefined) continue;
    const problem = typeof value === 'string' ? auditStringProblem(value) : null;
    if (problem) redacted.push(name);
    out[name] = problem ? marker(problem) : value;
  }
  if (entry.thumbprints !== undefined) {
    const kept = Array.isArray(entry.thumbprints) ? entry.thumbprints.filter((t) => typeof t === 'string' && HEX64.test(t)).slice(0, AUDIT_LIMITS.maxThumbprints) : [];
    if (!Array.isArray(entry.thumbprints) || kept.length !== entry.thumbprints.length) redacted.push('thumbprints');
    out.thumbprints = kept;
  }
  let details: Record<string, string | number | boolean | null> | undefined;
  if (entry.details !== undefined) {
    details = {};
    const given = typeof entry.details === 'object' && entry.details !== null && !Array.isArray(entry.details) ? entry.details : {};
    let dropped = given !== entry.details;
    for (const [key, value] of Object.entries(given)) {
      // One place is left for `redacted` itself.
      if (!isKeepableDetailsKey(key) || key === 'redacted' || Object.keys(details).length >= AUDIT_LIMITS.maxDetails - 1) {
        dropped = true;
        continue;
      }
      if (typeof value === 'string') {
        const problem = auditStringProblem(value);
        if (problem) redacted.push(`details.${key}`);
        details[key] = problem ? marker(problem) : value;
      } else if (value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) {
        details[key] = value;
      } else {
        redacted.push(`details.${key}`);
        details[key] = REDACTED_NOT_TEXT;
      }
    }
    if (dropped) redacted.push('details');
  }
  if (redacted.length > 0) details = { ...(details ?? {}), redacted: redacted.join(',') };
  if (details !== undefined) out.details = details;
  return out;
}

/** Stands in for a record the trail refused even after redaction: who, what, how it ended, and why it is not there. */
export function placeholderEntry(entry: AuditEntry, reason: string, at: string, fallbackId: string): AuditEntry {
  const keep = (value: unknown, identifying: boolean): value is string => typeof value === 'string' && value !== '' && auditStringProblem(value, identifying) === null;
  return {
    id: keep(entry.id, true) ? entry.id : fallbackId,
    at,
    actor: keep(entry.actor, true) ? entry.actor : 'unknown',
    action: AUDIT_UNRECORDABLE,
    outcome: AUDIT_OUTCOMES.includes(entry.outcome) ? entry.outcome : 'failed',
    tenant: keep(entry.tenant, true) ? entry.tenant : null,
    code: AUDIT_RECORD_REFUSED,
    message: `The trail could not keep this record as made: ${reason.slice(0, 400)}`.replace(PEM, '[redacted]'),
    details: { action: keep(entry.action, true) ? entry.action : null },
  };
}
