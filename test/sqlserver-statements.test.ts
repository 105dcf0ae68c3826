/**
 * The SQL Server engine, statement by statement, against a recording connection that models one SQL Server
 * (test/support/recording-sql.ts). Each operation's exact batch sequence is asserted (whitespace normalised), so a
 * change to what the engine sends to production is a visible change to this file. The real-server run of the same
 * lifecycle is test/sqlserver-contract.test.ts.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnvironmentActivities } from '../activities/environments';
import { CmkError } from '../common/errors';
import { ConfigError, loadConfig } from '../config';
import { SqlServerEnvironmentDatabases, type SqlServerOptions } from '../database/sqlserver';
import { quoteName, quoteString } from '../database/sqlserver-sql';
import type { Protector } from '../database/types';
import { buildParts } from '../worker/parts';
import { localParts } from './support/parts';
import { RecordingSqlServer } from './support/recording-sql';

const NOW = '2030-01-02T03:04:05.678Z';
const provider: Protector = { kind: 'provider', name: 'provider-emea', version: '1'.repeat(32), thumbprint: 'a'.repeat(64) };
const tenantA: Protector = { kind: 'tenant', name: 'tenant-contoso-emea', version: '2'.repeat(32), thumbprint: 'b'.repeat(64) };
const tenantB: Protector = { kind: 'tenant', name: 'tenant-contoso-emea-b', version: '3'.repeat(32), thumbprint: 'c'.repeat(64) };

const DB = 'cmk_contoso_prod';
const CERT = 'cmk_provider_provider-emea';
const KEY_A = `cmk_tenant_${'b'.repeat(64)}`;
const KEY_B = `cmk_tenant_${'c'.repeat(64)}`;

// The reads, written out once. They are part of the exact sequences below.
const FIND_DB =
  'master: SELECT d.name, d.state_desc AS state, d.recovery_model_desc AS recovery_model, CONVERT(varchar(40), rs.last_log_backup_lsn) AS last_log_backup_lsn FROM sys.databases AS d LEFT JOIN sys.database_recovery_status AS rs ON rs.database_id = d.database_id WHERE d.name = @database';
const STATE =
  'master: SELECT encryption_state, percent_complete, CONVERT(varchar(66), encryptor_thumbprint, 2) AS encryptor_thumbprint, CONVERT(varchar(27), regenerate_date, 126) AS regenerate_date FROM sys.dm_database_encryption_keys WHERE database_id = DB_ID(@database)';
const FIND_CERT = 'master: SELECT CONVERT(varchar(66), thumbprint, 2) AS thumbprint FROM sys.certificates WHERE name = @name';
const FIND_KEY =
  'master: SELECT CONVERT(varchar(66), k.thumbprint, 2) AS thumbprint, (SELECT COUNT(*) FROM sys.server_principals WHERE name = @login) AS logins, (SELECT COUNT(*) FROM sys.server_principal_credentials AS pc JOIN sys.server_principals AS p ON p.principal_id = pc.principal_id JOIN sys.credentials AS c ON c.credential_id = pc.credential_id WHERE p.name = @login AND c.name = @credential) AS credentials FROM sys.asymmetric_keys AS k WHERE k.name = @name';
const READ_RECORD = `${DB}: IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NOT NULL SELECT kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_key_record WHERE id = 1`;
const CREATE_TABLES = `${DB}: IF OBJECT_ID(N'dbo.cmk_rows', N'U') IS NULL CREATE TABLE dbo.cmk_rows ( id INT IDENTITY(1, 1) NOT NULL PRIMARY KEY, text NVARCHAR(4000) NOT NULL, created_at DATETIME2(3) NOT NULL); IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NULL CREATE TABLE dbo.cmk_key_record ( id TINYINT NOT NULL PRIMARY KEY CHECK (id = 1), kind NVARCHAR(16) NOT NULL, name NVARCHAR(128) NOT NULL, version NVARCHAR(128) NOT NULL, thumbprint NVARCHAR(128) NOT NULL, encryptor_type NVARCHAR(16) NOT NULL, encryptor_name NVARCHAR(128) NOT NULL, updated_at NVARCHAR(40) NOT NULL);`;
/** A key statement and the key-record upsert, in one batch that stops at the first error. */
const keyBatch = (statement: string): string =>
  `${DB}: SET XACT_ABORT ON; ${statement}; UPDATE dbo.cmk_key_record SET kind = @kind, name = @name, version = @version, thumbprint = @thumbprint, encryptor_type = @encryptor_type, encryptor_name = @encryptor_name, updated_at = @updated_at WHERE id = 1; IF @@ROWCOUNT = 0 INSERT INTO dbo.cmk_key_record (id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at) VALUES (1, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at);`;
const REGENERATE = keyBatch('ALTER DATABASE ENCRYPTION KEY REGENERATE WITH ALGORITHM = AES_256');
/** The key-record upsert alone: the DEK is already under the right encryptor. */
const RECORD_ONLY = `${DB}: SET XACT_ABORT ON; UPDATE dbo.cmk_key_record SET kind = @kind, name = @name, version = @version, thumbprint = @thumbprint, encryptor_type = @encryptor_type, encryptor_name = @encryptor_name, updated_at = @updated_at WHERE id = 1; IF @@ROWCOUNT = 0 INSERT INTO dbo.cmk_key_record (id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at) VALUES (1, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at);`;

// The control database (marks, backups, restores in progress, leftover files), made on first use.
const CTL = 'cmk_control';
const CONTROL_SETUP = [
  `master: IF DB_ID(@database) IS NULL CREATE DATABASE [${CTL}]`,
  `${CTL}: IF OBJECT_ID(N'dbo.cmk_offline', N'U') IS NULL CREATE TABLE dbo.cmk_offline ( tenant NVARCHAR(63) NOT NULL, env NVARCHAR(63) NOT NULL, locked_at NVARCHAR(40) NOT NULL, delete_at NVARCHAR(40) NOT NULL, kind NVARCHAR(16) NOT NULL, name NVARCHAR(128) NOT NULL, version NVARCHAR(128) NOT NULL, thumbprint NVARCHAR(128) NOT NULL, encryptor_type NVARCHAR(16) NOT NULL, encryptor_name NVARCHAR(128) NOT NULL, updated_at NVARCHAR(40) NOT NULL, CONSTRAINT pk_cmk_offline PRIMARY KEY (tenant, env)); IF OBJECT_ID(N'dbo.cmk_backups', N'U') IS NULL CREATE TABLE dbo.cmk_backups ( tenant NVARCHAR(63) NOT NULL, env NVARCHAR(63) NOT NULL, id NVARCHAR(63) NOT NULL, path NVARCHAR(1024) NOT NULL, created_at NVARCHAR(40) NOT NULL, size_bytes BIGINT NULL, record_thumbprint NVARCHAR(128) NOT NULL, record_updated_at NVARCHAR(40) NOT NULL, CONSTRAINT pk_cmk_backups PRIMARY KEY (tenant, env, id)); IF OBJECT_ID(N'dbo.cmk_restores', N'U') IS NULL CREATE TABLE dbo.cmk_restores ( tenant NVARCHAR(63) NOT NULL, env NVARCHAR(63) NOT NULL, backup_id NVARCHAR(63) NOT NULL, kind NVARCHAR(16) NOT NULL, name NVARCHAR(128) NOT NULL, version NVARCHAR(128) NOT NULL, thumbprint NVARCHAR(128) NOT NULL, encryptor_type NVARCHAR(16) NOT NULL, encryptor_name NVARCHAR(128) NOT NULL, updated_at NVARCHAR(40) NOT NULL, CONSTRAINT pk_cmk_restores PRIMARY KEY (tenant, env)); IF OBJECT_ID(N'dbo.cmk_leftover_files', N'U') IS NULL CREATE TABLE dbo.cmk_leftover_files ( physical_name NVARCHAR(520) NOT NULL, tenant NVARCHAR(63) NOT NULL, env NVARCHAR(63) NOT NULL, recorded_at NVARCHAR(40) NOT NULL, CONSTRAINT pk_cmk_leftover_files PRIMARY KEY (physical_name));`,
];
const MARK = `${CTL}: SELECT locked_at, delete_at, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;
const WRITE_MARK = `${CTL}: IF NOT EXISTS (SELECT 1 FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env) INSERT INTO dbo.cmk_offline (tenant, env, locked_at, delete_at, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at) VALUES (@tenant, @env, @locked_at, @delete_at, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at)`;
const DELETE_MARK = `${CTL}: DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;
const LIST_OFFLINE = `${CTL}: SELECT tenant, env, locked_at, delete_at FROM dbo.cmk_offline ORDER BY delete_at, tenant, env`;
const SET_OFFLINE = `master: ALTER DATABASE [${DB}] SET OFFLINE WITH ROLLBACK IMMEDIATE`;
const SET_ONLINE = `master: ALTER DATABASE [${DB}] SET ONLINE`;
const START_BACKUP = `${CTL}: INSERT INTO dbo.cmk_backups (tenant, env, id, path, created_at, size_bytes, record_thumbprint, record_updated_at) VALUES (@tenant, @env, @id, @path, @created_at, NULL, @record_thumbprint, @record_updated_at)`;
const BACKUP = `master: BACKUP DATABASE [${DB}] TO DISK = @path WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, NAME = @name`;
const FINISH_BACKUP = `${CTL}: UPDATE dbo.cmk_backups SET size_bytes = (SELECT TOP (1) CONVERT(bigint, COALESCE(bs.compressed_backup_size, bs.backup_size)) FROM msdb.dbo.backupset AS bs WHERE bs.database_name = @database AND bs.name = @id ORDER BY bs.backup_set_id DESC) OUTPUT inserted.size_bytes WHERE tenant = @tenant AND env = @env AND id = @id`;
const LIST_BACKUPS = `${CTL}: SELECT id, path, created_at, size_bytes, record_thumbprint, record_updated_at FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env AND size_bytes IS NOT NULL ORDER BY created_at, id`;
const PENDING_RESTORE = `${CTL}: SELECT backup_id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env`;
const WRITE_PENDING_RESTORE = `${CTL}: DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env; INSERT INTO dbo.cmk_restores (tenant, env, backup_id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at) VALUES (@tenant, @env, @backup_id, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at)`;
const DELETE_PENDING_RESTORE = `${CTL}: DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env`;
const RESTORE = `master: ALTER DATABASE [${DB}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; BEGIN TRY RESTORE DATABASE [${DB}] FROM DISK = @path WITH REPLACE; END TRY BEGIN CATCH ALTER DATABASE [${DB}] SET MULTI_USER; THROW; END CATCH; ALTER DATABASE [${DB}] SET MULTI_USER;`;
const FILES = 'master: SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(@database) ORDER BY file_id';
const RECORD_LEFTOVER = `${CTL}: IF NOT EXISTS (SELECT 1 FROM dbo.cmk_leftover_files WHERE physical_name = @physical_name) INSERT INTO dbo.cmk_leftover_files (physical_name, tenant, env, recorded_at) VALUES (@physical_name, @tenant, @env, @recorded_at)`;
const HISTORY = 'master: EXEC msdb.dbo.sp_delete_database_backuphistory @database_name = @database';
const BACKUP_FILES = `${CTL}: SELECT id, path FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env ORDER BY id`;
const DELETE_BACKUP_FILE = `${CTL}: EXEC master.sys.xp_delete_file 0, @path; DELETE FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env AND id = @id`;
const FORGET = `${CTL}: DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env; DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;
const READ_ROWS = `${DB}: SELECT id, text, created_at FROM dbo.cmk_rows ORDER BY id`;

const OPEN_KEY_A = [
  FIND_KEY,
  `master: CREATE ASYMMETRIC KEY [${KEY_A}] FROM PROVIDER [AzureKeyVault_EKM] WITH PROVIDER_KEY_NAME = N'tenant-contoso-emea', CREATION_DISPOSITION = OPEN_EXISTING`,
  `master: CREATE LOGIN [${KEY_A}_login] FROM ASYMMETRIC KEY [${KEY_A}]`,
  `master: ALTER LOGIN [${KEY_A}_login] ADD CREDENTIAL [cmk_ekm_tde_cred]`,
  FIND_KEY,
];

/** Change statements: anything but a read. Idempotent repeats must send none. */
const changes = (batches: string[]): string[] => batches.filter((b) => !/^[^:]+: (SELECT |IF OBJECT_ID\(N'dbo\.cmk_key_record', N'U'\) IS NOT NULL SELECT )/.test(b));

function rig(options: Partial<SqlServerOptions> = {}) {
  const server = new RecordingSqlServer();
  server.vaultKeys.add('tenant-contoso-emea').add('tenant-contoso-emea-b');
  let clock = Date.parse(NOW);
  const sleeps: number[] = [];
  const databases = new SqlServerEnvironmentDatabases({
    connection: server,
    pollIntervalMs: 1000,
    now: () => new Date(clock),
    sleep: async (ms) => {
      sleeps.push(ms);
      clock += ms;
    },
    ...options,
  });
  const freeze = () => (clock = Date.parse(NOW));
  return { server, databases, sleeps, freeze };
}

async function created(options: Partial<SqlServerOptions> = {}) {
  const r = rig(options);
  await r.databases.create('contoso', 'prod', provider);
  // The control database exists from here on (its first use is asserted on its own below).
  await r.databases.offlineMark('contoso', 'prod');
  r.server.take();
  r.sleeps.length = 0;
  return r;
}

describe('quoting', () => {
  test('identifiers are bracketed with ] doubled; literals are N-quoted with \' doubled', () => {
    expect(quoteName('a]; DROP DATABASE x --')).toBe('[a]]; DROP DATABASE x --]');
    expect(quoteString("o'brien'); DROP TABLE t --")).toBe("N'o''brien''); DROP TABLE t --'");
    expect(() => quoteName('')).toThrow();
    expect(() => quoteName('x'.repeat(129))).toThrow();
  });
});

describe('SQL Server engine: statement sequences', () => {
  test('create: provider certificate, database, tables, DEK with its key record, encryption on, wait for state 3', async () => {
    const { server, databases } = rig();
    const record = await databases.create('contoso', 'prod', provider);
    expect(record).toEqual({ tenant: 'contoso', env: 'prod', protector: provider, algorithm: 'RSA-OAEP-256', updatedAt: NOW });
    const sent = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([
      FIND_DB,
      FIND_CERT,
      `master: CREATE CERTIFICATE [${CERT}] WITH SUBJECT = N'cmk provider key provider-emea'`,
      FIND_CERT,
      `master: CREATE DATABASE [${DB}]`,
      CREATE_TABLES,
      STATE,
      keyBatch(`CREATE DATABASE ENCRYPTION KEY WITH ALGORITHM = AES_256 ENCRYPTION BY SERVER CERTIFICATE [${CERT}]`),
      `master: ALTER DATABASE [${DB}] SET ENCRYPTION ON`,
      STATE, // 2, 30%
      STATE, // 2, 70%
      STATE, // 3
    ]);
    expect(sent[7]).toEqual({ ...provider, encryptor_type: 'CERTIFICATE', encryptor_name: CERT, updated_at: NOW });
    expect(await databases.describe('contoso', 'prod')).toEqual(record);
  });

  test('create again: the existing record, unchanged, and no change statement', async () => {
    const { server, databases } = await created();
    expect(await databases.create('contoso', 'prod', tenantA)).toMatchObject({ protector: provider, updatedAt: NOW });
    expect(server.take()).toEqual([FIND_DB, READ_RECORD, STATE, FIND_CERT]);
  });

  test('apply (rekey with the tenant key): EKM key, login and credential, re-wrap, then REGENERATE and the page scan', async () => {
    const { server, databases } = await created({ now: () => new Date(NOW) });
    const progress: number[] = [];
    let rewritten = false;
    const record = await databases.rekey('contoso', 'prod', tenantA, { onProgress: (p) => progress.push(p), afterPagesRewritten: () => (rewritten = true) });
    expect(record).toMatchObject({ protector: tenantA, updatedAt: NOW });
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([
      FIND_DB,
      MARK,
      READ_RECORD,
      ...OPEN_KEY_A,
      STATE,
      // Re-wrapped by the tenant key first, so the new DEK below is never wrapped by the provider's certificate.
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_A}]`),
      STATE,
      REGENERATE,
      STATE, // 4, 30%
      STATE, // 4, 70%
      STATE, // 3
    ]);
    expect(params[9]).toEqual({ ...tenantA, encryptor_type: 'ASYMMETRIC KEY', encryptor_name: KEY_A, updated_at: NOW });
    // 0 as the REGENERATE is sent (the heartbeat that tells a retry to look for it), then the scan's own figures.
    expect(progress).toEqual([0, 30, 70, 100]);
    expect(rewritten).toBe(true);
    expect(await databases.describe('contoso', 'prod')).toEqual(record);
  });

  test('revert (reprotect to the provider key): one re-wrap, no page scan; a repeat sends no change statement', async () => {
    const { server, databases } = await created();
    await databases.rekey('contoso', 'prod', tenantA);
    server.take();
    const record = await databases.reprotect('contoso', 'prod', provider);
    expect(record.protector).toEqual(provider);
    expect(server.take()).toEqual([
      FIND_DB,
      MARK,
      READ_RECORD,
      FIND_CERT,
      STATE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER CERTIFICATE [${CERT}]`),
      STATE,
    ]);
    expect(await databases.reprotect('contoso', 'prod', provider)).toEqual(record);
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, FIND_CERT, STATE]);
  });

  test('rekey under the same protector: REGENERATE only', async () => {
    const { server, databases } = await created();
    const record = await databases.rekey('contoso', 'prod', provider);
    expect(record.protector).toEqual(provider);
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, FIND_CERT, STATE, REGENERATE, STATE, STATE, STATE]);
  });

  test('reprotect to a new tenant key: its EKM key and login are made, the DEK re-wrapped; a repeat changes nothing', async () => {
    const { server, databases } = await created();
    await databases.rekey('contoso', 'prod', tenantA);
    server.take();
    const record = await databases.reprotect('contoso', 'prod', tenantB);
    expect(record.protector).toEqual(tenantB);
    expect(server.take()).toEqual([
      FIND_DB,
      MARK,
      READ_RECORD,
      FIND_KEY,
      `master: CREATE ASYMMETRIC KEY [${KEY_B}] FROM PROVIDER [AzureKeyVault_EKM] WITH PROVIDER_KEY_NAME = N'tenant-contoso-emea-b', CREATION_DISPOSITION = OPEN_EXISTING`,
      `master: CREATE LOGIN [${KEY_B}_login] FROM ASYMMETRIC KEY [${KEY_B}]`,
      `master: ALTER LOGIN [${KEY_B}_login] ADD CREDENTIAL [cmk_ekm_tde_cred]`,
      FIND_KEY,
      STATE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_B}]`),
      STATE,
    ]);
    expect(await databases.reprotect('contoso', 'prod', tenantB)).toEqual(record);
    const repeat = server.take();
    expect(repeat).toEqual([FIND_DB, MARK, READ_RECORD, FIND_KEY, STATE]);
    expect(changes(repeat)).toEqual([]);
    // Back to the first tenant key: its EKM key and login already exist, so only the re-wrap changes anything.
    await databases.reprotect('contoso', 'prod', tenantA);
    expect(changes(server.take())).toEqual([keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_A}]`)]);
  });

  test("certificate mode (test rigs): a tenant key maps to a server certificate SQL Server makes itself", async () => {
    const { server, databases } = await created({ tenantKeySource: 'certificate' });
    await databases.rekey('contoso', 'prod', tenantA);
    expect(server.take()).toEqual([
      FIND_DB,
      MARK,
      READ_RECORD,
      FIND_CERT,
      `master: CREATE CERTIFICATE [${KEY_A}] WITH SUBJECT = N'cmk tenant key tenant-contoso-emea/${'2'.repeat(32)} (test rig)'`,
      FIND_CERT,
      STATE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER CERTIFICATE [${KEY_A}]`),
      STATE,
      REGENERATE,
      STATE,
      STATE,
      STATE,
    ]);
    expect(server.asymmetricKeys.size).toBe(0);
  });
});

describe('SQL Server engine: hostile input', () => {
  const badIds = ['a]; DROP DATABASE x --', 'Contoso', '', "o'brien", 'x'.repeat(64)];

  test.each(badIds)('the ID %j is refused with INVALID_ARGUMENT before any statement is sent', async (bad) => {
    const { server, databases } = rig();
    const calls: Array<() => Promise<unknown>> = [
      () => databases.create(bad, 'prod', provider),
      () => databases.create('contoso', bad, provider),
      () => databases.describe(bad, 'prod'),
      () => databases.readRows('contoso', bad),
      () => databases.writeRow(bad, 'prod', 'text'),
      () => databases.rekey('contoso', bad, tenantA),
      () => databases.reprotect(bad, 'prod', tenantA),
      () => databases.takeOffline(bad, 'prod', LOCK),
      () => databases.bringOnline('contoso', bad),
      () => databases.offlineMark(bad, 'prod'),
      () => databases.destroy('contoso', bad),
      () => databases.backup(bad, 'prod'),
      () => databases.listBackups('contoso', bad),
      () => databases.restore(bad, 'prod'),
      () => databases.restore('contoso', 'prod', bad),
    ];
    for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.batches).toEqual([]);
  });

  test('IDs too long together for a SQL Server database name are refused before any statement', async () => {
    const { server, databases } = rig();
    await expect(databases.describe('t'.repeat(63), 'e'.repeat(63))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.batches).toEqual([]);
  });

  test('a protector whose name or thumbprint could not be a SQL Server name is refused before any statement', async () => {
    const { server, databases } = rig();
    await expect(databases.create('contoso', 'prod', { ...provider, name: 'x]; DROP LOGIN sa --' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(databases.reprotect('contoso', 'prod', { ...tenantA, thumbprint: "b'; --" })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(databases.rekey('contoso', 'prod', { ...tenantA, kind: 'admin' as 'tenant' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.batches).toEqual([]);
  });

  test('row text with quotes and brackets travels only as a bound parameter and comes back as written', async () => {
    const { server, databases } = await created();
    const text = `O'Brien's "row"]; DROP TABLE dbo.cmk_rows; --`;
    const row = await databases.writeRow('contoso', 'prod', text);
    expect(row).toMatchObject({ id: 1, text });
    expect(new Date(row.createdAt).toISOString()).toBe(row.createdAt);
    const insert = server.batches[2];
    expect(insert?.sql).toBe('INSERT INTO dbo.cmk_rows (text, created_at) OUTPUT inserted.id, inserted.text, inserted.created_at VALUES (@text, SYSUTCDATETIME())');
    expect(insert?.params).toEqual({ text });
    expect(server.batches.some((b) => b.sql.includes('Brien'))).toBe(false);
    expect(await databases.readRows('contoso', 'prod')).toEqual([row]);
    expect(server.take()).toEqual([FIND_DB, MARK, `${DB}: ${insert?.sql}`, FIND_DB, MARK, READ_ROWS]);
  });

  test('text beyond NVARCHAR(4000) is refused before any statement; an unknown environment is NOT_FOUND', async () => {
    const { server, databases } = rig();
    await expect(databases.writeRow('contoso', 'prod', 'x'.repeat(4001))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.batches).toEqual([]);
    await expect(databases.readRows('contoso', 'prod')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(databases.reprotect('contoso', 'prod', tenantA)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await databases.describe('contoso', 'prod')).toBeUndefined();
    expect(changes(server.take())).toEqual([]);
  });
});

const LOCK = { lockedAt: '2030-01-02T03:04:05.678Z', deleteAt: '2030-01-30T03:04:05.678Z' };
const tenantA2: Protector = { ...tenantA, version: '4'.repeat(32) };

/** On the tenant key (EKM), with two rows, locked; the vault key withdrawn as a lock does. */
async function lockedOnTenantKey() {
  const r = await created();
  await r.databases.rekey('contoso', 'prod', tenantA);
  for (const text of ['first', 'second']) await r.databases.writeRow('contoso', 'prod', text);
  await r.databases.takeOffline('contoso', 'prod', LOCK);
  r.server.vaultKeys.delete('tenant-contoso-emea');
  r.server.take();
  r.freeze();
  return r;
}

describe('SQL Server engine: lock and unlock (R8, R10)', () => {
  test('the control database is made once, on first use, and a second engine finds it', async () => {
    const { server, databases } = rig();
    await databases.create('contoso', 'prod', provider);
    server.take();
    expect(await databases.offlineMark('contoso', 'prod')).toBeUndefined();
    expect(server.take()).toEqual([...CONTROL_SETUP, MARK]);
    expect(await databases.listOffline()).toEqual([]);
    expect(server.take()).toEqual([LIST_OFFLINE]);
    const other = new SqlServerEnvironmentDatabases({ connection: server });
    expect(await other.offlineMark('contoso', 'prod')).toBeUndefined();
    expect(server.take()).toEqual([...CONTROL_SETUP, MARK]);
  });

  test('takeOffline: the mark with a copy of the key record, then OFFLINE; a repeat keeps the first mark and changes nothing', async () => {
    const { server, databases } = await created();
    await databases.takeOffline('contoso', 'prod', LOCK);
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, WRITE_MARK, SET_OFFLINE]);
    expect(params[3]).toEqual({ tenant: 'contoso', env: 'prod', locked_at: LOCK.lockedAt, delete_at: LOCK.deleteAt, ...provider, encryptor_type: 'CERTIFICATE', encryptor_name: CERT, updated_at: NOW });
    expect(server.databases.get(DB)?.state).toBe('OFFLINE');

    await databases.takeOffline('contoso', 'prod', { lockedAt: '2031-01-01T00:00:00.000Z', deleteAt: '2031-01-29T00:00:00.000Z' });
    expect(server.take()).toEqual([FIND_DB, MARK]);
    expect(await databases.offlineMark('contoso', 'prod')).toEqual(LOCK);
    expect(await databases.listOffline()).toEqual([{ tenant: 'contoso', env: 'prod', ...LOCK }]);
    // describe and create answer from the copy kept with the mark: an offline database cannot be queried.
    expect(await databases.describe('contoso', 'prod')).toEqual({ tenant: 'contoso', env: 'prod', protector: provider, algorithm: 'RSA-OAEP-256', updatedAt: NOW });
    expect(await databases.create('contoso', 'prod', provider)).toMatchObject({ protector: provider });
    expect(server.take()).toEqual([MARK, LIST_OFFLINE, FIND_DB, MARK, FIND_DB, MARK]);
  });

  test('while locked, rows, rekey, reprotect, backup and restore answer ENVIRONMENT_LOCKED; nothing reaches the database', async () => {
    const { server, databases } = await created();
    const backup = await databases.backup('contoso', 'prod');
    await databases.takeOffline('contoso', 'prod', LOCK);
    server.take();
    const calls: Array<() => Promise<unknown>> = [
      () => databases.readRows('contoso', 'prod'),
      () => databases.writeRow('contoso', 'prod', 'text'),
      () => databases.rekey('contoso', 'prod', provider),
      () => databases.reprotect('contoso', 'prod', tenantA),
      () => databases.backup('contoso', 'prod'),
      () => databases.restore('contoso', 'prod'),
      () => databases.restore('contoso', 'prod', backup.id),
    ];
    for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    const sent = server.take();
    expect(changes(sent)).toEqual([]);
    expect(sent.filter((b) => b.startsWith(`${DB}:`))).toEqual([]);
    // An unknown backup is NOT_FOUND first (DESIGN.md §4: NOT_FOUND before state codes).
    await expect(databases.restore('contoso', 'prod', 'b-20300101000000000-abcd')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await databases.listBackups('contoso', 'prod')).toEqual([backup]);
  });

  test('a crash between the mark and OFFLINE: the environment is locked already, and the retry takes it offline', async () => {
    const { server, databases } = await created();
    server.failOnce(/SET OFFLINE/);
    await expect(databases.takeOffline('contoso', 'prod', LOCK)).rejects.toThrow(/Injected fault/);
    expect(server.databases.get(DB)?.state).toBe('ONLINE');
    await expect(databases.readRows('contoso', 'prod')).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    server.take();
    await databases.takeOffline('contoso', 'prod', LOCK);
    expect(server.take()).toEqual([FIND_DB, MARK, SET_OFFLINE]);
    expect(server.databases.get(DB)?.state).toBe('OFFLINE');
  });

  test('bringOnline while the key is withdrawn: SET ONLINE fails (TDE cannot unwrap the DEK), it stays offline and locked', async () => {
    const { server, databases } = await lockedOnTenantKey();
    const failure = await databases.bringOnline('contoso', 'prod', tenantA).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).not.toBeInstanceOf(CmkError);
    expect((failure as Error).message).toMatch(/not in the vault/);
    expect(server.take()).toEqual([FIND_DB, MARK, FIND_KEY, SET_ONLINE]);
    expect(server.databases.get(DB)?.state).toBe('OFFLINE');
    expect(await databases.offlineMark('contoso', 'prod')).toEqual(LOCK);
  });

  test('bringOnline with another key: KEY_MISMATCH, still offline with its mark, nothing sent but reads', async () => {
    const { server, databases } = await lockedOnTenantKey();
    server.vaultKeys.add('tenant-contoso-emea');
    await expect(databases.bringOnline('contoso', 'prod', tenantB)).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    expect(server.take()).toEqual([FIND_DB, MARK]);
    expect(server.databases.get(DB)?.state).toBe('OFFLINE');
    expect(await databases.offlineMark('contoso', 'prod')).toEqual(LOCK);
  });

  test('bringOnline with the same key re-activated under a new version: encryptor, ONLINE, a query in it, record re-bound, mark deleted; a repeat changes nothing', async () => {
    const { server, databases } = await lockedOnTenantKey();
    server.vaultKeys.add('tenant-contoso-emea'); // re-activated: the same key material back in the vault
    const record = await databases.bringOnline('contoso', 'prod', tenantA2);
    expect(record).toEqual({ tenant: 'contoso', env: 'prod', protector: tenantA2, algorithm: 'RSA-OAEP-256', updatedAt: NOW });
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([FIND_DB, MARK, FIND_KEY, SET_ONLINE, READ_RECORD, STATE, RECORD_ONLY, STATE, DELETE_MARK]);
    // The DEK was not touched: same thumbprint, same encryptor; only the version in the record changed.
    expect(params[6]).toEqual({ ...tenantA2, encryptor_type: 'ASYMMETRIC KEY', encryptor_name: KEY_A, updated_at: NOW });
    expect(server.databases.get(DB)?.dek?.encryptor).toEqual({ type: 'ASYMMETRIC KEY', name: KEY_A });
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['first', 'second']);
    expect(await databases.describe('contoso', 'prod')).toEqual(record);
    expect(await databases.listOffline()).toEqual([]);
    server.take();

    expect(await databases.bringOnline('contoso', 'prod', tenantA2)).toEqual(record);
    const repeat = server.take();
    expect(repeat).toEqual([FIND_DB, MARK, READ_RECORD, FIND_KEY, STATE]);
    expect(changes(repeat)).toEqual([]);
  });

  test('bringOnline on the EKM path makes a missing asymmetric key, login and credential again before SET ONLINE', async () => {
    const { server, databases } = await lockedOnTenantKey();
    server.vaultKeys.add('tenant-contoso-emea');
    // A DBA dropped the key object (and its login) while the environment was locked.
    server.asymmetricKeys.delete(KEY_A);
    server.logins.delete(`${KEY_A}_login`);
    await databases.bringOnline('contoso', 'prod', tenantA);
    expect(server.take()).toEqual([FIND_DB, MARK, ...OPEN_KEY_A, SET_ONLINE, READ_RECORD, STATE, DELETE_MARK]);
  });

  test('bringOnline without a protector (provider key, locked by decision only), and a crash before the mark is deleted', async () => {
    const { server, databases } = await created();
    await databases.takeOffline('contoso', 'prod', LOCK);
    server.take();
    server.failOnce(/^DELETE FROM dbo\.cmk_offline/);
    await expect(databases.bringOnline('contoso', 'prod')).rejects.toThrow(/Injected fault/);
    expect(server.take()).toEqual([FIND_DB, MARK, FIND_CERT, SET_ONLINE, READ_RECORD, STATE, DELETE_MARK]);
    // Online again, but still marked: still locked until the retry has finished.
    await expect(databases.readRows('contoso', 'prod')).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    server.take();
    expect((await databases.bringOnline('contoso', 'prod')).protector).toEqual(provider);
    expect(server.take()).toEqual([FIND_DB, MARK, FIND_CERT, READ_RECORD, STATE, DELETE_MARK]);
    expect(await databases.readRows('contoso', 'prod')).toEqual([]);
  });

  test('a mark without usable timestamps is refused before any statement', async () => {
    const { server, databases } = await created();
    await expect(databases.takeOffline('contoso', 'prod', { lockedAt: 'yesterday', deleteAt: LOCK.deleteAt })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(databases.takeOffline('contoso', 'prod', undefined as unknown as typeof LOCK)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.batches).toEqual([]);
  });

  test('a database offline without a mark of cmk is an Error, never taken for a lock', async () => {
    const { server, databases } = await created();
    server.databases.get(DB)!.state = 'OFFLINE';
    await expect(databases.describe('contoso', 'prod')).rejects.toThrow(/no offline mark/);
    await expect(databases.takeOffline('contoso', 'prod', LOCK)).rejects.toThrow(/no offline mark/);
    await expect(databases.bringOnline('contoso', 'prod')).rejects.toThrow(/no offline mark/);
    expect(changes(server.take())).toEqual([]);
  });

  test('listOffline: every marked environment, soonest deletion first', async () => {
    const { databases } = await created();
    await databases.create('contoso', 'dev', provider);
    await databases.takeOffline('contoso', 'prod', LOCK);
    await databases.takeOffline('contoso', 'dev', { lockedAt: '2030-01-01T00:00:00.000Z', deleteAt: '2030-01-29T00:00:00.000Z' });
    expect((await databases.listOffline()).map((o) => `${o.env} ${o.deleteAt}`)).toEqual(['dev 2030-01-29T00:00:00.000Z', 'prod 2030-01-30T03:04:05.678Z']);
  });
});

describe('SQL Server engine: destroy (R9)', () => {
  test('an offline environment: its files are recorded (DROP leaves them), DROP as it is, history, backup files and mark deleted', async () => {
    const { server, databases } = await created();
    const backups = [await databases.backup('contoso', 'prod'), await databases.backup('contoso', 'prod')];
    await databases.takeOffline('contoso', 'prod', LOCK);
    server.take();
    await databases.destroy('contoso', 'prod');
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([FIND_DB, FILES, RECORD_LEFTOVER, RECORD_LEFTOVER, `master: DROP DATABASE [${DB}]`, HISTORY, BACKUP_FILES, DELETE_BACKUP_FILE, DELETE_BACKUP_FILE, FORGET]);
    // Taken in the same millisecond here: ordered by ID.
    const paths = backups.map((b) => `/var/opt/mssql/data/${DB}-${b.id}.bak`).sort();
    expect([params[7]?.path, params[8]?.path]).toEqual(paths);

    expect(server.databases.has(DB)).toBe(false);
    const dataFiles = [`/var/opt/mssql/data/${DB}.mdf`, `/var/opt/mssql/data/${DB}_log.ldf`];
    expect([...server.control().leftovers.keys()]).toEqual(dataFiles);
    expect(dataFiles.every((f) => server.disk.has(f))).toBe(true); // the operator's step (docs/SQLSERVER.md)
    expect(paths.some((f) => server.disk.has(f))).toBe(false);
    expect(server.backupHistory).toEqual([]);
    expect(await databases.listOffline()).toEqual([]);
    expect(await databases.listBackups('contoso', 'prod')).toEqual([]);
    expect(await databases.offlineMark('contoso', 'prod')).toBeUndefined();
    expect(await databases.describe('contoso', 'prod')).toBeUndefined();
    server.take();

    await databases.destroy('contoso', 'prod');
    expect(server.take()).toEqual([FIND_DB, HISTORY, BACKUP_FILES, FORGET]);
  });

  test('an online environment: SINGLE_USER WITH ROLLBACK IMMEDIATE and DROP in one batch, and SQL Server deletes its files', async () => {
    const { server, databases } = await created();
    await databases.destroy('contoso', 'prod');
    expect(server.take()).toEqual([FIND_DB, `master: ALTER DATABASE [${DB}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [${DB}];`, HISTORY, BACKUP_FILES, FORGET]);
    expect([...server.disk.keys()].filter((f) => f.includes(DB))).toEqual([]);
    expect(server.control().leftovers.size).toBe(0);
  });

  test('a crash in the middle: the retry finishes, and the mark stays listed until then', async () => {
    const { server, databases } = await created();
    await databases.backup('contoso', 'prod');
    await databases.takeOffline('contoso', 'prod', LOCK);
    server.failOnce(/xp_delete_file/);
    await expect(databases.destroy('contoso', 'prod')).rejects.toThrow(/Injected fault/);
    expect(server.databases.has(DB)).toBe(false);
    expect(await databases.listOffline()).toHaveLength(1);
    await databases.destroy('contoso', 'prod');
    expect(await databases.listOffline()).toEqual([]);
    expect(server.control().backups.size).toBe(0);
    expect([...server.disk.values()].filter((f) => f.kind === 'backup')).toEqual([]);
  });
});

describe('SQL Server engine: backup and restore', () => {
  test('backup: its row first, BACKUP with path and name as parameters, then the size msdb recorded; listed oldest first', async () => {
    const { server, databases, freeze } = await created({ backupDirectory: "/var/opt/mssql/backup/o'brien" });
    await databases.writeRow('contoso', 'prod', 'a row');
    server.take();
    freeze();
    const first = await databases.backup('contoso', 'prod');
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, START_BACKUP, BACKUP, FINISH_BACKUP]);
    expect(first).toEqual({ id: expect.stringMatching(/^b-20300102030405678-[0-9a-f]{4}$/), tenant: 'contoso', env: 'prod', createdAt: NOW, sizeBytes: 4_194_304 + 8_192 });
    const path = `/var/opt/mssql/backup/o'brien/${DB}-${first.id}.bak`;
    // The row also names the key record the backup holds (how a restore retried after a crash knows where it stands).
    expect(params[3]).toEqual({ tenant: 'contoso', env: 'prod', id: first.id, path, created_at: NOW, record_thumbprint: provider.thumbprint, record_updated_at: NOW });
    expect(params[4]).toEqual({ path, name: first.id });
    expect(server.batches.some((b) => b.sql.includes('brien'))).toBe(false);
    // The file holds the database as it was, DEK wrapped by the encryptor it was under: no key of its own.
    expect(server.disk.get(path)?.image?.encryptor).toEqual({ type: 'CERTIFICATE', name: CERT });

    const second = await databases.backup('contoso', 'prod');
    expect(await databases.listBackups('contoso', 'prod')).toEqual([first, second].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)));
  });

  test("without backupDirectory, SQL Server's default backup directory, asked once", async () => {
    const { server, databases } = await created();
    const first = await databases.backup('contoso', 'prod');
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, "master: SELECT CONVERT(nvarchar(512), SERVERPROPERTY('InstanceDefaultBackupPath')) AS path", START_BACKUP, BACKUP, FINISH_BACKUP]);
    expect(server.control().backups.get(`contoso/prod/${first.id}`)?.path).toBe(`/var/opt/mssql/data/${DB}-${first.id}.bak`);
    await databases.backup('contoso', 'prod');
    expect(server.take()).toEqual([FIND_DB, MARK, READ_RECORD, START_BACKUP, BACKUP, FINISH_BACKUP]);
    // Before SQL Server 2019 there is no such property: a plain Error that names the option, and no row, no file.
    const old = await created();
    old.server.defaultBackupPath = null;
    await expect(old.databases.backup('contoso', 'prod')).rejects.toThrow(/set the backupDirectory option/);
    expect(changes(old.server.take())).toEqual([]);
  });

  test('restore (latest by default): SINGLE_USER, RESTORE from the parameter path, MULTI_USER in one batch; later rows are gone', async () => {
    let clock = Date.parse(NOW);
    const { server, databases } = await created({ now: () => new Date((clock += 1000)) });
    await databases.writeRow('contoso', 'prod', 'before');
    await databases.backup('contoso', 'prod');
    const latest = await databases.backup('contoso', 'prod');
    await databases.writeRow('contoso', 'prod', 'after');
    server.take();
    expect(await databases.restore('contoso', 'prod')).toEqual(latest);
    const params = server.batches.map((b) => b.params);
    expect(server.take()).toEqual([FIND_DB, LIST_BACKUPS, MARK, PENDING_RESTORE, READ_RECORD, WRITE_PENDING_RESTORE, RESTORE, READ_RECORD, FIND_CERT, STATE, DELETE_PENDING_RESTORE]);
    expect(params[6]).toEqual({ path: `/var/opt/mssql/data/${DB}-${latest.id}.bak` });
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['before']);
    expect(server.databases.get(DB)?.userAccess).toBe('MULTI_USER');
    expect(server.control().restores.size).toBe(0);
  });

  test('a backup taken before apply comes back under the provider certificate and is re-wrapped by the tenant key it is on now', async () => {
    const { server, databases } = await created();
    await databases.writeRow('contoso', 'prod', 'on the provider key');
    const before = await databases.backup('contoso', 'prod');
    await databases.rekey('contoso', 'prod', tenantA);
    server.take();
    await databases.restore('contoso', 'prod', before.id);
    expect(server.take()).toEqual([
      FIND_DB,
      LIST_BACKUPS,
      MARK,
      PENDING_RESTORE,
      READ_RECORD,
      WRITE_PENDING_RESTORE,
      RESTORE,
      READ_RECORD,
      FIND_KEY,
      STATE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_A}]`),
      STATE,
      DELETE_PENDING_RESTORE,
    ]);
    expect(await databases.describe('contoso', 'prod')).toMatchObject({ protector: tenantA });
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['on the provider key']);
  });

  test('a crash between RESTORE and the re-wrap: the retry still ends under the key the environment was on', async () => {
    const { server, databases } = await created();
    const before = await databases.backup('contoso', 'prod');
    await databases.rekey('contoso', 'prod', tenantA);
    server.failOnce(/ENCRYPTION BY SERVER ASYMMETRIC KEY/);
    await expect(databases.restore('contoso', 'prod', before.id)).rejects.toThrow(/Injected fault/);
    // The restored database and its key record are the backup's: the provider's certificate.
    expect(server.databases.get(DB)?.record).toMatchObject({ kind: 'provider' });
    server.take();
    await databases.restore('contoso', 'prod', before.id);
    expect(changes(server.take())).toEqual([
      WRITE_PENDING_RESTORE,
      RESTORE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_A}]`),
      DELETE_PENDING_RESTORE,
    ]);
    expect(await databases.describe('contoso', 'prod')).toMatchObject({ protector: tenantA });
    expect(server.control().restores.size).toBe(0);
  });

  test('a restore that failed for good leaves no stale protector behind: after a later apply, a restore keeps the new key', async () => {
    const { server, databases } = await created();
    const first = await databases.backup('contoso', 'prod');
    server.failOnce(/RESTORE DATABASE/);
    await expect(databases.restore('contoso', 'prod', first.id)).rejects.toThrow(/Injected fault/);
    expect(server.control().restores.get('contoso/prod')).toMatchObject({ kind: 'provider' });
    // The workflow gave up on that restore; the environment moved on to the tenant key.
    await databases.rekey('contoso', 'prod', tenantA);
    await databases.restore('contoso', 'prod', first.id);
    expect(await databases.describe('contoso', 'prod')).toMatchObject({ protector: tenantA });
  });

  test('refusals change nothing: a malformed ID before any statement, NOT_FOUND for an unknown backup or none at all', async () => {
    const { server, databases } = await created();
    await expect(databases.restore('contoso', 'prod', "b-1'; DROP DATABASE x --")).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(databases.restore('contoso', 'prod', 'B-UPPER')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.take()).toEqual([]);
    await expect(databases.restore('contoso', 'prod')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await databases.backup('contoso', 'prod');
    server.take();
    await expect(databases.restore('contoso', 'prod', 'b-20300101000000000-abcd')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(server.take()).toEqual([FIND_DB, LIST_BACKUPS]);
    await expect(databases.backup('contoso', 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  test('a backup SQL Server cannot open (file gone, or its tenant key no longer in the vault) is an Error; the database stays as it was', async () => {
    const { server, databases } = await created();
    await databases.writeRow('contoso', 'prod', 'kept');
    const gone = await databases.backup('contoso', 'prod');
    server.disk.delete(`/var/opt/mssql/data/${DB}-${gone.id}.bak`);
    await expect(databases.restore('contoso', 'prod', gone.id)).rejects.toThrow(/Cannot open backup device/);
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['kept']);

    // Under the tenant key: the backup's DEK is wrapped by it, so it needs that key in the vault to be restored.
    await databases.rekey('contoso', 'prod', tenantA);
    const sealed = await databases.backup('contoso', 'prod');
    await databases.reprotect('contoso', 'prod', provider);
    server.vaultKeys.delete('tenant-contoso-emea');
    await expect(databases.restore('contoso', 'prod', sealed.id)).rejects.toThrow(/not in the vault/);
    expect(server.databases.get(DB)).toMatchObject({ userAccess: 'MULTI_USER', state: 'ONLINE' });
    expect(await databases.describe('contoso', 'prod')).toMatchObject({ protector: provider });
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['kept']);
  });
});

describe("SQL Server engine: SQL Server's limits", () => {
  test('a key change waits (polling) while another key change runs (state 4), then proceeds', async () => {
    const { server, databases, sleeps } = await created();
    server.startBusy(DB, 4, [50, 90]);
    const record = await databases.reprotect('contoso', 'prod', tenantA);
    expect(record.protector).toEqual(tenantA);
    expect(server.take()).toEqual([
      FIND_DB,
      MARK,
      READ_RECORD,
      ...OPEN_KEY_A,
      STATE, // 4, 50%
      STATE, // 4, 90%
      STATE, // 3: now the key statement may start
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER ASYMMETRIC KEY [${KEY_A}]`),
      STATE,
    ]);
    expect(sleeps).toEqual([1000, 1000]);
  });

  test('a scan that outlasts busyTimeoutMs ends in a plain Error (the activity retries) and no key statement', async () => {
    const { server, databases } = await created({ busyTimeoutMs: 3000 });
    server.startBusy(DB, 2, [10, 20, 30, 40, 50, 60]);
    const progress: number[] = [];
    const failure = await databases.rekey('contoso', 'prod', provider, { onProgress: (p) => progress.push(p) }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).not.toBeInstanceOf(CmkError);
    expect((failure as Error).message).toMatch(/still busy \(encryption_state 2/);
    expect(changes(server.take())).toEqual([]);
    expect(progress).toEqual([10, 20, 30, 40]);
  });

  test('under FULL recovery with a log chain, a log backup is taken before every REGENERATE', async () => {
    const r = rig({ logBackupDir: "/var/opt/mssql/backup/o'brien" });
    r.server.recoveryOfNewDatabases = 'FULL';
    await r.databases.create('contoso', 'prod', provider);
    r.server.fullBackup(DB);
    r.server.take();
    r.freeze();
    await r.databases.rekey('contoso', 'prod', provider);
    const backup = `master: BACKUP LOG [${DB}] TO DISK = N'/var/opt/mssql/backup/o''brien/${DB}-20300102T030405678Z.trn'`;
    expect(r.server.take()).toEqual([FIND_DB, ...CONTROL_SETUP, MARK, READ_RECORD, FIND_CERT, STATE, backup, REGENERATE, STATE, STATE, STATE]);
    // The model refuses a third scan without a log backup, as SQL Server does: these pass only because of the backups.
    await r.databases.rekey('contoso', 'prod', tenantA);
    await r.databases.rekey('contoso', 'prod', tenantA);
    expect(r.server.logBackups).toHaveLength(3);
  });

  test('under SIMPLE recovery, or FULL before the first full backup, no log backup is taken (none is possible)', async () => {
    const { server, databases } = await created();
    for (let i = 0; i < 3; i++) await databases.rekey('contoso', 'prod', provider);
    const r = rig();
    r.server.recoveryOfNewDatabases = 'FULL';
    await r.databases.create('contoso', 'prod', provider);
    for (let i = 0; i < 3; i++) await r.databases.rekey('contoso', 'prod', provider);
    expect([...server.take(), ...r.server.take()].filter((b) => b.includes('BACKUP LOG'))).toEqual([]);
  });

  test('describe refuses a key record the DEK contradicts: a mismatched encryptor thumbprint is an Error', async () => {
    const { server, databases } = await created();
    server.certificates.set('dba_cert', 'D'.repeat(40));
    server.rewrapBehindTheEnginesBack(DB, 'CERTIFICATE', 'dba_cert');
    const failure = await databases.describe('contoso', 'prod').catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).not.toBeInstanceOf(CmkError);
    expect((failure as Error).message).toMatch(/thumbprint DDDD.* not by CERTIFICATE cmk_provider_provider-emea/);
    // reprotect puts it back under the protector the record names.
    await databases.reprotect('contoso', 'prod', provider);
    expect(await databases.describe('contoso', 'prod')).toMatchObject({ protector: provider });
  });

  test('describe refuses a record that names another encryptor than its protector maps to (e.g. a changed tenant key source)', async () => {
    const { server, databases } = await created({ tenantKeySource: 'certificate' });
    await databases.rekey('contoso', 'prod', tenantA);
    const ekm = new SqlServerEnvironmentDatabases({ connection: server, tenantKeySource: 'ekm' });
    await expect(ekm.describe('contoso', 'prod')).rejects.toThrow(/maps to ASYMMETRIC KEY/);
  });
});

describe('SQL Server engine: a TDE scan longer than an activity attempt (issue 15)', () => {
  /**
   * The apply and rekey activities as the worker runs them, one attempt after another as Temporal retries them, on a
   * database whose page scan reports progress over 20 polls. `cutAt` ends an attempt at its n-th wait between polls.
   */
  async function longScan() {
    let cut: { at: number; end: () => void } | undefined;
    let waits = 0;
    const r = await created({
      sleep: async () => {
        waits += 1;
        if (cut && waits === cut.at) cut.end();
      },
    });
    r.server.scanProgress = Array.from({ length: 20 }, (_, i) => 5 * i + 3);
    const activities = createEnvironmentActivities({ vault: localParts().vault, databases: r.databases });
    /** One attempt: its heartbeats, and how it ended. */
    const attempt = async (
      run: (env: MockActivityEnvironment) => Promise<unknown>,
      { attempt: n, heartbeatDetails, cutAt, end }: { attempt: number; heartbeatDetails?: unknown; cutAt?: number; end?: (env: MockActivityEnvironment) => void },
    ) => {
      // The cut-off attempts are expected: the SDK's warning about each failed attempt is not shown.
      const env = new MockActivityEnvironment({ attempt: n, heartbeatDetails }, { logger: new DefaultLogger('ERROR') });
      const heartbeats: unknown[] = [];
      env.on('heartbeat', (d: unknown) => heartbeats.push(d));
      waits = 0;
      cut = cutAt === undefined ? undefined : { at: cutAt, end: () => end?.(env) };
      const outcome = await run(env).then(
        (value: unknown) => ({ value, error: undefined as unknown }),
        (error: unknown) => ({ value: undefined as unknown, error }),
      );
      return { ...outcome, heartbeats, last: heartbeats.at(-1) };
    };
    const regenerates = () => r.server.batches.filter((b) => b.sql.includes('REGENERATE')).length;
    const dek = () => r.server.databases.get(DB)?.dek;
    return { ...r, activities, attempt, regenerates, dek };
  }
  const workerStops = () => {
    throw new Error('the worker stopped');
  };
  const apply = { tenant: 'contoso', env: 'prod', tenantKey: { name: tenantA.name, version: tenantA.version, thumbprint: tenantA.thumbprint } };

  test('apply: the worker stops mid-scan; the retry finds the scan running and waits for it: exactly one REGENERATE', async () => {
    const { activities, attempt, regenerates, dek, server } = await longScan();
    const first = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 1, cutAt: 8, end: workerStops });
    expect(first.error).toEqual(new Error('the worker stopped'));
    expect(dek()?.state).toBe(4);
    expect(regenerates()).toBe(1);
    // The heartbeat carries the scan's progress as SQL Server reports it.
    expect(first.last).toMatchObject({ percentComplete: 38, encryptionState: 4 });
    server.take();

    const second = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 2, heartbeatDetails: first.last });
    expect(second.value).toEqual({ protection: 'tenant', keyThumbprint: tenantA.thumbprint });
    expect(regenerates()).toBe(0);
    expect(dek()?.state).toBe(3);
    // It went on from where the scan was, not from 0.
    expect(second.heartbeats[0]).toMatchObject({ encryptionState: 4, percentComplete: expect.any(Number) as number });
    expect((second.heartbeats[0] as { percentComplete: number }).percentComplete).toBeGreaterThan(38);
    expect(second.last).toMatchObject({ percentComplete: 100, encryptionState: 3 });
  });

  test('rekey: the attempt is cut off by its heartbeat timeout (cancelled); it sends nothing more, and the retry completes the same scan', async () => {
    const { activities, attempt, regenerates, dek, server } = await longScan();
    const rekey = { tenant: 'contoso', env: 'prod' };
    const first = await attempt((env) => env.run(activities.rekeyEnvironmentDatabase, rekey), { attempt: 1, cutAt: 5, end: (env) => env.cancel('TIMED_OUT') });
    expect(first.error).toBeInstanceOf(Error);
    expect(regenerates()).toBe(1);
    const polls = server.take().filter((b) => b === STATE).length;
    // Cut at the fifth wait: the attempt stops at its next poll (7 polls: before REGENERATE, and 6 of the scan).
    expect(polls).toBeLessThanOrEqual(7);
    expect(dek()?.state).toBe(4);

    const second = await attempt((env) => env.run(activities.rekeyEnvironmentDatabase, rekey), { attempt: 2, heartbeatDetails: first.last });
    expect(second.value).toEqual({ protection: 'provider', keyThumbprint: provider.thumbprint });
    expect(regenerates()).toBe(0);
    expect(dek()?.state).toBe(3);
  });

  test('the scan ended while no attempt ran (the worker was down): the retry sees from the heartbeat and the DEK that it is done, and sends no REGENERATE', async () => {
    const { activities, attempt, regenerates, dek, server } = await longScan();
    const first = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 1, cutAt: 3, end: workerStops });
    expect(first.error).toBeInstanceOf(Error);
    const scan = dek();
    if (!scan) throw new Error('no DEK');
    scan.pending = [];
    server.take();
    const second = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 2, heartbeatDetails: first.last });
    expect(second.value).toEqual({ protection: 'tenant', keyThumbprint: tenantA.thumbprint });
    expect(regenerates()).toBe(0);
    expect(changes(server.take())).toEqual([]);
  });

  test('a retry without heartbeat details (the worker died before its first heartbeat went out) still finds the running scan in the database', async () => {
    const { activities, attempt, regenerates, dek, server } = await longScan();
    const first = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 1, cutAt: 2, end: workerStops });
    expect(first.error).toBeInstanceOf(Error);
    server.take();
    const second = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 2 });
    expect(second.value).toEqual({ protection: 'tenant', keyThumbprint: tenantA.thumbprint });
    expect(regenerates()).toBe(0);
    expect(dek()?.state).toBe(3);
  });

  test('a retry that found the scan from the database alone records the new DEK, so a third attempt after the scan ended sends no REGENERATE', async () => {
    const { activities, attempt, regenerates, dek, server } = await longScan();
    await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 1, cutAt: 2, end: workerStops });
    const second = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 2, cutAt: 3, end: workerStops });
    expect(second.error).toBeInstanceOf(Error);
    expect(second.last).toMatchObject({ encryptionState: 4, regeneratedAt: dek()?.regeneratedAt });
    const scan = dek();
    if (!scan) throw new Error('no DEK');
    scan.pending = [];
    server.take();
    const third = await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 3, heartbeatDetails: second.last });
    expect(third.value).toEqual({ protection: 'tenant', keyThumbprint: tenantA.thumbprint });
    expect(regenerates()).toBe(0);
    expect(changes(server.take())).toEqual([]);
  });

  test('a first attempt (a new request, not a retry) still asks for a new DEK, after the running scan', async () => {
    const { activities, attempt, regenerates, server } = await longScan();
    await attempt((env) => env.run(activities.applyTenantKey, apply), { attempt: 1, cutAt: 2, end: workerStops });
    server.take();
    const again = await attempt((env) => env.run(activities.rekeyEnvironmentDatabase, { tenant: 'contoso', env: 'prod' }), { attempt: 1 });
    expect(again.value).toEqual({ protection: 'tenant', keyThumbprint: tenantA.thumbprint });
    expect(regenerates()).toBe(1);
  });
});

describe('configuration and wiring', () => {
  const dirs = () => {
    const base = mkdtempSync(join(tmpdir(), 'cmk-sqlserver-'));
    return { CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') };
  };

  test('sqlite stays the default; sqlserver needs MSSQL_URL; unknown values are refused in a sentence', () => {
    expect(loadConfig(dirs())).toMatchObject({ dbEngine: 'sqlite', mssqlEkmProvider: 'AzureKeyVault_EKM', mssqlTenantKeys: 'ekm' });
    expect(loadConfig(dirs()).mssqlUrl).toBeUndefined();
    expect(() => loadConfig({ ...dirs(), CMK_DB_ENGINE: 'oracle' })).toThrow(new ConfigError('CMK_DB_ENGINE="oracle" is not a database engine; use sqlite or sqlserver.'));
    expect(() => loadConfig({ ...dirs(), CMK_DB_ENGINE: 'sqlserver' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...dirs(), CMK_DB_ENGINE: 'sqlserver', MSSQL_URL: 'mssql://sa:x@localhost', CMK_MSSQL_TENANT_KEYS: 'hsm' })).toThrow(/CMK_MSSQL_TENANT_KEYS="hsm"/);
    expect(loadConfig({ ...dirs(), CMK_DB_ENGINE: 'sqlserver', MSSQL_URL: 'mssql://sa:x@localhost', CMK_MSSQL_TENANT_KEYS: 'certificate', CMK_MSSQL_EKM_PROVIDER: 'Ekm2' })).toMatchObject({
      dbEngine: 'sqlserver',
      mssqlUrl: 'mssql://sa:x@localhost',
      mssqlTenantKeys: 'certificate',
      mssqlEkmProvider: 'Ekm2',
    });
  });

  test('the composition root builds the SQL Server engine when configured (it connects on first use)', async () => {
    const parts = buildParts(loadConfig({ ...dirs(), CMK_DB_ENGINE: 'sqlserver', MSSQL_URL: 'Server=127.0.0.1,1;User Id=sa;Password=x' }));
    expect(parts.databases).toBeInstanceOf(SqlServerEnvironmentDatabases);
    await (parts.databases as SqlServerEnvironmentDatabases).close();
  });
});
