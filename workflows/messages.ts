/**
 * The messages the tenant workflow answers, its ID builder, task queue and search attributes: one module shared by
 * the client library and the workflows. Payloads carry IDs, names, e-mails, thumbprints and vault references —
 * never a password, PFX byte, private key, DEK or environment row (DESIGN.md §6).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { AuditReadRequest, AuditReadResult } from '../activities/audit';
import type { AuditEntry } from '../audit/trail';
import { defineSearchAttributeKey } from '@temporalio/common';
import type { BackupView } from '../database/types';
import type { PackedEnvironments } from '../domain/carried';
import type { BulkEnvironmentList } from '../domain/bulk';
import type { RequestAuth } from '../domain/signed';
import type { SpentSignatures } from '../domain/spent-signatures';
import type { DriftDifference } from '../domain/drift';
import type { Actor } from '../domain/access';
import type {
  Administrator,
  AdminRole,
  EnvironmentDrift,
  EnvironmentRecord,
  EnvironmentOperation,
  BackupOperation,
  PendingLock,
  KeySource,
  Protection,
  ReprotectionProgress,
  TenantKey,
  TenantSnapshot,
} from '../domain/model';
import type { Policy } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';

/** Default task queue; a deployment may set CMK_TASK_QUEUE (tests use one per run). */
export const TASK_QUEUE = 'cmk';

/**
 * R1: the task queue of a region's vault and database work, derived from the deployment's queue. Workers configured
 * with that region's vault and database servers poll it (CMK_WORKER_REGIONS).
 */
export const regionTaskQueue = (taskQueue: string, region: string): string => `${taskQueue}-region-${region}`;

/** The tenant's entity workflow: the single source of truth for its admins, environments and keys. */
export const tenantWorkflowId = (tenant: string): string => `cmk-tenant/${tenant}`;

/** Search attributes (no codec covers them: IDs, states, counts and thumbprints only). */
export const SEARCH_ATTRIBUTES = {
  tenant: defineSearchAttributeKey('CmkTenant', 'KEYWORD'),
  keyStates: defineSearchAttributeKey('CmkKeyStates', 'KEYWORD_LIST'),
  activeKeyThumbprints: defineSearchAttributeKey('CmkActiveKeyThumbprints', 'KEYWORD_LIST'),
  environmentCount: defineSearchAttributeKey('CmkEnvironmentCount', 'INT'),
  lockedEnvironmentCount: defineSearchAttributeKey('CmkLockedEnvironmentCount', 'INT'),
  /** Environments still to be re-protected with a new key, all regions together (the UI's progress column). */
  reprotectionRemaining: defineSearchAttributeKey('CmkReprotectionRemaining', 'INT'),
  /**
   * IDs of environments the latest re-protections could not move to the new key (the first 20: search attributes
   * are small). A keyword list, because the dev server's SQLite visibility store allows only three INT attributes.
   */
  reprotectionRefused: defineSearchAttributeKey('CmkReprotectionRefused', 'KEYWORD_LIST'),
  /** R9: the earliest deletion deadline of a locked environment (past: a deletion overdue); unset when none is locked. */
  nextDeletionAt: defineSearchAttributeKey('CmkNextDeletionAt', 'DATETIME'),
  /** R6: the latest end of a running lock embargo, all regions together; unset once every embargo is over. */
  lockEmbargoEndsAt: defineSearchAttributeKey('CmkLockEmbargoEndsAt', 'DATETIME'),
  /** R5: the latest moment a key change is next allowed, all regions together; unset once every region may change. */
  keyChangeAllowedAt: defineSearchAttributeKey('CmkKeyChangeAllowedAt', 'DATETIME'),
  /**
   * R6: the end of an open rollback window (the latest, all regions together), as a UTC ISO-8601 keyword
   * (`2026-12-07T10:00:00.000Z`): the SQL visibility stores (the dev server's SQLite, PostgreSQL) hold at most three
   * Datetime attributes. A rollback window always ends with its region's embargo, so `CmkLockEmbargoEndsAt` gives the
   * range; this one says whether a window is open (`IS NOT NULL`) and when (`=`, `STARTS_WITH "2026-12-07"`).
   */
  rollbackUntil: defineSearchAttributeKey('CmkRollbackUntil', 'KEYWORD'),
} as const;

/** `--search-attribute` arguments for `temporal server start-dev` and the operator's `temporal operator` set-up. */
export const SEARCH_ATTRIBUTE_REGISTRATION: ReadonlyArray<[string, string]> = [
  ['CmkTenant', 'Keyword'],
  ['CmkKeyStates', 'KeywordList'],
  ['CmkActiveKeyThumbprints', 'KeywordList'],
  ['CmkEnvironmentCount', 'Int'],
  ['CmkLockedEnvironmentCount', 'Int'],
  ['CmkReprotectionRemaining', 'Int'],
  ['CmkReprotectionRefused', 'KeywordList'],
  ['CmkNextDeletionAt', 'Datetime'],
  ['CmkLockEmbargoEndsAt', 'Datetime'],
  ['CmkKeyChangeAllowedAt', 'Datetime'],
  ['CmkRollbackUntil', 'Keyword'],
];

// ----------------------------------------------------------------------------------------------- start input

export interface TenantWorkflowInput {
  tenant: string;
  displayName: string;
  homeRegion: string;
  admins: Administrator[];
  createdBy: Actor;
  /** The deployment's regions when it routes work by region (Policy.regions); absent: one task queue for all. */
  regions?: string[];
  /** Set by continue-as-new: the whole state carried over as plain JSON. */
  carried?: CarriedTenantState;
  /** The API service's signature over the rest of the input (domain/signed.ts); a continued run needs none. */
  auth?: RequestAuth;
}

/** Everything the workflow keeps, as plain JSON (crosses continue-as-new). */
export interface CarriedTenantState {
  snapshot: TenantSnapshot;
  notificationSeq: number;
  policy: Policy;
  /** Set instead of `snapshot.environments` (then empty) by runs that pack them (domain/carried.ts). */
  packedEnvironments?: PackedEnvironments;
  /** The deployment's regions as the latest request stated them: region work runs on their task queues (R1). */
  regions?: string[];
  /** IDs of lock challenges already spent, with their expiry (single use, R8); pruned once expired. */
  usedChallenges?: Record<string, string>;
  /** Signatures of accepted requests (each works once), compacted (domain/spent-signatures.ts); pruned past their window. */
  spentRequests?: SpentSignatures;
  /** The same as runs before the compaction carried it (whole signature → ISO time): adopted into spentRequests. */
  spentSignatures?: Record<string, string>;
}

// ----------------------------------------------------------------------------------------------- requests

/**
 * Every request carries who asks, the deployment's durations as the API service read them at start (R14; workflows
 * started since signed requests use their worker's own instead), and the API service's signature (domain/signed.ts).
 */
interface Request {
  actor: Actor;
  policy: Policy;
  auth?: RequestAuth;
}

export interface AdminChangeRequest extends Request {
  change: 'add' | 'remove';
  email: string;
  role: AdminRole | null;
}

export interface EnvironmentCreateRequest extends Request {
  env: string;
  region: string;
  systemAdmin: string | null;
}

/** `env create --from-file`: many environments in one operation (domain/bulk.ts), all or none for a bad line. */
export interface EnvironmentsCreateRequest extends Request {
  /** The operation's ID, chosen by the caller: its progress is the query `environmentCreation`. */
  operation: string;
  region: string;
  list: BulkEnvironmentList;
}

/** What a bulk creation did: how many were created, under which key (the provider key of the region). */
export interface EnvironmentsCreateResult {
  operation: string;
  region: string;
  created: number;
  protection: Protection;
  keyThumbprint: string;
  /** Environments the database engine refused after the checks passed (none expected): not created, the rest were. */
  refused: Array<{ env: string; line: number; code: string; message: string }>;
}

/** A bulk creation's progress, for the CLI's `created 4,000 / 10,000` (the query `environmentCreation`). */
export interface EnvironmentCreationProgress {
  operation: string;
  region: string;
  total: number;
  created: number;
  startedAt: string;
  finishedAt: string | null;
}

/** A key the API service staged (disabled) in the vault: a reference, never the material. */
export interface StagedKey {
  vaultKey: { name: string; version: string };
  thumbprint: string;
}

export interface KeyChangeRequest extends Request {
  region: string;
  name: string;
  source: KeySource;
  staged: StagedKey;
}

/** `key activate`: an Available key of the region (uploaded with --no-activate) becomes the active key. */
export interface KeyActivateRequest extends Request {
  region: string;
  thumbprint: string;
}

export interface EnvironmentOperationRequest extends Request {
  env: string;
  operation: EnvironmentOperation;
  /** `env apply --accept-risk`: the opt-in warning accepted (recorded once for the tenant, issue 19). */
  acceptRisk?: boolean;
}

export interface KeyChangeResult {
  region: string;
  key: TenantKey;
}

export interface AdminChangeResult {
  admins: Administrator[];
}

/** R8: the display name as typed, and the proof of possession the API service verified. */
export interface LockRequest extends Request {
  region: string;
  confirm: string;
  proof: PossessionProof;
  /**
   * What the proof was made of — the challenge and the signature over it (base64), neither secret — so that the
   * workflow has it checked again against the vault before the lock's first side effect (DESIGN.md §6).
   */
  possession?: LockPossession;
}

/** `tenant lock --all-regions`: one confirmation, each region's proof; every one is checked before any region is locked. */
export interface LockAllRegionsRequest extends Request {
  confirm: string;
  locks: Array<{ region: string; proof: PossessionProof; possession?: LockPossession }>;
}

export interface LockAllRegionsResult {
  tenant: string;
  regions: LockResult[];
}

export interface LockPossession {
  challenge: string;
  signature: string;
}

export interface LockResult {
  tenant: string;
  region: string;
  lockedAt: string;
  /** R15: no unlock before this. */
  unlockAllowedAt: string;
  /** R9: deleted then unless unlocked. */
  deleteAt: string;
  /** On the tenant key: sealed cryptographically. */
  sealed: string[];
  /** On the provider key: Locked by decision only (R8 says which). */
  lockedByDecisionOnly: string[];
  /** Thumbprints of the tenant key versions withdrawn from the vault (disabled, deleted and purged). */
  withdrawnKeys: string[];
}

/** `tenant policy --lock-approval 1|2` (issue 19): how many administrators a lock takes. */
export interface LockApprovalChangeRequest extends Request {
  lockApproval: 1 | 2;
}

/** The policy as it holds now, a lowering that does not hold yet, and the lock waiting for approval. */
export interface LockApprovalState {
  lockApproval: 1 | 2;
  setBy?: string;
  setAt?: string;
  lockApprovalFrom?: { value: 1 | 2; at: string };
  pendingLock: PendingLock | null;
}

/** A lock asked for under the two-administrator policy: the lock's own request (one region, or all), not yet carried out. */
export interface LockAskRequest extends Request {
  confirm: string;
  allRegions: boolean;
  locks: Array<{ region: string; proof: PossessionProof; possession?: LockPossession }>;
}

/** `tenant lock approve` (with the display name typed again) or `tenant lock cancel`. */
export interface LockDecisionRequest extends Request {
  id?: string;
  confirm?: string;
}

/** An approved lock: every region it asked for, locked, and who asked and who approved. */
export interface LockApprovedResult extends LockAllRegionsResult {
  requestedBy: string;
  approvedBy: string;
}

/** R10: the withdrawn key, uploaded again and staged (disabled) by the API service. */
export interface ReactivateRequest extends Request {
  region: string;
  staged: StagedKey;
}

export interface RollbackRequest extends Request {
  region: string;
}

export interface RollbackResult extends KeyChangeResult {
  /** The key the rollback replaced (the one the last change had made active). */
  rolledBack: { name: string; thumbprint: string };
}

export interface UnlockRequest extends Request {
  env: string;
}

/** `env delete`: a locked environment destroyed now, as R9 destroys it at its deadline; `confirm` repeats its ID. */
export interface EnvironmentDeleteRequest extends Request {
  env: string;
  confirm: string;
}

export interface BackupRequest extends Request {
  env: string;
  operation: BackupOperation;
  /** `restore` only: the backup to restore; null for the latest. */
  backupId: string | null;
}

export interface BackupResult {
  environment: EnvironmentRecord;
  backup: BackupView;
}

export type PurgeRequest = Request;

/** One environment as the drift check found it (domain/drift.ts); no differences: as the workflow believes. */
export interface DriftFinding {
  env: string;
  /** What the workflow believed when the check read the environment: a finding about a belief since changed is dropped. */
  believed: Pick<EnvironmentRecord, 'state' | 'protection' | 'keyThumbprint'>;
  differences: DriftDifference[];
}

/** The drift check's findings for a tenant, with the operators' addresses (the worker's CMK_OPERATOR_EMAIL) to mail. */
export interface DriftRecordRequest extends Request {
  checkedAt: string;
  findings: DriftFinding[];
  operators: string[];
}

/** What the tenant workflow recorded: every drifting environment, and those found for the first time (mailed). */
export interface DriftRecordResult {
  tenant: string;
  drifting: Array<{ env: string } & EnvironmentDrift>;
  newlyFound: string[];
}

/** What `cmk drift check` prints, and what each run of the Schedule returns. */
export interface DriftCheckReport {
  checkedAt: string;
  tenants: DriftRecordResult[];
}

/** What one purge pass did for a tenant: environments deleted now (a timer had missed them) and those still locked. */
export interface PurgeResult {
  tenant: string;
  deleted: string[];
  stillLocked: Array<{ env: string; deleteAt: string }>;
}

/** The tenant's state with its environments packed (domain/carried.ts): what the client library reads. */
export type CompactTenantSnapshot = Omit<TenantSnapshot, 'environments'> & { packedEnvironments: PackedEnvironments };

/** Which environments `environmentSnapshot` keeps: the one asked about, and the caller's as system administrator. */
export interface EnvironmentScope {
  env: string;
  /** The caller's e-mail; null for the operator. */
  caller: string | null;
}

export const queries = {
  snapshot: defineQuery<TenantSnapshot>('snapshot'),
  /** The same state in a quarter of the bytes: a full snapshot of 10,000 environments exceeds Temporal's 2 MB payload limit. */
  compactSnapshot: defineQuery<CompactTenantSnapshot>('compactSnapshot'),
  /**
   * The tenant with only the environments a request about one environment needs: that one, and those the caller
   * administers as system administrator (their privileges). Every check on such a request reads nothing else, and a
   * tenant of 10,000 environments no longer travels whole for each of them.
   */
  environmentSnapshot: defineQuery<CompactTenantSnapshot, [EnvironmentScope]>('environmentSnapshot'),
  /** The latest re-protection per region: done, refused and remaining (the `key show` progress). */
  reprotection: defineQuery<Record<string, ReprotectionProgress>>('reprotection'),
  /** Requests refused because the API service did not sign them (Temporal frontend side door), since the worker cached this run. */
  forgedRequests: defineQuery<ForgedRequests>('forgedRequests'),
  /** A bulk creation's progress by its operation ID; null when this run has not accepted it (yet). */
  environmentCreation: defineQuery<EnvironmentCreationProgress | null, [string]>('environmentCreation'),
};

/** Refusals of unsigned or forged requests, for operators (they cannot be written to history: refused updates leave none). */
export interface ForgedRequests {
  refused: number;
  last: { at: string; message: string; reason: string } | null;
}

/**
 * The update ID of an apply/revert/rekey request: the same operation on the same environment while it runs gets
 * the same ID, so Temporal attaches the repeat to the running update instead of starting a second one; once it
 * has finished, the environment's sequence has moved on and the next request is a new update.
 */
export function environmentOperationUpdateId(env: Pick<EnvironmentRecord, 'id' | 'operationSeq' | 'runningOperation'>, operation: EnvironmentOperation): string {
  const running = env.runningOperation === operation;
  const seq = (env.operationSeq ?? 0) + (running ? 0 : 1);
  return `env-op/${env.id}/${operation}/${seq}`;
}

/** The state an environment is in while an operation runs on it. */
export const ENVIRONMENT_OPERATION_STATES = { apply: 'Applying', revert: 'Reverting', rekey: 'Reprotecting' } as const;

export const updates = {
  changeAdmin: defineUpdate<AdminChangeResult, [AdminChangeRequest]>('changeAdmin'),
  createEnvironment: defineUpdate<EnvironmentRecord, [EnvironmentCreateRequest]>('createEnvironment'),
  changeKey: defineUpdate<KeyChangeResult, [KeyChangeRequest]>('changeKey'),
  environmentOperation: defineUpdate<EnvironmentRecord, [EnvironmentOperationRequest]>('environmentOperation'),
  lockTenant: defineUpdate<LockResult, [LockRequest]>('lockTenant'),
  lockAllRegions: defineUpdate<LockAllRegionsResult, [LockAllRegionsRequest]>('lockAllRegions'),
  reactivateKey: defineUpdate<KeyChangeResult, [ReactivateRequest]>('reactivateKey'),
  unlockEnvironment: defineUpdate<EnvironmentRecord, [UnlockRequest]>('unlockEnvironment'),
  environmentBackup: defineUpdate<BackupResult, [BackupRequest]>('environmentBackup'),
  purgeOverdue: defineUpdate<PurgeResult, [PurgeRequest]>('purgeOverdue'),
  rollbackKey: defineUpdate<RollbackResult, [RollbackRequest]>('rollbackKey'),
  /**
   * A run started before signed requests loads its worker's trust (domain/signed.ts); unsigned, as anyone may
   * send it: it takes no input and changes nothing a request could choose. Refused once the run has its trust.
   */
  refreshTrust: defineUpdate<void>('refreshTrust'),
  deleteEnvironment: defineUpdate<EnvironmentRecord, [EnvironmentDeleteRequest]>('deleteEnvironment'),
  /** `key upload --no-activate`: the staged key kept Available, protecting nothing. */
  addKey: defineUpdate<KeyChangeResult, [KeyChangeRequest]>('addKey'),
  activateKey: defineUpdate<KeyChangeResult, [KeyActivateRequest]>('activateKey'),
  /** `env create --from-file`: one update for the whole list (workflows/tenant/bulk.ts). */
  createEnvironments: defineUpdate<EnvironmentsCreateResult, [EnvironmentsCreateRequest]>('createEnvironments'),
  /** The drift check's findings: kept for `env list`, mailed and audited once per new drift (workflows/tenant/drift.ts). */
  recordDrift: defineUpdate<DriftRecordResult, [DriftRecordRequest]>('recordDrift'),
  /** The two-administrator lock (workflows/tenant/lock-approval.ts). */
  setLockApproval: defineUpdate<LockApprovalState, [LockApprovalChangeRequest]>('setLockApproval'),
  requestLock: defineUpdate<PendingLock, [LockAskRequest]>('requestLock'),
  approveLock: defineUpdate<LockApprovedResult, [LockDecisionRequest]>('approveLock'),
  cancelLock: defineUpdate<PendingLock, [LockDecisionRequest]>('cancelLock'),
};

/** The update ID of a bulk creation: a request sent again (a dropped connection) attaches to the running one. */
export const environmentsCreateUpdateId = (operation: string): string => `env-create-bulk/${operation}`;

/** The daily purge of locked environments past their deadline (R9's safety net), and its Schedule. */
export const PURGE_SCHEDULE_ID = 'cmk-purge-locked-environments';
export const PURGE_WORKFLOW_TYPE = 'purgeLockedEnvironmentsWorkflow';

/** Mail left pending by a provider outage: retried by a Schedule every minute, and by the operator (`cmk mail retry`). */
export const MAIL_RETRY_SCHEDULE_ID = 'cmk-mail-retry';
export const MAIL_RETRY_WORKFLOW_TYPE = 'mailRetryWorkflow';
/** The operator's retry of one tenant's mail: one at a time per tenant (a second request joins the running one). */
export const mailRetryWorkflowId = (tenant: string): string => `cmk-mail-retry/${tenant}`;

/** The drift check (workflows/drift.ts): hourly by its Schedule over every tenant, and now by `cmk drift check`. */
export const DRIFT_SCHEDULE_ID = 'cmk-drift-check';
export const DRIFT_WORKFLOW_TYPE = 'driftCheckWorkflow';
/** `cmk drift check` of one tenant: one at a time per tenant (a second request joins the running one). */
export const driftCheckWorkflowId = (tenant: string): string => `cmk-drift-check/${tenant}`;

/** The audit trail's single writer (workflows/audit.ts): one workflow for the whole deployment. */
export const AUDIT_WORKFLOW_ID = 'cmk-audit-trail';
export const AUDIT_WORKFLOW_TYPE = 'auditTrailWorkflow';
export const auditMessages = {
  /** Records and the signature over them (domain/signed.ts): unsigned ones are dropped. */
  record: defineSignal<[AuditEntry[], RequestAuth?]>('record'),
  /** Signed (domain/signed.ts), as the tenant workflows' updates. */
  read: defineUpdate<AuditReadResult, [AuditReadRequest]>('read'),
  /** As the tenant workflow's `refreshTrust`: a run from before signed records loads its worker's trust. */
  refreshTrust: defineUpdate<void>('refreshTrust'),
};
