// Over 400 lines: the one module of the rules R1–R15 (STYLE.md §4), each check beside its refusal messages.
/**
 * The rules R1–R15 of DESIGN.md §3, as pure functions over plain data. Workflows (update validators), the API
 * service (pre-checks before it stages key material) and the tests all read this one module; what the checks read
 * lives beside it: durations in policy.ts, ID and e-mail grammar in ids.ts, the carried state in model.ts, who may
 * do what in access.ts.
 * Deterministic: no Node APIs, no I/O; "now" is always passed in (the workflow clock in workflows).
 */
import { describeActor, isAllowed, type Actor } from './access';
import type { ErrorCode } from './codes';
import { DISPLAY_NAME_MAX, ID_PATTERN, isValidEmail, isValidId, normaliseEmail } from './ids';
import { activeKeyOf, lockedEnvironments, riskAcceptanceOf, usableKeyOf, type AdminRole, type Administrator, type BackupOperation, type EnvironmentOperation, type RegionKeys, type TenantKey, type TenantSnapshot } from './model';
import { formatDuration, type Policy } from './policy';

// ---------------------------------------------------------------------------------------------- refusals

export interface Refusal {
  code: ErrorCode;
  message: string;
}
export const refuse = (code: ErrorCode, message: string): Refusal => ({ code, message });

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
  const unserved = checkRegionServed(request.region, policy.regions);
  if (unserved) return unserved;
  return checkKeyUsed(tenant, request) ?? checkKeyChangeAllowed(tenant, request.region, now, policy);
}

/** What a new active key must wait for, at generate, upload or activation: R11, then R5, then a running change. */
function checkKeyChangeAllowed(tenant: TenantSnapshot, regionId: string, now: number, policy: Policy): Refusal | null {
  const region = tenant.regions[regionId];
  const locked = lockedEnvironments(tenant, regionId);
  if (locked.length > 0) {
    return refuse('LOCKED_ENVIRONMENTS_EXIST', `The key cannot change while ${locked.length} environment(s) are locked; unlock or wait for their deletion first.`);
  }
  const allowedAt = nextKeyChangeAllowedAt(region, policy);
  if (allowedAt !== null && now < allowedAt) {
    return refuse('KEY_CHANGE_TOO_SOON', `The key of this tenant in region ${regionId} changed less than ${formatDuration(policy.keyChangeIntervalMs)} ago; it may change again after ${new Date(allowedAt).toISOString()}.`);
  }
  if (tenant.operations[regionId]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${regionId}: ${tenant.operations[regionId]}.`);
  }
  return null;
}

/**
 * `key upload --no-activate` (the reference document's import, then activate): the key is stored Available and
 * protects nothing, so only R12, the region and a key already used answer; R5, R6 and R11 apply at its activation.
 */
export function checkKeyAdd(tenant: TenantSnapshot, request: KeyChangeCheck, policy: Policy): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'key.change')) return forbidden(request.actor, 'change the keys of this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const unserved = checkRegionServed(request.region, policy.regions);
  if (unserved) return unserved;
  return checkKeyUsed(tenant, request);
}

/** ALREADY_EXISTS for a key the region holds already: an Available one is activated, any other was used before. */
function checkKeyUsed(tenant: TenantSnapshot, request: KeyChangeCheck): Refusal | null {
  const known = tenant.regions[request.region]?.keys.find((k) => k.thumbprint === request.thumbprint);
  if (known?.state === 'Available') return refuse('ALREADY_EXISTS', `This key is already uploaded as "${known.name}" and Available; activate it with \`cmk key activate --thumbprint ${known.thumbprint}\`.`);
  if (known) return refuse('ALREADY_EXISTS', 'This key has already been used by this tenant in this region; generate or upload a new key.');
  return null;
}

export const THUMBPRINT_PATTERN = /^[0-9a-f]{64}$/;

/**
 * `key activate`: an Available key of the region becomes the active key — a key change like generate or upload, so
 * R12, then the key (NOT_FOUND; ALREADY_EXISTS when it is not Available), then R11, R5 and a running change.
 */
export function checkKeyActivate(tenant: TenantSnapshot, request: KeyChangeCheck, now: number, policy: Policy): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'key.change')) return forbidden(request.actor, 'change the keys of this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const unserved = checkRegionServed(request.region, policy.regions);
  if (unserved) return unserved;
  if (!THUMBPRINT_PATTERN.test(request.thumbprint)) return refuse('INVALID_ARGUMENT', 'A thumbprint is 64 lowercase hexadecimal digits (SHA-256 of the public key), as `cmk key history` shows it.');
  const key = tenant.regions[request.region]?.keys.find((k) => k.thumbprint === request.thumbprint);
  if (!key) return refuse('NOT_FOUND', `The tenant has no key with thumbprint ${request.thumbprint} in region ${request.region}; upload it first (\`cmk key upload --no-activate\`).`);
  if (key.state !== 'Available' || !key.inVault) {
    return refuse('ALREADY_EXISTS', `The key "${key.name}" is ${key.state.toLowerCase()}, not available: only a key uploaded with --no-activate and never activated can be activated.`);
  }
  return checkKeyChangeAllowed(tenant, request.region, now, policy);
}

export interface RollbackCheck {
  actor: Actor;
  region: string;
}

/**
 * R6's purpose: within the embargo after a key change, another global or service administrator puts the replaced
 * key back. Accepted while the change's re-protection still runs (the rollback supersedes it), refused while
 * environments are locked (R11) or another operation (a lock, a rollback) runs.
 */
export function checkRollback(tenant: TenantSnapshot, request: RollbackCheck, now: number): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'key.rollback')) return forbidden(request.actor, 'roll back the key of this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const region = tenant.regions[request.region];
  const previous = region?.keys.find((k) => k.thumbprint === region.rollbackThumbprint && k.inVault);
  const active = activeKeyOf(region);
  // "Another" administrator (R6): the one who made the change cannot undo it alone.
  if (active?.activatedBy && request.actor.kind === 'user' && normaliseEmail(active.activatedBy) === normaliseEmail(request.actor.email)) {
    return refuse('FORBIDDEN', `${active.activatedBy} made this key change; another global or service administrator must roll it back.`);
  }
  if (!region || !previous || !active || !region.rollbackUntil || Date.parse(region.rollbackUntil) <= now) {
    return refuse('NOT_FOUND', `There is no key change to roll back in region ${request.region}: a rollback is possible only within the embargo after a key change, one step back.`);
  }
  const locked = tenant.environments.filter((e) => e.region === request.region && e.state === 'Locked');
  if (locked.length > 0) {
    return refuse('LOCKED_ENVIRONMENTS_EXIST', `The key cannot change while ${locked.length} environment(s) are locked.`);
  }
  const progress = tenant.reprotections?.[request.region];
  const reprotectingOnly = progress !== undefined && progress.finishedAt === null && progress.keyThumbprint === active.thumbprint;
  const operation = tenant.operations[request.region];
  if (operation && !reprotectingOnly) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${request.region}: ${operation}.`);
  }
  return null;
}

export interface AdminChangeCheck {
  actor: Actor;
  change: 'add' | 'remove';
  email: string;
  role: AdminRole | null;
}

export function checkAdminChange(tenant: TenantSnapshot, request: AdminChangeCheck, now: number = Date.now()): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'tenant.admin')) return forbidden(request.actor, 'change the administrators of this tenant');
  // Not quoted: the caller's text could be anything, and refusals are audited.
  if (!isValidEmail(request.email)) return refuse('INVALID_ARGUMENT', 'That is not a valid e-mail address.');
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
    // R6's purpose: the other administrators see a key change and can roll it back. Removing them first would
    // defeat it, so no global or service administrator is removed while any region's rollback window is open.
    const open = Object.values(tenant.regions).flatMap((r) => (r.rollbackUntil && Date.parse(r.rollbackUntil) > now ? [r.rollbackUntil] : []));
    if (open.length > 0) {
      const until = open.sort().at(-1)!;
      return refuse('ROLLBACK_WINDOW_OPEN', `A key change can still be rolled back until ${until}; no global or service administrator can be removed before then (R6).`);
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
  /** The deployment's policy, for the regions it serves (R1). */
  policy?: Policy;
}

export function checkEnvironmentCreate(tenant: TenantSnapshot, request: EnvironmentCreateCheck): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'env.create')) return forbidden(request.actor, 'create environments for this tenant');
  if (!isValidId(request.env)) return refuse('INVALID_ARGUMENT', `"${request.env}" is not a valid environment ID (lowercase letters, digits and dashes, at most 63).`);
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const unserved = checkRegionServed(request.region, request.policy?.regions);
  if (unserved) return unserved;
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
  /** The deployment's regions (Policy.regions), when it names them. */
  regions?: string[];
}

/**
 * R1: a region the deployment serves. A deployment that names its regions (CMK_REGIONS) has a vault, database servers
 * and workers for each of them only; a region outside the list would wait for a worker that never comes.
 */
export function checkRegionServed(region: string, regions: readonly string[] | undefined): Refusal | null {
  if (!regions || regions.includes(region)) return null;
  return refuse('INVALID_ARGUMENT', `Region "${region}" is not served by this deployment; it serves ${regions.join(', ')}.`);
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
  const unserved = checkRegionServed(request.homeRegion, request.regions);
  if (unserved) return unserved;
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


export interface EnvironmentOperationCheck {
  actor: Actor;
  env: string;
  operation: EnvironmentOperation;
  /** `env apply --accept-risk`: the caller accepts the opt-in warning (RISK_WARNING); read on a first apply only. */
  acceptRisk?: boolean;
}

/**
 * The opt-in warning of the reference document's first key (its "potential risk" section), in our words: shown by
 * the refusal RISK_NOT_ACCEPTED and by the console before a first apply.
 */
export const RISK_WARNING =
  'Applying your own key makes your administrators responsible for it: if the key, or the password of its file, is lost, ' +
  'the data it protects cannot be recovered by anyone, the provider included. A lock takes every environment of the region ' +
  'offline for everyone and makes its backups unusable until the same key is uploaded again, and environments left locked ' +
  'are deleted. Anyone with administrator access to this tenant can change the key or lock it, so trust them as you trust the key.';

/**
 * R7 and `env rekey`: R12 (the environment's system administrator included), the environment exists, then state —
 * Locked, already there, no active tenant key (R10), the opt-in of a first apply — then a running operation in its
 * region or on it.
 */
export function checkEnvironmentOperation(tenant: TenantSnapshot, request: EnvironmentOperationCheck): Refusal | null {
  const { actor, env: envId, operation } = request;
  if (!isAllowed(tenant, actor, `env.${operation}`, envId)) return forbidden(actor, `${operation} environment ${envId}`);
  if (!isValidId(envId)) return refuse('INVALID_ARGUMENT', `"${envId}" is not a valid environment ID.`);
  const env = tenant.environments.find((e) => e.id === envId && e.state !== 'Deleted');
  if (!env) return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
  // DESIGN.md §4: every operation on a Locked environment answers ENVIRONMENT_LOCKED, the first of the state codes.
  if (env.state === 'Locked') return refuse('ENVIRONMENT_LOCKED', `Environment ${envId} is locked; unlock it first.`);
  const active = usableKeyOf(tenant.regions[env.region]);
  if (operation === 'apply' && env.protection === 'tenant' && env.keyThumbprint === active?.thumbprint) {
    return refuse('ALREADY_EXISTS', `Environment ${envId} is already protected by the tenant's active key.`);
  }
  if (operation === 'revert' && env.protection === 'provider') return refuse('ALREADY_EXISTS', `Environment ${envId} is already protected by the provider key.`);
  if (operation === 'apply' && !active) {
    return refuse('KEY_NOT_ACTIVE', `The tenant has no active key in region ${env.region}; generate or upload one first.`);
  }
  // The last of the state codes: the opt-in is asked once per tenant, before its first apply (issue 19).
  if (operation === 'apply' && request.acceptRisk !== true && !riskAcceptanceOf(tenant)) {
    return refuse('RISK_NOT_ACCEPTED', `${RISK_WARNING} Nothing was changed. To go on, apply again with --accept-risk (API: "acceptRisk": true); it is asked once for tenant ${tenant.tenant}.`);
  }
  if (env.state !== 'Online') return refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is ${env.state.toLowerCase()}; try again when it is back online.`);
  if (env.runningOperation) return refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is busy (${env.runningOperation}); try again in a moment.`);
  if (tenant.operations[env.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${env.region}: ${tenant.operations[env.region]}.`);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------- lock (R6, R8, R9, R10, R11, R15)

/**
 * Proof of possession of the active key (R8): the API service issued a single-use challenge bound to tenant, region,
 * user and operation, and verified the caller's signature over it against the vault's public key. The workflow
 * checks the binding, the expiry, the key it was verified against, and that the challenge was never used before.
 */
export interface PossessionProof {
  challengeId: string;
  tenant: string;
  region: string;
  user: string;
  operation: 'lock';
  expiresAt: string;
  /** The key the signature verified against (the vault's public key); null when it did not verify. */
  verifiedThumbprint: string | null;
}

export interface LockCheck {
  actor: Actor;
  region: string;
  confirm: string;
  proof: PossessionProof | null;
}

/**
 * R8 `tenant lock`: R12 (global/service administrators only), then state — any environment still Locked, no active
 * key, the display name, the proof — then time (R6), then a running operation (DESIGN.md §4 order).
 * `usedChallenges` holds the IDs of challenges already spent (single use).
 */
export function checkLock(tenant: TenantSnapshot, request: LockCheck, now: number, policy: Policy, usedChallenges: ReadonlySet<string> = new Set()): Refusal | null {
  const { actor } = request;
  if (!isAllowed(tenant, actor, 'tenant.lock') || actor.kind !== 'user') return forbidden(actor, 'lock this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const stateRefusal = lockStateRefusal(tenant, request.region);
  if (stateRefusal) return stateRefusal;
  const active = usableKeyOf(tenant.regions[request.region])!;
  if (request.confirm !== tenant.displayName) return tenantNameMismatch();
  const proofRefusal = checkPossession(tenant, request, active, now, usedChallenges);
  if (proofRefusal) return proofRefusal;
  return lockTimingRefusal(tenant, request.region, now, policy);
}

export const tenantNameMismatch = (): Refusal => refuse('TENANT_NAME_MISMATCH', `--confirm must be the tenant's display name exactly, as it is written (case and spaces included).`);

/** R11 and R10 for a lock of one region: none of its environments still Locked, and an active key to lock with. */
export function lockStateRefusal(tenant: TenantSnapshot, regionId: string): Refusal | null {
  const locked = lockedEnvironments(tenant, regionId);
  if (locked.length > 0) {
    return refuse('LOCKED_ENVIRONMENTS_EXIST', `${locked.length} environment(s) of this tenant in region ${regionId} are still locked; unlock them (or wait for their deletion) before locking again.`);
  }
  if (!usableKeyOf(tenant.regions[regionId])) return refuse('KEY_NOT_ACTIVE', `The tenant has no active key in region ${regionId}; there is nothing to lock with.`);
  return null;
}

/** R6's embargo for a lock of one region, then anything still running there. */
export function lockTimingRefusal(tenant: TenantSnapshot, regionId: string, now: number, policy: Policy): Refusal | null {
  const allowedAt = lockAllowedAt(tenant.regions[regionId], policy);
  if (allowedAt !== null && now < allowedAt) {
    return refuse('LOCK_EMBARGO', `The key changed less than ${formatDuration(policy.lockEmbargoMs)} ago; to give the other administrators time to roll the change back, the tenant cannot be locked before ${new Date(allowedAt).toISOString()}.`);
  }
  if (tenant.operations[regionId]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${regionId}: ${tenant.operations[regionId]}.`);
  }
  const busy = tenant.environments.find((e) => e.region === regionId && e.state !== 'Deleted' && (e.state !== 'Online' || e.runningOperation));
  if (busy) return refuse('OPERATION_IN_PROGRESS', `Environment ${busy.id} is busy (${busy.runningOperation ?? busy.state.toLowerCase()}); lock when it is done.`);
  return null;
}

/** `tenant lock --all-regions` (issue 19): one confirmation, a proof per region. */
export interface LockAllRegionsCheck {
  actor: Actor;
  confirm: string;
  locks: Array<{ region: string; proof: PossessionProof | null }>;
}

/**
 * The regions a lock of the whole tenant must cover: every region with a tenant key in use, and every region with
 * environments that are not deleted.
 */
export function regionsToLock(tenant: TenantSnapshot): string[] {
  const withKey = Object.keys(tenant.regions).filter((r) => usableKeyOf(tenant.regions[r]));
  const withEnvironments = tenant.environments.filter((e) => e.state !== 'Deleted').map((e) => e.region);
  return [...new Set([...withKey, ...withEnvironments])].sort();
}

/**
 * `tenant lock --all-regions`: all or none. Every region of `regionsToLock` needs its own proof (each region has its
 * own key), none twice, and each region's lock must pass `checkLock` as it would alone; the first refusal answers,
 * naming its region, and nothing is locked.
 */
export function checkLockAllRegions(tenant: TenantSnapshot, request: LockAllRegionsCheck, now: number, policy: Policy, usedChallenges: ReadonlySet<string> = new Set()): Refusal | null {
  const { actor } = request;
  if (!isAllowed(tenant, actor, 'tenant.lock') || actor.kind !== 'user') return forbidden(actor, 'lock this tenant');
  const needed = regionsToLock(tenant);
  if (needed.length === 0) return refuse('KEY_NOT_ACTIVE', 'The tenant has no key of its own in any region and no environment; there is nothing to lock.');
  const given = request.locks.map((l) => l.region);
  const twice = given.find((r, i) => given.indexOf(r) !== i);
  if (twice !== undefined) return refuse('INVALID_ARGUMENT', `Region ${twice} has more than one proof; give one per region.`);
  const extra = given.find((r) => !needed.includes(r));
  if (extra !== undefined) return refuse('INVALID_ARGUMENT', `Region "${extra}" has nothing to lock for this tenant (no key of its own, no environment).`);
  for (const region of needed) {
    const locked = lockedEnvironments(tenant, region);
    if (locked.length > 0) {
      return refuse('LOCKED_ENVIRONMENTS_EXIST', `${locked.length} environment(s) of this tenant in region ${region} are still locked; unlock them (or wait for their deletion) before locking again.`);
    }
    if (!usableKeyOf(tenant.regions[region])) {
      return refuse('KEY_NOT_ACTIVE', `Region ${region} has environments but no active key of the tenant's: a lock needs one in every region. Lock the other regions one by one (--region), or upload a key for ${region} first.`);
    }
  }
  const missing = needed.find((r) => !given.includes(r));
  if (missing !== undefined) return refuse('KEY_MISMATCH', `No proof of possession was given for region ${missing}; every region's active key must sign its own challenge.`);
  const challenges = request.locks.map((l) => l.proof?.challengeId);
  if (challenges.some((c, i) => c !== undefined && challenges.indexOf(c) !== i)) return refuse('KEY_MISMATCH', 'The same challenge was given for two regions; each region signs its own.');
  for (const lock of request.locks) {
    const refusal = checkLock(tenant, { actor, region: lock.region, confirm: request.confirm, proof: lock.proof }, now, policy, usedChallenges);
    if (refusal) return { ...refusal, message: refusal.message.includes(lock.region) ? refusal.message : `Region ${lock.region}: ${refusal.message}` };
  }
  return null;
}

function checkPossession(tenant: TenantSnapshot, request: LockCheck, active: TenantKey, now: number, usedChallenges: ReadonlySet<string>): Refusal | null {
  const proof = request.proof;
  const mismatch = (why: string) => refuse('KEY_MISMATCH', `The key file does not prove possession of the tenant's active key "${active.name}" (${why}).`);
  if (!proof || proof.verifiedThumbprint === null) return mismatch('its signature does not verify with the active key');
  if (proof.verifiedThumbprint !== active.thumbprint) return mismatch('it is another key');
  const user = request.actor.kind === 'user' ? normaliseEmail(request.actor.email) : '';
  if (proof.tenant !== tenant.tenant || proof.region !== request.region || proof.user !== user || proof.operation !== 'lock') {
    return mismatch('the challenge was issued for another tenant, region, user or operation');
  }
  if (Date.parse(proof.expiresAt) <= now) return mismatch('the challenge expired; run the command again');
  if (usedChallenges.has(proof.challengeId)) return mismatch('the challenge was already used; run the command again');
  return null;
}


/**
 * R9 deletion warnings: 7 days and 1 day before the deletion with the default 28 days, the same fractions of any
 * other retention (a 28-minute retention warns 7 and 1 minutes before).
 */
export function deletionWarningTimes(lockedAtMs: number, retentionMs: number): number[] {
  return [7 / 28, 1 / 28].map((fraction) => lockedAtMs + retentionMs - Math.round(retentionMs * fraction));
}

export interface ReactivateCheck {
  actor: Actor;
  region: string;
  thumbprint: string;
}

/**
 * R10 `key reactivate`: the key a lock withdrew, uploaded again — KEY_MISMATCH for any other. Exempt from R5 and
 * R11 (it is how locked environments come back), and it restarts neither R5 nor R6.
 */
export function checkReactivate(tenant: TenantSnapshot, request: ReactivateCheck): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'key.reactivate')) return forbidden(request.actor, 're-activate the key of this tenant');
  if (!isValidId(request.region)) return refuse('INVALID_ARGUMENT', `"${request.region}" is not a valid region ID.`);
  const key = activeKeyOf(tenant.regions[request.region]);
  if (!key) return refuse('KEY_NOT_ACTIVE', `The tenant has no key in region ${request.region}; there is nothing to re-activate.`);
  if (key.state !== 'Locked') return refuse('ALREADY_EXISTS', `The key "${key.name}" is not locked: it is ${key.state.toLowerCase()}; there is nothing to re-activate.`);
  if (request.thumbprint !== key.thumbprint) {
    return refuse('KEY_MISMATCH', `This is not the key the lock withdrew ("${key.name}", thumbprint ${key.thumbprint}); only that key can be re-activated.`);
  }
  if (tenant.operations[request.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${request.region}: ${tenant.operations[request.region]}.`);
  }
  return null;
}

export interface UnlockCheck {
  actor: Actor;
  env: string;
}

/**
 * R10 `env unlock`, one environment at a time: R12 (its system administrator too), then state — not locked, the key
 * not re-activated (for provider-key environments as well) — then R15's delay, then a running operation.
 */
export function checkUnlock(tenant: TenantSnapshot, request: UnlockCheck, now: number, policy: Policy): Refusal | null {
  const { actor, env: envId } = request;
  if (!isAllowed(tenant, actor, 'env.unlock', envId)) return forbidden(actor, `unlock environment ${envId}`);
  if (!isValidId(envId)) return refuse('INVALID_ARGUMENT', `"${envId}" is not a valid environment ID.`);
  const env = tenant.environments.find((e) => e.id === envId && e.state !== 'Deleted');
  if (!env) return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
  if (env.state !== 'Locked' || !env.lock) return refuse('ALREADY_EXISTS', `Environment ${envId} is not locked.`);
  const key = usableKeyOf(tenant.regions[env.region]);
  if (!key) {
    return refuse('KEY_NOT_ACTIVE', `The tenant's key in region ${env.region} has not been re-activated; upload the same key again with \`cmk key reactivate\` first.`);
  }
  if (env.lock.sealed && env.keyThumbprint !== key.thumbprint) {
    return refuse('KEY_NOT_ACTIVE', `Environment ${envId} was sealed under the key with thumbprint ${env.keyThumbprint}, which is not the re-activated key; it cannot be opened.`);
  }
  const unlockAt = Date.parse(env.lock.lockedAt) + policy.unlockDelayMs;
  if (now < unlockAt) {
    return refuse('UNLOCK_TOO_SOON', `Environment ${envId} was locked less than ${formatDuration(policy.unlockDelayMs)} ago; it can be unlocked from ${new Date(unlockAt).toISOString()}.`);
  }
  if (env.runningOperation || tenant.operations[env.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Another operation is in progress for this tenant in region ${env.region}${tenant.operations[env.region] ? `: ${tenant.operations[env.region]}` : ''}.`);
  }
  return null;
}

export interface EnvironmentDeleteCheck {
  actor: Actor;
  env: string;
  /** The environment's ID typed again: a deletion cannot be undone. */
  confirm: string;
}

/**
 * `env delete` (the reference document: locked environments "not worth unlocking must be deleted", so that R11 stops
 * blocking a new key): a global or service administrator, the environment exists, `--confirm` repeats its ID, it is
 * Locked (any other state: ALREADY_EXISTS, as for an unlock of an environment that is not locked), then a running
 * operation on it or in its region.
 */
export function checkEnvironmentDelete(tenant: TenantSnapshot, request: EnvironmentDeleteCheck): Refusal | null {
  const { actor, env: envId } = request;
  if (!isAllowed(tenant, actor, 'env.delete', envId)) return forbidden(actor, `delete environment ${envId}`);
  if (!isValidId(envId)) return refuse('INVALID_ARGUMENT', `"${envId}" is not a valid environment ID.`);
  const env = tenant.environments.find((e) => e.id === envId && e.state !== 'Deleted');
  if (!env) return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
  // Not quoted: the caller's text could be anything, and refusals are audited.
  if (request.confirm !== envId) return refuse('INVALID_ARGUMENT', `--confirm must repeat the environment's ID (${envId}) exactly: a deletion cannot be undone.`);
  if (env.state !== 'Locked' || !env.lock) {
    return refuse('ALREADY_EXISTS', `Environment ${envId} is not locked (it is ${env.state.toLowerCase()}): only a locked environment can be deleted; its data stays as it is.`);
  }
  if (env.runningOperation || tenant.operations[env.region]) {
    return refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is busy (${env.runningOperation ?? tenant.operations[env.region]}); try again in a moment.`);
  }
  return null;
}

export const BACKUP_ID_PATTERN = ID_PATTERN;

export interface BackupCheck {
  actor: Actor;
  env: string;
  operation: BackupOperation;
  backupId: string | null;
}

/** `env backup` / `env restore`: R12, the environment exists, the backup ID's grammar, then Locked (R8), then busy. */
export function checkBackup(tenant: TenantSnapshot, request: BackupCheck): Refusal | null {
  const { actor, env: envId, operation } = request;
  if (!isAllowed(tenant, actor, `env.${operation}`, envId)) return forbidden(actor, `${operation} environment ${envId}`);
  if (!isValidId(envId)) return refuse('INVALID_ARGUMENT', `"${envId}" is not a valid environment ID.`);
  const env = tenant.environments.find((e) => e.id === envId && e.state !== 'Deleted');
  if (!env) return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
  if (request.backupId !== null && (operation !== 'restore' || !BACKUP_ID_PATTERN.test(request.backupId))) {
    return refuse('INVALID_ARGUMENT', `"${request.backupId}" is not a backup ID (see \`cmk env backup\`'s output).`);
  }
  if (env.state === 'Locked') return refuse('ENVIRONMENT_LOCKED', `Environment ${envId} is locked: it cannot be ${operation === 'backup' ? 'backed up' : 'restored'} until it is unlocked.`);
  if (env.state !== 'Online' || env.runningOperation) return refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is busy (${env.runningOperation ?? env.state.toLowerCase()}); try again when it is back online.`);
  return null;
}

/** The daily purge (R9's safety net) is the provider's own job: only the operator asks for it. */
/** The drift check's findings are recorded by cmk's own worker, which acts as the operator (it only reads the databases). */
export function checkDriftRecord(actor: Actor): Refusal | null {
  return actor.kind === 'operator' ? null : forbidden(actor, 'record a drift check');
}

export function checkPurge(actor: Actor): Refusal | null {
  return actor.kind === 'operator' ? null : forbidden(actor, 'purge locked environments');
}
