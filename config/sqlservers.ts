/**
 * CMK_MSSQL_SERVERS: the SQL Servers that hold environment databases, per region (R1), read once at start.
 * The value is a path to a JSON file, or the JSON itself when it starts with `{` (docs/SQLSERVER.md, "Several
 * servers"). MSSQL_URL stays the shorthand for one server serving every region; the two are exclusive.
 *
 * Everything is checked here, so that a typo stops the process at start with one sentence naming the file and the
 * field, instead of failing an activity much later. Connection strings and the EKM secret come from environment
 * variables named in the file (so no password sits in it); no message ever quotes the value of one.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { isValidId } from '../domain/ids';
import { ConfigError } from './error';

type Env = Record<string, string | undefined>;

/** One SQL Server of the fleet, as the engine needs it. Holds secrets (url, ekmCredential.secret): never log it. */
export interface SqlServerEntry {
  /** Its stable ID: recorded with every environment placed on it, so renaming one needs an UPDATE (docs). */
  name: string;
  /** The regions whose environments may live here (R1). */
  regions: string[];
  /** Connection string or mssql:// URL, password included. */
  url: string;
  /** The cryptographic provider registered on that server (CREATE CRYPTOGRAPHIC PROVIDER). */
  ekmProvider: string;
  /**
   * The EKM credential the engine creates or alters at first use (CREATE CREDENTIAL … FOR CRYPTOGRAPHIC PROVIDER):
   * identity is the key vault's host name, secret the service principal's client ID (no dashes) followed by its
   * secret. Absent: the server's administrator made the credential (docs/SQLSERVER.md, EKM prerequisites).
   */
  ekmCredential?: { name: string; identity: string; secret: string };
  /** Where `backup` writes, as that server sees it; its default backup directory when absent. */
  backupDir?: string;
  controlDatabase: string;
  /** At most this many cmk environments; placement skips a full server. No limit when absent. */
  maxEnvironments?: number;
}

/** The engine's default credential name (database/sqlserver.ts): the one each tenant key's TDE login holds. */
const DEFAULT_CREDENTIAL_NAME = 'cmk_ekm_tde_cred';

const SERVER_KEYS = ['name', 'region', 'regions', 'url', 'urlEnv', 'ekmProvider', 'ekmCredential', 'backupDir', 'controlDatabase', 'maxEnvironments'];
const CREDENTIAL_KEYS = ['name', 'identity', 'secretEnv'];
/** What the engine accepts as an identifier it creates or names (database/sqlserver.ts checks the same). */
const SQL_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** A service principal's client ID (a GUID, dashes optional), then its secret, optionally after one `:`. */
const CLIENT_ID_AND_SECRET = /^([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12}):?(\S.*)$/s;

class ConfigRefusal extends Error {}

/**
 * The fleet from CMK_MSSQL_SERVERS when CMK_DB_ENGINE=sqlserver, spread into the Config; nothing otherwise (MSSQL_URL
 * is then read by config/index.ts).
 */
export function sqlServersConfig(env: Env): { mssqlServers?: SqlServerEntry[] } {
  if ((env.CMK_DB_ENGINE || 'sqlite') !== 'sqlserver' || !env.CMK_MSSQL_SERVERS) return {};
  try {
    return { mssqlServers: parseSqlServers(env) };
  } catch (err) {
    if (err instanceof ConfigRefusal) throw new ConfigError(err.message);
    throw err;
  }
}

function parseSqlServers(env: Env): SqlServerEntry[] {
  const text = env.CMK_MSSQL_SERVERS ?? '';
  if (env.MSSQL_URL) throw new ConfigRefusal('Set MSSQL_URL (one server) or CMK_MSSQL_SERVERS (several), not both.');
  const inline = text.trimStart().startsWith('{');
  const path = inline ? undefined : isAbsolute(text) ? text : resolve(process.cwd(), text);
  const source = path ? `CMK_MSSQL_SERVERS (${path})` : 'CMK_MSSQL_SERVERS (inline JSON)';
  const refuse = (message: string): never => {
    throw new ConfigRefusal(`${source}: ${message}`);
  };

  let json: string = text;
  if (path) {
    try {
      json = readFileSync(path, 'utf8');
    } catch (err) {
      refuse(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); give a path to a JSON file, or JSON starting with {.`);
    }
  }
  let document: unknown;
  try {
    document = JSON.parse(json);
  } catch (err) {
    // JSON.parse quotes the text around the fault, which may hold a password (a dev rig's url): say where, not what.
    const at = /position (\d+)/.exec(err instanceof Error ? err.message : '')?.[1];
    refuse(`is not valid JSON${at ? ` (at character ${at})` : ''}.`);
  }
  if (!isObject(document)) return refuse('must be a JSON object {"servers": [...]}.');
  unknownKeys(document, ['servers'], '', refuse);
  const list = document.servers;
  if (!Array.isArray(list) || list.length === 0) return refuse('"servers" must be a non-empty list.');

  const defaultProvider = env.CMK_MSSQL_EKM_PROVIDER || 'AzureKeyVault_EKM';
  const defaultControl = env.CMK_MSSQL_CONTROL_DB || 'cmk_control';
  const servers = list.map((item: unknown, i): SqlServerEntry => {
    const at = (field?: string): string => `servers[${i}]${isObject(item) && typeof item.name === 'string' && isValidId(item.name) ? ` ("${item.name}")` : ''}${field ? `.${field}` : ''}`;
    if (!isObject(item)) return refuse(`${at()} must be an object.`);
    unknownKeys(item, SERVER_KEYS, at(), refuse);
    if (!isValidId(item.name)) refuse(`${at('name')} must be an ID: lowercase letters, digits and dashes, 63 at most.`);
    const name = item.name as string;

    if (item.region !== undefined && item.regions !== undefined) refuse(`${at()} has both "region" and "regions"; give one.`);
    const regions = item.regions !== undefined ? item.regions : item.region !== undefined ? [item.region] : undefined;
    if (!Array.isArray(regions) || regions.length === 0) return refuse(`${at()} needs "region" (or "regions"): the region(s) whose environments live on it.`);
    for (const region of regions) if (!isValidId(region)) refuse(`${at('regions')} holds a value that is not a region ID.`);
    if (new Set(regions).size !== regions.length) refuse(`${at('regions')} names a region twice.`);

    if ((item.url === undefined) === (item.urlEnv === undefined)) refuse(`${at()} needs exactly one of "url" (dev rigs) and "urlEnv" (the variable holding the connection string).`);
    let url: string;
    if (item.urlEnv !== undefined) {
      const variable = envName(item.urlEnv, at('urlEnv'), refuse);
      url = env[variable] ?? '';
      if (!url) refuse(`${at('urlEnv')} names ${variable}, which is not set.`);
      if (!isConnectionString(url)) refuse(`${at('urlEnv')} names ${variable}, whose value is neither an mssql:// URL with a host nor a connection string with Server=.`);
    } else {
      if (typeof item.url !== 'string' || !isConnectionString(item.url)) refuse(`${at('url')} is neither an mssql:// URL with a host nor a connection string with Server=.`);
      url = item.url as string;
    }

    const ekmProvider = item.ekmProvider === undefined ? defaultProvider : item.ekmProvider;
    if (typeof ekmProvider !== 'string' || !SQL_NAME.test(ekmProvider)) refuse(`${at('ekmProvider')} is not a cryptographic provider name (letters, digits, _ and -).`);
    const controlDatabase = item.controlDatabase === undefined ? defaultControl : item.controlDatabase;
    if (typeof controlDatabase !== 'string' || !SQL_NAME.test(controlDatabase) || ['master', 'msdb', 'model', 'tempdb'].includes(controlDatabase.toLowerCase()) || /^cmk_[a-z0-9-]+_[a-z0-9-]+$/.test(controlDatabase)) {
      refuse(`${at('controlDatabase')} is not a usable database name (not a system database, not shaped like an environment's cmk_<tenant>_<env>).`);
    }
    if (item.backupDir !== undefined && (typeof item.backupDir !== 'string' || item.backupDir === '' || item.backupDir.length > 900 || item.backupDir.includes('\u0000'))) {
      refuse(`${at('backupDir')} must be a directory path of at most 900 characters, as that SQL Server sees it.`);
    }
    if (item.maxEnvironments !== undefined && (!Number.isInteger(item.maxEnvironments) || (item.maxEnvironments as number) < 1)) {
      refuse(`${at('maxEnvironments')} must be a whole number of at least 1.`);
    }

    return {
      name,
      regions: regions as string[],
      url,
      ekmProvider: ekmProvider as string,
      ...(item.ekmCredential !== undefined ? { ekmCredential: credential(item.ekmCredential, at('ekmCredential'), env, refuse) } : {}),
      ...(item.backupDir !== undefined ? { backupDir: item.backupDir as string } : {}),
      controlDatabase: controlDatabase as string,
      ...(item.maxEnvironments !== undefined ? { maxEnvironments: item.maxEnvironments as number } : {}),
    };
  });

  const seen = new Map<string, string>();
  for (const server of servers) {
    if (seen.has(server.name)) refuse(`two servers are named "${server.name}"; names are IDs and must differ.`);
    seen.set(server.name, server.name);
  }
  // Two entries reaching one SQL Server would both claim its environments: refused here rather than at first use.
  for (let i = 0; i < servers.length; i++) {
    for (let j = i + 1; j < servers.length; j++) {
      const [a, b] = [servers[i], servers[j]];
      if (a && b && a.url === b.url) refuse(`servers "${a.name}" and "${b.name}" have the same connection string; each entry must be a SQL Server of its own.`);
    }
  }
  // R1: each region's environments live only on its servers, so every region the deployment serves needs one.
  const declared = (env.CMK_REGIONS ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  if (declared.length > 0) {
    const served = new Set(servers.flatMap((s) => s.regions));
    const missing = declared.filter((r) => !served.has(r));
    if (missing.length > 0) refuse(`no server serves region ${missing.join(', ')} of CMK_REGIONS; each region needs at least one.`);
    const stray = [...served].filter((r) => !declared.includes(r));
    if (stray.length > 0) refuse(`a server names region ${stray.join(', ')}, which CMK_REGIONS does not list.`);
  }
  return servers;
}

function credential(value: unknown, at: string, env: Env, refuse: (message: string) => never): NonNullable<SqlServerEntry['ekmCredential']> {
  if (!isObject(value)) return refuse(`${at} must be an object {"identity", "secretEnv"}.`);
  unknownKeys(value, CREDENTIAL_KEYS, at, refuse);
  const name = value.name === undefined ? DEFAULT_CREDENTIAL_NAME : value.name;
  if (typeof name !== 'string' || !SQL_NAME.test(name)) refuse(`${at}.name is not a credential name (letters, digits, _ and -).`);
  if (typeof value.identity !== 'string' || !HOST_NAME.test(value.identity)) refuse(`${at}.identity must be the key vault's host name, such as cmk-eu.vault.azure.net.`);
  const variable = envName(value.secretEnv, `${at}.secretEnv`, refuse);
  const raw = env[variable] ?? '';
  if (!raw) refuse(`${at}.secretEnv names ${variable}, which is not set.`);
  // Never quote `raw` below: it is the service principal's secret.
  const parts = CLIENT_ID_AND_SECRET.exec(raw.trim());
  if (!parts || raw.includes('\u0000') || raw.length > 4000) {
    refuse(`${at}.secretEnv names ${variable}, whose value is not a client ID (a GUID) followed by its client secret.`);
  }
  const [, a = '', b = '', c = '', d = '', e = '', secret = ''] = parts ?? [];
  // CREATE CREDENTIAL wants the client ID without dashes and the secret run together (Microsoft's EKM setup).
  return { name: name as string, identity: value.identity as string, secret: `${a}${b}${c}${d}${e}${secret}` };
}

function envName(value: unknown, at: string, refuse: (message: string) => never): string {
  if (typeof value !== 'string' || !ENV_NAME.test(value)) return refuse(`${at} must name an environment variable (letters, digits and _).`);
  return value;
}

/** An mssql:// (or sqlserver://) URL with a host, or an ADO connection string naming its server. */
function isConnectionString(value: string): boolean {
  if (/^(mssql|sqlserver):\/\//i.test(value)) {
    try {
      return new URL(value).hostname !== '';
    } catch {
      return false;
    }
  }
  return /(^|;)\s*(server|data source|address|addr|network address)\s*=\s*[^;\s]/i.test(value);
}

function unknownKeys(value: Record<string, unknown>, allowed: string[], at: string, refuse: (message: string) => never): void {
  const unknown = Object.keys(value).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) refuse(`${at ? `${at} has` : 'has'} unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; allowed are ${allowed.join(', ')}.`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
