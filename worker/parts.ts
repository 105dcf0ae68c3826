/**
 * The composition root for the real parts (vault, environment databases, mail), built from the configuration.
 * The worker and the API service both build theirs here, so both talk to the same vault and databases.
 */
import { mkdirSync } from 'node:fs';
import type { Config } from '../config';
import { assertOutside } from '../common/secrets';
import { buildVault } from '../vault';
import { SqliteEnvironmentDatabases } from '../database/sqlite';
// Types only: SQL Server's modules (mssql and tedious, about 33 MB of every process that loads them) are required
// when the configuration names SQL Server.
import type * as SqlServerBuild from '../database/sqlserver-build';
import type { EnvironmentDatabases } from '../database/types';
import type { Vault } from '../vault/types';
import { Outbox } from '../mail/outbox';
import { buildMailer } from '../mail';

export function buildParts(config: Config) {
  assertOutside(config.dataDir, config.secretsDir);
  mkdirSync(config.dataDir, { recursive: true });
  const vault = buildVault(config);
  const databases: EnvironmentDatabases =
    config.dbEngine === 'sqlserver' ? sqlServerDatabases(config) : new SqliteEnvironmentDatabases({ dataDir: config.dataDir, vault });
  const outbox = new Outbox({ dataDir: config.dataDir });
  // R1: each region's vault (CMK_AZURE_VAULT_URL_<REGION>) and database servers (CMK_MSSQL_SERVERS). The embedded
  // vault, SQLite files and a lone MSSQL_URL serve every region alike.
  const regional = new Map<string, RegionParts>();
  const inRegion = (region: string): RegionParts => {
    // Without CMK_REGIONS nothing is routed by region: the worker's one set of parts does every region's work.
    if (!config.policy.regions) return { vault, databases };
    let parts = regional.get(region);
    if (!parts) {
      const regionVault = config.vault.kind === 'azure' ? buildVault(config, region) : vault;
      regional.set(region, (parts = { vault: regionVault, databases: regionDatabases(region, regionVault) }));
    }
    return parts;
  };
  /** A region's databases: its own SQL Servers, or SQLite files whose DEKs its own vault wraps. */
  const regionDatabases = (region: string, regionVault: Vault): EnvironmentDatabases => {
    if (config.dbEngine === 'sqlserver') return config.mssqlServers ? sqlServerBuild().buildSqlServerDatabases(config, region) : databases;
    return regionVault === vault ? databases : new SqliteEnvironmentDatabases({ dataDir: config.dataDir, vault: regionVault });
  };
  return { vault, databases, inRegion, mailer: buildMailer(config, outbox), outbox };
}

/** What a region's activities and the API service's key staging work with (R1). */
export interface RegionParts {
  vault: Vault;
  databases: EnvironmentDatabases;
}

/** SQL Server with TDE (docs/SQLSERVER.md): the DEKs live in SQL Server, wrapped by certificates or EKM keys. */
function sqlServerDatabases(config: Config): EnvironmentDatabases {
  // One server (MSSQL_URL) or every server of CMK_MSSQL_SERVERS; buildSqlServerDatabases(config, region) gives a region's.
  return sqlServerBuild().buildSqlServerDatabases(config);
}

const sqlServerBuild = () => require('../database/sqlserver-build') as typeof SqlServerBuild;
