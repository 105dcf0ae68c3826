/**
 * A SqlConnection that records every batch and answers from a small model of one SQL Server: databases with their
 * DEK (encryption_state, percent_complete, encryptor), certificates, EKM asymmetric keys and logins in master. The
 * model enforces the rules the engine must respect — no key statement while a scan runs, no third DEK change without
 * a log backup under FULL recovery with a log chain, encryptors must exist in master — so a test fails if the engine
 * breaks one. A batch it does not recognise is an error: every statement the engine sends is accounted for.
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
}

interface ModelDatabase {
  recovery: 'SIMPLE' | 'FULL';
  logChain: boolean;
  tables: boolean;
  record?: Record<string, string | number>;
  dek?: ModelDek;
  rows: Array<{ id: number; text: string; created_at: Date }>;
}

export const normaliseSql = (text: string): string => text.replace(/\s+/g, ' ').trim();

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
  /** percent_complete reported on successive polls of a scan the engine starts. */
  scanProgress: number[] = [30, 70];
  recoveryOfNewDatabases: 'SIMPLE' | 'FULL' = 'SIMPLE';
  private clock = Date.parse('2030-01-01T00:00:00.000Z');

  constructor(readonly ekmProvider = 'AzureKeyVault_EKM') {}

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

  /** A full backup starts the log chain (until then a FULL database behaves as SIMPLE for log backups). */
  fullBackup(database: string): void {
    const db = this.mustDatabase(database);
    if (db.recovery !== 'FULL') throw new Error('Only FULL databases keep a log chain in this model.');
    db.logChain = true;
  }

  async query<T extends object>(database: string, statement: string, params: SqlParams = {}): Promise<T[]> {
    const sql = normaliseSql(statement);
    this.batches.push({ database, sql, params: { ...params } });
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

  private answer(database: string, sql: string, params: SqlParams): object[] {
    const db = database === 'master' ? undefined : this.mustDatabase(database);
    const p = (name: string): string => String(params[name]);
    let m: RegExpMatchArray | null;

    // ------------------------------------------------------------------------------------------- reads in master
    if (!db && sql.startsWith('SELECT d.name, d.recovery_model_desc AS recovery_model')) {
      const found = this.databases.get(p('database'));
      if (!found) return [];
      const lsn = found.recovery === 'FULL' && found.logChain ? '42000000001200001' : null;
      return [{ name: p('database'), recovery_model: found.recovery, last_log_backup_lsn: lsn }];
    }
    if (!db && sql.startsWith('SELECT encryption_state, percent_complete')) {
      const dek = this.databases.get(p('database'))?.dek;
      if (!dek) return [];
      let percent = 0;
      if (BUSY.has(dek.state)) {
        const next = dek.pending.shift();
        if (next === undefined) dek.state = 3;
        else percent = next;
      }
      return [{ encryption_state: dek.state, percent_complete: percent, encryptor_thumbprint: this.encryptorThumbprint(dek.encryptor.type, dek.encryptor.name) ?? null }];
    }
    if (!db && sql.startsWith('SELECT CONVERT(varchar(66), thumbprint, 2) AS thumbprint FROM sys.certificates')) {
      const thumbprint = this.certificates.get(p('name'));
      return thumbprint ? [{ thumbprint }] : [];
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
      if (!this.vaultKeys.has(keyName)) throw new Error(`The EKM provider found no key named ${keyName}.`);
      if (this.asymmetricKeys.has(name)) throw new Error(`An asymmetric key named ${name} already exists.`);
      this.asymmetricKeys.set(name, thumbprintOf(`akv:${keyName}`));
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
      found.credentials.add(credential);
      return [];
    }
    if (!db && (m = sql.match(/^CREATE DATABASE \[([^\]]+)\]$/))) {
      const [, name = ''] = m;
      if (this.databases.has(name)) throw new Error(`Database '${name}' already exists.`);
      this.databases.set(name, { recovery: this.recoveryOfNewDatabases, logChain: false, tables: false, rows: [] });
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
      db.dek = { state: 1, encryptor: { type, name }, pending: [], scansSinceLogBackup: 0 };
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
      Object.assign(dek, { state: 4, pending: [...this.scanProgress], scansSinceLogBackup: dek.scansSinceLogBackup + 1 });
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
