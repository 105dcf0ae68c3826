/**
 * The model's carried state: a tenant's administrators, environments and keys per region, as plain JSON (it crosses
 * continue-as-new and the query answers). Pure: no Node APIs, no I/O.
 */

export type AdminRole = 'global' | 'service';
export interface Administrator {
  email: string;
  role: AdminRole;
}

/** Key states (DESIGN.md §3). */
export type KeyState = 'Available' | 'Installing' | 'Active' | 'Retired' | 'Locked';
export type EnvironmentState = 'Online' | 'Applying' | 'Reverting' | 'Reprotecting' | 'Locked' | 'Deleted';
export type Protection = 'provider' | 'tenant';
export type KeySource = 'generated' | 'pfx' | 'byok';

/** The operations an environment runs one at a time (EnvironmentRecord.runningOperation). */
export type EnvironmentOperation = 'apply' | 'revert' | 'rekey';
export type BackupOperation = 'backup' | 'restore';

export interface TenantKey {
  /** The administrator's name for the key (`--name`). */
  name: string;
  thumbprint: string;
  /** Where the key lives in the vault: a version of the (tenant, region) key. A reference, not a secret. */
  vaultKey: { name: string; version: string };
  state: KeyState;
  source: KeySource;
  createdAt: string;
  createdBy: string;
  activatedAt: string | null;
  activatedBy: string | null;
  retiredAt: string | null;
  /** When a lock withdrew it (state Locked), and when it was re-activated (R10). */
  lockedAt?: string;
  reactivatedAt?: string;
  /** False once the key was deleted from the vault (after the rollback window, or withdrawn by a lock). */
  inVault: boolean;
  /** The vault refused to delete it when it was retired: it stays there until a later operation retires it again. */
  retireFailure?: BackgroundFailure;
}

/** Background work the outside world refused (vault, database): recorded where it applies, mailed, retried. */
export interface BackgroundFailure {
  at: string;
  code: string;
  message: string;
}

export interface EnvironmentRecord {
  id: string;
  region: string;
  state: EnvironmentState;
  protection: Protection;
  keyThumbprint: string;
  systemAdmin: string | null;
  createdAt: string;
  /**
   * How many apply/revert/rekey operations were started on it: the request for the one running carries this number
   * in its update ID, so a repeat of the same request attaches to it. Absent before the first.
   */
  operationSeq?: number;
  /** The apply/revert/rekey running on it now (its state alone cannot say: a rekey and a re-protection are both Reprotecting). */
  runningOperation?: EnvironmentOperation | BackupOperation | 'unlock' | 'delete';
  /** Set while it is Locked (R8): when, by whom, whether sealed, and when R9 deletes it. */
  lock?: EnvironmentLock;
  /** When R9 deleted it (state Deleted). */
  deletedAt?: string;
}

/** An environment's lock (R8, R9, R15). */
export interface EnvironmentLock {
  lockedAt: string;
  lockedBy: string;
  /** On the tenant key when locked: sealed cryptographically. On the provider key: Locked by decision only. */
  sealed: boolean;
  /** R9: deleted at this moment unless unlocked. */
  deleteAt: string;
  /** R9's deletion was refused (database server, vault): it is tried again at `retryAt`, or by the operator's purge. */
  deletionFailure?: BackgroundFailure & { retryAt: string };
  /** The deletion warnings' moments (7 days and 1 day before, scaled with the retention), and how many were sent. */
  warnAt: string[];
  warningsSent: number;
}

/** An environment a re-protection could not move to the new key: it stays on its previous key, which stays in the vault. */
export interface ReprotectionRefusal {
  env: string;
  code: string;
  message: string;
}

/** R7 after a key change: every environment on the tenant key moved to the new key, batch by batch. */
export interface ReprotectionProgress {
  region: string;
  keyName: string;
  keyThumbprint: string;
  startedAt: string;
  finishedAt: string | null;
  total: number;
  done: number;
  refused: ReprotectionRefusal[];
  remaining: number;
}

export interface RegionKeys {
  region: string;
  /** Every key this region has had, oldest first. */
  keys: TenantKey[];
  activeThumbprint: string | null;
  /** The key the last change replaced, kept in the vault until `rollbackUntil` (R6). */
  rollbackThumbprint: string | null;
  rollbackUntil: string | null;
  /** R5 counts from here: the last generate or upload (a rollback does not restart it). */
  lastKeyChangeAt: string | null;
  /** R6 counts from here: the last generate, upload or rollback. */
  embargoStartedAt: string | null;
}

export const activeKeyOf = (region: RegionKeys | undefined): TenantKey | null =>
  region?.keys.find((k) => k.thumbprint === region.activeThumbprint) ?? null;

/** The active key when it may protect environments: not withdrawn by a lock (R8) and not yet re-activated (R10). */
export const usableKeyOf = (region: RegionKeys | undefined): TenantKey | null => {
  const key = activeKeyOf(region);
  return key && key.state !== 'Locked' ? key : null;
};

export interface TenantSnapshot {
  tenant: string;
  displayName: string;
  homeRegion: string;
  createdAt: string;
  admins: Administrator[];
  environments: EnvironmentRecord[];
  regions: Record<string, RegionKeys>;
  /** A key change being carried out, per region (OPERATION_IN_PROGRESS for another). */
  operations: Record<string, string>;
  /** The latest re-protection per region, running or finished (absent in tenants older than batched re-protection). */
  reprotections?: Record<string, ReprotectionProgress>;
  /** Environments whose database or vault differs from what this workflow believes, found by the drift check. */
  drift?: Record<string, EnvironmentDrift>;
  /** The opt-in warning of a first apply, accepted once for the tenant (`env apply --accept-risk`); absent before. */
  riskAcceptance?: RiskAcceptance;
  /** The two-administrator lock policy (`tenant policy --lock-approval`); absent: one administrator locks. */
  lockApproval?: LockApprovalPolicy;
  /** A lock one administrator asked for, waiting for a second's approval (lockApproval 2); absent or null: none. */
  pendingLock?: PendingLock | null;
}

/**
 * How many global or service administrators a lock takes (issue 19). Raising it to 2 holds at once; lowering it
 * to 1 holds only after the approval window (`effectiveAt`), so that one administrator cannot lift the rule and
 * lock alone in the same minute: the others are mailed and have the window to set it back.
 */
export interface LockApprovalPolicy {
  /** What an administrator last asked for. */
  required: 1 | 2;
  setBy: string;
  setAt: string;
  /** A lowering to 1 holds from then on; until then a lock still takes two. */
  effectiveAt?: string;
}

/** A lock waiting for a second administrator: its proofs were verified (and spent) when it was asked for. */
export interface PendingLock {
  id: string;
  requestedBy: string;
  requestedAt: string;
  /** Approved by then, or it lapses (the approval window, 24 hours by default). */
  expiresAt: string;
  /** `tenant lock --all-regions`: every region at once. */
  allRegions: boolean;
  /** Each region to lock, with the thumbprint of the active key whose possession was proven. */
  regions: Array<{ region: string; thumbprint: string }>;
}

/**
 * Who accepted the risk of managing the tenant's own key, and when. Both null for a tenant that had applied a tenant
 * key before the opt-in existed: it is not asked (issue 19).
 */
export interface RiskAcceptance {
  by: string | null;
  at: string | null;
}

/** The tenant's acceptance of the risk: recorded, implied by an environment already on a tenant key, or null. */
export function riskAcceptanceOf(tenant: Pick<TenantSnapshot, 'riskAcceptance' | 'environments'>): RiskAcceptance | null {
  if (tenant.riskAcceptance) return tenant.riskAcceptance;
  return tenant.environments.some((e) => e.protection === 'tenant') ? { by: null, at: null } : null;
}

/** A drift as last found (domain/drift.ts): kept until a check finds the environment as believed again. */
export interface EnvironmentDrift {
  /** When this drift (this signature) was first found: a later check of the same drift keeps it. */
  foundAt: string;
  /** When a check last saw it. */
  checkedAt: string;
  /** What differs, in a sentence an administrator understands. */
  summary: string;
  differences: Array<{ kind: string; expected: string; found: string }>;
  signature: string;
}

export function emptyRegion(region: string): RegionKeys {
  return { region, keys: [], activeThumbprint: null, rollbackThumbprint: null, rollbackUntil: null, lastKeyChangeAt: null, embargoStartedAt: null };
}

export const lockedEnvironments = (tenant: Pick<TenantSnapshot, 'environments'>, region: string): EnvironmentRecord[] =>
  tenant.environments.filter((e) => e.region === region && e.state === 'Locked');

/** The region's environments that a new active key re-protects (R7): those on the tenant key, neither Locked nor Deleted. */
export const reprotectionTargets = (tenant: Pick<TenantSnapshot, 'environments'>, region: string): EnvironmentRecord[] =>
  tenant.environments.filter((e) => e.region === region && e.protection === 'tenant' && e.state !== 'Locked' && e.state !== 'Deleted');

/** The region's environments a lock takes offline (R8): every one not Deleted. */
export const lockTargets = (tenant: Pick<TenantSnapshot, 'environments'>, region: string): EnvironmentRecord[] =>
  tenant.environments.filter((e) => e.region === region && e.state !== 'Deleted');
