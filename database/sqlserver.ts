// Over 400 lines: one engine class; each TDE operation (create, rekey, offline, backup, restore) is a checked sequence of statements over shared state.
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
 * - "Transparent data encryption (TDE)": key statements are refused while a scan or another key statement runs;
 *   "backup files of databases that have TDE enabled are also encrypted by using the DEK. As a result, when these
 *   backups are restored, the certificate that protects the DEK must be available".
 * - "ALTER DATABASE SET options": OFFLINE / ONLINE, SINGLE_USER / MULTI_USER, WITH ROLLBACK IMMEDIATE.
 * - "DROP DATABASE": "a database can be dropped regardless of its state"; "if the database, or any one of its files,
 *   is offline when dropped, the disk files are not deleted".
 * - "BACKUP" / "RESTORE": DISK = @variable; COPY_ONLY, CHECKSUM, FORMAT, INIT, NAME; RESTORE … WITH REPLACE;
 *   "sp_delete_database_backuphistory"; "backupset" (backup_size, compressed_backup_size).
 *
 * What must outlive an offline database — the lock's mark with a copy of the key record, the backups, a restore in
 * progress — lives in the engine's control database (`cmk_control` by default): an OFFLINE database cannot be queried.
 */
import { ConnectionPool, type config as MssqlConfig } from 'mssql';
import { CmkError } from '../common/errors';
import { isValidId } from '../domain/ids';
import { assertEnvironmentIds, assertOfflineMark, newBackupId } from './ids';
import * as sql from './sqlserver-sql';
import { MAX_IDENTIFIER_LENGTH, type Encryptor } from './sqlserver-sql';
import type { BackupView, EnvironmentDatabases, KeyRecordView, OfflineEnvironment, OfflineMark, Protector, RekeyHooks, Row, ScanProgress } from './types';
import { KeyRecordDisagreement } from './types';

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
   * When given, the engine makes that credential itself, at its first EKM use in the process: CREATE CREDENTIAL (or
   * ALTER CREDENTIAL, so a changed secret takes effect at the next start) with this identity (the key vault's host
   * name) and secret (the service principal's client ID without dashes, then its secret), and maps it to its own login
   * when that login has no credential for the provider yet (CREATE ASYMMETRIC KEY … FROM PROVIDER runs as that login).
   * Without it the server's administrator made the credential (docs/SQLSERVER.md). The secret is a bound parameter:
   * it is never part of a statement's text, an error message or a log line.
   */
  ekmCredentialSecret?: { identity: string; secret: string };
  /**
   * The Azure Key Vault key name (PROVIDER_KEY_NAME) of a tenant key version; the protector's name by default.
   * Microsoft's connector ignores AKV key versions ("a new key with a new key name must be created" to rotate) and
   * allows only letters, digits and dashes, 26 at most: a vault that keeps versions under one name maps them here.
   */
  ekmKeyName?: (protector: Protector) => string;
  /** Where BACKUP LOG writes before a REGENERATE (FULL/BULK_LOGGED with a log chain); SQL Server's default dir if unset. */
  logBackupDir?: string;
  /**
   * Where `backup` writes (BACKUP DATABASE … TO DISK), as SQL Server's service account sees it: a directory on the
   * server or a share it reaches. SQL Server's default backup directory (SERVERPROPERTY('InstanceDefaultBackupPath'),
   * SQL Server 2019 and later) if unset.
   */
  backupDirectory?: string;
  /**
   * The database that keeps offline marks, the backup list and restores in progress; made on first use. Default
   * `cmk_control` (never an environment's name: those have two underscores, `cmk_<tenant>_<env>`).
   */
  controlDatabase?: string;
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
  /** sys.databases.state_desc: ONLINE, OFFLINE, RESTORING, RECOVERY_PENDING… */
  state: string;
  recovery_model: string;
  last_log_backup_lsn: string | null;
}

interface EncryptionState {
  encryption_state: number;
  percent_complete: number;
  encryptor_thumbprint: string | null;
  regenerate_date: string | null;
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

interface MarkRow extends KeyRecordRow {
  locked_at: string;
  delete_at: string;
}

/** The lock's mark and the key record as it was when the database went offline. */
interface StoredMark {
  mark: OfflineMark;
  record: KeyRecord;
}

interface BackupRow {
  id: string;
  path: string;
  created_at: string;
  /** BIGINT: text from the driver. */
  size_bytes: number | string | null;
  /** The key record inside the backup (as it was when the backup was taken). */
  record_thumbprint: string;
  record_updated_at: string;
}

interface PendingRestoreRow extends KeyRecordRow {
  backup_id: string;
}

const MASTER = 'master';
const ONLINE = 'ONLINE';
const ENCRYPTED = 3;
const KEY_CHANGE = 4;
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
  private readonly ekmCredentialSecret: { identity: string; secret: string } | undefined;
  private credentialReady: Promise<void> | undefined;
  private readonly ekmKeyName: (protector: Protector) => string;
  private readonly logBackupDir: string | undefined;
  private readonly controlDatabase: string;
  private backupDirectory: string | undefined;
  private controlReady: Promise<void> | undefined;
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
    this.ekmCredentialSecret = options.ekmCredentialSecret;
    this.ekmKeyName = options.ekmKeyName ?? ((protector) => protector.name);
    this.logBackupDir = options.logBackupDir;
    this.backupDirectory = options.backupDirectory;
    this.controlDatabase = options.controlDatabase ?? 'cmk_control';
    this.pollIntervalMs = options.pollIntervalMs ?? 2_000;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 10 * 60_000;
    this.scanTimeoutMs = options.scanTimeoutMs ?? 12 * 3_600_000;
    this.now = options.now ?? (() => new Date());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    // Quoting would make any name safe; refusing odd ones here makes a typo in the deployment's settings loud.
    const names = [['EKM provider', this.ekmProvider], ['EKM credential', this.ekmCredential], ['control database', this.controlDatabase]] as const;
    for (const [what, value] of names) {
      if (!/^[A-Za-z_][A-Za-z0-9_-]{0,127}$/.test(value)) throw new Error(`"${value}" is not a usable ${what} name.`);
    }
    if (['master', 'msdb', 'model', 'tempdb'].includes(this.controlDatabase.toLowerCase()) || /^cmk_[a-z0-9-]+_[a-z0-9-]+$/.test(this.controlDatabase)) {
      throw new Error(`"${this.controlDatabase}" cannot be the control database: it is a system database or an environment's name.`);
    }
    const credential = this.ekmCredentialSecret;
    // The messages name what is wrong, never the secret's value.
    if (credential && (typeof credential.identity !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(credential.identity))) {
      throw new Error("The EKM credential's identity must be the key vault's host name.");
    }
    if (credential && (typeof credential.secret !== 'string' || credential.secret === '' || credential.secret.includes('\u0000'))) {
      throw new Error("The EKM credential's secret must be a non-empty text.");
    }
    if (this.backupDirectory !== undefined && (this.backupDirectory === '' || this.backupDirectory.length > 900 || this.backupDirectory.includes('\u0000'))) {
      throw new Error('The backup directory must be a path of at most 900 characters.');
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
    if (info && info.state !== ONLINE) return view(tenant, env, (await this.storedMarkOf(tenant, env, info)).record);
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
    const info = await this.findDatabase(database);
    if (!info) return undefined;
    // An offline (locked) database cannot be queried: the key record is the copy kept with its mark.
    if (info.state !== ONLINE) return view(tenant, env, (await this.storedMarkOf(tenant, env, info)).record);
    const record = await this.readKeyRecord(database);
    return record && this.checkedView(tenant, env, database, record);
  }

  async readRows(tenant: string, env: string): Promise<Row[]> {
    const { name: database } = await this.accessibleDatabase(tenant, env);
    const rows = await this.connection.query<RowRow>(database, sql.READ_ROWS);
    return rows.map(toRow);
  }

  async writeRow(tenant: string, env: string, text: string): Promise<Row> {
    const database = databaseName(tenant, env);
    if (typeof text !== 'string' || text.length > MAX_ROW_TEXT) {
      throw new CmkError('INVALID_ARGUMENT', `A row holds text of at most ${MAX_ROW_TEXT} characters.`);
    }
    await this.accessibleDatabase(tenant, env);
    const [row] = await this.connection.query<RowRow>(database, sql.INSERT_ROW, { text });
    if (!row) throw new Error(`SQL Server returned no row for the insert into ${database}.`);
    return toRow(row);
  }

  /**
   * A new DEK under `protector`, every page re-encrypted. When the protector changes, the DEK is first re-wrapped by
   * the new encryptor and only then regenerated, so the new DEK is never wrapped by the old one (DESIGN.md §6: nothing
   * the provider held opens data written after apply).
   *
   * The page scan of a large database takes hours, longer than an activity attempt. A retry (`hooks.resume`) never
   * asks for a second new DEK while the first is being made or was made: it waits for the scan instead (see resumable).
   */
  async rekey(tenant: string, env: string, protector: Protector, hooks: RekeyHooks = {}): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    checkProtector(protector);
    const { info, record: current } = await this.requireKeyRecord(tenant, env);
    const encryptor = await this.ensureEncryptor(protector);
    type Mark = Pick<ScanProgress, 'regenerateRequested' | 'regeneratedAt'>;
    const report = (state: EncryptionState, mark: Mark = {}, percentComplete = progressOf(state)): void => {
      const scan: ScanProgress = { percentComplete, encryptionState: state.encryption_state, ...mark };
      // Once the new DEK was asked for, a DEK with another date is that one: its date tells a later retry so.
      const requested = mark.regenerateRequested;
      if (requested && state.regenerate_date && state.regenerate_date !== requested.before) scan.regeneratedAt = state.regenerate_date;
      hooks.onProgress?.(percentComplete, scan);
    };
    if (hooks.resume) {
      const resumed = await this.resumable(database, current, { protector, encryptor }, hooks.resume);
      if (resumed) {
        await this.waitUntilEncrypted(database, this.scanTimeoutMs, (state) => report(state, resumed), hooks.signal);
        hooks.afterPagesRewritten?.();
        return view(tenant, env, current);
      }
    }
    const state = await this.waitUntilIdle(database, report, hooks.signal);
    if (state?.encryption_state !== ENCRYPTED) throw new Error(`${database} is not encrypted (encryption_state ${state?.encryption_state ?? 'none'}).`);
    const record: KeyRecord = { protector, encryptor, updatedAt: this.now().toISOString() };
    if (!sameRecord(current, record) || !sameThumbprint(state.encryptor_thumbprint, encryptor.thumbprint)) {
      await this.protect(database, state, encryptor, record);
      // Progress is reported for the page scan below; this wait is for the re-wrap, which rewrites no page.
      await this.waitUntilEncrypted(database, this.scanTimeoutMs, undefined, hooks.signal);
    }
    await this.backupLogIfRequired(info);
    // Reported before the statement: should this attempt end at any moment from here, its retry knows to look.
    const requested = { before: state.regenerate_date ?? null };
    report(state, { regenerateRequested: requested }, 0);
    hooks.signal?.throwIfAborted();
    await this.connection.query(database, sql.regenerateEncryptionKey(), recordParams(record));
    await this.waitUntilEncrypted(database, this.scanTimeoutMs, (s) => report(s, { regenerateRequested: requested }), hooks.signal);
    hooks.afterPagesRewritten?.();
    return view(tenant, env, record);
  }

  /**
   * On a retry: whether an earlier attempt's new DEK for this protector is being made or was made, so that only its
   * scan is left to wait for. Both need the key record and the DEK's encryptor to be the wanted ones already (the
   * REGENERATE batch comes after the re-wrap and writes the record). Then either the heartbeat says a REGENERATE was
   * asked for and the DEK's regenerate date has moved since (done, or its scan still running), or an earlier retry
   * recorded the date of the new DEK it waited for and the DEK still has it, or — when no such heartbeat reached
   * Temporal — the database shows a key change in progress (state 4): on a cmk database only cmk regenerates, and
   * none other than this request's earlier attempt can have started it under this record. The heartbeats of the
   * resumed wait carry the new DEK's date, so that a further retry, after the scan has ended, still knows.
   */
  private async resumable(
    database: string,
    current: KeyRecord,
    wanted: Pick<KeyRecord, 'protector' | 'encryptor'> & { encryptor: { thumbprint: string } },
    resume: Partial<ScanProgress>,
  ): Promise<Pick<ScanProgress, 'regenerateRequested' | 'regeneratedAt'> | undefined> {
    if (!sameRecord(current, wanted)) return undefined;
    const state = await this.encryptionState(database);
    if (!state || !sameThumbprint(state.encryptor_thumbprint, wanted.encryptor.thumbprint)) return undefined;
    const requested = resume.regenerateRequested && typeof resume.regenerateRequested === 'object' ? resume.regenerateRequested : undefined;
    if (requested && (requested.before ?? null) !== (state.regenerate_date ?? null)) return { regenerateRequested: requested };
    const date = state.regenerate_date ?? undefined;
    if (date !== undefined && resume.regeneratedAt === date) return { regeneratedAt: date };
    if (state.encryption_state === KEY_CHANGE) return date === undefined ? {} : { regeneratedAt: date };
    return undefined;
  }

  /** The DEK re-wrapped by `protector` (ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY: no page is rewritten). */
  async reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    checkProtector(protector);
    const { record: current } = await this.requireKeyRecord(tenant, env);
    return view(tenant, env, await this.settle(database, current, protector));
  }

  // ------------------------------------------------------------------------------------------ lock (R8–R10)

  /**
   * R8: the mark (with a copy of the key record) first, in the control database; then the database goes OFFLINE,
   * every session in it ended. Only then does SQL Server drop the unwrapped DEK from memory: a withdrawn tenant key
   * seals the database from here on. A repeat keeps the first mark and sends no change.
   */
  async takeOffline(tenant: string, env: string, mark: OfflineMark): Promise<void> {
    const database = databaseName(tenant, env);
    assertOfflineMark(mark);
    const info = await this.findDatabase(database);
    if (!info) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    if (!(await this.readMark(tenant, env))) {
      if (info.state !== ONLINE) throw new Error(`${database} is ${info.state}, but not by a lock of cmk (no offline mark); bring it online first.`);
      const record = await this.readKeyRecord(database);
      if (!record) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
      const params = { tenant, env, locked_at: mark.lockedAt, delete_at: mark.deleteAt, ...recordParams(record) };
      await this.controlQuery(sql.WRITE_OFFLINE_MARK, params);
    }
    if (info.state !== 'OFFLINE') await this.connection.query(MASTER, sql.setOffline(database));
  }

  /**
   * R10: KEY_MISMATCH (nothing changed) unless `protector` has the thumbprint the mark recorded. Then the encryptor in
   * master is made if missing, the database set ONLINE (SQL Server unwraps the DEK with it), a query in the database
   * proves that it opens, the key record is re-bound to the re-activated version, and only then is the mark deleted.
   */
  async bringOnline(tenant: string, env: string, protector?: Protector): Promise<KeyRecordView> {
    const database = databaseName(tenant, env);
    if (protector !== undefined) checkProtector(protector);
    const info = await this.findDatabase(database);
    if (!info) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    const stored = await this.readMark(tenant, env);
    let kept = stored?.record;
    if (!kept) {
      // No mark: brought online before (a repeat), or never locked.
      if (info.state !== ONLINE) throw new Error(`${database} is ${info.state}, but not by a lock of cmk (no offline mark).`);
      kept = await this.readKeyRecord(database);
      if (!kept) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    }
    if (protector && protector.thumbprint !== kept.protector.thumbprint) {
      throw new CmkError('KEY_MISMATCH', `Environment ${env} is sealed under the key with thumbprint ${kept.protector.thumbprint}, not ${protector.thumbprint}.`);
    }
    const target = protector ?? kept.protector;
    const encryptor = await this.ensureEncryptor(target);
    if (info.state !== ONLINE) await this.connection.query(MASTER, sql.setOnline(database));
    // A query in the database: SQL Server has unwrapped the DEK and opened it.
    const current = stored ? await this.readKeyRecord(database) : kept;
    if (!current) throw new Error(`${database} came online without its key record.`);
    const record = await this.settle(database, current, target, encryptor);
    if (stored) await this.controlQuery(sql.DELETE_OFFLINE_MARK, { tenant, env });
    return view(tenant, env, record);
  }

  async offlineMark(tenant: string, env: string): Promise<OfflineMark | undefined> {
    databaseName(tenant, env);
    return (await this.readMark(tenant, env))?.mark;
  }

  async listOffline(): Promise<OfflineEnvironment[]> {
    const rows = await this.controlQuery<{ tenant: string; env: string; locked_at: string; delete_at: string }>(sql.LIST_OFFLINE);
    return rows.map((r) => ({ tenant: r.tenant, env: r.env, lockedAt: r.locked_at, deleteAt: r.delete_at }));
  }

  /**
   * R9: the database (with its DEK and key record), msdb's backup history, every backup file, then the mark. An online
   * database is dropped after ending every session in it; an offline one is dropped as it is — SQL Server then leaves
   * its data and log files on disk, so their paths are first recorded in dbo.cmk_leftover_files for the operator
   * (docs/SQLSERVER.md). Each step is skipped or harmless when done, so a retry finishes what an attempt began.
   */
  async destroy(tenant: string, env: string): Promise<void> {
    const database = databaseName(tenant, env);
    const info = await this.findDatabase(database);
    if (info) {
      const online = info.state === ONLINE;
      if (!online) {
        const files = await this.connection.query<{ physical_name: string }>(MASTER, sql.DATABASE_FILES, { database });
        const recordedAt = this.now().toISOString();
        for (const { physical_name } of files) await this.controlQuery(sql.RECORD_LEFTOVER_FILE, { physical_name, tenant, env, recorded_at: recordedAt });
      }
      await this.connection.query(MASTER, sql.dropDatabase(database, online));
    }
    await this.connection.query(MASTER, sql.DELETE_BACKUP_HISTORY, { database });
    for (const { id, path } of await this.controlQuery<{ id: string; path: string }>(sql.BACKUP_FILES, { tenant, env })) {
      await this.controlQuery(sql.DELETE_BACKUP_FILE, { path, tenant, env, id });
    }
    await this.controlQuery(sql.FORGET_ENVIRONMENT, { tenant, env });
  }

  // ------------------------------------------------------------------------------------------------ backups

  /**
   * A COPY_ONLY full backup to `<backupDirectory>/<database>-<id>.bak`. TDE encrypts it with the DEK, wrapped by the
   * encryptor it is under now: it carries no usable key of its own. Its row is written before the file, so destroy
   * knows every file the engine ever made; it is listed once msdb has its size.
   */
  async backup(tenant: string, env: string): Promise<BackupView> {
    const { record } = await this.requireKeyRecord(tenant, env);
    const database = databaseName(tenant, env);
    const dir = await this.resolveBackupDirectory();
    const now = this.now();
    const id = newBackupId(now);
    const path = serverPath(dir, `${database}-${id}.bak`);
    const createdAt = now.toISOString();
    const held = { record_thumbprint: record.protector.thumbprint, record_updated_at: record.updatedAt };
    await this.controlQuery(sql.START_BACKUP, { tenant, env, id, path, created_at: createdAt, ...held });
    await this.connection.query(MASTER, sql.backupDatabase(database), { path, name: id });
    const [row] = await this.controlQuery<{ size_bytes: number | string | null }>(sql.FINISH_BACKUP, { tenant, env, id, database });
    const sizeBytes = row?.size_bytes === null || row?.size_bytes === undefined ? NaN : Number(row.size_bytes);
    if (!Number.isFinite(sizeBytes)) throw new Error(`msdb has no record of backup ${id} of ${database}.`);
    return { id, tenant, env, createdAt, sizeBytes };
  }

  async listBackups(tenant: string, env: string): Promise<BackupView[]> {
    databaseName(tenant, env);
    return (await this.finishedBackups(tenant, env)).map((b) => backupView(tenant, env, b));
  }

  /**
   * RESTORE … WITH REPLACE, with exclusive access. The restored database comes back with the backup's DEK and key
   * record, wrapped by the encryptor the backup was taken under; it is then re-wrapped by the protector the
   * environment is under now, so a restore never moves an environment to another key. That protector is written to
   * the control database before the RESTORE: a retry after a crash between the RESTORE and the re-wrap finds the
   * backup's key record in the database and takes the protector from there instead.
   */
  async restore(tenant: string, env: string, backupId?: string): Promise<BackupView> {
    const database = databaseName(tenant, env);
    if (backupId !== undefined && (typeof backupId !== 'string' || !isValidId(backupId))) {
      throw new CmkError('INVALID_ARGUMENT', `"${String(backupId)}" is not a backup ID.`);
    }
    if (!(await this.findDatabase(database))) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    const backups = await this.finishedBackups(tenant, env);
    const chosen = backupId === undefined ? backups.at(-1) : backups.find((b) => b.id === backupId);
    if (!chosen) throw new CmkError('NOT_FOUND', backupId === undefined ? `Environment ${env} has no backup.` : `Environment ${env} has no backup ${backupId}.`);
    await this.refuseIfOffline(tenant, env);
    const pending = await this.readPendingRestore(tenant, env);
    const current = await this.readKeyRecord(database);
    if (!current) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    // The database holds the key record of the backup an earlier attempt restored: it was under pending.record before.
    // Anything else (that attempt failed before its RESTORE, or for good): the database's own record is the present.
    const interrupted = pending && backups.find((b) => b.id === pending.backupId);
    const restoredEarlier = interrupted && interrupted.record_thumbprint === current.protector.thumbprint && interrupted.record_updated_at === current.updatedAt;
    const target = restoredEarlier ? pending.record : current;
    await this.controlQuery(sql.WRITE_PENDING_RESTORE, { tenant, env, backup_id: chosen.id, ...recordParams(target) });
    await this.connection.query(MASTER, sql.restoreDatabase(database), { path: chosen.path });
    const restored = await this.readKeyRecord(database);
    if (!restored) throw new Error(`Backup ${chosen.id} of ${database} has no key record.`);
    await this.settle(database, restored, target.protector);
    await this.controlQuery(sql.DELETE_PENDING_RESTORE, { tenant, env });
    return backupView(tenant, env, chosen);
  }

  // ------------------------------------------------------------------------------------------------ internals

  private async findDatabase(database: string): Promise<DatabaseInfo | undefined> {
    const [info] = await this.connection.query<DatabaseInfo>(MASTER, sql.FIND_DATABASE, { database });
    return info;
  }

  /** The database, for reading, writing or changing it: NOT_FOUND without one, ENVIRONMENT_LOCKED while marked offline. */
  private async accessibleDatabase(tenant: string, env: string): Promise<DatabaseInfo> {
    const info = await this.findDatabase(databaseName(tenant, env));
    if (!info) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    await this.refuseIfOffline(tenant, env);
    return info;
  }

  /** R8: nothing reads, writes, re-keys, backs up or restores a locked environment — from the moment its mark exists. */
  private async refuseIfOffline(tenant: string, env: string): Promise<void> {
    if (await this.readMark(tenant, env)) {
      throw new CmkError('ENVIRONMENT_LOCKED', `Environment ${env} is locked: its database is offline until it is unlocked.`);
    }
  }

  private async requireKeyRecord(tenant: string, env: string): Promise<{ info: DatabaseInfo; record: KeyRecord }> {
    const info = await this.accessibleDatabase(tenant, env);
    const record = await this.readKeyRecord(info.name);
    if (!record) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    return { info, record };
  }

  private async readKeyRecord(database: string): Promise<KeyRecord | undefined> {
    const [row] = await this.connection.query<KeyRecordRow>(database, sql.READ_KEY_RECORD);
    return row && toKeyRecord(row, `The key record of ${database}`);
  }

  /** The control database and its tables, made once per engine (again after a failure). */
  private async controlQuery<T extends object>(statement: string, params?: SqlParams): Promise<T[]> {
    this.controlReady ??= (async () => {
      await this.connection.query(MASTER, sql.createControlDatabase(this.controlDatabase), { database: this.controlDatabase });
      await this.connection.query(this.controlDatabase, sql.CREATE_CONTROL_TABLES);
    })().catch((err: unknown) => {
      this.controlReady = undefined;
      throw err;
    });
    await this.controlReady;
    return this.connection.query<T>(this.controlDatabase, statement, params);
  }

  private async readMark(tenant: string, env: string): Promise<StoredMark | undefined> {
    const [row] = await this.controlQuery<MarkRow>(sql.READ_OFFLINE_MARK, { tenant, env });
    return row && { mark: { lockedAt: row.locked_at, deleteAt: row.delete_at }, record: toKeyRecord(row, `The offline mark of ${tenant}/${env}`) };
  }

  /** The mark of a database that is not ONLINE; an error when there is none (it was not cmk that took it offline). */
  private async storedMarkOf(tenant: string, env: string, info: DatabaseInfo): Promise<StoredMark> {
    const stored = await this.readMark(tenant, env);
    if (!stored) throw new Error(`${info.name} is ${info.state} and cannot be read now; cmk holds no offline mark for it.`);
    return stored;
  }

  private async readPendingRestore(tenant: string, env: string): Promise<{ backupId: string; record: KeyRecord } | undefined> {
    const [row] = await this.controlQuery<PendingRestoreRow>(sql.READ_PENDING_RESTORE, { tenant, env });
    return row && { backupId: row.backup_id, record: toKeyRecord(row, `The restore in progress of ${tenant}/${env}`) };
  }

  private async finishedBackups(tenant: string, env: string): Promise<BackupRow[]> {
    return this.controlQuery<BackupRow>(sql.LIST_BACKUPS, { tenant, env });
  }

  private async resolveBackupDirectory(): Promise<string> {
    if (this.backupDirectory) return this.backupDirectory;
    const [row] = await this.connection.query<{ path: string | null }>(MASTER, sql.DEFAULT_BACKUP_PATH);
    if (!row?.path) throw new Error('SQL Server reports no default backup directory (it does before SQL Server 2019): set the backupDirectory option.');
    this.backupDirectory = row.path;
    return row.path;
  }

  /**
   * The DEK under `protector`'s encryptor and the key record naming it: a re-wrap (no page rewritten) when the DEK is
   * under another encryptor, the record alone when only the protector's version changed, nothing when both agree.
   */
  private async settle(database: string, current: KeyRecord, protector: Protector, made?: Encryptor & { thumbprint: string }): Promise<KeyRecord> {
    const encryptor = made ?? (await this.ensureEncryptor(protector));
    const state = await this.waitUntilIdle(database);
    if (!state) throw new Error(`${database} has a key record but no database encryption key.`);
    const wrapped = sameThumbprint(state.encryptor_thumbprint, encryptor.thumbprint);
    if (wrapped && sameRecord(current, { protector, encryptor })) return current;
    const record: KeyRecord = { protector, encryptor, updatedAt: this.now().toISOString() };
    await this.protect(database, state, encryptor, record);
    await this.waitUntilEncrypted(database, this.scanTimeoutMs);
    return record;
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
      throw new KeyRecordDisagreement(`The key record of ${database} names ${record.encryptor.type} ${record.encryptor.name}, but its protector maps to ${expected.type} ${expected.name}.`);
    }
    const state = await this.encryptionState(database);
    if (!state) throw new KeyRecordDisagreement(`${database} has a key record but no database encryption key.`);
    const inMaster = await this.findEncryptor(expected);
    if (!inMaster) throw new KeyRecordDisagreement(`The ${expected.type} ${expected.name} that wraps the DEK of ${database} is missing from master.`);
    if (!sameThumbprint(state.encryptor_thumbprint, inMaster.thumbprint)) {
      throw new KeyRecordDisagreement(`The DEK of ${database} is wrapped by the encryptor with thumbprint ${state.encryptor_thumbprint ?? 'none'}, not by ${expected.type} ${expected.name} (${inMaster.thumbprint}) as its key record says.`);
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
    if (encryptor.type === 'ASYMMETRIC KEY') await this.ensureEkmCredential();
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

  /**
   * The EKM credential with the configured identity and secret, made or altered once per engine (again after a
   * failure), before the first statement that reaches the vault. A failure is reported without the secret: SQL
   * Server's message is passed on with any occurrence of it cut out.
   */
  private ensureEkmCredential(): Promise<void> {
    const given = this.ekmCredentialSecret;
    if (!given) return Promise.resolve();
    const params = { credential: this.ekmCredential, provider: this.ekmProvider, identity: given.identity, secret: given.secret };
    this.credentialReady ??= this.connection.query(MASTER, sql.ENSURE_EKM_CREDENTIAL, params).then(
      () => undefined,
      (err: unknown) => {
        this.credentialReady = undefined;
        const message = (err instanceof Error ? err.message : String(err)).split(given.secret).join('[secret]');
        throw new Error(`The EKM credential ${this.ekmCredential} could not be made or altered: ${message}`);
      },
    );
    return this.credentialReady;
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
    const path = this.logBackupDir ? serverPath(this.logBackupDir, file) : file;
    await this.connection.query(MASTER, sql.backupLog(info.name, path));
  }

  /** Polls until no scan or key change runs (a key statement may start), within busyTimeoutMs. */
  private async waitUntilIdle(database: string, onProgress?: (state: EncryptionState) => void, signal?: AbortSignal): Promise<EncryptionState | undefined> {
    const deadline = this.now().getTime() + this.busyTimeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const state = await this.encryptionState(database);
      if (!state || !BUSY_STATES.has(state.encryption_state)) return state;
      // Someone else's scan: its progress keeps the caller's heartbeat going while it waits.
      onProgress?.(state);
      if (this.now().getTime() >= deadline) {
        throw new Error(`${database} is still busy (encryption_state ${state.encryption_state}, ${state.percent_complete}% done) after ${this.busyTimeoutMs} ms; try again later.`);
      }
      await this.sleep(this.pollIntervalMs);
    }
  }

  /**
   * Polls until the database is encrypted (state 3), reporting each poll. An aborted `signal` (the activity attempt
   * was cut off) ends the wait: the scan goes on in SQL Server, and the retry waits for it.
   */
  private async waitUntilEncrypted(database: string, timeoutMs: number, onProgress?: (state: EncryptionState) => void, signal?: AbortSignal): Promise<void> {
    const deadline = this.now().getTime() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const state = await this.encryptionState(database);
      if (!state || !(state.encryption_state === ENCRYPTED || BUSY_STATES.has(state.encryption_state))) {
        throw new Error(`${database} is not being encrypted (encryption_state ${state?.encryption_state ?? 'none'}).`);
      }
      onProgress?.(state);
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
export function databaseName(tenant: string, env: string): string {
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

/** The key record as stored (in the database, or copied into the control database), checked against its grammar. */
function toKeyRecord(row: KeyRecordRow, what: string): KeyRecord {
  const protector = { kind: row.kind, name: row.name, version: row.version, thumbprint: row.thumbprint } as Protector;
  if (!isProtector(protector) || (row.encryptor_type !== 'CERTIFICATE' && row.encryptor_type !== 'ASYMMETRIC KEY')) {
    throw new Error(`${what} is not one this engine wrote.`);
  }
  return { protector, encryptor: { type: row.encryptor_type, name: row.encryptor_name }, updatedAt: row.updated_at };
}


/** `dir` joined with `file` in the server's own style (a Windows path keeps its backslashes). */
function serverPath(dir: string, file: string): string {
  if (/[\\/]$/.test(dir)) return `${dir}${file}`;
  return `${dir}${dir.includes('\\') && !dir.includes('/') ? '\\' : '/'}${file}`;
}


function backupView(tenant: string, env: string, { id, created_at, size_bytes }: BackupRow): BackupView {
  return { id, tenant, env, createdAt: created_at, sizeBytes: Number(size_bytes) };
}

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
