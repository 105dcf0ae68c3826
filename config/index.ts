/**
 * The deployment's configuration, read once at start from the environment (DESIGN.md §4, R14). The worker, the API
 * service, `npm start` and the tests all read it here, so every part agrees on ports, directories and durations.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { isValidEmail, isValidId } from '../domain/ids';
import { DEFAULT_POLICY, type Policy } from '../domain/policy';
import { telemetryConfig, type TelemetryConfig } from './telemetry';
import { regionVariableSuffix, vaultConfig, type VaultConfig } from './vault';
import { sqlServersConfig, type SqlServerEntry } from './sqlservers';
import { ConfigError } from './error';
import { duration, oneOf, parsed, port, readSection, Refused, refuse, section, text, trueOrFalse, wholeNumber, type Env } from './schema';

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
   * How many tenant workflows the worker keeps in memory between tasks (CMK_WORKER_MAX_CACHED_WORKFLOWS); unset: one
   * per MB of the heap limit past 80 MB (`defaultMaxCachedWorkflows`, worker/main.ts), about 200 at the default heap.
   */
  workerMaxCachedWorkflows?: number;
  /**
   * The worker process's V8 old-space limit in MB (CMK_WORKER_HEAP_MB, default 256), given by the launchers
   * (stack/worker-process.ts): without one, V8 on a large machine lets the heap grow far past what the worker holds.
   */
  workerHeapMb: number;
  /** How often the Schedule runs the purge of locked environments past their deadline (R9's safety net). */
  purgeIntervalMs: number;
  /** How often the Schedule `cmk-drift-check` compares every environment with what cmk believes (CMK_DRIFT_CHECK_INTERVAL). */
  driftCheckIntervalMs: number;
  /** The provider's operators, mailed with a tenant's administrators when a drift is found (CMK_OPERATOR_EMAIL, comma-separated). */
  operatorEmails: string[];
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
  /** The console's sign-in through the external issuer (OpenID Connect code + PKCE); absent: sign-in links only. */
  consoleOidc?: ConsoleOidcConfig;
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

/**
 * The console's OpenID Connect client (api/console-oidc.ts): set CMK_CONSOLE_OIDC_CLIENT_ID, with an external issuer,
 * and the console offers "Sign in with …" beside sign-in links. Its redirect URI is `<CMK_API_URL>/v1/console/oidc/callback`.
 */
export interface ConsoleOidcConfig {
  /** Where discovery starts (`/.well-known/openid-configuration`); CMK_CONSOLE_OIDC_ISSUER, default CMK_AUTH_ISSUER. */
  issuer: string;
  clientId: string;
  /** A confidential client's secret (CMK_CONSOLE_OIDC_CLIENT_SECRET); absent: a public client, PKCE alone. Never logged. */
  clientSecret?: string;
  /** Space-separated; `openid` and `email` are always asked for (CMK_CONSOLE_OIDC_SCOPES adds to them). */
  scopes: string;
  redirectUri: string;
}

export const LOCAL_TOKEN_ISSUER = 'cmk-local';
export const DEFAULT_TOKEN_AUDIENCE = 'cmk-api';
/** Asymmetric algorithms only: `none` and shared-secret HMAC would let whoever verifies also mint tokens. */
export const ALLOWED_TOKEN_ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;

export { ConfigError };

const HOUR = 3_600_000;
/** The worker's heap limit unless CMK_WORKER_HEAP_MB says otherwise: 10,000 environments of one tenant fit (PERFORMANCE.md). */
export const DEFAULT_WORKER_HEAP_MB = 256;

/** Where the deployment keeps its files and listens, and which Temporal it talks to. */
const PLACES = section({
  CMK_DATA_DIR: text('./var'),
  CMK_SECRETS_DIR: text(undefined),
  CMK_API_HOST: text('127.0.0.1'),
  CMK_API_PORT: port(8787),
  CMK_API_URL: text(undefined),
  TEMPORAL_ADDRESS: text('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: text('default'),
  CMK_TASK_QUEUE: text('cmk'),
  // Unset: the embedded Temporal UI's origin; set but empty: no cross-origin caller at all.
  CMK_CODEC_CORS_ORIGIN: () => z.string().optional(),
});

/** A comma-separated list of region IDs. */
function regionIds(value: string, name: string): string[] | Refused {
  const list = value.split(',').map((r) => r.trim());
  const bad = list.find((region) => !isValidId(region));
  if (bad !== undefined) return new Refused(`${name} names "${bad}", which is not a region ID (lowercase letters, digits and dashes).`);
  if (new Set(list).size !== list.length) return new Refused(`${name}="${value}" names a region twice.`);
  return list;
}

/** R5, R6, R9, R15 durations (R14), and the regions the deployment serves (R1). */
const POLICY = section({
  CMK_KEY_CHANGE_INTERVAL: duration(DEFAULT_POLICY.keyChangeIntervalMs),
  CMK_LOCK_EMBARGO: duration(DEFAULT_POLICY.lockEmbargoMs),
  CMK_LOCKED_RETENTION: duration(DEFAULT_POLICY.lockedRetentionMs),
  CMK_UNLOCK_DELAY: duration(DEFAULT_POLICY.unlockDelayMs),
  CMK_LOCK_APPROVAL_WINDOW: duration(DEFAULT_POLICY.lockApprovalWindowMs!),
  CMK_REGIONS: parsed(undefined, regionIds, { trim: true }),
}).transform(
  (v): Policy => ({
    keyChangeIntervalMs: v.CMK_KEY_CHANGE_INTERVAL,
    lockEmbargoMs: v.CMK_LOCK_EMBARGO,
    lockedRetentionMs: v.CMK_LOCKED_RETENTION,
    unlockDelayMs: v.CMK_UNLOCK_DELAY,
    lockApprovalWindowMs: v.CMK_LOCK_APPROVAL_WINDOW,
    ...(v.CMK_REGIONS ? { regions: v.CMK_REGIONS } : {}),
  }),
);

/**
 * What this worker process runs. Its regions: every region of CMK_REGIONS by default (one worker for all, as
 * `npm start` runs it), a subset for a region's own workers, `none` for a workflows-only worker.
 */
const worker = (regions: string[] | undefined) =>
  section({
    CMK_WORKER_REGIONS: parsed(
      regions ?? [],
      (value, name) => {
        if (value === 'all') return regions ?? [];
        if (!regions) return new Refused(`${name} needs CMK_REGIONS: name the regions the deployment serves first.`);
        if (value === 'none') return [];
        const list = regionIds(value, name);
        if (list instanceof Refused) return list;
        const unknown = list.filter((r) => !regions.includes(r));
        if (unknown.length > 0) return new Refused(`${name} names ${unknown.join(', ')}, not in CMK_REGIONS (${regions.join(', ')}).`);
        return list;
      },
      { trim: true },
    ),
    CMK_WORKER_WORKFLOWS: trueOrFalse(true),
    // Below 2 the SDK would silently use 2, or (at 0) replay each tenant's whole history on every task.
    CMK_WORKER_MAX_CACHED_WORKFLOWS: wholeNumber(2),
    // Below 128 MB the worker's own modules and one large tenant's state would not fit (docs/PERFORMANCE.md).
    CMK_WORKER_HEAP_MB: wholeNumber(128),
    CMK_PURGE_INTERVAL: duration(24 * HOUR),
    CMK_DRIFT_CHECK_INTERVAL: duration(HOUR),
    CMK_OPERATOR_EMAIL: parsed<string[]>(
      [],
      (value, name) => {
        const list = value.split(',').map((e) => e.trim().toLowerCase()).filter((e) => e !== '');
        const bad = list.find((e) => !isValidEmail(e));
        return bad === undefined ? list : new Refused(`${name} names "${bad}", which is not an e-mail address such as ops@example.com.`);
      },
      { trim: true },
    ),
  });

type DatabaseConfig = Pick<Config, 'dbEngine' | 'mssqlUrl' | 'mssqlEkmProvider' | 'mssqlTenantKeys' | 'mssqlBackupDir' | 'mssqlControlDatabase'>;

/** Environment databases (CMK_MSSQL_SERVERS' fleet is read by config/sqlservers.ts). MSSQL_URL holds a password: never quoted. */
const DATABASE = section({
  CMK_DB_ENGINE: oneOf(['sqlite', 'sqlserver'] as const, 'sqlite', 'a database engine'),
  MSSQL_URL: text(undefined),
  CMK_MSSQL_SERVERS: text(undefined),
  CMK_MSSQL_EKM_PROVIDER: text('AzureKeyVault_EKM'),
  CMK_MSSQL_TENANT_KEYS: oneOf(['ekm', 'certificate'] as const, 'ekm', 'a tenant key source'),
  CMK_MSSQL_BACKUP_DIR: text(undefined),
  CMK_MSSQL_CONTROL_DB: text('cmk_control'),
}).transform((v, ctx): DatabaseConfig => {
  if (v.CMK_DB_ENGINE === 'sqlserver' && !v.MSSQL_URL && !v.CMK_MSSQL_SERVERS) {
    return refuse(ctx, 'MSSQL_URL (or CMK_MSSQL_SERVERS) is required when CMK_DB_ENGINE=sqlserver: a connection string or a URL such as mssql://user:password@host:1433.');
  }
  return {
    dbEngine: v.CMK_DB_ENGINE,
    ...(v.CMK_DB_ENGINE === 'sqlserver' ? { mssqlUrl: v.MSSQL_URL } : {}),
    mssqlEkmProvider: v.CMK_MSSQL_EKM_PROVIDER,
    mssqlTenantKeys: v.CMK_MSSQL_TENANT_KEYS,
    ...(v.CMK_MSSQL_BACKUP_DIR ? { mssqlBackupDir: v.CMK_MSSQL_BACKUP_DIR } : {}),
    mssqlControlDatabase: v.CMK_MSSQL_CONTROL_DB,
  };
});

/** Who may call the API service (AuthConfig); the public key, when a path, is read once the section is valid. */
const AUTH = section({
  CMK_AUTH_JWKS_URL: text(undefined),
  CMK_AUTH_PUBLIC_KEY: text(undefined),
  CMK_AUTH_ALGORITHMS: parsed(undefined, (value, name) => {
    const algorithms = value.split(',').map((a) => a.trim()).filter(Boolean);
    const bad = algorithms.find((alg) => !(ALLOWED_TOKEN_ALGORITHMS as readonly string[]).includes(alg));
    return bad === undefined ? algorithms : new Refused(`${name} names "${bad}"; allowed are the asymmetric ${ALLOWED_TOKEN_ALGORITHMS.join(', ')}.`);
  }),
  CMK_AUTH_ISSUER: text(undefined),
  CMK_AUTH_AUDIENCE: text(DEFAULT_TOKEN_AUDIENCE),
  CMK_AUTH_REQUIRE_EMAIL_VERIFIED: trueOrFalse(true),
  CMK_AUTH_MAX_TOKEN_LIFETIME: duration(24 * HOUR),
}).transform((v, ctx): AuthConfig => {
  const external = Boolean(v.CMK_AUTH_JWKS_URL || v.CMK_AUTH_PUBLIC_KEY);
  const common = {
    audience: v.CMK_AUTH_AUDIENCE,
    algorithms: v.CMK_AUTH_ALGORITHMS ?? (external ? ['ES256', 'RS256', 'PS256', 'EdDSA'] : ['EdDSA']),
    requireEmailVerified: v.CMK_AUTH_REQUIRE_EMAIL_VERIFIED,
    maxTokenLifetimeMs: v.CMK_AUTH_MAX_TOKEN_LIFETIME,
  };
  if (!external) return { mode: 'local', issuer: v.CMK_AUTH_ISSUER ?? LOCAL_TOKEN_ISSUER, ...common };
  if (v.CMK_AUTH_JWKS_URL && v.CMK_AUTH_PUBLIC_KEY) return refuse(ctx, 'Set CMK_AUTH_JWKS_URL or CMK_AUTH_PUBLIC_KEY, not both.');
  if (!v.CMK_AUTH_ISSUER) return refuse(ctx, "CMK_AUTH_ISSUER is required with an external issuer: the tokens' `iss`.");
  const jwksUrl = v.CMK_AUTH_JWKS_URL;
  if (jwksUrl && !/^https:\/\//.test(jwksUrl) && !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(jwksUrl)) {
    return refuse(ctx, `CMK_AUTH_JWKS_URL="${jwksUrl}" must be https (plain http only on loopback).`);
  }
  return {
    mode: 'external',
    issuer: v.CMK_AUTH_ISSUER,
    ...common,
    ...(v.CMK_AUTH_JWKS_URL ? { jwksUrl: v.CMK_AUTH_JWKS_URL } : {}),
    ...(v.CMK_AUTH_PUBLIC_KEY ? { publicKeyPem: v.CMK_AUTH_PUBLIC_KEY } : {}),
  };
});

const CONSOLE_OIDC = section({
  CMK_CONSOLE_OIDC_CLIENT_ID: text(undefined),
  CMK_CONSOLE_OIDC_CLIENT_SECRET: text(undefined),
  CMK_CONSOLE_OIDC_ISSUER: text(undefined),
  CMK_CONSOLE_OIDC_SCOPES: text(''),
});

function consoleOidcConfig(env: Env, auth: AuthConfig, apiUrl: string): ConsoleOidcConfig | undefined {
  const v = readSection(CONSOLE_OIDC, env);
  if (v.CMK_CONSOLE_OIDC_CLIENT_ID === undefined) {
    if (v.CMK_CONSOLE_OIDC_CLIENT_SECRET !== undefined || v.CMK_CONSOLE_OIDC_ISSUER !== undefined) throw new ConfigError('CMK_CONSOLE_OIDC_CLIENT_ID is required with the other CMK_CONSOLE_OIDC_ settings.');
    return undefined;
  }
  // The session it opens is for the identity the API's tokens carry: the same issuer vouches for both.
  if (auth.mode !== 'external') throw new ConfigError('CMK_CONSOLE_OIDC_CLIENT_ID needs an external issuer (CMK_AUTH_ISSUER with CMK_AUTH_JWKS_URL or CMK_AUTH_PUBLIC_KEY).');
  const issuer = v.CMK_CONSOLE_OIDC_ISSUER ?? auth.issuer;
  if (!/^https:\/\//.test(issuer) && !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(issuer)) throw new ConfigError(`The console's OpenID Connect issuer "${issuer}" must be https (plain http only on loopback).`);
  const scopes = [...new Set(['openid', 'email', ...v.CMK_CONSOLE_OIDC_SCOPES.split(/\s+/).filter(Boolean)])].join(' ');
  return {
    issuer,
    clientId: v.CMK_CONSOLE_OIDC_CLIENT_ID,
    ...(v.CMK_CONSOLE_OIDC_CLIENT_SECRET !== undefined ? { clientSecret: v.CMK_CONSOLE_OIDC_CLIENT_SECRET } : {}),
    scopes,
    redirectUri: `${apiUrl.replace(/\/+$/, '')}/v1/console/oidc/callback`,
  };
}

function authConfig(env: Env): AuthConfig {
  const auth = readSection(AUTH, env);
  // CMK_AUTH_PUBLIC_KEY holds the PEM itself or a path to it.
  if (auth.publicKeyPem && !auth.publicKeyPem.includes('-----BEGIN')) return { ...auth, publicKeyPem: readFileSync(absolute(auth.publicKeyPem), 'utf8') };
  return auth;
}

type MailConfig = Pick<Config, 'mailer' | 'sendgridApiKey' | 'sendgridBaseUrl' | 'mailFrom' | 'smtpUrl'>;

/** Where administrators' mail goes. The SendGrid key and the SMTP URL are secrets: refusals name them, never quote them. */
const MAIL = section({
  CMK_MAILER: oneOf(['outbox', 'sendgrid', 'smtp'] as const, 'outbox', 'a mailer'),
  CMK_MAIL_FROM: parsed('cmk@localhost', (value, name) => (isValidEmail(value) ? value : new Refused(`${name}="${value}" is not an e-mail address such as cmk@example.com.`))),
  CMK_SENDGRID_BASE_URL: parsed('https://api.sendgrid.com', (value, name) => {
    const url = value.replace(/\/+$/, '');
    return /^https?:\/\/[^/]/.test(url) ? url : new Refused(`${name}="${url}" is not an http(s) URL.`);
  }),
  CMK_SENDGRID_API_KEY: text(undefined),
  CMK_SMTP_URL: text(undefined),
}).transform((v, ctx): MailConfig => {
  const mailer = v.CMK_MAILER;
  if (mailer === 'sendgrid' && !v.CMK_SENDGRID_API_KEY) return refuse(ctx, 'CMK_SENDGRID_API_KEY is required when CMK_MAILER=sendgrid.');
  if (mailer === 'smtp') {
    if (!v.CMK_SMTP_URL) return refuse(ctx, 'CMK_SMTP_URL is required when CMK_MAILER=smtp: a URL such as smtp://user:pass@relay:587 or smtps://user:pass@relay:465.');
    if (!/^smtps?:\/\/[^/]/.test(v.CMK_SMTP_URL)) return refuse(ctx, 'CMK_SMTP_URL must start with smtp:// or smtps://.');
  }
  return {
    mailer,
    sendgridBaseUrl: v.CMK_SENDGRID_BASE_URL,
    mailFrom: v.CMK_MAIL_FROM,
    ...(mailer === 'sendgrid' ? { sendgridApiKey: v.CMK_SENDGRID_API_KEY } : {}),
    ...(mailer === 'smtp' ? { smtpUrl: v.CMK_SMTP_URL } : {}),
  };
});

/** `10/s`, `600/m`, `3600/h` (or a bare number: per second), as tokens a second; `0` turns the limit off. */
const rate = parsed(
  undefined,
  (value, name) => {
    const match = /^(\d+(?:\.\d+)?)(?:\/(s|m|h))?$/.exec(value);
    if (!match) return new Refused(`${name}="${value}" is not a rate such as 10/s, 600/m or 0 (no limit).`);
    return Number(match[1]) / { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  },
  { trim: true },
);

/** A bucket from its rate and `_BURST` (the bucket's size), each falling back to the default's. */
function bucket(perSecond: number | undefined, burst: number | undefined, fallback: RateLimit): RateLimit {
  if (perSecond === undefined) return { perSecond: fallback.perSecond, burst: burst ?? fallback.burst };
  // Without its own burst, a changed rate keeps the default's ratio (five seconds' worth).
  return { perSecond, burst: burst ?? Math.max(1, Math.ceil(perSecond * (fallback.burst / fallback.perSecond))) };
}

/** The API service's token buckets. */
const RATE_LIMITS = section({
  CMK_RATE_LIMIT: rate,
  CMK_RATE_LIMIT_BURST: wholeNumber(1),
  CMK_RATE_LIMIT_TENANT: rate,
  CMK_RATE_LIMIT_TENANT_BURST: wholeNumber(1),
}).transform(
  (v): RateLimitConfig => ({
    identity: bucket(v.CMK_RATE_LIMIT, v.CMK_RATE_LIMIT_BURST, DEFAULT_RATE_LIMITS.identity),
    tenant: bucket(v.CMK_RATE_LIMIT_TENANT, v.CMK_RATE_LIMIT_TENANT_BURST, DEFAULT_RATE_LIMITS.tenant),
  }),
);

/** The embedded dev server's UI listens on the frontend port + 1000 (stack/start.ts). */
function defaultUiOrigin(temporalAddress: string): string | null {
  const match = /^(.*):(\d+)$/.exec(temporalAddress);
  return match ? `http://${match[1]}:${Number(match[2]) + 1000}` : null;
}

const absolute = (path: string): string => (isAbsolute(path) ? path : resolve(process.cwd(), path));

export function loadConfig(env: Env = process.env): Config {
  const places = readSection(PLACES, env);
  const auth = authConfig(env);
  // Loopback unless an external issuer vouches for callers: the local signing key is for this machine only.
  const apiHost = auth.mode === 'external' ? places.CMK_API_HOST : '127.0.0.1';
  const database = readSection(DATABASE, env);
  const mail = readSection(MAIL, env);
  const policy = readSection(POLICY, env);
  const vault = vaultConfig(env);
  // A region's own vault is used by that region's workers only, and those exist only when the deployment names its regions.
  for (const suffix of Object.keys(vault.azure?.regionVaultUrls ?? {})) {
    if (!policy.regions?.some((r) => regionVariableSuffix(r) === suffix)) {
      throw new ConfigError(`CMK_AZURE_VAULT_URL_${suffix} names a region that CMK_REGIONS (${policy.regions?.join(', ') ?? 'unset'}) does not list.`);
    }
  }
  const workerSettings = readSection(worker(policy.regions), env);
  const apiUrl = places.CMK_API_URL ?? `http://${apiHost}:${places.CMK_API_PORT}`;
  const consoleOidc = consoleOidcConfig(env, auth, apiUrl);
  return {
    dataDir: absolute(places.CMK_DATA_DIR),
    secretsDir: absolute(places.CMK_SECRETS_DIR ?? resolve(homedir(), '.config', 'cmk')),
    apiHost,
    apiPort: places.CMK_API_PORT,
    apiUrl,
    temporalAddress: places.TEMPORAL_ADDRESS,
    temporalNamespace: places.TEMPORAL_NAMESPACE,
    taskQueue: places.CMK_TASK_QUEUE,
    policy,
    workerRegions: workerSettings.CMK_WORKER_REGIONS,
    workerWorkflows: workerSettings.CMK_WORKER_WORKFLOWS,
    ...(workerSettings.CMK_WORKER_MAX_CACHED_WORKFLOWS !== undefined ? { workerMaxCachedWorkflows: workerSettings.CMK_WORKER_MAX_CACHED_WORKFLOWS } : {}),
    workerHeapMb: workerSettings.CMK_WORKER_HEAP_MB ?? DEFAULT_WORKER_HEAP_MB,
    purgeIntervalMs: workerSettings.CMK_PURGE_INTERVAL,
    driftCheckIntervalMs: workerSettings.CMK_DRIFT_CHECK_INTERVAL,
    operatorEmails: workerSettings.CMK_OPERATOR_EMAIL,
    ...database,
    ...sqlServersConfig(env),
    auth,
    ...(consoleOidc ? { consoleOidc } : {}),
    codecCorsOrigin: places.CMK_CODEC_CORS_ORIGIN === undefined ? defaultUiOrigin(places.TEMPORAL_ADDRESS) : places.CMK_CODEC_CORS_ORIGIN || null,
    ...mail,
    ...telemetryConfig(env),
    vault,
    rateLimits: readSection(RATE_LIMITS, env),
  };
}
