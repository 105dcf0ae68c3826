/**
 * The composition root for the real parts (vault, environment databases, mail), built from the configuration.
 * The worker and the API service both build theirs here, so both talk to the same vault and databases.
 */
import { mkdirSync } from 'node:fs';
import type { Config } from '../config';
import { assertOutside, loadOrCreateSecret } from '../common/secrets';
import { LocalVault } from '../vault/local';
import { SqliteEnvironmentDatabases } from '../database/sqlite';
import { MssqlConnection, SqlServerEnvironmentDatabases } from '../database/sqlserver';
import type { EnvironmentDatabases } from '../database/types';
import { Outbox } from '../mail/outbox';
import { buildMailer } from '../mail';

export function buildParts(config: Config) {
  assertOutside(config.dataDir, config.secretsDir);
  mkdirSync(config.dataDir, { recursive: true });
  const masterKey = loadOrCreateSecret(config.secretsDir, 'vault-master-key');
  const vault = new LocalVault({ dataDir: config.dataDir, masterKey });
  const databases: EnvironmentDatabases =
    config.dbEngine === 'sqlserver' ? sqlServerDatabases(config) : new SqliteEnvironmentDatabases({ dataDir: config.dataDir, vault });
  const outbox = new Outbox({ dataDir: config.dataDir });
  return { vault, databases, mailer: buildMailer(config, outbox), outbox };
}

/** SQL Server with TDE (docs/SQLSERVER.md): the DEKs live in SQL Server, wrapped by certificates or EKM keys. */
function sqlServerDatabases(config: Config): EnvironmentDatabases {
  if (!config.mssqlUrl) throw new Error('CMK_DB_ENGINE=sqlserver needs MSSQL_URL.');
  const connection = new MssqlConnection(config.mssqlUrl);
  return new SqlServerEnvironmentDatabases({
    connection,
    ekmProvider: config.mssqlEkmProvider,
    tenantKeySource: config.mssqlTenantKeys,
    controlDatabase: config.mssqlControlDatabase,
    ...(config.mssqlBackupDir ? { backupDirectory: config.mssqlBackupDir } : {}),
  });
}
