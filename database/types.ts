/**
 * Environment databases, as the control plane sees them: each one encrypted under its own random DEK, which exists
 * at rest only in the environment's one key record, wrapped by exactly one protector key in the vault (DESIGN.md §6).
 */

/**
 * The database contradicts its own key record (on SQL Server: the DEK wrapped by another encryptor than the record
 * names): changed behind cmk's back. The drift check reports it; every other caller fails as before.
 */
export class KeyRecordDisagreement extends Error {}

/** The key that wraps an environment's DEK: the region's provider key or the tenant's active key. */
export interface Protector {
  kind: 'provider' | 'tenant';
  name: string;
  version: string;
  thumbprint: string;
}

/** What may be shown of a key record: never the DEK, wrapped or not. */
export interface KeyRecordView {
  tenant: string;
  env: string;
  protector: Protector;
  algorithm: 'RSA-OAEP-256';
  updatedAt: string;
}

export interface Row {
  id: number;
  text: string;
  createdAt: string;
}

/** One backup of an environment: its encrypted database as it was, without a DEK of its own (the key record opens it). */
export interface BackupView {
  /** `b-<YYYYMMDDhhmmssSSS>-<4 hex>`, sortable by time; matches the ID grammar of DESIGN.md §4. */
  id: string;
  tenant: string;
  env: string;
  createdAt: string;
  sizeBytes: number;
}

/** Why and until when an environment is offline: a lock (R8), to be deleted at `deleteAt` unless unlocked (R9). */
export interface OfflineMark {
  lockedAt: string;
  deleteAt: string;
}

export interface OfflineEnvironment extends OfflineMark {
  tenant: string;
  env: string;
}

/**
 * Where a rekey's page scan stands, as an engine reports it on every poll. The activity keeps the last one as its
 * heartbeat details and gives it back to its retry (`RekeyHooks.resume`), so that a scan longer than an attempt is
 * waited for, not started again. Plain JSON: it crosses Temporal as a payload, and holds no secret.
 */
export interface ScanProgress {
  percentComplete: number;
  /** SQL Server's sys.dm_database_encryption_keys.encryption_state at the last poll (3 encrypted, 4 key change…). */
  encryptionState?: number;
  /**
   * Set just before the engine asks for the new DEK: the DEK's regenerate date as it was then. A retry that finds
   * another date knows that the new DEK was made, even when the scan has ended meanwhile.
   */
  regenerateRequested?: { before: string | null };
  /** The regenerate date of the new DEK whose scan is being waited for: a later retry knows it by this date. */
  regeneratedAt?: string;
}

export interface RekeyHooks {
  afterPagesRewritten?: () => void;
  onProgress?: (percentComplete: number, scan?: ScanProgress) => void;
  /**
   * Present only on a retry of the same request: the last progress the earlier attempt reported (`{}` when none
   * reached Temporal). The engine then resumes a scan that attempt started instead of asking for another new DEK.
   */
  resume?: Partial<ScanProgress>;
  /** Aborted when the attempt is cut off (its timeout, or the worker shutting down): the engine stops waiting. */
  signal?: AbortSignal;
}

export interface EnvironmentDatabases {
  /** A new database under a fresh DEK wrapped by `protector`. Idempotent: an existing one is returned unchanged. */
  create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView>;
  describe(tenant: string, env: string): Promise<KeyRecordView | undefined>;
  readRows(tenant: string, env: string): Promise<Row[]>;
  writeRow(tenant: string, env: string, text: string): Promise<Row>;
  /** A new DEK, every page re-encrypted, wrapped by `protector` (TDE's REGENERATE). Crash-safe. */
  rekey(tenant: string, env: string, protector: Protector, hooks?: RekeyHooks): Promise<KeyRecordView>;
  /** Unwraps the DEK with the current protector and re-wraps it with `protector`, in one call. Idempotent. */
  reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView>;

  /**
   * R8: the database goes offline — nothing reads, writes, backs up or restores it (ENVIRONMENT_LOCKED) until
   * `bringOnline` — and the mark records when R9 deletes it. Idempotent (a repeat keeps the first mark).
   */
  takeOffline(tenant: string, env: string, mark: OfflineMark): Promise<void>;
  /**
   * R10: back online after an unlock. `protector`, when given, is the same key (same thumbprint) re-activated under
   * a new vault version: the key record is re-bound to it (the wrapped DEK does not change). KEY_MISMATCH for a
   * different thumbprint. Proves that the DEK opens the database before it answers. Idempotent.
   */
  bringOnline(tenant: string, env: string, protector?: Protector): Promise<KeyRecordView>;
  /** The offline mark, or undefined when the environment is online (or does not exist). */
  offlineMark(tenant: string, env: string): Promise<OfflineMark | undefined>;
  /** Every offline environment with its mark: the daily purge's safety net (R9). */
  listOffline(): Promise<OfflineEnvironment[]>;
  /** R9 crypto-shredding: the database, its key record (every wrapped DEK) and every backup destroyed. Idempotent. */
  destroy(tenant: string, env: string): Promise<void>;
  /** A consistent copy of the encrypted database. It carries no DEK of its own: the key record opens it. */
  backup(tenant: string, env: string): Promise<BackupView>;
  /** The environment's backups, oldest first. */
  listBackups(tenant: string, env: string): Promise<BackupView[]>;
  /**
   * Puts the backup (the latest when `backupId` is omitted) in place of the database: rows written after it are gone.
   * NOT_FOUND for an unknown backup; ENVIRONMENT_LOCKED while offline. The key record still opens it, through any
   * apply, revert, rekey and rotation since it was taken.
   */
  restore(tenant: string, env: string, backupId?: string): Promise<BackupView>;
}
