/**
 * A SqlConnection that records every batch and answers from a small model of one SQL Server: databases with their
 * DEK (encryption_state, percent_complete, encryptor), state (ONLINE/OFFLINE) and files, certificates, EKM asymmetric
 * keys and logins in master, backup files on disk with msdb's history, and the engine's control database. The model
 * enforces the rules the engine must respect — no key statement while a scan runs, no third DEK change without a log
 * backup under FULL recovery with a log chain, encryptors must exist in master, an OFFLINE database cannot be queried
 * or set SINGLE_USER, SET ONLINE and RESTORE need the encryptor that wraps the DEK (for an EKM key, its vault key),
 * DROP DATABASE leaves an offline database's files on disk, an EKM key is opened only by a login holding a credential
 * for the provider, a credential must exist before a login is given it (one per provider and login), the fleet's
 * placement rows (dbo.cmk_environments) honour their capacity condition — so a test fails if the engine breaks one.
 * A batch it does not recognise is an error: every statement the engine sends is accounted for.
 */
import { createHash } from 'node:crypto';
import type { SqlConnection, SqlParams } from '../../database/sqlserver';

export interface RecordedBatch {
  database: string;
  sql: string;
  params: SqlParams;
}

type EncryptorType = 'CERTIFICATE' | 'ASYMMETRIC KEY';

interface ModelDek {
  state: number;
  encryptor: { type: EncryptorType; name: string };
  /** percent_complete for the next polls while the scan runs; empty: the next poll finds it finished (state 3). */
  pending: number[];
  /** Scans since the last log backup (SQL Server allows two, then wants a log backup under FULL recovery). */
  scansSinceLogBackup: number;
  /** sys.dm_database_encryption_keys.regenerate_date as the engine reads it (style 126); null until a REGENERATE. */
  regeneratedAt: string | null;
}

type ModelRow = { id: number; text: string; created_at: Date };

interface ModelDatabase {
  recovery: 'SIMPLE' | 'FULL';
  logChain: boolean;
  tables: boolean;
  record?: Record<string, string | number>;
  dek?: ModelDek;
  rows: ModelRow[];
  state: 'ONLINE' | 'OFFLINE';
  userAccess: 'MULTI_USER' | 'SINGLE_USER';
  /** Data and log file paths (sys.master_files). */
  files: string[];
  /** Set once CREATE_CONTROL_TABLES ran in it: the engine's control database. */
  control?: ControlTables;
}

export interface ControlTables {
  /** CREATE_CONTROL_TABLES ran (the engine's tables); the fleet's table alone does not make them. */
  engineTables: boolean;
  /** dbo.cmk_environments, once the fleet made it: where each environment was placed. */
  environments?: Map<string, { tenant: string; env: string; server_name: string; region: string | null; placed_at: string }>;
  offline: Map<string, Record<string, string>>;
  backups: Map<string, { tenant: string; env: string; id: string; path: string; created_at: string; size_bytes: number | null; record_thumbprint: string; record_updated_at: string }>;
  restores: Map<string, Record<string, string>>;
  leftovers: Map<string, { tenant: string; env: string; recorded_at: string }>;
}

/** A file on the server's disks: a database's data or log file, or a backup (the database as it was, DEK included). */
export interface DiskFile {
  kind: 'data' | 'log' | 'backup';
  database: string;
  image?: { record?: Record<string, string | number>; encryptor: { type: EncryptorType; name: string }; rows: ModelRow[]; size: number };
}

export const normaliseSql = (text: string): string => text.replace(/\s+/g, ' ').trim();

const newControlTables = (): ControlTables => ({ engineTables: false, offline: new Map(), backups: new Map(), restores: new Map(), leftovers: new Map() });

const CREATE_ENVIRONMENTS = "IF OBJECT_ID(N'dbo.cmk_environments', N'U') IS NULL CREATE TABLE dbo.cmk_environments ( tenant NVARCHAR(63) NOT NULL, env NVARCHAR(63) NOT NULL,";

/** The credential batch, whitespace normalised: every value a parameter, the DDL built on the server. */
const ENSURE_EKM_CREDENTIAL = [
  "DECLARE @literals NVARCHAR(MAX) = N' WITH IDENTITY = N''' + REPLACE(@identity, N'''', N'''''') + N''', SECRET = N''' + REPLACE(@secret, N'''', N'''''') + N'''';",
  'DECLARE @statement NVARCHAR(MAX) = CASE WHEN EXISTS (SELECT 1 FROM sys.credentials WHERE name = @credential)',
  "THEN N'ALTER CREDENTIAL ' + QUOTENAME(@credential) + @literals",
  "ELSE N'CREATE CREDENTIAL ' + QUOTENAME(@credential) + @literals + N' FOR CRYPTOGRAPHIC PROVIDER ' + QUOTENAME(@provider) END;",
  'EXEC sys.sp_executesql @statement;',
  'IF NOT EXISTS (SELECT 1 FROM sys.server_principal_credentials AS pc JOIN sys.credentials AS c ON c.credential_id = pc.credential_id',
  "JOIN sys.cryptographic_providers AS cp ON c.target_type = N'CRYPTOGRAPHIC PROVIDER' AND cp.provider_id = c.target_id",
  'WHERE pc.principal_id = SUSER_ID() AND cp.name = @provider)',
  "BEGIN SET @statement = N'ALTER LOGIN ' + QUOTENAME(SUSER_SNAME()) + N' ADD CREDENTIAL ' + QUOTENAME(@credential);",
  'EXEC sys.sp_executesql @statement; END',
].join(' ');

const thumbprintOf = (seed: string): string => createHash('sha1').update(seed).digest('hex').toUpperCase();
const BUSY = new Set([2, 4, 5, 6]);

export class RecordingSqlServer implements SqlConnection {
  readonly batches: RecordedBatch[] = [];
  readonly certificates = new Map<string, string>();
  readonly asymmetricKeys = new Map<string, string>();
  readonly logins = new Map<string, { key: string; credentials: Set<string> }>();
  readonly databases = new Map<string, ModelDatabase>();
  readonly logBackups: string[] = [];
  /** Keys the EKM provider finds in Azure Key Vault. */
  readonly vaultKeys = new Set<string>();
  /** The Key Vault key name each EKM asymmetric key in master was opened from (PROVIDER_KEY_NAME). */
  readonly providerKeyNames = new Map<string, string>();
  readonly disk = new Map<string, DiskFile>();
  /** msdb.dbo.backupset joined with backupmediafamily, reduced to what the engine reads. */
  readonly backupHistory: Array<{ database: string; name: string; path: string; size: number }> = [];
  dataDirectory = '/var/opt/mssql/data';
  /** SERVERPROPERTY('InstanceDefaultBackupPath'); null as before SQL Server 2019. */
  defaultBackupPath: string | null = '/var/opt/mssql/data/';
  /** Batches to refuse once, as a fault would (a lost connection, a killed worker): see failOnce. */
  private readonly faults: RegExp[] = [];
  /** percent_complete reported on successive polls of a scan the engine starts. */
  scanProgress: number[] = [30, 70];
  recoveryOfNewDatabases: 'SIMPLE' | 'FULL' = 'SIMPLE';
  private clock = Date.parse('2030-01-01T00:00:00.000Z');
  /** sys.credentials for the EKM provider: identity and secret as SQL Server stored them. */
  readonly credentials = new Map<string, { identity: string; secret: string }>();
  /** The credential the engine's own login holds for the provider (it runs CREATE ASYMMETRIC KEY … FROM PROVIDER). */
  engineLoginCredential: string | undefined;

  /**
   * `adminMadeCredentials` (default): the server's administrator made `cmk_ekm_tde_cred` and gave the engine's login a
   * credential (docs/SQLSERVER.md, EKM prerequisites); false: a bare server, where the engine must make them itself.
   */
  constructor(
    readonly ekmProvider = 'AzureKeyVault_EKM',
    { adminMadeCredentials = true }: { adminMadeCredentials?: boolean } = {},
  ) {
    if (adminMadeCredentials) {
      this.credentials.set('cmk_ekm_tde_cred', { identity: 'made-by-the-administrator', secret: 'made-by-the-administrator' });
      this.engineLoginCredential = 'cmk_ekm_admin_cred';
    }
  }

  /** Every batch so far as `<database>: <sql>`, whitespace normalised; cleared, so each step is asserted alone. */
  take(): string[] {
    return this.batches.splice(0).map((b) => `${b.database}: ${b.sql}`);
  }

  /** Someone else's scan or key change, running for as many polls as `percents` has entries. */
  startBusy(database: string, state: number, percents: number[]): void {
    const dek = this.mustDatabase(database).dek;
    if (!dek) throw new Error(`${database} has no DEK.`);
    dek.state = state;
    dek.pending = [...percents];
  }

  /** A DBA re-wraps the DEK behind the engine's back. */
  rewrapBehindTheEnginesBack(database: string, type: EncryptorType, name: string): void {
    const dek = this.mustDatabase(database).dek;
    if (!dek) throw new Error(`${database} has no DEK.`);
    dek.encryptor = { type, name };
  }

  /** The next batch matching `pattern` fails before it changes anything (as if the worker died just before it). */
  failOnce(pattern: RegExp): void {
    this.faults.push(pattern);
  }

  /** The control database's tables, as the engine's statements left them. */
  control(name = 'cmk_control'): ControlTables {
    const tables = this.databases.get(name)?.control;
    if (!tables) throw new Error(`No control database ${name}.`);
    return tables;
  }

  /** A full backup starts the log chain (until then a FULL database behaves as SIMPLE for log backups). */
  fullBackup(database: string): void {
    const db = this.mustDatabase(database);
    if (db.recovery !== 'FULL') throw new Error('Only FULL databases keep a log chain in this model.');
    db.logChain = true;
  }

  async query<T extends object>(database: string, statement: string, params: SqlParams = {}): Promise<T[]> {
    const sql = normaliseSql(statement);
    this.batches.push({ database, sql, params: { ...params } });
    const fault = this.faults.findIndex((f) => f.test(sql));
    if (fault >= 0) {
      this.faults.splice(fault, 1);
      throw new Error(`Injected fault before: ${sql.slice(0, 80)}`);
    }
    return this.answer(database, sql, params) as T[];
  }

  async close(): Promise<void> {}

  private mustDatabase(name: string): ModelDatabase {
    const db = this.databases.get(name);
    if (!db) throw new Error(`Database '${name}' does not exist.`);
    return db;
  }

  private encryptorThumbprint(type: EncryptorType, name: string): string | undefined {
    return (type === 'CERTIFICATE' ? this.certificates : this.asymmetricKeys).get(name);
  }

  /** What SQL Server needs to unwrap a DEK when it opens a database or restores a backup: an error, or undefined. */
  private cannotOpen({ type, name }: { type: EncryptorType; name: string }): string | undefined {
    const thumbprint = this.encryptorThumbprint(type, name);
    if (!thumbprint) return `Cannot find server ${type.toLowerCase()} '${name}'.`;
    if (type === 'ASYMMETRIC KEY') {
      const keyName = this.providerKeyNames.get(name) ?? '';
      if (!this.vaultKeys.has(keyName)) return `The EKM provider cannot open key '${keyName}' (thumbprint ${thumbprint}): it is not in the vault.`;
      if (![...this.logins.values()].some((l) => l.key === name && l.credentials.size > 0)) return `The asymmetric key '${name}' has no login holding an EKM credential.`;
    }
    return undefined;
  }

  private answer(database: string, sql: string, params: SqlParams): object[] {
    const db = database === 'master' ? undefined : this.mustDatabase(database);
    if (db?.state === 'OFFLINE') throw new Error(`Database '${database}' cannot be opened because it is offline.`);
    const p = (name: string): string => String(params[name]);
    let m: RegExpMatchArray | null;
    const controlSetup = sql.startsWith("IF OBJECT_ID(N'dbo.cmk_offline', N'U') IS NULL CREATE TABLE dbo.cmk_offline") || sql.startsWith(CREATE_ENVIRONMENTS);
    if (db?.control || (db && controlSetup)) return this.controlAnswer(db, sql, params);

    // ------------------------------------------------------------------------------------------- reads in master
    if (!db && sql.startsWith('SELECT d.name, d.state_desc AS state, d.recovery_model_desc AS recovery_model')) {
      const found = this.databases.get(p('database'));
      if (!found) return [];
      const lsn = found.recovery === 'FULL' && found.logChain ? '42000000001200001' : null;
      return [{ name: p('database'), state: found.state, recovery_model: found.recovery, last_log_backup_lsn: lsn }];
    }
    if (!db && sql.startsWith('SELECT encryption_state, percent_complete')) {
      const found = this.databases.get(p('database'));
      // An offline database's DEK is not loaded: the model lists none (the engine must not depend on it).
      const dek = found?.state === 'ONLINE' ? found.dek : undefined;
      if (!dek) return [];
      let percent = 0;
      if (BUSY.has(dek.state)) {
        const next = dek.pending.shift();
        if (next === undefined) dek.state = 3;
        else percent = next;
      }
      const encryptor_thumbprint = this.encryptorThumbprint(dek.encryptor.type, dek.encryptor.name) ?? null;
      return [{ encryption_state: dek.state, percent_complete: percent, encryptor_thumbprint, regenerate_date: dek.regeneratedAt }];
    }
    if (!db && sql.startsWith('SELECT CONVERT(varchar(66), thumbprint, 2) AS thumbprint FROM sys.certificates')) {
      const thumbprint = this.certificates.get(p('name'));
      return thumbprint ? [{ thumbprint }] : [];
    }
    if (!db && sql === 'SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(@database) ORDER BY file_id') {
      return (this.databases.get(p('database'))?.files ?? []).map((physical_name) => ({ physical_name }));
    }
    if (!db && sql === "SELECT CONVERT(nvarchar(512), SERVERPROPERTY('InstanceDefaultBackupPath')) AS path") {
      return [{ path: this.defaultBackupPath }];
    }
    if (!db && sql.startsWith('SELECT CONVERT(varchar(66), k.thumbprint, 2) AS thumbprint')) {
      const thumbprint = this.asymmetricKeys.get(p('name'));
      if (!thumbprint) return [];
      const login = this.logins.get(p('login'));
      return [{ thumbprint, logins: login ? 1 : 0, credentials: login?.credentials.has(p('credential')) ? 1 : 0 }];
    }

    // ----------------------------------------------------------------------------------------- changes in master
    if (!db && (m = sql.match(/^CREATE CERTIFICATE \[([^\]]+)\] WITH SUBJECT = N'((?:[^']|'')*)'$/))) {
      const [, name = ''] = m;
      if (this.certificates.has(name)) throw new Error(`A certificate named ${name} already exists.`);
      this.certificates.set(name, thumbprintOf(`certificate:${name}`));
      return [];
    }
    if (!db && (m = sql.match(/^CREATE ASYMMETRIC KEY \[([^\]]+)\] FROM PROVIDER \[([^\]]+)\] WITH PROVIDER_KEY_NAME = N'([^']+)', CREATION_DISPOSITION = OPEN_EXISTING$/))) {
      const [, name = '', provider, keyName = ''] = m;
      if (provider !== this.ekmProvider) throw new Error(`No cryptographic provider named ${provider}.`);
      if (!this.engineLoginCredential) throw new Error(`The login has no credential for cryptographic provider ${provider}.`);
      if (!this.vaultKeys.has(keyName)) throw new Error(`The EKM provider found no key named ${keyName}.`);
      if (this.asymmetricKeys.has(name)) throw new Error(`An asymmetric key named ${name} already exists.`);
      this.asymmetricKeys.set(name, thumbprintOf(`akv:${keyName}`));
      this.providerKeyNames.set(name, keyName);
      return [];
    }
    if (!db && (m = sql.match(/^CREATE LOGIN \[([^\]]+)\] FROM ASYMMETRIC KEY \[([^\]]+)\]$/))) {
      const [, login = '', key = ''] = m;
      if (!this.asymmetricKeys.has(key)) throw new Error(`No asymmetric key ${key}.`);
      if (this.logins.has(login)) throw new Error(`A login named ${login} already exists.`);
      this.logins.set(login, { key, credentials: new Set() });
      return [];
    }
    if (!db && (m = sql.match(/^ALTER LOGIN \[([^\]]+)\] ADD CREDENTIAL \[([^\]]+)\]$/))) {
      const [, login = '', credential = ''] = m;
      const found = this.logins.get(login);
      if (!found) throw new Error(`No login ${login}.`);
      if (!this.credentials.has(credential)) throw new Error(`Cannot find the credential '${credential}'.`);
      // One credential per provider and login.
      if (found.credentials.size > 0 && !found.credentials.has(credential)) throw new Error(`The login ${login} already has a credential for the provider.`);
      found.credentials.add(credential);
      return [];
    }
    if (!db && sql === ENSURE_EKM_CREDENTIAL) {
      this.ensureCredential(params);
      return [];
    }
    if (!db && (m = sql.match(/^CREATE DATABASE \[([^\]]+)\]$/))) {
      const [, name = ''] = m;
      if (this.databases.has(name)) throw new Error(`Database '${name}' already exists.`);
      this.newDatabase(name);
      return [];
    }
    if (!db && (m = sql.match(/^IF DB_ID\(@database\) IS NULL CREATE DATABASE \[([^\]]+)\]$/))) {
      const [, name = ''] = m;
      if (name !== p('database')) throw new Error('The control database statement names two databases.');
      if (!this.databases.has(name)) this.newDatabase(name);
      return [];
    }
    if (!db && (m = sql.match(/^ALTER DATABASE \[([^\]]+)\] SET OFFLINE WITH ROLLBACK IMMEDIATE$/))) {
      // Every session in it ends; TDE forgets the unwrapped DEK.
      this.mustDatabase(m[1] ?? '').state = 'OFFLINE';
      return [];
    }
    if (!db && (m = sql.match(/^ALTER DATABASE \[([^\]]+)\] SET ONLINE$/))) {
      const target = this.mustDatabase(m[1] ?? '');
      const refused = target.state === 'OFFLINE' && target.dek ? this.cannotOpen(target.dek.encryptor) : undefined;
      if (refused) throw new Error(`Database '${m[1]}' cannot be opened: ${refused}`);
      target.state = 'ONLINE';
      return [];
    }
    if (!db && (m = sql.match(/^ALTER DATABASE \[([^\]]+)\] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE \[([^\]]+)\];$/))) {
      const [, name = '', dropped] = m;
      if (dropped !== name) throw new Error('The drop batch names two databases.');
      const target = this.mustDatabase(name);
      if (target.state === 'OFFLINE') throw new Error(`Database '${name}' cannot be opened because it is offline (ALTER DATABASE … SET SINGLE_USER).`);
      for (const file of target.files) this.disk.delete(file);
      this.databases.delete(name);
      return [];
    }
    if (!db && (m = sql.match(/^DROP DATABASE \[([^\]]+)\]$/))) {
      const [, name = ''] = m;
      // "If the database, or any one of its files, is offline when dropped, the disk files are not deleted."
      if (this.mustDatabase(name).state === 'ONLINE') for (const file of this.mustDatabase(name).files) this.disk.delete(file);
      this.databases.delete(name);
      return [];
    }
    if (!db && sql === 'EXEC msdb.dbo.sp_delete_database_backuphistory @database_name = @database') {
      const kept = this.backupHistory.filter((h) => h.database !== p('database'));
      this.backupHistory.splice(0, this.backupHistory.length, ...kept);
      return [];
    }
    if (!db && (m = sql.match(/^BACKUP DATABASE \[([^\]]+)\] TO DISK = @path WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, NAME = @name$/))) {
      const [, name = ''] = m;
      const source = this.mustDatabase(name);
      if (source.state !== 'ONLINE') throw new Error(`Database '${name}' cannot be opened because it is offline.`);
      if (!source.dek) throw new Error('The model backs up encrypted databases only.');
      const size = 4_194_304 + 8_192 * source.rows.length;
      const image = { ...(source.record ? { record: { ...source.record } } : {}), encryptor: { ...source.dek.encryptor }, rows: source.rows.map((r) => ({ ...r })), size };
      this.disk.set(p('path'), { kind: 'backup', database: name, image });
      this.backupHistory.push({ database: name, name: p('name'), path: p('path'), size });
      return [];
    }
    m = sql.match(
      /^ALTER DATABASE \[([^\]]+)\] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; BEGIN TRY RESTORE DATABASE \[([^\]]+)\] FROM DISK = @path WITH REPLACE; END TRY BEGIN CATCH ALTER DATABASE \[([^\]]+)\] SET MULTI_USER; THROW; END CATCH; ALTER DATABASE \[([^\]]+)\] SET MULTI_USER;$/,
    );
    if (!db && m) {
      const [, name = '', ...others] = m;
      if (others.some((o) => o !== name)) throw new Error('The restore batch names two databases.');
      const target = this.mustDatabase(name);
      if (target.state === 'OFFLINE') throw new Error(`Database '${name}' cannot be opened because it is offline.`);
      const file = this.disk.get(p('path'));
      const refused = !file?.image ? `Cannot open backup device '${p('path')}'.` : this.cannotOpen(file.image.encryptor);
      if (refused || !file?.image) throw new Error(`RESTORE DATABASE is terminating abnormally: ${refused}`);
      const { image } = file;
      if (image.record) target.record = { ...image.record };
      else delete target.record;
      target.dek = { state: 3, encryptor: { ...image.encryptor }, pending: [], scansSinceLogBackup: 0, regeneratedAt: null };
      target.rows = image.rows.map((r) => ({ ...r }));
      target.tables = true;
      target.userAccess = 'MULTI_USER';
      return [];
    }
    if (!db && (m = sql.match(/^ALTER DATABASE \[([^\]]+)\] SET ENCRYPTION ON$/))) {
      const dek = this.mustDatabase(m[1] ?? '').dek;
      if (!dek || dek.state !== 1) throw new Error('SET ENCRYPTION ON needs an unencrypted database with a DEK.');
      Object.assign(dek, { state: 2, pending: [...this.scanProgress], scansSinceLogBackup: dek.scansSinceLogBackup + 1 });
      return [];
    }
    if (!db && (m = sql.match(/^BACKUP LOG \[([^\]]+)\] TO DISK = N'((?:[^']|'')*)'$/))) {
      const target = this.mustDatabase(m[1] ?? '');
      if (target.recovery !== 'FULL' || !target.logChain) throw new Error('BACKUP LOG cannot be performed because there is no current database backup.');
      if (target.dek) target.dek.scansSinceLogBackup = 0;
      this.logBackups.push(m[2] ?? '');
      return [];
    }

    // --------------------------------------------------------------------------------- in the environment's database
    if (db && sql.startsWith("IF OBJECT_ID(N'dbo.cmk_rows', N'U') IS NULL CREATE TABLE dbo.cmk_rows")) {
      db.tables = true;
      return [];
    }
    if (db && sql.startsWith("IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NOT NULL SELECT")) {
      return db.tables && db.record ? [{ ...db.record }] : [];
    }
    if (db && sql.startsWith('SET XACT_ABORT ON;')) {
      this.keyBatch(database, db, sql, params);
      return [];
    }
    if (db && sql === 'SELECT id, text, created_at FROM dbo.cmk_rows ORDER BY id') {
      return db.rows.map((r) => ({ ...r }));
    }
    if (db && sql === 'INSERT INTO dbo.cmk_rows (text, created_at) OUTPUT inserted.id, inserted.text, inserted.created_at VALUES (@text, SYSUTCDATETIME())') {
      this.clock += 1000;
      const row = { id: db.rows.length + 1, text: p('text'), created_at: new Date(this.clock) };
      db.rows.push(row);
      return [{ ...row }];
    }
    throw new Error(`The recording SQL Server does not understand, in ${database}: ${sql}`);
  }

  private newDatabase(name: string): void {
    const files = [`${this.dataDirectory}/${name}.mdf`, `${this.dataDirectory}/${name}_log.ldf`];
    files.forEach((file, i) => this.disk.set(file, { kind: i === 0 ? 'data' : 'log', database: name }));
    this.databases.set(name, { recovery: this.recoveryOfNewDatabases, logChain: false, tables: false, rows: [], state: 'ONLINE', userAccess: 'MULTI_USER', files });
  }

  /** The engine's control database: marks, backups, restores in progress, leftover files. */
  private controlAnswer(db: ModelDatabase, sql: string, params: SqlParams): object[] {
    const p = (name: string): string => String(params[name]);
    const env = `${p('tenant')}/${p('env')}`;
    if (sql.startsWith("IF OBJECT_ID(N'dbo.cmk_offline', N'U') IS NULL CREATE TABLE dbo.cmk_offline")) {
      for (const table of ['cmk_backups', 'cmk_restores', 'cmk_leftover_files']) {
        if (!sql.includes(`IF OBJECT_ID(N'dbo.${table}', N'U') IS NULL CREATE TABLE dbo.${table}`)) throw new Error(`The control tables lack ${table}.`);
      }
      db.control ??= newControlTables();
      db.control.engineTables = true;
      return [];
    }
    if (sql.startsWith(CREATE_ENVIRONMENTS)) {
      if (sql !== `${CREATE_ENVIRONMENTS} server_name NVARCHAR(63) NOT NULL, region NVARCHAR(63) NULL, placed_at NVARCHAR(40) NOT NULL, CONSTRAINT pk_cmk_environments PRIMARY KEY (tenant, env));`) {
        throw new Error(`The recording SQL Server does not understand this placement table: ${sql}`);
      }
      db.control ??= newControlTables();
      db.control.environments ??= new Map();
      return [];
    }
    const c = db.control;
    if (!c) throw new Error("Invalid object name 'dbo.cmk_offline'.");
    const placed = this.placementAnswer(c, sql, params);
    if (placed) return placed;
    if (!c.engineTables) throw new Error("Invalid object name 'dbo.cmk_offline'.");
    const keyRecord = ['kind', 'name', 'version', 'thumbprint', 'encryptor_type', 'encryptor_name', 'updated_at'];
    const pick = (fields: string[]) => Object.fromEntries(fields.map((f) => [f, p(f)]));

    if (sql === 'SELECT locked_at, delete_at, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env') {
      const mark = c.offline.get(env);
      return mark ? [Object.fromEntries(['locked_at', 'delete_at', ...keyRecord].map((f) => [f, mark[f]]))] : [];
    }
    if (sql === 'SELECT tenant, env, locked_at, delete_at FROM dbo.cmk_offline ORDER BY delete_at, tenant, env') {
      const rows = [...c.offline.values()].map(({ tenant = '', env: e = '', locked_at = '', delete_at = '' }) => ({ tenant, env: e, locked_at, delete_at }));
      return rows.sort((a, b) => a.delete_at.localeCompare(b.delete_at) || a.tenant.localeCompare(b.tenant) || a.env.localeCompare(b.env));
    }
    if (sql.startsWith('IF NOT EXISTS (SELECT 1 FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env) INSERT INTO dbo.cmk_offline')) {
      if (!c.offline.has(env)) c.offline.set(env, pick(['tenant', 'env', 'locked_at', 'delete_at', ...keyRecord]));
      return [];
    }
    if (sql === 'DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env') {
      c.offline.delete(env);
      return [];
    }
    if (sql.startsWith('IF NOT EXISTS (SELECT 1 FROM dbo.cmk_leftover_files WHERE physical_name = @physical_name) INSERT INTO dbo.cmk_leftover_files')) {
      if (!c.leftovers.has(p('physical_name'))) c.leftovers.set(p('physical_name'), { tenant: p('tenant'), env: p('env'), recorded_at: p('recorded_at') });
      return [];
    }
    if (sql === 'SELECT id, path FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env ORDER BY id') {
      return [...c.backups.values()].filter((b) => `${b.tenant}/${b.env}` === env).sort((a, b) => a.id.localeCompare(b.id)).map(({ id, path }) => ({ id, path }));
    }
    if (sql === 'SELECT id, path, created_at, size_bytes, record_thumbprint, record_updated_at FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env AND size_bytes IS NOT NULL ORDER BY created_at, id') {
      const mine = [...c.backups.values()].filter((b) => `${b.tenant}/${b.env}` === env && b.size_bytes !== null);
      // BIGINT comes back as text from the driver.
      return mine
        .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id))
        .map(({ id, path, created_at, size_bytes, record_thumbprint, record_updated_at }) => ({ id, path, created_at, size_bytes: String(size_bytes), record_thumbprint, record_updated_at }));
    }
    if (sql === 'EXEC master.sys.xp_delete_file 0, @path; DELETE FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env AND id = @id') {
      // Like xp_delete_file: only a backup file is deleted, and nothing is said about anything else.
      if (this.disk.get(p('path'))?.kind === 'backup') this.disk.delete(p('path'));
      c.backups.delete(`${env}/${p('id')}`);
      return [];
    }
    if (sql === 'INSERT INTO dbo.cmk_backups (tenant, env, id, path, created_at, size_bytes, record_thumbprint, record_updated_at) VALUES (@tenant, @env, @id, @path, @created_at, NULL, @record_thumbprint, @record_updated_at)') {
      if (c.backups.has(`${env}/${p('id')}`)) throw new Error('Violation of PRIMARY KEY constraint pk_cmk_backups.');
      const row = { tenant: p('tenant'), env: p('env'), id: p('id'), path: p('path'), created_at: p('created_at'), size_bytes: null };
      c.backups.set(`${env}/${p('id')}`, { ...row, record_thumbprint: p('record_thumbprint'), record_updated_at: p('record_updated_at') });
      return [];
    }
    if (sql.startsWith('UPDATE dbo.cmk_backups SET size_bytes = (SELECT TOP (1) CONVERT(bigint, COALESCE(bs.compressed_backup_size, bs.backup_size)) FROM msdb.dbo.backupset AS bs WHERE bs.database_name = @database AND bs.name = @id')) {
      const row = c.backups.get(`${env}/${p('id')}`);
      if (!row) return [];
      row.size_bytes = [...this.backupHistory].reverse().find((h) => h.database === p('database') && h.name === p('id'))?.size ?? null;
      return [{ size_bytes: row.size_bytes === null ? null : String(row.size_bytes) }];
    }
    if (sql === 'SELECT backup_id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env') {
      const pending = c.restores.get(env);
      return pending ? [{ ...pending }] : [];
    }
    if (sql.startsWith('DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env; INSERT INTO dbo.cmk_restores')) {
      c.restores.set(env, pick(['backup_id', ...keyRecord]));
      return [];
    }
    if (sql === 'DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env') {
      c.restores.delete(env);
      return [];
    }
    if (sql === 'DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env; DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env') {
      c.restores.delete(env);
      c.offline.delete(env);
      return [];
    }
    throw new Error(`The recording SQL Server does not understand, in the control database: ${sql}`);
  }

  /** The fleet's placement rows (database/sqlserver-fleet.ts); undefined for any other statement. */
  private placementAnswer(c: ControlTables, sql: string, params: SqlParams): object[] | undefined {
    const p = (name: string): string => String(params[name]);
    const env = `${p('tenant')}/${p('env')}`;
    const table = (): NonNullable<ControlTables['environments']> => {
      if (!c.environments) throw new Error("Invalid object name 'dbo.cmk_environments'.");
      return c.environments;
    };
    if (sql === 'SELECT e.server_name, e.region, CASE WHEN DB_ID(@database) IS NULL THEN 0 ELSE 1 END AS has_database FROM (SELECT 1 AS probe) AS p LEFT JOIN dbo.cmk_environments AS e ON e.tenant = @tenant AND e.env = @env') {
      const row = table().get(env);
      return [{ server_name: row?.server_name ?? null, region: row?.region ?? null, has_database: this.databases.has(p('database')) ? 1 : 0 }];
    }
    if (sql === 'SELECT COUNT(*) AS environments FROM dbo.cmk_environments') return [{ environments: table().size }];
    if (
      sql ===
      "INSERT INTO dbo.cmk_environments (tenant, env, server_name, region, placed_at) OUTPUT inserted.server_name SELECT @tenant, @env, @server_name, NULLIF(@region, N''), @placed_at WHERE NOT EXISTS (SELECT 1 FROM dbo.cmk_environments WITH (UPDLOCK, HOLDLOCK) WHERE tenant = @tenant AND env = @env) AND (@max_environments < 0 OR (SELECT COUNT(*) FROM dbo.cmk_environments WITH (UPDLOCK, HOLDLOCK)) < @max_environments)"
    ) {
      const rows = table();
      const max = Number(params.max_environments);
      if (rows.has(env) || (max >= 0 && rows.size >= max)) return [];
      rows.set(env, { tenant: p('tenant'), env: p('env'), server_name: p('server_name'), region: p('region') === '' ? null : p('region'), placed_at: p('placed_at') });
      return [{ server_name: p('server_name') }];
    }
    if (sql === 'DELETE FROM dbo.cmk_environments WHERE tenant = @tenant AND env = @env') {
      table().delete(env);
      return [];
    }
    if (sql === 'SELECT tenant, env FROM dbo.cmk_environments WHERE region IS NOT NULL AND region <> @region') {
      return [...table().values()].filter((r) => r.region !== null && r.region !== p('region')).map(({ tenant, env: e }) => ({ tenant, env: e }));
    }
    return undefined;
  }

  /**
   * ENSURE_EKM_CREDENTIAL as SQL Server runs it: the statement is built from the parameters exactly as the batch
   * builds it (QUOTENAME, ' doubled), then parsed back as T-SQL would — so an escaping fault shows up as a wrong
   * identity or secret, or as a syntax error. The engine's login is given the credential unless it holds one.
   */
  private ensureCredential(params: SqlParams): void {
    for (const name of ['credential', 'provider', 'identity', 'secret']) {
      if (typeof params[name] !== 'string') throw new Error(`Must declare the scalar variable "@${name}".`);
    }
    const [credential, provider, identity, secret] = ['credential', 'provider', 'identity', 'secret'].map((n) => String(params[n])) as [string, string, string, string];
    const quotename = (v: string): string => `[${v.replace(/]/g, ']]')}]`;
    const literal = (v: string): string => `N'${v.replace(/'/g, "''")}'`;
    const literals = ` WITH IDENTITY = ${literal(identity)}, SECRET = ${literal(secret)}`;
    const statement = this.credentials.has(credential)
      ? `ALTER CREDENTIAL ${quotename(credential)}${literals}`
      : `CREATE CREDENTIAL ${quotename(credential)}${literals} FOR CRYPTOGRAPHIC PROVIDER ${quotename(provider)}`;
    const m = statement.match(/^(CREATE|ALTER) CREDENTIAL \[((?:[^\]]|\]\])+)\] WITH IDENTITY = N'((?:[^']|'')*)', SECRET = N'((?:[^']|'')*)'(?: FOR CRYPTOGRAPHIC PROVIDER \[((?:[^\]]|\]\])+)\])?$/s);
    // SQL Server's own message would quote the text near the fault; the model says only that there is one.
    if (!m) throw new Error('Incorrect syntax in the dynamic CREDENTIAL statement.');
    const unquote = (v: string): string => v.replace(/''/g, "'");
    const [, verb, name = '', storedIdentity = '', storedSecret = '', forProvider] = m;
    if (verb === 'CREATE' && forProvider?.replace(/]]/g, ']') !== this.ekmProvider) throw new Error(`Cannot find the cryptographic provider '${forProvider ?? ''}'.`);
    this.credentials.set(name.replace(/]]/g, ']'), { identity: unquote(storedIdentity), secret: unquote(storedSecret) });
    this.engineLoginCredential ??= credential;
  }

  /** A key statement (or none) followed by the key-record upsert, as one batch. */
  private keyBatch(database: string, db: ModelDatabase, sql: string, params: SqlParams): void {
    const [head = '', ...rest] = sql.replace(/^SET XACT_ABORT ON; /, '').split('; ');
    let m: RegExpMatchArray | null;
    const requireEncryptor = (type: EncryptorType, name: string): void => {
      if (!this.encryptorThumbprint(type, name)) throw new Error(`Cannot find the ${type.toLowerCase()} '${name}' in master.`);
      if (type === 'ASYMMETRIC KEY' && ![...this.logins.values()].some((l) => l.key === name && l.credentials.size > 0)) {
        throw new Error(`The asymmetric key '${name}' has no login holding an EKM credential.`);
      }
    };
    const requireIdle = (dek: ModelDek | undefined): ModelDek => {
      if (!dek) throw new Error(`${database} has no database encryption key.`);
      if (BUSY.has(dek.state)) throw new Error('Cannot change database encryption key while an encryption, decryption, or key change scan is in progress.');
      return dek;
    };
    if ((m = head.match(/^CREATE DATABASE ENCRYPTION KEY WITH ALGORITHM = AES_256 ENCRYPTION BY SERVER (CERTIFICATE|ASYMMETRIC KEY) \[([^\]]+)\]$/))) {
      const type = m[1] as EncryptorType;
      const name = m[2] ?? '';
      requireEncryptor(type, name);
      if (db.dek) throw new Error(`${database} already has a database encryption key.`);
      db.dek = { state: 1, encryptor: { type, name }, pending: [], scansSinceLogBackup: 0, regeneratedAt: null };
    } else if ((m = head.match(/^ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER (CERTIFICATE|ASYMMETRIC KEY) \[([^\]]+)\]$/))) {
      const type = m[1] as EncryptorType;
      const name = m[2] ?? '';
      requireEncryptor(type, name);
      // A protection change rewrites no page: the model finishes it before the next poll.
      requireIdle(db.dek).encryptor = { type, name };
    } else if (head === 'ALTER DATABASE ENCRYPTION KEY REGENERATE WITH ALGORITHM = AES_256') {
      const dek = requireIdle(db.dek);
      if (db.recovery === 'FULL' && db.logChain && dek.scansSinceLogBackup >= 2) {
        throw new Error(`This command requires a database encryption scan on database '${database}'. However, the database has changes from previous encryption scans that are pending log backup. Take a log backup and retry the command.`);
      }
      this.clock += 1;
      const regeneratedAt = new Date(this.clock).toISOString().replace(/Z$/, '');
      Object.assign(dek, { state: 4, pending: [...this.scanProgress], scansSinceLogBackup: dek.scansSinceLogBackup + 1, regeneratedAt });
    } else {
      rest.unshift(head);
    }
    // The rest of the batch must be the key-record upsert; an error above ended the batch before it (XACT_ABORT).
    const upsert = rest.join('; ');
    if (!upsert.startsWith('UPDATE dbo.cmk_key_record SET kind = @kind') || !upsert.includes('IF @@ROWCOUNT = 0 INSERT INTO dbo.cmk_key_record')) throw new Error(`The recording SQL Server does not understand this key batch: ${sql}`);
    if (!db.tables) throw new Error("Invalid object name 'dbo.cmk_key_record'.");
    const fields = ['kind', 'name', 'version', 'thumbprint', 'encryptor_type', 'encryptor_name', 'updated_at'];
    db.record = Object.fromEntries(fields.map((f) => [f, String(params[f])]));
  }
}
