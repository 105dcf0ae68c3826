/**
 * The deployment's configuration, read once at start from the environment (DESIGN.md §4, R14). The worker, the API
 * service, `npm start` and the tests all read it here, so every part agrees on ports, directories and durations.
 */
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { DEFAULT_POLICY, parseDuration, type Policy } from '../workflows/rules';

export interface Config {
  dataDir: string;
  secretsDir: string;
  apiHost: string;
  apiPort: number;
  apiUrl: string;
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  policy: Policy;
  /** How often the Schedule runs the purge of locked environments past their deadline (R9's safety net). */
  purgeIntervalMs: number;
  /** Environment databases: embedded SQLite files (default) or SQL Server with TDE (database/sqlserver.ts). */
  dbEngine: 'sqlite' | 'sqlserver';
  /** SQL Server connection string or mssql:// URL; set exactly when dbEngine is 'sqlserver'. */
  mssqlUrl?: string;
  /** The EKM cryptographic provider that opens tenant keys in Azure Key Vault. */
  mssqlEkmProvider: string;
  /** 'ekm' in production; 'certificate' only for test rigs without Azure Key Vault (docs/SQLSERVER.md). */
  mssqlTenantKeys: 'ekm' | 'certificate';
  /** Where environment backups (.bak) go on the SQL Server host; SQL Server's default backup directory if unset. */
  mssqlBackupDir?: string;
  /** The database that keeps offline marks and the backup list. */
  mssqlControlDatabase: string;
}

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function duration(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`${name}="${text}" is not a duration such as 24h, 72h, 28d, 1h or 30s.`);
  return ms;
}

function port(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new ConfigError(`${name}="${text}" is not a TCP port.`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T, what: string): T {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  if (!(allowed as readonly string[]).includes(text)) throw new ConfigError(`${name}="${text}" is not ${what}; use ${allowed.join(' or ')}.`);
  return text as T;
}

const absolute = (path: string): string => (isAbsolute(path) ? path : resolve(process.cwd(), path));

export function loadConfig(env: Env = process.env): Config {
  const apiPort = port(env, 'CMK_API_PORT', 8787);
  const apiHost = '127.0.0.1';
  const dbEngine = oneOf(env, 'CMK_DB_ENGINE', ['sqlite', 'sqlserver'] as const, 'sqlite', 'a database engine');
  const mssqlUrl = env.MSSQL_URL || undefined;
  if (dbEngine === 'sqlserver' && !mssqlUrl) {
    throw new ConfigError('MSSQL_URL is required when CMK_DB_ENGINE=sqlserver: a connection string or a URL such as mssql://user:password@host:1433.');
  }
  return {
    dataDir: absolute(env.CMK_DATA_DIR || './var'),
    secretsDir: absolute(env.CMK_SECRETS_DIR || resolve(homedir(), '.config', 'cmk')),
    apiHost,
    apiPort,
    apiUrl: env.CMK_API_URL || `http://${apiHost}:${apiPort}`,
    temporalAddress: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
    temporalNamespace: env.TEMPORAL_NAMESPACE || 'default',
    taskQueue: env.CMK_TASK_QUEUE || 'cmk',
    policy: {
      keyChangeIntervalMs: duration(env, 'CMK_KEY_CHANGE_INTERVAL', DEFAULT_POLICY.keyChangeIntervalMs),
      lockEmbargoMs: duration(env, 'CMK_LOCK_EMBARGO', DEFAULT_POLICY.lockEmbargoMs),
      lockedRetentionMs: duration(env, 'CMK_LOCKED_RETENTION', DEFAULT_POLICY.lockedRetentionMs),
      unlockDelayMs: duration(env, 'CMK_UNLOCK_DELAY', DEFAULT_POLICY.unlockDelayMs),
    },
    purgeIntervalMs: duration(env, 'CMK_PURGE_INTERVAL', 24 * 3_600_000),
    dbEngine,
    ...(dbEngine === 'sqlserver' ? { mssqlUrl } : {}),
    mssqlEkmProvider: env.CMK_MSSQL_EKM_PROVIDER || 'AzureKeyVault_EKM',
    mssqlTenantKeys: oneOf(env, 'CMK_MSSQL_TENANT_KEYS', ['ekm', 'certificate'] as const, 'ekm', 'a tenant key source'),
    ...(env.CMK_MSSQL_BACKUP_DIR ? { mssqlBackupDir: env.CMK_MSSQL_BACKUP_DIR } : {}),
    mssqlControlDatabase: env.CMK_MSSQL_CONTROL_DB || 'cmk_control',
  };
}
