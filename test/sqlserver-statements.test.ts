/**
 * The SQL Server engine, statement by statement, against a recording connection that models one SQL Server
 * (test/support/recording-sql.ts). Each operation's exact batch sequence is asserted (whitespace normalised), so a
 * change to what the engine sends to production is a visible change to this file. The real-server run of the same
 * lifecycle is test/sqlserver-contract.test.ts.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { ConfigError, loadConfig } from '../config';
import { SqlServerEnvironmentDatabases, type SqlServerOptions } from '../database/sqlserver';
import { quoteName, quoteString } from '../database/sqlserver-sql';
import type { Protector } from '../database/types';
import { buildParts } from '../worker/parts';
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
  'master: SELECT d.name, d.recovery_model_desc AS recovery_model, CONVERT(varchar(40), rs.last_log_backup_lsn) AS last_log_backup_lsn FROM sys.databases AS d LEFT JOIN sys.database_recovery_status AS rs ON rs.database_id = d.database_id WHERE d.name = @database';
const STATE =
  'master: SELECT encryption_state, percent_complete, CONVERT(varchar(66), encryptor_thumbprint, 2) AS encryptor_thumbprint FROM sys.dm_database_encryption_keys WHERE database_id = DB_ID(@database)';
const FIND_CERT = 'master: SELECT CONVERT(varchar(66), thumbprint, 2) AS thumbprint FROM sys.certificates WHERE name = @name';
const FIND_KEY =
  'master: SELECT CONVERT(varchar(66), k.thumbprint, 2) AS thumbprint, (SELECT COUNT(*) FROM sys.server_principals WHERE name = @login) AS logins, (SELECT COUNT(*) FROM sys.server_principal_credentials AS pc JOIN sys.server_principals AS p ON p.principal_id = pc.principal_id JOIN sys.credentials AS c ON c.credential_id = pc.credential_id WHERE p.name = @login AND c.name = @credential) AS credentials FROM sys.asymmetric_keys AS k WHERE k.name = @name';
const READ_RECORD = `${DB}: IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NOT NULL SELECT kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at FROM dbo.cmk_key_record WHERE id = 1`;
const CREATE_TABLES = `${DB}: IF OBJECT_ID(N'dbo.cmk_rows', N'U') IS NULL CREATE TABLE dbo.cmk_rows ( id INT IDENTITY(1, 1) NOT NULL PRIMARY KEY, text NVARCHAR(4000) NOT NULL, created_at DATETIME2(3) NOT NULL); IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NULL CREATE TABLE dbo.cmk_key_record ( id TINYINT NOT NULL PRIMARY KEY CHECK (id = 1), kind NVARCHAR(16) NOT NULL, name NVARCHAR(128) NOT NULL, version NVARCHAR(128) NOT NULL, thumbprint NVARCHAR(128) NOT NULL, encryptor_type NVARCHAR(16) NOT NULL, encryptor_name NVARCHAR(128) NOT NULL, updated_at NVARCHAR(40) NOT NULL);`;
/** A key statement and the key-record upsert, in one batch that stops at the first error. */
const keyBatch = (statement: string): string =>
  `${DB}: SET XACT_ABORT ON; ${statement}; UPDATE dbo.cmk_key_record SET kind = @kind, name = @name, version = @version, thumbprint = @thumbprint, encryptor_type = @encryptor_type, encryptor_name = @encryptor_name, updated_at = @updated_at WHERE id = 1; IF @@ROWCOUNT = 0 INSERT INTO dbo.cmk_key_record (id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at) VALUES (1, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at);`;
const REGENERATE = keyBatch('ALTER DATABASE ENCRYPTION KEY REGENERATE WITH ALGORITHM = AES_256');

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
    expect(params[8]).toEqual({ ...tenantA, encryptor_type: 'ASYMMETRIC KEY', encryptor_name: KEY_A, updated_at: NOW });
    expect(progress).toEqual([30, 70, 100]);
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
      READ_RECORD,
      FIND_CERT,
      STATE,
      keyBatch(`ALTER DATABASE ENCRYPTION KEY ENCRYPTION BY SERVER CERTIFICATE [${CERT}]`),
      STATE,
    ]);
    expect(await databases.reprotect('contoso', 'prod', provider)).toEqual(record);
    expect(server.take()).toEqual([FIND_DB, READ_RECORD, FIND_CERT, STATE]);
  });

  test('rekey under the same protector: REGENERATE only', async () => {
    const { server, databases } = await created();
    const record = await databases.rekey('contoso', 'prod', provider);
    expect(record.protector).toEqual(provider);
    expect(server.take()).toEqual([FIND_DB, READ_RECORD, FIND_CERT, STATE, REGENERATE, STATE, STATE, STATE]);
  });

  test('reprotect to a new tenant key: its EKM key and login are made, the DEK re-wrapped; a repeat changes nothing', async () => {
    const { server, databases } = await created();
    await databases.rekey('contoso', 'prod', tenantA);
    server.take();
    const record = await databases.reprotect('contoso', 'prod', tenantB);
    expect(record.protector).toEqual(tenantB);
    expect(server.take()).toEqual([
      FIND_DB,
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
    expect(repeat).toEqual([FIND_DB, READ_RECORD, FIND_KEY, STATE]);
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
    const insert = server.batches[1];
    expect(insert?.sql).toBe('INSERT INTO dbo.cmk_rows (text, created_at) OUTPUT inserted.id, inserted.text, inserted.created_at VALUES (@text, SYSUTCDATETIME())');
    expect(insert?.params).toEqual({ text });
    expect(server.batches.some((b) => b.sql.includes('Brien'))).toBe(false);
    expect(await databases.readRows('contoso', 'prod')).toEqual([row]);
    expect(server.take()).toEqual([FIND_DB, `${DB}: ${insert?.sql}`, FIND_DB, `${DB}: SELECT id, text, created_at FROM dbo.cmk_rows ORDER BY id`]);
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

describe("SQL Server engine: SQL Server's limits", () => {
  test('a key change waits (polling) while another key change runs (state 4), then proceeds', async () => {
    const { server, databases, sleeps } = await created();
    server.startBusy(DB, 4, [50, 90]);
    const record = await databases.reprotect('contoso', 'prod', tenantA);
    expect(record.protector).toEqual(tenantA);
    expect(server.take()).toEqual([
      FIND_DB,
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
    expect(r.server.take()).toEqual([FIND_DB, READ_RECORD, FIND_CERT, STATE, backup, REGENERATE, STATE, STATE, STATE]);
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
