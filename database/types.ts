/**
 * Environment databases, as the control plane sees them: each one encrypted under its own random DEK, which exists
 * at rest only in the environment's one key record, wrapped by exactly one protector key in the vault (DESIGN.md §6).
 */

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

export interface EnvironmentDatabases {
  /** A new database under a fresh DEK wrapped by `protector`. Idempotent: an existing one is returned unchanged. */
  create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView>;
  describe(tenant: string, env: string): Promise<KeyRecordView | undefined>;
  readRows(tenant: string, env: string): Promise<Row[]>;
  writeRow(tenant: string, env: string, text: string): Promise<Row>;
  /** A new DEK, every page re-encrypted, wrapped by `protector` (TDE's REGENERATE). Crash-safe. */
  rekey(tenant: string, env: string, protector: Protector, hooks?: { afterPagesRewritten?: () => void; onProgress?: (percentComplete: number) => void }): Promise<KeyRecordView>;
  /** Unwraps the DEK with the current protector and re-wraps it with `protector`, in one call. Idempotent. */
  reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView>;
}
