/**
 * A small reference model of one tenant in one region, restated from DESIGN.md §3–§4 (R5, R6, R8–R12, R15 and the
 * check order), for the model-based test of the tenant workflow (test/model-lifecycle.test.ts, `npm run fuzz --
 * --model`). It is the oracle: on purpose it reads nothing of domain/rules.ts, so that a rule misread there shows up
 * as a disagreement here. Where DESIGN.md is silent, the comment says which reading the model takes.
 */
import type { ErrorCode } from '../domain/codes';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The default durations of R5, R6, R9 and R15 (R14 lets a deployment change them; the model runs the defaults). */
export const DURATIONS = { keyChange: DAY, embargo: 72 * HOUR, retention: 28 * DAY, unlockDelay: HOUR } as const;

/** Who acts: people by e-mail, or the provider's operator. */
export type Who = 'alice' | 'bob' | 'carol' | 'sam' | 'operator';
export const emailOf = (who: Exclude<Who, 'operator'>): string => `${who}@example.com`;
export type Role = 'global' | 'service';

export interface ModelEnvironment {
  id: string;
  /** Its system administrator (R12), an e-mail. */
  systemAdmin: string | null;
  state: 'Online' | 'Locked' | 'Deleted';
  protection: 'provider' | 'tenant';
  /** The tenant key protecting it (thumbprint), when on the tenant key. */
  key: string | null;
  /** When the lock took it (R9, R15). */
  lockedAt: number | null;
  /** Every row written to it, in order. */
  rows: string[];
}

export interface LifecycleModel {
  now: number;
  displayName: string;
  /** Global and service administrators by e-mail. */
  admins: Record<string, Role>;
  environments: ModelEnvironment[];
  /** Every key the region has had: none may be set again. */
  keysSet: string[];
  active: string | null;
  /** Who made the active key active (a change or a rollback): "another" administrator must roll it back (R6). */
  activeBy: string | null;
  /** A lock withdrew the active key; `key reactivate` brings it back (R10). */
  withdrawn: boolean;
  /** The key the last change replaced, while it can be put back (R6), and until when. */
  rollbackTo: string | null;
  rollbackUntil: number | null;
  /** R5 counts from the last generate or upload; R6 from the last generate, upload or rollback. */
  changedAt: number | null;
  embargoFrom: number | null;
}

export type Request =
  | { kind: 'key.change'; who: Who; key: string }
  | { kind: 'key.rollback'; who: Who }
  | { kind: 'key.reactivate'; who: Who; key: string }
  | { kind: 'env.apply' | 'env.revert' | 'env.rekey' | 'env.unlock'; who: Who; env: string }
  | { kind: 'env.data'; who: Who; env: string; write: string | null }
  /** `proves`: the key the possession proof verified against (null: the signature did not verify). */
  | { kind: 'tenant.lock'; who: Who; confirm: string; proves: string | null }
  | { kind: 'admin.add'; who: Who; email: string; role: Role }
  | { kind: 'admin.remove'; who: Who; email: string };

export type Answer = 'accepted' | ErrorCode;

export function initialModel(now: number, displayName: string, environments: Array<{ id: string; systemAdmin: string | null; rows: string[] }>): LifecycleModel {
  return {
    now,
    displayName,
    admins: { [emailOf('alice')]: 'global', [emailOf('bob')]: 'service' },
    environments: environments.map((e) => ({ ...e, rows: [...e.rows], state: 'Online', protection: 'provider', key: null, lockedAt: null })),
    keysSet: [],
    active: null,
    activeBy: null,
    withdrawn: false,
    rollbackTo: null,
    rollbackUntil: null,
    changedAt: null,
    embargoFrom: null,
  };
}

const isTenantAdmin = (m: LifecycleModel, who: Who): boolean => who !== 'operator' && emailOf(who) in m.admins;
const administers = (m: LifecycleModel, who: Who, env: string): boolean =>
  who !== 'operator' && m.environments.some((e) => e.id === env && e.systemAdmin === emailOf(who));
const anyLocked = (m: LifecycleModel): boolean => m.environments.some((e) => e.state === 'Locked');
const usableKey = (m: LifecycleModel): string | null => (m.withdrawn ? null : m.active);
const rollbackOpen = (m: LifecycleModel): boolean => m.rollbackTo !== null && m.rollbackUntil !== null && m.now < m.rollbackUntil;

/** R12 and §4's table: may `who` ask for this at all? */
function allowed(m: LifecycleModel, r: Request): boolean {
  switch (r.kind) {
    case 'env.data':
      // The operator reads environment data (§4's table); the environment's system administrator too.
      return r.who === 'operator' || isTenantAdmin(m, r.who) || administers(m, r.who, r.env);
    case 'env.apply':
    case 'env.revert':
    case 'env.rekey':
    case 'env.unlock':
      return isTenantAdmin(m, r.who) || administers(m, r.who, r.env);
    default:
      // Key operations, lock, re-activation, rollback and administrators: the tenant's global and service administrators.
      return isTenantAdmin(m, r.who);
  }
}

/** What the control plane must answer, in §4's order: FORBIDDEN → NOT_FOUND → input → state → time. */
export function answer(m: LifecycleModel, r: Request): Answer {
  if (!allowed(m, r)) return 'FORBIDDEN';
  switch (r.kind) {
    case 'key.change':
      if (m.keysSet.includes(r.key)) return 'ALREADY_EXISTS';
      if (anyLocked(m)) return 'LOCKED_ENVIRONMENTS_EXIST'; // R11
      if (m.changedAt !== null && m.now < m.changedAt + DURATIONS.keyChange) return 'KEY_CHANGE_TOO_SOON'; // R5
      return 'accepted';
    case 'key.rollback':
      // R6: *another* administrator; the one who made the change cannot undo it alone.
      if (m.activeBy === emailOf(r.who as Exclude<Who, 'operator'>)) return 'FORBIDDEN';
      // Reading taken: one step back to the tenant's own previous key (not to the provider key), within the embargo.
      if (!rollbackOpen(m)) return 'NOT_FOUND';
      if (anyLocked(m)) return 'LOCKED_ENVIRONMENTS_EXIST';
      return 'accepted';
    case 'key.reactivate':
      if (m.active === null) return 'KEY_NOT_ACTIVE';
      if (!m.withdrawn) return 'ALREADY_EXISTS';
      if (r.key !== m.active) return 'KEY_MISMATCH'; // R10: the same key
      return 'accepted';
    case 'tenant.lock':
      if (anyLocked(m)) return 'LOCKED_ENVIRONMENTS_EXIST';
      if (usableKey(m) === null) return 'KEY_NOT_ACTIVE';
      if (r.confirm !== m.displayName) return 'TENANT_NAME_MISMATCH'; // R8
      if (r.proves !== m.active) return 'KEY_MISMATCH'; // R8: possession of the active key
      if (m.embargoFrom !== null && m.now < m.embargoFrom + DURATIONS.embargo) return 'LOCK_EMBARGO'; // R6
      return 'accepted';
    case 'admin.add':
      return m.admins[r.email] === r.role ? 'ALREADY_EXISTS' : 'accepted';
    case 'admin.remove':
      if (!(r.email in m.admins)) return 'NOT_FOUND';
      // Reading taken: a tenant keeps at least one global or service administrator (an input code).
      if (Object.keys(m.admins).length === 1) return 'INVALID_ARGUMENT';
      if (rollbackOpen(m)) return 'ROLLBACK_WINDOW_OPEN';
      return 'accepted';
    default:
      return environmentAnswer(m, r);
  }
}

function environmentAnswer(m: LifecycleModel, r: Extract<Request, { env: string }>): Answer {
  const env = m.environments.find((e) => e.id === r.env && e.state !== 'Deleted');
  if (!env) return 'NOT_FOUND';
  if (r.kind === 'env.unlock') {
    if (env.state !== 'Locked') return 'ALREADY_EXISTS';
    if (usableKey(m) === null) return 'KEY_NOT_ACTIVE'; // R10: re-activate first
    if (m.now < env.lockedAt! + DURATIONS.unlockDelay) return 'UNLOCK_TOO_SOON'; // R15
    return 'accepted';
  }
  if (env.state === 'Locked') return 'ENVIRONMENT_LOCKED';
  if (r.kind === 'env.apply' && env.protection === 'tenant' && env.key === usableKey(m)) return 'ALREADY_EXISTS';
  if (r.kind === 'env.revert' && env.protection === 'provider') return 'ALREADY_EXISTS';
  if (r.kind === 'env.apply' && usableKey(m) === null) return 'KEY_NOT_ACTIVE';
  return 'accepted';
}

/** The state after an accepted request (R6–R10). */
export function accept(m: LifecycleModel, r: Request): void {
  const onTenantKey = () => m.environments.filter((e) => e.state === 'Online' && e.protection === 'tenant');
  switch (r.kind) {
    case 'key.change':
      // A key the lock withdrew is gone: nothing to roll back to.
      m.rollbackTo = m.active !== null && !m.withdrawn ? m.active : null;
      m.rollbackUntil = m.rollbackTo ? m.now + DURATIONS.embargo : null;
      m.active = r.key;
      m.activeBy = emailOf(r.who as Exclude<Who, 'operator'>);
      m.withdrawn = false;
      m.keysSet.push(r.key);
      m.changedAt = m.now;
      m.embargoFrom = m.now;
      for (const e of onTenantKey()) e.key = r.key; // R7
      return;
    case 'key.rollback':
      // R6 restarts, R5 does not; one step back only.
      m.active = m.rollbackTo;
      m.activeBy = emailOf(r.who as Exclude<Who, 'operator'>);
      m.rollbackTo = null;
      m.rollbackUntil = null;
      m.embargoFrom = m.now;
      for (const e of onTenantKey()) e.key = m.active;
      return;
    case 'key.reactivate':
      m.withdrawn = false; // restarts neither R5 nor R6
      return;
    case 'tenant.lock':
      for (const e of m.environments.filter((x) => x.state !== 'Deleted')) {
        e.state = 'Locked';
        e.lockedAt = m.now;
      }
      m.withdrawn = true;
      m.rollbackTo = null;
      m.rollbackUntil = null;
      return;
    case 'admin.add':
      m.admins[r.email] = r.role;
      return;
    case 'admin.remove':
      delete m.admins[r.email];
      return;
    default:
      acceptOnEnvironment(m, r);
  }
}

function acceptOnEnvironment(m: LifecycleModel, r: Extract<Request, { env: string }>): void {
  const env = m.environments.find((e) => e.id === r.env)!;
  if (r.kind === 'env.apply') Object.assign(env, { protection: 'tenant', key: m.active });
  else if (r.kind === 'env.revert') Object.assign(env, { protection: 'provider', key: null });
  else if (r.kind === 'env.unlock') Object.assign(env, { state: 'Online', lockedAt: null }); // keeps its protection
  else if (r.kind === 'env.data' && r.write !== null) env.rows.push(r.write);
}

/** Time passes: environments locked for the retention are deleted (R9). */
export function advance(m: LifecycleModel, to: number): void {
  m.now = Math.max(m.now, to);
  for (const e of m.environments) {
    if (e.state === 'Locked' && e.lockedAt! + DURATIONS.retention <= m.now) Object.assign(e, { state: 'Deleted', lockedAt: null });
  }
}

/** Every moment at which an answer changes by time alone: a test stays clear of them (its clock is not exact). */
export function deadlines(m: LifecycleModel): number[] {
  const all = [
    m.changedAt === null ? null : m.changedAt + DURATIONS.keyChange,
    m.embargoFrom === null ? null : m.embargoFrom + DURATIONS.embargo,
    m.rollbackUntil,
    ...m.environments.flatMap((e) => (e.lockedAt === null ? [] : [e.lockedAt + DURATIONS.unlockDelay, e.lockedAt + DURATIONS.retention])),
  ];
  return all.filter((t): t is number => t !== null);
}

/** What the test compares with the workflow's state after every request. */
export interface LifecycleView {
  active: string | null;
  withdrawn: boolean;
  admins: string[];
  environments: string[];
}

export function viewOf(m: LifecycleModel): LifecycleView {
  return {
    active: m.active,
    withdrawn: m.withdrawn,
    admins: Object.entries(m.admins).map(([email, role]) => `${email}:${role}`).sort(),
    environments: m.environments.map((e) => environmentLine(e.id, e.state, e.protection, e.key)),
  };
}

/** One environment as a line: `prod Online tenant <thumbprint>`; a deleted one by its state alone. */
export function environmentLine(id: string, state: string, protection: string, key: string | null): string {
  if (state === 'Deleted') return `${id} Deleted`;
  return `${id} ${state} ${protection}${protection === 'tenant' ? ` ${key ?? '?'}` : ''}`;
}
