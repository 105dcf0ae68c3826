/**
 * The SQL Server engine against a real SQL Server: the same lifecycle as test/sqlserver-statements.test.ts, with
 * tenant keys as server certificates (the docker image reaches no Azure Key Vault). Runs only when MSSQL_URL is set:
 *
 *   docker compose -f docker-compose.mssql.yml up -d
 *   MSSQL_URL='mssql://sa:Cmk-Contract-Test-1@127.0.0.1:1433?trustServerCertificate=true' npx jest test/sqlserver-contract.test.ts
 *
 * MSSQL_BACKUP_DIR optionally names the server-side directory for backups and log backups (default: SQL Server's own).
 * The engine's control database is made per run (`cmkctl_<run>`) and dropped at the end. Dropping an OFFLINE database
 * leaves its two files in the container's data directory (see docs/SQLSERVER.md); the container is disposable.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CmkError } from '../common/errors';
import { MssqlConnection, SqlServerEnvironmentDatabases } from '../database/sqlserver';
import { SqlServerFleet } from '../database/sqlserver-fleet';
import { quoteName, quoteString } from '../database/sqlserver-sql';
import type { Protector } from '../database/types';

const url = process.env.MSSQL_URL;
const HOW_TO_ENABLE =
  'SQL Server contract — skipped: set MSSQL_URL to run it (docker compose -f docker-compose.mssql.yml up -d, then ' +
  "MSSQL_URL='mssql://sa:Cmk-Contract-Test-1@127.0.0.1:1433?trustServerCertificate=true' npx jest test/sqlserver-contract.test.ts)";
const suite = url ? describe : describe.skip;
// Jest lists no titles for a file whose tests are all skipped, so say once how to enable it.
if (!url) console.info(HOW_TO_ENABLE);

const run = randomBytes(4).toString('hex');
const protector = (kind: Protector['kind'], name: string): Protector => ({
  kind,
  name,
  version: randomBytes(16).toString('hex'),
  thumbprint: createHash('sha256').update(`${name}/${run}`).digest('hex'),
});

suite(url ? 'SQL Server contract (real server, tenant keys as certificates)' : HOW_TO_ENABLE, () => {
  const tenant = `ct-${run}`;
  const env = 'prod';
  const database = `cmk_${tenant}_${env}`;
  const envs = [env, 'locked', 'restored', 'fleet'];
  const control = `cmkctl_${run}`;
  const provider = protector('provider', `provider-ct-${run}`);
  const tenantA = protector('tenant', `tenant-ct-${run}-a`);
  const tenantB = protector('tenant', `tenant-ct-${run}-b`);
  let connection: MssqlConnection;
  let databases: SqlServerEnvironmentDatabases;

  beforeAll(async () => {
    connection = new MssqlConnection(url ?? '');
    // TDE certificates in master are protected by master's database master key; a fresh container has none. The
    // service master key also protects it, so this random password is never needed again.
    const password = `Cmk-${randomBytes(18).toString('base64url')}-9a`;
    await connection.query(
      'master',
      `IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##')
         CREATE MASTER KEY ENCRYPTION BY PASSWORD = ${quoteString(password)}`,
    );
    databases = new SqlServerEnvironmentDatabases({
      connection,
      tenantKeySource: 'certificate',
      pollIntervalMs: 250,
      busyTimeoutMs: 120_000,
      scanTimeoutMs: 120_000,
      controlDatabase: control,
      ...(process.env.MSSQL_BACKUP_DIR ? { logBackupDir: process.env.MSSQL_BACKUP_DIR, backupDirectory: process.env.MSSQL_BACKUP_DIR } : {}),
    });
  });

  afterAll(async () => {
    if (!connection) return;
    // The engine's own destroy drops each database, online or offline, with its backups.
    for (const e of envs) await databases.destroy(tenant, e).catch(() => undefined);
    await connection
      .query('master', `IF DB_ID(@control) IS NOT NULL BEGIN ALTER DATABASE ${quoteName(control)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${quoteName(control)}; END`, { control })
      .catch(() => undefined);
    for (const p of [provider, tenantA, tenantB]) {
      const name = p.kind === 'provider' ? `cmk_provider_${p.name}` : `cmk_tenant_${p.thumbprint}`;
      await connection.query('master', `IF EXISTS (SELECT 1 FROM sys.certificates WHERE name = @name) DROP CERTIFICATE ${quoteName(name)}`, { name }).catch(() => undefined);
    }
    await connection.close();
  });

  test('rows survive create → write → apply → revert → rekey, and every step reads back from SQL Server', async () => {
    const created = await databases.create(tenant, env, provider);
    expect(created.protector).toEqual(provider);
    expect(await databases.describe(tenant, env)).toEqual(created);
    expect(await databases.create(tenant, env, tenantA)).toEqual(created);

    const rows = [await databases.writeRow(tenant, env, `O'Brien's "row"]; DROP TABLE dbo.cmk_rows; --`), await databases.writeRow(tenant, env, 'second, ünïcödé')];
    expect(await databases.readRows(tenant, env)).toEqual(rows);

    // A full backup starts the log chain, so the REGENERATEs below must take log backups (SQL Server allows two
    // DEK scans without one). Refused while a scan runs; create waited for the first scan to finish.
    await connection.query('master', `ALTER DATABASE ${quoteName(database)} SET RECOVERY FULL`);
    await connection.query('master', `BACKUP DATABASE ${quoteName(database)} TO DISK = ${quoteString(`${process.env.MSSQL_BACKUP_DIR ? `${process.env.MSSQL_BACKUP_DIR}/` : ''}${database}-full.bak`)}`);

    const progress: number[] = [];
    const applied = await databases.rekey(tenant, env, tenantA, { onProgress: (p) => progress.push(p) });
    expect(applied.protector).toEqual(tenantA);
    expect(progress.at(-1)).toBe(100);
    expect(await databases.describe(tenant, env)).toEqual(applied);
    expect(await databases.readRows(tenant, env)).toEqual(rows);

    const reverted = await databases.reprotect(tenant, env, provider);
    expect(reverted.protector).toEqual(provider);
    expect(await databases.reprotect(tenant, env, provider)).toEqual(reverted);
    expect(await databases.readRows(tenant, env)).toEqual(rows);

    const rekeyed = await databases.rekey(tenant, env, provider);
    expect(await databases.describe(tenant, env)).toEqual(rekeyed);
    expect(await databases.readRows(tenant, env)).toEqual(rows);

    // A third and fourth REGENERATE: possible only because the engine backs the log up first.
    await databases.rekey(tenant, env, tenantB);
    const last = await databases.rekey(tenant, env, tenantB);
    expect(await databases.describe(tenant, env)).toEqual(last);
    expect(await databases.readRows(tenant, env)).toEqual(rows);

    const [dek] = await connection.query<{ encryption_state: number; key_algorithm: string; key_length: number }>(
      'master',
      'SELECT encryption_state, key_algorithm, key_length FROM sys.dm_database_encryption_keys WHERE database_id = DB_ID(@database)',
      { database },
    );
    expect(dek).toEqual({ encryption_state: 3, key_algorithm: 'AES', key_length: 256 });
  }, 600_000);

  const state = async (name: string) =>
    (await connection.query<{ state: string }>('master', 'SELECT state_desc AS state FROM sys.databases WHERE name = @name', { name }))[0]?.state;
  /** The DEK's encryptor in master, as SQL Server reports it: the thumbprint of the certificate named after `p`. */
  const wrappedBy = async (name: string, p: Protector) => {
    const certificate = p.kind === 'provider' ? `cmk_provider_${p.name}` : `cmk_tenant_${p.thumbprint}`;
    const [row] = await connection.query<{ same: number }>(
      'master',
      `SELECT CASE WHEN k.encryptor_thumbprint = c.thumbprint THEN 1 ELSE 0 END AS same
         FROM sys.dm_database_encryption_keys AS k, sys.certificates AS c
        WHERE k.database_id = DB_ID(@name) AND c.name = @certificate`,
      { name, certificate },
    );
    return row?.same === 1;
  };

  test('lock-like round trip: offline (rows refused, SQL Server says OFFLINE), KEY_MISMATCH keeps it so, online with the re-activated key', async () => {
    const e = 'locked';
    const name = `cmk_${tenant}_${e}`;
    await databases.create(tenant, e, provider);
    const rows = [await databases.writeRow(tenant, e, 'sealed row')];
    await databases.rekey(tenant, e, tenantA);

    const mark = { lockedAt: new Date().toISOString(), deleteAt: new Date(Date.now() + 28 * 86_400_000).toISOString() };
    await databases.takeOffline(tenant, e, mark);
    await databases.takeOffline(tenant, e, { ...mark, deleteAt: '2099-01-01T00:00:00.000Z' });
    expect(await state(name)).toBe('OFFLINE');
    expect(await databases.offlineMark(tenant, e)).toEqual(mark);
    expect(await databases.listOffline()).toContainEqual({ tenant, env: e, ...mark });
    expect((await databases.describe(tenant, e))?.protector).toEqual(tenantA);
    await expect(databases.readRows(tenant, e)).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    await expect(databases.backup(tenant, e)).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });

    const mismatch = await databases.bringOnline(tenant, e, tenantB).catch((err: unknown) => err);
    expect(mismatch).toBeInstanceOf(CmkError);
    expect(mismatch).toMatchObject({ code: 'KEY_MISMATCH' });
    expect(await state(name)).toBe('OFFLINE');

    const reactivated = { ...tenantA, version: randomBytes(16).toString('hex') };
    const online = await databases.bringOnline(tenant, e, reactivated);
    expect(online.protector).toEqual(reactivated);
    expect(await state(name)).toBe('ONLINE');
    expect(await databases.offlineMark(tenant, e)).toBeUndefined();
    expect(await databases.readRows(tenant, e)).toEqual(rows);
    expect(await databases.describe(tenant, e)).toEqual(online);
    expect(await databases.bringOnline(tenant, e, reactivated)).toEqual(online);
    expect(await wrappedBy(name, tenantA)).toBe(true);
  }, 600_000);

  test('backup → later rows → apply → restore: the rows of the backup, still on the tenant key; destroy while offline removes it all', async () => {
    const e = 'restored';
    const name = `cmk_${tenant}_${e}`;
    await databases.create(tenant, e, provider);
    const before = [await databases.writeRow(tenant, e, 'in the backup')];
    const backup = await databases.backup(tenant, e);
    expect(backup).toMatchObject({ tenant, env: e, id: expect.stringMatching(/^b-\d{17}-[0-9a-f]{4}$/) });
    expect(backup.sizeBytes).toBeGreaterThan(0);
    await databases.writeRow(tenant, e, 'after the backup');
    await databases.rekey(tenant, e, tenantA);
    expect(await databases.listBackups(tenant, e)).toEqual([backup]);

    expect(await databases.restore(tenant, e)).toEqual(backup);
    expect(await databases.readRows(tenant, e)).toEqual(before);
    // The backup was taken under the provider's certificate; the environment stays on the tenant key.
    expect((await databases.describe(tenant, e))?.protector).toEqual(tenantA);
    expect(await wrappedBy(name, tenantA)).toBe(true);
    await expect(databases.restore(tenant, e, 'b-20000101000000000-0000')).rejects.toMatchObject({ code: 'NOT_FOUND' });

    const [file] = await connection.query<{ path: string }>(control, 'SELECT path FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env', { tenant, env: e });
    await databases.takeOffline(tenant, e, { lockedAt: new Date().toISOString(), deleteAt: new Date().toISOString() });
    await databases.destroy(tenant, e);
    await databases.destroy(tenant, e);
    expect(await state(name)).toBeUndefined();
    expect(await databases.listBackups(tenant, e)).toEqual([]);
    expect(await databases.offlineMark(tenant, e)).toBeUndefined();
    const [history] = await connection.query<{ n: number }>('master', 'SELECT COUNT(*) AS n FROM msdb.dbo.backupset WHERE database_name = @name', { name });
    expect(history?.n).toBe(0);
    // The backup file is gone (xp_delete_file); the offline database's own files are listed for the operator.
    await expect(connection.query('master', 'RESTORE HEADERONLY FROM DISK = @path', { path: file?.path ?? '' })).rejects.toThrow();
    const leftovers = await connection.query<{ physical_name: string }>(control, 'SELECT physical_name FROM dbo.cmk_leftover_files WHERE tenant = @tenant AND env = @env', { tenant, env: e });
    expect(leftovers).toHaveLength(2);
  }, 600_000);

  test('several servers: the placement row (claim under a capacity, locate, forget) on a real server', async () => {
    const fleet = new SqlServerFleet({
      servers: [{ name: 'contract', regions: ['r1'], connection, databases, controlDatabase: control, maxEnvironments: 1 }],
      region: 'r1',
      log: () => undefined,
    });
    await fleet.create(tenant, 'fleet', provider);
    expect(await fleet.whereIs(tenant, 'fleet')).toBe('contract');
    const rows = await connection.query(control, 'SELECT server_name, region FROM dbo.cmk_environments WHERE tenant = @tenant AND env = @env', { tenant, env: 'fleet' });
    expect(rows).toEqual([{ server_name: 'contract', region: 'r1' }]);
    // Full at one: refused before anything is made.
    await expect(fleet.create(tenant, 'fleet-2', provider)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await fleet.whereIs(tenant, 'fleet-2')).toBeUndefined();
    await fleet.destroy(tenant, 'fleet');
    expect(await fleet.whereIs(tenant, 'fleet')).toBeUndefined();
  }, 600_000);
});
