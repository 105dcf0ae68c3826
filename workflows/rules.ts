/**
 * The rules R1–R15 of DESIGN.md §3, as pure functions over plain data. Workflows (update validators), the API
 * service (pre-checks before it stages key material) and the tests all read this one module.
 * Deterministic: no Node APIs, no I/O; "now" is always passed in (the workflow clock in workflows).
 */
import type { ErrorCode } from './codes';

// ---------------------------------------------------------------------------------------------- durations (R14)

/** R5, R6, R9, R15 durations in milliseconds; a deployment sets its own (CMK_KEY_CHANGE_INTERVAL …). */
export interface Policy {
  keyChangeIntervalMs: number;
  lockEmbargoMs: number;
  lockedRetentionMs: number;
  unlockDelayMs: number;
}

const HOUR = 3_600_000;
export const DEFAULT_POLICY: Policy = {
  keyChangeIntervalMs: 24 * HOUR, // R5
  lockEmbargoMs: 72 * HOUR, // R6
  lockedRetentionMs: 28 * 24 * HOUR, // R9
  unlockDelayMs: 1 * HOUR, // R15
};

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR };

/** Parses `24h`, `72h`, `28d`, `1h`, `30s`, `500ms`, `1h30m`; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(ms|s|m|h|d))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const part of trimmed.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(part[1]) * (UNIT_MS[part[2] ?? ''] ?? Number.NaN);
  }
  return Number.isFinite(total) ? total : undefined;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 24 * HOUR], ['h', HOUR], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

// ---------------------------------------------------------------------------------------------- identities

/** `^[a-z0-9][a-z0-9-]{0,62}$` for tenant, environment and region IDs (DESIGN.md §4). */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const isValidId = (id: unknown): id is string => typeof id === 'string' && ID_PATTERN.test(id);

const EMAIL_PATTERN = /^[^\s@:,]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
export const isValidEmail = (email: unknown): email is string =>
  typeof email === 'string' && email.length <= 254 && EMAIL_PATTERN.test(email);
export const normaliseEmail = (email: string): string => email.toLowerCase();

export const DISPLAY_NAME_MAX = 200;
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;

/** Who acts: the provider operator, or a person by e-mail. */
export type Actor = { kind: 'operator' } | { kind: 'user'; email: string };
export const OPERATOR: Actor = { kind: 'operator' };
export const describeActor = (actor: Actor): string => (actor.kind === 'operator' ? 'operator' : actor.email);

// ---------------------------------------------------------------------------------------------- tenant model

export type AdminRole = 'global' | 'service';
export interface Administrator {
  email: string;
  role: AdminRole;
}

/** Key states (DESIGN.md §3). */
export type KeyState = 'Available' | 'Installing' | 'Active' | 'Retired' | 'Locked';
export type EnvironmentState = 'Online' | 'Applying' | 'Reverting' | 'Reprotecting' | 'Locked' | 'Deleted';
export type Protection = 'provider' | 'tenant';
export type KeySource = 'generated' | 'pfx' | 'byok';

export interface TenantKey {
  /** The administrator's name for the key (`--name`). */
  name: string;
  thumbprint: string;
  /** Where the key lives in the vault: a version of the (tenant, region) key. A reference, not a secret. */
  vaultKey: { name: string; version: string };
  state: KeyState;
  source: KeySource;
  createdAt: string;
  createdBy: string;
  activatedAt: string | null;
  activatedBy: string | null;
  retiredAt: string | null;
  /** False once the key was deleted from the vault (after the rollback window, or withdrawn by a lock). */
  inVault: boolean;
}

export interface EnvironmentRecord {
  id: string;
  region: string;
  state: EnvironmentState;
  protection: Protection;
  keyThumbprint: string;
  systemAdmin: string | null;
  createdAt: string;
  /**
   * How many apply/revert/rekey operations were started on it: the request for the one running carries this number
   * in its update ID, so a repeat of the same request attaches to it. Absent before the first.
   */
  operationSeq?: number;
  /** The apply/revert/rekey running on it now (its state alone cannot say: a rekey and a re-protection are both Reprotecting). */
  runningOperation?: EnvironmentOperation;
}

/** An environment a re-protection could not move to the new key: it stays on its previous key, which stays in the vault. */
export interface ReprotectionRefusal {
  env: string;
  code: string;
  message: string;
}

/** R7 after a key change: every environment on the tenant key moved to the new key, batch by batch. */
export interface ReprotectionProgress {
  region: string;
  keyName: string;
  keyThumbprint: string;
  startedAt: string;
  finishedAt: string | null;
  total: number;
  done: number;
  refused: ReprotectionRefusal[];
  remaining: number;
}

export interface RegionKeys {
  region: string;
  /** Every key this region has had, oldest first. */
  keys: TenantKey[];
  activeThumbprint: string | null;
  /** The key the last change replaced, kept in the vault until `rollbackUntil` (R6). */
  rollbackThumbprint: string | null;
  rollbackUntil: string | null;
  /** R5 counts from here: the last generate or upload (a rollback does not restart it). */
  lastKeyChangeAt: string | null;
  /** R6 counts from here: the last generate, upload or rollback. */
  embargoStartedAt: string | null;
}

export const activeKeyOf = (region: RegionKeys | undefined): TenantKey | null =>
  region?.keys.find((k) => k.thumbprint === region.activeThumbprint) ?? null;

export interface TenantSnapshot {
  tenant: string;
  displayName: string;
  homeRegion: string;
  createdAt: string;
  admins: Administrator[];
  environments: EnvironmentRecord[];
  regions: Record<string, RegionKeys>;
  /** A key change being carried out, per region (OPERATION_IN_PROGRESS for another). */
  operations: Record<string, string>;
  /** The latest re-protection per region, running or finished (absent in tenants older than batched re-protection). */
  reprotections?: Record<string, ReprotectionProgress>;
}

// ---------------------------------------------------------------------------------------------- R12 privileges

/** Every request the control plane answers, named as the CLI names it. */
export type Action =
  | 'tenant.create'
  | 'tenant.admin'
  | 'tenant.lock'
  | 'env.create'
  | 'env.list'
  | 'env.data'
  | 'env.apply'
  | 'env.revert'
  | 'env.rekey'
  | 'env.unlock'
  | 'env.backup'
  | 'env.restore'
  | 'key.change'
  | 'key.kek'
  | 'key.show'
  | 'key.rollback'
  | 'key.reactivate'
  | 'mail.list'
  | 'audit';

export const ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'tenant.create', 'tenant.admin', 'tenant.lock', 'env.create', 'env.list', 'env.data', 'env.apply', 'env.revert', 'env.rekey',
  'env.unlock', 'env.backup', 'env.restore', 'key.change', 'key.kek', 'key.show', 'key.rollback', 'key.reactivate', 'mail.list', 'audit',
]);

const OPERATOR_ACTIONS: ReadonlySet<Action> = new Set<Action>(['tenant.create', 'env.create', 'env.list', 'env.data', 'mail.list']);
/** R12: what the system administrator of one environment may do, on that environment only. */
const SYSTEM_ADMIN_ENV_ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'env.apply',
  'env.revert',
  'env.rekey',
  'env.unlock',
  'env.data',
  'env.backup',
  'env.restore',
]);
const SYSTEM_ADMIN_TENANT_ACTIONS: ReadonlySet<Action> = new Set<Action>(['key.show', 'env.list']);

export function tenantAdminRole(tenant: Pick<TenantSnapshot, 'admins'> | undefined, actor: Actor): AdminRole | null {
  if (!tenant || actor.kind !== 'user') return null;
  return tenant.admins.find((a) => a.email === normaliseEmail(actor.email))?.role ?? null;
}

export function administeredEnvironments(tenant: Pick<TenantSnapshot, 'environments'> | undefined, actor: Actor): string[] {
  if (!tenant || actor.kind !== 'user') return [];
  const email = normaliseEmail(actor.email);
  return tenant.environments.filter((e) => e.systemAdmin === email).map((e) => e.id);
}

/**
 * R12. `tenant` is undefined when the tenant does not exist (then only the operator may go on, to NOT_FOUND).
 * `envId` names the environment of an environment-scoped request.
 */
export function isAllowed(tenant: TenantSnapshot | undefined, actor: Actor, action: Action, envId?: string): boolean {
  if (actor.kind === 'operator') return OPERATOR_ACTIONS.has(action);
  if (action === 'tenant.create') return false;
  if (tenantAdminRole(tenant, actor)) return true;
  const mine = administeredEnvironments(tenant, actor);
  if (mine.length === 0) return false;
  if (SYSTEM_ADMIN_TENANT_ACTIONS.has(action)) return true;
  return SYSTEM_ADMIN_ENV_ACTIONS.has(action) && envId !== undefined && mine.includes(envId);
}

/** Mail recipients of R4: every global and service administrator, plus the environment's system administrator. */
export function notificationRecipients(tenant: Pick<TenantSnapshot, 'admins' | 'environments'>, envId?: string): string[] {
  const recipients = new Set(tenant.admins.map((a) => a.email));
  const env = envId ? tenant.environments.find((e) => e.id === envId) : undefined;
  if (env?.systemAdmin) recipients.add(env.systemAdmin);
  return [...recipients].sort();
}

// ---------------------------------------------------------------------------------------------- refusals

export interface Refusal {
  code: ErrorCode;
  message: string;
}
const refuse = (code: ErrorCode, message: string): Refusal => ({ code, message });

/** Generate requires at least 12 characters (DESIGN.md §4); an upload takes the file's own password. */
export const MIN_GENERATED_PASSWORD_LENGTH = 12;
export function checkGeneratedPassword(password: string): Refusal | null {
  if ([...password].length < MIN_GENERATED_PASSWORD_LENGTH) {
    return refuse('WEAK_PASSWORD', `The password must be at least ${MIN_GENERATED_PASSWORD_LENGTH} characters long.`);
  }
  return null;
}

export function forbidden(actor: Actor, what: string): Refusal {
  return refuse('FORBIDDEN', `${describeActor(actor)} may not ${what}.`);
}

/** R5: when the (tenant, region)'s key may next change; null when it may now. */
export function nextKeyChangeAllowedAt(region: RegionKeys | undefined, policy: Policy): number | null {
  if (!region?.lastKeyChangeAt) return null;
  return Date.parse(region.lastKeyChangeAt) + policy.keyChangeIntervalMs;
}

/** R6: when a lock is next allowed; null when no embargo runs. */
export function lockAllowedAt(region: RegionKeys | undefined, policy: Policy): number | null {
  if (!region?.embargoStartedAt) return null;
  return Date.parse(region.embargoStartedAt) + policy.lockEmbargoMs;
}

export function emptyRegion(region: string): RegionKeys {
  return { region, keys: [], activeThumbprint: null, rollbackThumbprint: null, rollbackUntil: null, lastKeyChangeAt: null, embargoStartedAt: null };
}

export interface KeyChangeCheck {
  actor: Actor;
  region: string;
  thumbprint: string;
}

/**
 * A new key for (tenant, region) by generate or upload: R12, then state (R11), then time (R5), then a running
 * change (DESIGN.md §4 order). Input codes were answered before the key was staged.
 */
export function checkKeyChange(tenant: TenantSnapshot, request: KeyChangeCheck, now: number, policy: Policy): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'key.change')) return forbidden(request.actor, 'change the keys of this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const region = tenant.regions[request.region];
  if (region?.keys.some((k) => k.thumbprint === request.thumbprint)) {
    return refuse('ALREADY_EXISTS', 'This key has already been used by this tenant in this region; generate or upload a new key.');
  }
  const locked = tenant.environments.filter((e) => e.region === request.region && e.state === 'Locked');
  if (locked.length > 0) {
    return refuse('LOCKED_ENVIRONMENTS_EXIST', `The key cannot change while ${locked.length} environment(s) are locked; unlock or wait for their deletion first.`);
  }
  const allowedAt = nextKeyChangeAllowedAt(region, policy);
  if (allowedAt !== null && now < allowedAt) {
    return refuse('KEY_CHANGE_TOO_SOON', `The key of this tenant in region ${request.region} changed less than ${formatDuration(policy.keyChangeIntervalMs)} ago; it may change again after ${new Date(allowedAt).toISOString()}.`);
  }
  if (tenant.operations[request.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${request.region}: ${tenant.operations[request.region]}.`);
  }
  return null;
}

export interface AdminChangeCheck {
  actor: Actor;
  change: 'add' | 'remove';
  email: string;
  role: AdminRole | null;
}

export function checkAdminChange(tenant: TenantSnapshot, request: AdminChangeCheck): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'tenant.admin')) return forbidden(request.actor, 'change the administrators of this tenant');
  if (!isValidEmail(request.email)) return refuse('INVALID_ARGUMENT', `"${request.email}" is not a valid e-mail address.`);
  const email = normaliseEmail(request.email);
  const existing = tenant.admins.find((a) => a.email === email);
  if (request.change === 'remove') {
    if (!existing) return refuse('NOT_FOUND', `${email} is not an administrator of this tenant.`);
    if (request.role && request.role !== existing.role) {
      return refuse('NOT_FOUND', `${email} is a ${existing.role} administrator, not a ${request.role} administrator.`);
    }
    if (tenant.admins.length === 1) {
      return refuse('INVALID_ARGUMENT', 'A tenant keeps at least one global or service administrator; add another before removing this one.');
    }
    return null;
  }
  if (existing && existing.role === (request.role ?? 'global')) {
    return refuse('ALREADY_EXISTS', `${email} is already a ${existing.role} administrator of this tenant.`);
  }
  return null;
}

export interface EnvironmentCreateCheck {
  actor: Actor;
  env: string;
  region: string;
  systemAdmin: string | null;
}

export function checkEnvironmentCreate(tenant: TenantSnapshot, request: EnvironmentCreateCheck): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'env.create')) return forbidden(request.actor, 'create environments for this tenant');
  if (!isValidId(request.env)) return refuse('INVALID_ARGUMENT', `"${request.env}" is not a valid environment ID (lowercase letters, digits and dashes, at most 63).`);
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  if (request.systemAdmin !== null && !isValidEmail(request.systemAdmin)) {
    return refuse('INVALID_ARGUMENT', `"${request.systemAdmin}" is not a valid e-mail address.`);
  }
  if (tenant.environments.some((e) => e.id === request.env)) return refuse('ALREADY_EXISTS', `Environment ${request.env} already exists.`);
  return null;
}

/** R13: what the tenant key covers, and what it plainly does not. */
export const COVERAGE = {
  covered: ['database'],
  notCovered: ['search-index', 'mobile-offline-cache', 'file-and-image-blobs', 'activity-log', 'mail-sync'],
} as const;

export interface TenantCreateCheck {
  actor: Actor;
  tenant: string;
  displayName: string;
  homeRegion: string;
  admins: Administrator[];
}

/** `tenant create`: the operator only; the ID grammar; at least one global or service administrator. */
export function checkTenantCreate(request: TenantCreateCheck): Refusal | null {
  if (!isAllowed(undefined, request.actor, 'tenant.create')) return forbidden(request.actor, 'create tenants');
  if (!isValidId(request.tenant)) return refuse('INVALID_ARGUMENT', `"${request.tenant}" is not a valid tenant ID (lowercase letters, digits and dashes, at most 63).`);
  const name = request.displayName;
  if (name.trim() === '' || name !== name.trim() || name.length > DISPLAY_NAME_MAX || /[\u0000-\u001f\u007f]/.test(name)) {
    return refuse('INVALID_ARGUMENT', `The display name must be 1 to ${DISPLAY_NAME_MAX} printable characters without leading or trailing spaces.`);
  }
  if (!isValidId(request.homeRegion)) return refuse('INVALID_ARGUMENT', `"${request.homeRegion}" is not a valid region ID.`);
  if (request.admins.length === 0) return refuse('INVALID_ARGUMENT', 'A tenant needs at least one global or service administrator (--admin EMAIL:global|service).');
  const seen = new Set<string>();
  for (const admin of request.admins) {
    if (!isValidEmail(admin.email)) return refuse('INVALID_ARGUMENT', `"${admin.email}" is not a valid e-mail address.`);
    if (admin.role !== 'global' && admin.role !== 'service') return refuse('INVALID_ARGUMENT', `"${String(admin.role)}" is not an administrator role (global or service).`);
    const email = normaliseEmail(admin.email);
    if (seen.has(email)) return refuse('INVALID_ARGUMENT', `${email} is listed twice.`);
    seen.add(email);
  }
  return null;
}

export type EnvironmentOperation = 'apply' | 'revert' | 'rekey';

export interface EnvironmentOperationCheck {
  actor: Actor;
  env: string;
  operation: EnvironmentOperation;
}

/**
 * R7 and `env rekey`: R12 (the environment's system administrator included), the environment exists, then state —
 * already there, Locked, no active tenant key (R10) — then a running operation in its region or on it.
 */
export function checkEnvironmentOperation(tenant: TenantSnapshot, request: EnvironmentOperationCheck): Refusal | null {
  const { actor, env: envId, operation } = request;
  if (!isAllowed(tenant, actor, `env.${operation}`, envId)) return forbidden(actor, `${operation} environment ${envId}`);
  if (!isValidId(envId)) return refuse('INVALID_ARGUMENT', `"${envId}" is not a valid environment ID.`);
  const env = tenant.environments.find((e) => e.id === envId && e.state !== 'Deleted');
  if (!env) return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
  const active = activeKeyOf(tenant.regions[env.region]);
  if (operation === 'apply' && env.protection === 'tenant' && env.keyThumbprint === active?.thumbprint) {
    return refuse('ALREADY_EXISTS', `Environment ${envId} is already protected by the tenant's active key.`);
  }
  if (operation === 'revert' && env.protection === 'provider') return refuse('ALREADY_EXISTS', `Environment ${envId} is already protected by the provider key.`);
  if (env.state === 'Locked') return refuse('ENVIRONMENT_LOCKED', `Environment ${envId} is locked; unlock it first.`);
  if (operation === 'apply' && !active) {
    return refuse('KEY_NOT_ACTIVE', `The tenant has no active key in region ${env.region}; generate or upload one first.`);
  }
  if (env.state !== 'Online') return refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is ${env.state.toLowerCase()}; try again when it is back online.`);
  if (tenant.operations[env.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${env.region}: ${tenant.operations[env.region]}.`);
  }
  return null;
}
