/**
 * The deployment's configuration, read once at start from the environment (DESIGN.md §4, R14). The worker, the API
 * service, `npm start` and the tests all read it here, so every part agrees on ports, directories and durations.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { isValidEmail, isValidId } from '../domain/ids';
import { DEFAULT_POLICY, parseDuration, type Policy } from '../domain/policy';
import { telemetryConfig, type TelemetryConfig } from './telemetry';
import { regionVariableSuffix, vaultConfig, type VaultConfig } from './vault';
import { sqlServersConfig, type SqlServerEntry } from './sqlservers';
import { ConfigError } from './error';

export interface Config {
  dataDir: string;
  secretsDir: string;
  apiHost: string;
  apiPort: number;
  apiUrl: string;
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  /** Durations, and the regions the deployment serves (CMK_REGIONS: policy.regions; absent: any, one task queue). */
  policy: Policy;
  /** R1: the regions whose task queues this worker process serves (CMK_WORKER_REGIONS; default every region). */
  workerRegions: string[];
  /** Whether this worker also runs the workflows and the region-less activities (mail, audit) (CMK_WORKER_WORKFLOWS). */
  workerWorkflows: boolean;
  /**
   * How many tenant workflows the worker keeps in memory between tasks (CMK_WORKER_MAX_CACHED_WORKFLOWS); unset: the
   * SDK derives it from the heap limit, so a worker started with a small `--max-old-space-size` would cache few.
   */
  workerMaxCachedWorkflows?: number;
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
  /** CMK_MSSQL_SERVERS: several SQL Servers, per region (config/sqlservers.ts); absent with MSSQL_URL's one server. */
  mssqlServers?: SqlServerEntry[];
  auth: AuthConfig;
  /** The one browser origin (the Temporal UI) allowed to call the codec endpoint; null: no cross-origin caller. */
  codecCorsOrigin: string | null;
  /** Where administrators' mail goes: the embedded outbox only (default), SendGrid, or an SMTP relay (mail/index.ts). */
  mailer: 'outbox' | 'sendgrid' | 'smtp';
  /** SendGrid API key; set exactly when mailer is 'sendgrid'. A secret: never logged, never in an error message. */
  sendgridApiKey?: string;
  /** SendGrid's API origin; another only for proxies and tests. */
  sendgridBaseUrl: string;
  /** The sender address of every message. */
  mailFrom: string;
  /** smtp://user:pass@relay:587 or smtps://…; set exactly when mailer is 'smtp'. Holds a password: never logged. */
  smtpUrl?: string;
  /** Log format and level, and the worker's Prometheus endpoint (config/telemetry.ts). */
  telemetry: TelemetryConfig;
  /** The key vault: the embedded local vault (default) or Azure Key Vault (config/vault.ts, docs/AZURE.md). */
  vault: VaultConfig;
  /** The API service's token buckets (api/ratelimit.ts). */
  rateLimits: RateLimitConfig;
}

/** A token bucket's shape: `perSecond` tokens flow in, at most `burst` are kept. `perSecond` 0: no limit. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

export interface RateLimitConfig {
  /** Per identity, and per address for callers without a valid token (CMK_RATE_LIMIT, CMK_RATE_LIMIT_BURST). */
  identity: RateLimit;
  /** Per tenant, every caller together (CMK_RATE_LIMIT_TENANT, CMK_RATE_LIMIT_TENANT_BURST). */
  tenant: RateLimit;
}

/** 10 requests a second per identity with bursts of 50; a tenant's callers together, three times that. */
export const DEFAULT_RATE_LIMITS: RateLimitConfig = { identity: { perSecond: 10, burst: 50 }, tenant: { perSecond: 30, burst: 150 } };

/**
 * Who may call the API service: bearer JWTs verified with `jose`. Without an external issuer (no JWKS URL and no
 * public key), the embedded default signs and verifies with the local key in CMK_SECRETS_DIR.
 */
export interface AuthConfig {
  mode: 'local' | 'external';
  issuer: string;
  audience: string;
  algorithms: string[];
  jwksUrl?: string;
  /** PEM text of the issuer's public key (CMK_AUTH_PUBLIC_KEY holds the PEM or a path to it). */
  publicKeyPem?: string;
  /** External issuers: an e-mail identity needs `email_verified: true` (CMK_AUTH_REQUIRE_EMAIL_VERIFIED, default true). */
  requireEmailVerified: boolean;
  /** External issuers: the longest lifetime (`exp - iat`) accepted (CMK_AUTH_MAX_TOKEN_LIFETIME, default 24h). */
  maxTokenLifetimeMs: number;
}

export const LOCAL_TOKEN_ISSUER = 'cmk-local';
export const DEFAULT_TOKEN_AUDIENCE = 'cmk-api';
/** Asymmetric algorithms only: `none` and shared-secret HMAC would let whoever verifies also mint tokens. */
export const ALLOWED_TOKEN_ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;

type Env = Record<string, string | undefined>;

export { ConfigError };

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

function cachedWorkflows(env: Env): Pick<Config, 'workerMaxCachedWorkflows'> {
  const text = env.CMK_WORKER_MAX_CACHED_WORKFLOWS;
  if (text === undefined || text === '') return {};
  const value = Number(text);
  // Below 2 the SDK would silently use 2, or (at 0) replay each tenant's whole history on every task.
  if (!Number.isInteger(value) || value < 2) throw new ConfigError(`CMK_WORKER_MAX_CACHED_WORKFLOWS="${text}" is not a whole number of at least 2.`);
  return { workerMaxCachedWorkflows: value };
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T, what: string): T {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  if (!(allowed as readonly string[]).includes(text)) throw new ConfigError(`${name}="${text}" is not ${what}; use ${allowed.join(' or ')}.`);
  return text as T;
}

/** The embedded dev server's UI listens on the frontend port + 1000 (stack/start.ts). */
function defaultUiOrigin(temporalAddress: string): string | null {
  const match = /^(.*):(\d+)$/.exec(temporalAddress);
  return match ? `http://${match[1]}:${Number(match[2]) + 1000}` : null;
}

const absolute = (path: string): string => (isAbsolute(path) ? path : resolve(process.cwd(), path));

function authConfig(env: Env): AuthConfig {
  const jwksUrl = env.CMK_AUTH_JWKS_URL || undefined;
  const publicKey = env.CMK_AUTH_PUBLIC_KEY || undefined;
  const algorithms = (env.CMK_AUTH_ALGORITHMS || (jwksUrl || publicKey ? 'ES256,RS256,PS256,EdDSA' : 'EdDSA')).split(',').map((a) => a.trim()).filter(Boolean);
  for (const alg of algorithms) {
    if (!(ALLOWED_TOKEN_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError(`CMK_AUTH_ALGORITHMS names "${alg}"; allowed are the asymmetric ${ALLOWED_TOKEN_ALGORITHMS.join(', ')}.`);
    }
  }
  const audience = env.CMK_AUTH_AUDIENCE || DEFAULT_TOKEN_AUDIENCE;
  const identity = {
    requireEmailVerified: oneOf(env, 'CMK_AUTH_REQUIRE_EMAIL_VERIFIED', ['true', 'false'] as const, 'true', 'true or false') === 'true',
    maxTokenLifetimeMs: duration(env, 'CMK_AUTH_MAX_TOKEN_LIFETIME', 24 * 3_600_000),
  };
  if (!jwksUrl && !publicKey) return { mode: 'local', issuer: env.CMK_AUTH_ISSUER || LOCAL_TOKEN_ISSUER, audience, algorithms, ...identity };
  if (jwksUrl && publicKey) throw new ConfigError('Set CMK_AUTH_JWKS_URL or CMK_AUTH_PUBLIC_KEY, not both.');
  if (!env.CMK_AUTH_ISSUER) throw new ConfigError("CMK_AUTH_ISSUER is required with an external issuer: the tokens' `iss`.");
  if (jwksUrl && !/^https:\/\//.test(jwksUrl) && !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(jwksUrl)) {
    throw new ConfigError(`CMK_AUTH_JWKS_URL="${jwksUrl}" must be https (plain http only on loopback).`);
  }
  let publicKeyPem: string | undefined;
  if (publicKey) {
    publicKeyPem = publicKey.includes('-----BEGIN') ? publicKey : readFileSync(absolute(publicKey), 'utf8');
  }
  return { mode: 'external', issuer: env.CMK_AUTH_ISSUER, audience, algorithms, ...identity, ...(jwksUrl ? { jwksUrl } : {}), ...(publicKeyPem ? { publicKeyPem } : {}) };
}

export function loadConfig(env: Env = process.env): Config {
  const apiPort = port(env, 'CMK_API_PORT', 8787);
  const auth = authConfig(env);
  // Loopback unless an external issuer vouches for callers: the local signing key is for this machine only.
  const apiHost = auth.mode === 'external' ? env.CMK_API_HOST || '127.0.0.1' : '127.0.0.1';
  const dbEngine = oneOf(env, 'CMK_DB_ENGINE', ['sqlite', 'sqlserver'] as const, 'sqlite', 'a database engine');
  const mssqlUrl = env.MSSQL_URL || undefined;
  if (dbEngine === 'sqlserver' && !mssqlUrl && !env.CMK_MSSQL_SERVERS) {
    throw new ConfigError('MSSQL_URL (or CMK_MSSQL_SERVERS) is required when CMK_DB_ENGINE=sqlserver: a connection string or a URL such as mssql://user:password@host:1433.');
  }
  const mail = mailConfig(env);
  const regions = regionList(env, 'CMK_REGIONS');
  const vault = vaultConfig(env);
  // A region's own vault is used by that region's workers only, and those exist only when the deployment names its regions.
  for (const suffix of Object.keys(vault.azure?.regionVaultUrls ?? {})) {
    if (!regions?.some((r) => regionVariableSuffix(r) === suffix)) {
      throw new ConfigError(`CMK_AZURE_VAULT_URL_${suffix} names a region that CMK_REGIONS (${regions?.join(', ') ?? 'unset'}) does not list.`);
    }
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
      ...(regions ? { regions } : {}),
    },
    workerRegions: workerRegions(env, regions),
    workerWorkflows: oneOf(env, 'CMK_WORKER_WORKFLOWS', ['true', 'false'] as const, 'true', 'true or false') === 'true',
    ...cachedWorkflows(env),
    purgeIntervalMs: duration(env, 'CMK_PURGE_INTERVAL', 24 * 3_600_000),
    dbEngine,
    ...(dbEngine === 'sqlserver' ? { mssqlUrl } : {}),
    mssqlEkmProvider: env.CMK_MSSQL_EKM_PROVIDER || 'AzureKeyVault_EKM',
    mssqlTenantKeys: oneOf(env, 'CMK_MSSQL_TENANT_KEYS', ['ekm', 'certificate'] as const, 'ekm', 'a tenant key source'),
    ...(env.CMK_MSSQL_BACKUP_DIR ? { mssqlBackupDir: env.CMK_MSSQL_BACKUP_DIR } : {}),
    mssqlControlDatabase: env.CMK_MSSQL_CONTROL_DB || 'cmk_control',
    ...sqlServersConfig(env),
    auth,
    codecCorsOrigin: env.CMK_CODEC_CORS_ORIGIN === undefined ? defaultUiOrigin(env.TEMPORAL_ADDRESS || '127.0.0.1:7233') : env.CMK_CODEC_CORS_ORIGIN || null,
    ...mail,
    ...telemetryConfig(env),
    vault,
    rateLimits: {
      identity: rateLimit(env, 'CMK_RATE_LIMIT', DEFAULT_RATE_LIMITS.identity),
      tenant: rateLimit(env, 'CMK_RATE_LIMIT_TENANT', DEFAULT_RATE_LIMITS.tenant),
    },
  };
}

/** `10/s`, `600/m`, `3600/h` (or a bare number: per second); `0` turns the limit off. `${name}_BURST`: the bucket's size. */
function rateLimit(env: Env, name: string, fallback: RateLimit): RateLimit {
  const text = env[name]?.trim();
  let perSecond = fallback.perSecond;
  if (text) {
    const match = /^(\d+(?:\.\d+)?)(?:\/(s|m|h))?$/.exec(text);
    if (!match) throw new ConfigError(`${name}="${text}" is not a rate such as 10/s, 600/m or 0 (no limit).`);
    perSecond = Number(match[1]) / { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  }
  const burstText = env[`${name}_BURST`]?.trim();
  // Without its own burst, a changed rate keeps the default's ratio (five seconds' worth).
  let burst = text ? Math.max(1, Math.ceil(perSecond * (fallback.burst / fallback.perSecond))) : fallback.burst;
  if (burstText) {
    burst = Number(burstText);
    if (!Number.isInteger(burst) || burst < 1) throw new ConfigError(`${name}_BURST="${burstText}" is not a whole number of at least 1.`);
  }
  return { perSecond, burst };
}

/** A comma-separated list of region IDs; undefined when unset. */
function regionList(env: Env, name: string): string[] | undefined {
  const text = env[name]?.trim();
  if (!text) return undefined;
  const list = text.split(',').map((r) => r.trim());
  for (const region of list) {
    if (!isValidId(region)) throw new ConfigError(`${name} names "${region}", which is not a region ID (lowercase letters, digits and dashes).`);
  }
  if (new Set(list).size !== list.length) throw new ConfigError(`${name}="${text}" names a region twice.`);
  return list;
}

/**
 * The regions whose task queues this worker serves: every region of CMK_REGIONS by default (one worker for all, as
 * `npm start` runs it), a subset for a region's own workers, `none` for a workflows-only worker.
 */
function workerRegions(env: Env, regions: string[] | undefined): string[] {
  const text = env.CMK_WORKER_REGIONS?.trim();
  if (!text || text === 'all') return regions ?? [];
  if (!regions) throw new ConfigError('CMK_WORKER_REGIONS needs CMK_REGIONS: name the regions the deployment serves first.');
  if (text === 'none') return [];
  const list = regionList(env, 'CMK_WORKER_REGIONS') ?? [];
  const unknown = list.filter((r) => !regions.includes(r));
  if (unknown.length > 0) throw new ConfigError(`CMK_WORKER_REGIONS names ${unknown.join(', ')}, not in CMK_REGIONS (${regions.join(', ')}).`);
  return list;
}

type MailConfig = Pick<Config, 'mailer' | 'sendgridApiKey' | 'sendgridBaseUrl' | 'mailFrom' | 'smtpUrl'>;

function mailConfig(env: Env): MailConfig {
  const mailer = oneOf(env, 'CMK_MAILER', ['outbox', 'sendgrid', 'smtp'] as const, 'outbox', 'a mailer');
  const mailFrom = env.CMK_MAIL_FROM || 'cmk@localhost';
  if (!isValidEmail(mailFrom)) throw new ConfigError(`CMK_MAIL_FROM="${mailFrom}" is not an e-mail address such as cmk@example.com.`);
  const sendgridBaseUrl = (env.CMK_SENDGRID_BASE_URL || 'https://api.sendgrid.com').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(sendgridBaseUrl)) throw new ConfigError(`CMK_SENDGRID_BASE_URL="${sendgridBaseUrl}" is not an http(s) URL.`);
  const sendgridApiKey = env.CMK_SENDGRID_API_KEY || undefined;
  // The key and the SMTP URL are secrets: the messages below name the variable, never echo its value.
  if (mailer === 'sendgrid' && !sendgridApiKey) throw new ConfigError('CMK_SENDGRID_API_KEY is required when CMK_MAILER=sendgrid.');
  const smtpUrl = env.CMK_SMTP_URL || undefined;
  if (mailer === 'smtp') {
    if (!smtpUrl) throw new ConfigError('CMK_SMTP_URL is required when CMK_MAILER=smtp: a URL such as smtp://user:pass@relay:587 or smtps://user:pass@relay:465.');
    if (!/^smtps?:\/\/[^/]/.test(smtpUrl)) throw new ConfigError('CMK_SMTP_URL must start with smtp:// or smtps://.');
  }
  return {
    mailer,
    sendgridBaseUrl,
    mailFrom,
    ...(mailer === 'sendgrid' ? { sendgridApiKey } : {}),
    ...(mailer === 'smtp' ? { smtpUrl } : {}),
  };
}
