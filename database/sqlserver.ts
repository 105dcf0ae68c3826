/**
 * The production database engine: one SQL Server database per environment, encrypted with TDE. SQL Server keeps the
 * DEK in the database boot record, wrapped by exactly one encryptor in master — a server certificate (the provider's
 * service-managed key) or an asymmetric key opened from Azure Key Vault through the EKM provider (the tenant's key).
 * The DEK never leaves SQL Server; this engine only chooses what wraps it and when a new one is generated.
 *
 * Microsoft documentation relied on (learn.microsoft.com, SQL Server 2022):
 * - "Set up SQL Server TDE Extensible Key Management by using Azure Key Vault" and "Use SQL Server Connector with SQL
 *   Encryption Features": CREATE ASYMMETRIC KEY … FROM PROVIDER … WITH PROVIDER_KEY_NAME, CREATION_DISPOSITION =
 *   OPEN_EXISTING in master; CREATE LOGIN … FROM ASYMMETRIC KEY; ALTER LOGIN … ADD CREDENTIAL; then CREATE DATABASE
 *   ENCRYPTION KEY … ENCRYPTION BY SERVER ASYMMETRIC KEY and ALTER DATABASE … SET ENCRYPTION ON.
 * - "ALTER DATABASE ENCRYPTION KEY": REGENERATE WITH ALGORITHM and ENCRYPTION BY SERVER are alternatives; the encryptor
 *   must be in master; "after a database encryption key has been modified twice, a log backup must be performed
 *   before the database encryption key can be modified again".
 * - "sys.dm_database_encryption_keys": encryption_state 0 none, 1 unencrypted, 2 encryption in progress, 3 encrypted,
 *   4 key change in progress, 5 decryption in progress, 6 protection change in progress; percent_complete;
 *   encryptor_thumbprint.
 * - "Transparent data encryption (TDE)": key statements are refused while a scan or another key statement runs.
 */
import { ConnectionPool, type config as MssqlConfig } from 'mssql';
import { CmkError } from '../common/errors';
import { assertEnvironmentIds } from './ids';
import * as sql from './sqlserver-sql';
import { MAX_IDENTIFIER_LENGTH, type Encryptor } from './sqlserver-sql';
import type { EnvironmentDatabases, KeyRecordView, Protector, Row } from './types';

// ------------------------------------------------------------------------------------------------- connection

export type SqlParams = Record<string, string | number>;

/** What the engine needs of SQL Server: one batch at a time, in a chosen database, with bound parameters. */
export interface SqlConnection {
  /** Runs `statement` as one batch with `database` as the current database; returns its first result set's rows. */
  query<T extends object>(database: string, statement: string, params?: SqlParams): Promise<T[]>;
  close(): Promise<void>;
}

/**
 * SqlConnection over an `mssql` connection pool. MSSQL_URL is either an ADO-style connection string
 * (`Server=host,1433;User Id=…;Password=…;TrustServerCertificate=true`) or a URL
 * (`mssql://user:password@host:1433?trustServerCertificate=true`).
 */
export class MssqlConnection implements SqlConnection {
  private readonly pool: ConnectionPool;
  private connecting: Promise<ConnectionPool> | undefined;

  constructor(url: string) {
    this.pool = new ConnectionPool(parseMssqlUrl(url));
  }

  async query<T extends object>(database: string, statement: string, params: SqlParams = {}): Promise<T[]> {
    const request = (await this.connected()).request();
    for (const [name, value] of Object.entries(params)) request.input(name, value);
    // Every batch names its database: pooled connections keep whatever database the previous batch chose.
    const result = await request.query<T>(`USE ${sql.quoteName(database)};\n${statement}`);
    return result.recordset ? [...result.recordset] : [];
  }

  async close(): Promise<void> {
    this.connecting = undefined;
    await this.pool.close();
  }

  private connected(): Promise<ConnectionPool> {
    // A failed connect is forgotten, so the next call (the activity's retry) tries again.
    this.connecting ??= this.pool.connect().catch((err: unknown) => {
      this.connecting = undefined;
      throw err;
    });
    return this.connecting;
  }
}

function parseMssqlUrl(url: string): MssqlConfig {
  // Key statements, log backups and CREATE DATABASE outlast mssql's 15-second default.
  const requestTimeout = 5 * 60_000;
  if (!/^(mssql|sqlserver):\/\//i.test(url)) return { ...ConnectionPool.parseConnectionString(url), requestTimeout };
  const parsed = new URL(url);
  const flag = (name: string, fallback: boolean): boolean => {
    const value = parsed.searchParams.get(name);
    return value === null ? fallback : /^(1|true|yes)$/i.test(value);
  };
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  return {
    server: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : 1433,
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    ...(database ? { database } : {}),
    requestTimeout,
    options: { encrypt: flag('encrypt', true), trustServerCertificate: flag('trustServerCertificate', false) },
  };
}

// ----------------------------------------------------------------------------------------------------- engine

export interface SqlServerOptions {
  connection: SqlConnection;
  /**
   * Where tenant keys come from. 'ekm' (production): Azure Key Vault through the EKM provider. 'certificate': a
   * server certificate per tenant key version, made by SQL Server itself — for test rigs only (the docker image has
   * no Azure Key Vault to reach): the tenant's key then never protects anything, it only names a certificate.
   */
  tenantKeySource?: 'ekm' | 'certificate';
  /** The cryptographic provider registered with CREATE CRYPTOGRAPHIC PROVIDER. */
  ekmProvider?: string;
  /** The EKM credential (CREATE CREDENTIAL … FOR CRYPTOGRAPHIC PROVIDER) added to each tenant key's TDE login. */
  ekmCredential?: string;
  /**
   * The Azure Key Vault key name (PROVIDER_KEY_NAME) of a tenant key version; the protector's name by default.
   * Microsoft's connector ignores AKV key versions ("a new key with a new key name must be created" to rotate) and
   * allows only letters, digits and dashes, 26 at most: a vault that keeps versions under one name maps them here.
   */
  ekmKeyName?: (protector: Protector) => string;
  /** Where BACKUP LOG writes before a REGENERATE (FULL/BULK_LOGGED with a log chain); SQL Server's default dir if unset. */
  logBackupDir?: string;
  pollIntervalMs?: number;
  /** How long to wait for someone else's scan or key change before giving up (a plain Error: the activity retries). */
  busyTimeoutMs?: number;
  /** How long to wait for a scan this engine started. */
  scanTimeoutMs?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

interface DatabaseInfo {
  name: string;
  recovery_model: string;
  last_log_backup_lsn: string | null;
}

interface EncryptionState {
  encryption_state: number;
  percent_complete: number;
  encryptor_thumbprint: string | null;
}

interface KeyRecordRow {
  kind: string;
  name: string;
  version: string;
  thumbprint: string;
  encryptor_type: string;
  encryptor_name: string;
  updated_at: string;
}

interface RowRow {
  id: number;
  text: string;
  created_at: Date | string;
}

interface KeyRecord {
  protector: Protector;
  encryptor: Encryptor;
  updatedAt: string;
}

const MASTER = 'master';
const ENCRYPTED = 3;
/** 2 encrypting, 4 key change, 5 decrypting, 6 protection change: no key statement may start meanwhile. */
const BUSY_STATES = new Set([2, 4, 5, 6]);
const MAX_ROW_TEXT = 4000;

/** Vault key names (Azure: letters, digits, dashes) short enough to make `cmk_provider_<name>` a valid identifier. */
const PROTECTOR_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,114}$/;
const PROTECTOR_VERSION = /^[A-Za-z0-9-]{1,128}$/;
/** The vault's thumbprint: lowercase hex SHA-256 of the public key (vault/types.ts). */
const PROTECTOR_THUMBPRINT = /^[0-9a-f]{64}$/;

export class SqlServerEnvironmentDatabases implements EnvironmentDatabases {
  private readonly connection: SqlConnection;
  private readonly tenantKeySource: 'ekm' | 'certificate';
  private readonly ekmProvider: string;
  private readonly ekmCredential: string;
  private readonly ekmKeyName: (protector: Protector) => string;
  private readonly logBackupDir: string | undefined;
  private readonly pollIntervalMs: number;
  private readonly busyTimeoutMs: number;
  private readonly scanTimeoutMs: number;
  private readonly now: () => Date;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: SqlServerOptions) {
    this.connection = options.connection;
    this.tenantKeySource = options.tenantKeySource ?? 'ekm';
    this.ekmProvider = options.ekmProvider ?? 'AzureKeyVault_EKM';
    this.ekmCredential = options.ekmCredential ?? 'cmk_ekm_tde_cred';
    this.ekmKeyName = options.ekmKeyName ?? ((protector) => protector.name);
    this.logBackupDir = options.logBackupDir;
    this.pollIntervalMs = options.pollIntervalMs ?? 2_000;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 10 * 60_000;
    this.scanTimeoutMs = options.scanTimeoutMs ?? 12 * 3_600_000;
    this.now = options.now ?? (() => new Date());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    // Quoting would make any name safe; refusing odd ones here makes a typo in the deployment's settings loud.
    for (const [what, value] of [['EKM provider', this.ekmProvider], ['EKM credential', this.ekmCredential]] as const) {
      if (!/^[A-Za-z_][A-Za-z0-9_-]{0,127}$/.test(value)) throw new Error(`"${value}" is not a usable ${what} name.`);
    }
  }

  /** Closes the connection the engine was given. */
  close(): Promise<void> {
    return this.connection.close();
  }

  async create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    checkProtector(protector);
    const info = await this.findDatabase(database);
    if (info) {
      const existing = await this.readKeyRecord(database);
      if (existing) return this.checkedView(tenant, env, database, existing);
    }
    // Encryptor first: a tenant key the vault refuses leaves no half-made database behind.
    const encryptor = await this.ensureEncryptor(protector);
    if (!info) await this.connection.query(MASTER, sql.createDatabase(database));
    await this.connection.query(database, sql.CREATE_TABLES);
    const record: KeyRecord = { protector, encryptor, updatedAt: this.now().toISOString() };
    const state = await this.waitUntilIdle(database);
    if (!state) {
      await this.connection.query(database, sql.createEncryptionKey(encryptor), recordParams(record));
    } else {
      // A DEK without a key record: an earlier attempt stopped between its batches. Settle it on this protector.
      await this.protect(database, state, encryptor, record);
    }
    if (state?.encryption_state !== ENCRYPTED) await this.connection.query(MASTER, sql.setEncryptionOn(database));
    await this.waitUntilEncrypted(database, this.scanTimeoutMs);
    return view(tenant, env, record);
  }

  async describe(tenant: string, env: string): Promise<KeyRecordView | undefined> {
    const database = databaseName(tenant, env);
    if (!(await this.findDatabase(database))) return undefined;
    const record = await this.readKeyRecord(database);
    return record && this.checkedView(tenant, env, database, record);
  }

  async readRows(tenant: string, env: string): Promise<Row[]> {
    const database = await this.existingDatabase(tenant, env);
    const rows = await this.connection.query<RowRow>(database, sql.READ_ROWS);
    return rows.map(toRow);
  }

  async writeRow(tenant: string, env: string, text: string): Promise<Row> {
    const database = databaseName(tenant, env);
    if (typeof text !== 'string' || text.length > MAX_ROW_TEXT) {
      throw new CmkError('INVALID_ARGUMENT', `A row holds text of at most ${MAX_ROW_TEXT} characters.`);
    }
    await this.existingDatabase(tenant, env);
    const [row] = await this.connection.query<RowRow>(database, sql.INSERT_ROW, { text });
    if (!row) throw new Error(`SQL Server returned no row for the insert into ${database}.`);
    return toRow(row);
  }

  /**
   * A new DEK under `protector`, every page re-encrypted. When the protector changes, the DEK is first re-wrapped by
   * the new encryptor and only then regenerated, so the new DEK is never wrapped by the old one (DESIGN.md §6: nothing
   * the provider held opens data written after apply).
   */
  async rekey(
    tenant: string,
    env: string,
    protector: Protector,
    hooks: { afterPagesRewritten?: () => void; onProgress?: (percentComplete: number) => void } = {},
  ): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    checkProtector(protector);
    const { info, record: current } = await this.requireKeyRecord(env, database);
    const encryptor = await this.ensureEncryptor(protector);
    const state = await this.waitUntilIdle(database, hooks.onProgress);
    if (state?.encryption_state !== ENCRYPTED) throw new Error(`${database} is not encrypted (encryption_state ${state?.encryption_state ?? 'none'}).`);
    const record: KeyRecord = { protector, encryptor, updatedAt: this.now().toISOString() };
    if (!sameRecord(current, record) || !sameThumbprint(state.encryptor_thumbprint, encryptor.thumbprint)) {
      await this.protect(database, state, encryptor, record);
      // Progress is reported for the page scan below; this wait is for the re-wrap, which rewrites no page.
      await this.waitUntilEncrypted(database, this.scanTimeoutMs);
    }
    await this.backupLogIfRequired(info);
    await this.connection.query(database, sql.regenerateEncryptionKey(), recordParams(record));
    await this.waitUntilEncrypted(database, this.scanTimeoutMs, hooks.onProgress);
    hooks.afterPagesRewritten?.();
    return view(tenant, env, record);
  }

  /** The DEK re-wrapped by `protector` (ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY: no page is rewritten). */
  async reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    checkProtector(protector);
    const { record: current } = await this.requireKeyRecord(env, database);
    const encryptor = await this.ensureEncryptor(protector);
    const state = await this.waitUntilIdle(database);
    if (!state) throw new Error(`${database} has a key record but no database encryption key.`);
    const wrapped = sameThumbprint(state.encryptor_thumbprint, encryptor.thumbprint);
    if (wrapped && sameRecord(current, { protector, encryptor })) return view(tenant, env, current);
    const record: KeyRecord = { protector, encryptor, updatedAt: this.now().toISOString() };
    await this.protect(database, state, encryptor, record);
    await this.waitUntilEncrypted(database, this.scanTimeoutMs);
    return view(tenant, env, record);
  }

  // ------------------------------------------------------------------------------------------------ internals

  private async findDatabase(database: string): Promise<DatabaseInfo | undefined> {
    const [info] = await this.connection.query<DatabaseInfo>(MASTER, sql.FIND_DATABASE, { database });
    return info;
  }

  private async existingDatabase(tenant: string, env: string): Promise<string> {
    const database = databaseName(tenant, env);
    if (!(await this.findDatabase(database))) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    return database;
  }

  private async requireKeyRecord(env: string, database: string): Promise<{ info: DatabaseInfo; record: KeyRecord }> {
    const info = await this.findDatabase(database);
    const record = info && (await this.readKeyRecord(database));
    if (!info || !record) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    return { info, record };
  }

  private async readKeyRecord(database: string): Promise<KeyRecord | undefined> {
    const [row] = await this.connection.query<KeyRecordRow>(database, sql.READ_KEY_RECORD);
    if (!row) return undefined;
    const protector = { kind: row.kind, name: row.name, version: row.version, thumbprint: row.thumbprint } as Protector;
    if (!isProtector(protector) || (row.encryptor_type !== 'CERTIFICATE' && row.encryptor_type !== 'ASYMMETRIC KEY')) {
      throw new Error(`The key record of ${database} is not one this engine wrote.`);
    }
    return { protector, encryptor: { type: row.encryptor_type, name: row.encryptor_name }, updatedAt: row.updated_at };
  }

  private async encryptionState(database: string): Promise<EncryptionState | undefined> {
    const [state] = await this.connection.query<EncryptionState>(MASTER, sql.ENCRYPTION_STATE, { database });
    return state;
  }

  /**
   * The key record as stored, after checking it against SQL Server: the encryptor the record names must be the one
   * this engine derives from its protector, and the DEK must really be wrapped by that object in master
   * (sys.dm_database_encryption_keys.encryptor_thumbprint). Any disagreement is an error, never a silent answer.
   */
  private async checkedView(tenant: string, env: string, database: string, record: KeyRecord): Promise<KeyRecordView> {
    const expected = this.encryptorFor(record.protector);
    if (expected.type !== record.encryptor.type || expected.name !== record.encryptor.name) {
      throw new Error(`The key record of ${database} names ${record.encryptor.type} ${record.encryptor.name}, but its protector maps to ${expected.type} ${expected.name}.`);
    }
    const state = await this.encryptionState(database);
    if (!state) throw new Error(`${database} has a key record but no database encryption key.`);
    const inMaster = await this.findEncryptor(expected);
    if (!inMaster) throw new Error(`The ${expected.type} ${expected.name} that wraps the DEK of ${database} is missing from master.`);
    if (!sameThumbprint(state.encryptor_thumbprint, inMaster.thumbprint)) {
      throw new Error(`The DEK of ${database} is wrapped by the encryptor with thumbprint ${state.encryptor_thumbprint ?? 'none'}, not by ${expected.type} ${expected.name} (${inMaster.thumbprint}) as its key record says.`);
    }
    return view(tenant, env, record);
  }

  private encryptorFor(protector: Protector): Encryptor {
    if (protector.kind === 'provider') return { type: 'CERTIFICATE', name: `cmk_provider_${protector.name}` };
    // One encryptor per tenant key version: the thumbprint names it, so a new version never reuses an old object.
    const name = `cmk_tenant_${protector.thumbprint}`;
    return this.tenantKeySource === 'ekm' ? { type: 'ASYMMETRIC KEY', name } : { type: 'CERTIFICATE', name };
  }

  private async findEncryptor(encryptor: Encryptor): Promise<{ thumbprint: string; logins: number; credentials: number } | undefined> {
    if (encryptor.type === 'CERTIFICATE') {
      const [row] = await this.connection.query<{ thumbprint: string }>(MASTER, sql.FIND_CERTIFICATE, { name: encryptor.name });
      return row && { thumbprint: row.thumbprint, logins: 0, credentials: 0 };
    }
    const params = { name: encryptor.name, login: loginFor(encryptor), credential: this.ekmCredential };
    const [row] = await this.connection.query<{ thumbprint: string; logins: number; credentials: number }>(MASTER, sql.FIND_ASYMMETRIC_KEY, params);
    return row;
  }

  /** The protector's encryptor in master, made if missing; each step is skipped when done, so retries converge. */
  private async ensureEncryptor(protector: Protector): Promise<Encryptor & { thumbprint: string }> {
    const encryptor = this.encryptorFor(protector);
    let found = await this.findEncryptor(encryptor);
    if (encryptor.type === 'CERTIFICATE') {
      if (!found) {
        // Service-managed TDE: the provider's key is a certificate SQL Server makes and keeps in master.
        const subject = protector.kind === 'provider' ? `cmk provider key ${protector.name}` : `cmk tenant key ${protector.name}/${protector.version} (test rig)`;
        await this.connection.query(MASTER, sql.createCertificate(encryptor.name, subject));
      }
    } else {
      const login = loginFor(encryptor);
      if (!found) await this.connection.query(MASTER, sql.openEkmKey(encryptor.name, this.ekmProvider, this.ekmKeyName(protector)));
      // TDE with EKM: the Database Engine reaches the vault as a login made from the key, holding the EKM credential.
      if (!found || found.logins === 0) await this.connection.query(MASTER, sql.createKeyLogin(login, encryptor.name));
      if (!found || found.credentials === 0) await this.connection.query(MASTER, sql.addLoginCredential(login, this.ekmCredential));
    }
    if (!found) found = await this.findEncryptor(encryptor);
    if (!found) throw new Error(`The ${encryptor.type} ${encryptor.name} could not be made in master.`);
    return { ...encryptor, thumbprint: found.thumbprint };
  }

  /** Puts the DEK under `encryptor` (or only writes the record when it already is), in one batch with the record. */
  private async protect(database: string, state: EncryptionState, encryptor: Encryptor & { thumbprint: string }, record: KeyRecord): Promise<void> {
    const statement = sameThumbprint(state.encryptor_thumbprint, encryptor.thumbprint) ? sql.writeKeyRecord() : sql.changeEncryptor(encryptor);
    await this.connection.query(database, statement, recordParams(record));
  }

  /**
   * SQL Server refuses a REGENERATE while earlier DEK changes await a log backup ("after a database encryption key
   * has been modified twice, a log backup must be performed"). Under FULL or BULK_LOGGED recovery with a log chain
   * (last_log_backup_lsn set: a full backup exists) the engine takes one first. Under SIMPLE recovery, or before the
   * first full backup, there is no log backup to take and SQL Server does not ask for one. The file is part of the
   * log chain: logBackupDir must be a place the backup system collects from.
   */
  private async backupLogIfRequired(info: DatabaseInfo): Promise<void> {
    if (info.recovery_model === 'SIMPLE' || info.last_log_backup_lsn === null) return;
    // ISO 8601 basic format: no ':' (not allowed in Windows file names).
    const stamp = this.now().toISOString().replace(/[-:.]/g, '');
    const file = `${info.name}-${stamp}.trn`;
    const dir = this.logBackupDir;
    const path = !dir ? file : /[\\/]$/.test(dir) ? `${dir}${file}` : `${dir}${dir.includes('\\') && !dir.includes('/') ? '\\' : '/'}${file}`;
    await this.connection.query(MASTER, sql.backupLog(info.name, path));
  }

  /** Polls until no scan or key change runs (a key statement may start), within busyTimeoutMs. */
  private async waitUntilIdle(database: string, onProgress?: (percent: number) => void): Promise<EncryptionState | undefined> {
    const deadline = this.now().getTime() + this.busyTimeoutMs;
    for (;;) {
      const state = await this.encryptionState(database);
      if (!state || !BUSY_STATES.has(state.encryption_state)) return state;
      // Someone else's scan: its progress keeps the caller's heartbeat going while it waits.
      onProgress?.(progressOf(state));
      if (this.now().getTime() >= deadline) {
        throw new Error(`${database} is still busy (encryption_state ${state.encryption_state}, ${state.percent_complete}% done) after ${this.busyTimeoutMs} ms; try again later.`);
      }
      await this.sleep(this.pollIntervalMs);
    }
  }

  /** Polls until the database is encrypted (state 3), reporting percent_complete on every poll. */
  private async waitUntilEncrypted(database: string, timeoutMs: number, onProgress?: (percent: number) => void): Promise<void> {
    const deadline = this.now().getTime() + timeoutMs;
    for (;;) {
      const state = await this.encryptionState(database);
      if (!state || !(state.encryption_state === ENCRYPTED || BUSY_STATES.has(state.encryption_state))) {
        throw new Error(`${database} is not being encrypted (encryption_state ${state?.encryption_state ?? 'none'}).`);
      }
      onProgress?.(progressOf(state));
      if (state.encryption_state === ENCRYPTED) return;
      if (this.now().getTime() >= deadline) {
        throw new Error(`${database} is still at encryption_state ${state.encryption_state} (${state.percent_complete}% done) after ${timeoutMs} ms.`);
      }
      await this.sleep(this.pollIntervalMs);
    }
  }
}

// ---------------------------------------------------------------------------------------------------- helpers

/** `cmk_<tenant>_<env>`, dashes kept. IDs outside the grammar are refused before any statement is sent. */
function databaseName(tenant: string, env: string): string {
  assertEnvironmentIds(tenant, env);
  const name = `cmk_${tenant}_${env}`;
  if (name.length > MAX_IDENTIFIER_LENGTH) {
    throw new CmkError('INVALID_ARGUMENT', `Tenant and environment IDs together may have at most ${MAX_IDENTIFIER_LENGTH - 5} characters on SQL Server.`);
  }
  return name;
}

function isProtector(p: Protector): boolean {
  return (
    (p.kind === 'provider' || p.kind === 'tenant') &&
    typeof p.name === 'string' && PROTECTOR_NAME.test(p.name) &&
    typeof p.version === 'string' && PROTECTOR_VERSION.test(p.version) &&
    typeof p.thumbprint === 'string' && PROTECTOR_THUMBPRINT.test(p.thumbprint)
  );
}

function checkProtector(p: Protector): void {
  if (!isProtector(p)) throw new CmkError('INVALID_ARGUMENT', 'The protector key has a name, version or thumbprint SQL Server cannot use.');
}

const loginFor = (key: Encryptor): string => `${key.name}_login`;

const sameThumbprint = (a: string | null | undefined, b: string | null | undefined): boolean =>
  typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();

const sameRecord = (a: Pick<KeyRecord, 'protector' | 'encryptor'>, b: Pick<KeyRecord, 'protector' | 'encryptor'>): boolean =>
  a.protector.kind === b.protector.kind &&
  a.protector.name === b.protector.name &&
  a.protector.version === b.protector.version &&
  a.protector.thumbprint === b.protector.thumbprint &&
  a.encryptor.type === b.encryptor.type &&
  a.encryptor.name === b.encryptor.name;

/** percent_complete is 0 when no change runs: an encrypted database is reported as done. */
const progressOf = (state: EncryptionState): number => (state.encryption_state === ENCRYPTED ? 100 : Number(state.percent_complete) || 0);

function recordParams({ protector, encryptor, updatedAt }: KeyRecord): SqlParams {
  return {
    kind: protector.kind,
    name: protector.name,
    version: protector.version,
    thumbprint: protector.thumbprint,
    encryptor_type: encryptor.type,
    encryptor_name: encryptor.name,
    updated_at: updatedAt,
  };
}

function view(tenant: string, env: string, { protector, updatedAt }: KeyRecord): KeyRecordView {
  const { kind, name, version, thumbprint } = protector;
  // The interface names one wrap algorithm for every engine; SQL Server's own RSA wrap of the DEK is not exposed.
  return { tenant, env, protector: { kind, name, version, thumbprint }, algorithm: 'RSA-OAEP-256', updatedAt };
}

function toRow({ id, text, created_at }: RowRow): Row {
  // DATETIME2 holds UTC (SYSUTCDATETIME); mssql reads it as a UTC Date. Text without a zone is UTC too.
  const createdAt = created_at instanceof Date ? created_at : new Date(/(?:[zZ]|[+-]\d\d:\d\d)$/.test(created_at) ? created_at : `${created_at}Z`);
  return { id: Number(id), text, createdAt: createdAt.toISOString() };
}
