export { AuditTrail, GENESIS_HASH, HEAD_FILE, TRAIL_FILE, type AuditEntry, type AuditOutcome, type AuditRecord, type AuditVerification } from './trail';
