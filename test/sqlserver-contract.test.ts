/**
 * The SQL Server engine against a real SQL Server: the same lifecycle as test/sqlserver-statements.test.ts, with
 * tenant keys as server certificates (the docker image reaches no Azure Key Vault). Runs only when MSSQL_URL is set:
 *
 *   docker compose -f docker-compose.mssql.yml up -d
 *   MSSQL_URL='mssql://sa:Cmk-Contract-Test-1@127.0.0.1:1433?trustServerCertificate=true' npx jest test/sqlserver-contract.test.ts
 *
 * MSSQL_BACKUP_DIR optionally names the server-side directory for the log backups (default: SQL Server's own).
 */
import { createHash, randomBytes } from 'node:crypto';
import { MssqlConnection, SqlServerEnvironmentDatabases } from '../database/sqlserver';
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
      ...(process.env.MSSQL_BACKUP_DIR ? { logBackupDir: process.env.MSSQL_BACKUP_DIR } : {}),
    });
  });

  afterAll(async () => {
    if (!connection) return;
    await connection
      .query('master', `IF DB_ID(@database) IS NOT NULL BEGIN ALTER DATABASE ${quoteName(database)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${quoteName(database)}; END`, { database })
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
});
