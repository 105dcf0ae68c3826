/**
 * The SQL Server environment databases a worker builds from its configuration (worker/parts.ts): the engine itself
 * for MSSQL_URL's one server, or a fleet (database/sqlserver-fleet.ts) for CMK_MSSQL_SERVERS.
 */
import type { Config } from '../config';
import { ConfigError } from '../config';
import type { SqlServerEntry } from '../config/sqlservers';
import { azureKeyName } from '../vault/azure-names';
import { providerKeyName } from '../vault/names';
import { MssqlConnection, SqlServerEnvironmentDatabases, type SqlConnection, type SqlServerOptions } from './sqlserver';
import { SqlServerFleet, type FleetServer } from './sqlserver-fleet';
import type { EnvironmentDatabases, Protector } from './types';

export interface FleetDependencies {
  /** The connection to one server; an `mssql` pool by default (tests pass a recording one). */
  connect?: (server: SqlServerEntry) => SqlConnection;
  /** Engine options beyond the configuration (polling, clock), for every server. */
  engine?: Partial<SqlServerOptions>;
  now?: () => Date;
  log?: (line: string) => void;
}

/** What the SQL Server engine reads of the configuration: its servers, and whether tenant keys live in Azure Key Vault. */
export type SqlServerSettings = Pick<Config, 'mssqlUrl' | 'mssqlServers' | 'mssqlEkmProvider' | 'mssqlControlDatabase' | 'mssqlBackupDir' | 'mssqlTenantKeys'> & {
  vault: Pick<Config['vault'], 'kind'>;
};

/**
 * The environment databases on SQL Server from the configuration. MSSQL_URL (one server for every region): the
 * engine itself, as before. CMK_MSSQL_SERVERS: a fleet — of `region`'s servers for a region's own worker, of every
 * server otherwise, placing a new environment in the region whose provider key `create` is given (the activities
 * create under `providerKeyName(region)`). ConfigError when no server serves `region`.
 */
export function buildSqlServerDatabases(config: SqlServerSettings, region?: string, deps: FleetDependencies = {}): EnvironmentDatabases {
  const engineOptions = (entry: Pick<SqlServerEntry, 'ekmProvider' | 'controlDatabase' | 'backupDir' | 'ekmCredential'>, connection: SqlConnection): SqlServerOptions => ({
    connection,
    ekmProvider: entry.ekmProvider,
    tenantKeySource: config.mssqlTenantKeys,
    controlDatabase: entry.controlDatabase,
    ...(entry.backupDir ? { backupDirectory: entry.backupDir } : {}),
    ...(entry.ekmCredential ? { ekmCredential: entry.ekmCredential.name, ekmCredentialSecret: { identity: entry.ekmCredential.identity, secret: entry.ekmCredential.secret } } : {}),
    // EKM opens a tenant key by its name in Azure Key Vault, where each cmk key version is a key of its own (vault/azure.ts).
    ...(config.vault.kind === 'azure' ? { ekmKeyName: (protector: Protector) => azureKeyName(protector) } : {}),
    ...deps.engine,
  });

  const entries = config.mssqlServers;
  if (!entries) {
    if (!config.mssqlUrl) throw new ConfigError('CMK_DB_ENGINE=sqlserver needs MSSQL_URL or CMK_MSSQL_SERVERS.');
    const one = { ekmProvider: config.mssqlEkmProvider, controlDatabase: config.mssqlControlDatabase, ...(config.mssqlBackupDir ? { backupDir: config.mssqlBackupDir } : {}) };
    const connection = deps.connect?.({ name: 'default', regions: [], url: config.mssqlUrl, ...one }) ?? new MssqlConnection(config.mssqlUrl);
    return new SqlServerEnvironmentDatabases(engineOptions(one, connection));
  }

  const chosen = region === undefined ? entries : entries.filter((e) => e.regions.includes(region));
  if (chosen.length === 0) throw new ConfigError(`CMK_MSSQL_SERVERS names no server for region ${region ?? ''}.`);
  const servers = chosen.map((entry): FleetServer => {
    const connection = deps.connect?.(entry) ?? new MssqlConnection(entry.url);
    return {
      name: entry.name,
      regions: entry.regions,
      connection,
      databases: new SqlServerEnvironmentDatabases(engineOptions(entry, connection)),
      controlDatabase: entry.controlDatabase,
      ...(entry.maxEnvironments !== undefined ? { maxEnvironments: entry.maxEnvironments } : {}),
    };
  });
  const regions = [...new Set(entries.flatMap((e) => e.regions))];
  // The activities create every environment under its region's provider key (activities/environments.ts).
  const regionOf = (protector: Protector): string | undefined => (protector.kind === 'provider' ? regions.find((r) => providerKeyName(r) === protector.name) : undefined);
  return new SqlServerFleet({
    servers,
    ...(region !== undefined ? { region } : {}),
    regionOf,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.log ? { log: deps.log } : {}),
  });
}
