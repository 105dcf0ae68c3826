/**
 * Who acts and what they may do (R12): actors, the actions the control plane answers, and who receives the mail of R4.
 * Pure: no Node APIs, no I/O.
 */
import { normaliseEmail } from './ids';
import type { AdminRole, TenantSnapshot } from './model';

/** Who acts: the provider operator, or a person by e-mail. */
export type Actor = { kind: 'operator' } | { kind: 'user'; email: string };
export const OPERATOR: Actor = { kind: 'operator' };
export const describeActor = (actor: Actor): string => (actor.kind === 'operator' ? 'operator' : actor.email);

// ---------------------------------------------------------------------------------------------- R12 privileges

/** Every request the control plane answers, named as the CLI names it. */
export type Action =
  | 'tenant.create'
  | 'tenant.show'
  | 'tenant.admin'
  | 'tenant.lock'
  | 'tenant.policy'
  | 'env.create'
  | 'env.list'
  | 'env.data'
  | 'env.apply'
  | 'env.revert'
  | 'env.rekey'
  | 'env.unlock'
  | 'env.delete'
  | 'env.backup'
  | 'env.restore'
  | 'key.change'
  | 'key.kek'
  | 'key.show'
  | 'key.rollback'
  | 'key.reactivate'
  | 'mail.list'
  | 'drift.check'
  | 'audit';

export const ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'tenant.create', 'tenant.show', 'tenant.admin', 'tenant.lock', 'tenant.policy', 'env.create', 'env.list', 'env.data', 'env.apply', 'env.revert', 'env.rekey',
  'env.unlock', 'env.delete', 'env.backup', 'env.restore', 'key.change', 'key.kek', 'key.show', 'key.rollback', 'key.reactivate', 'mail.list', 'drift.check', 'audit',
]);

// The operator also reads and verifies the audit trail, and sees a tenant's administrators and environment counts
// (`tenant show`), and runs the drift check (`drift check`, which only reads): extensions of §4's table, none a key operation.
const OPERATOR_ACTIONS: ReadonlySet<Action> = new Set<Action>(['tenant.create', 'tenant.show', 'env.create', 'env.list', 'env.data', 'mail.list', 'drift.check', 'audit']);
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

/** What R12 reads of a tenant: its administrators and who administers each environment (the console has only this). */
export interface Administration {
  admins: ReadonlyArray<{ email: string; role: AdminRole }>;
  environments: ReadonlyArray<{ id: string; systemAdmin: string | null }>;
}

export function tenantAdminRole(tenant: Pick<Administration, 'admins'> | undefined, actor: Actor): AdminRole | null {
  if (!tenant || actor.kind !== 'user') return null;
  return tenant.admins.find((a) => a.email === normaliseEmail(actor.email))?.role ?? null;
}

export function administeredEnvironments(tenant: Pick<Administration, 'environments'> | undefined, actor: Actor): string[] {
  if (!tenant || actor.kind !== 'user') return [];
  const email = normaliseEmail(actor.email);
  return tenant.environments.filter((e) => e.systemAdmin === email).map((e) => e.id);
}

/**
 * R12. `tenant` is undefined when the tenant does not exist (then only the operator may go on, to NOT_FOUND).
 * `envId` names the environment of an environment-scoped request.
 */
export function isAllowed(tenant: Administration | undefined, actor: Actor, action: Action, envId?: string): boolean {
  if (actor.kind === 'operator') return OPERATOR_ACTIONS.has(action);
  if (action === 'tenant.create') return false;
  if (tenantAdminRole(tenant, actor)) return true;
  const mine = administeredEnvironments(tenant, actor);
  if (mine.length === 0) return false;
  if (SYSTEM_ADMIN_TENANT_ACTIONS.has(action)) return true;
  return SYSTEM_ADMIN_ENV_ACTIONS.has(action) && envId !== undefined && mine.includes(envId);
}

/** Mail recipients of R4: every global and service administrator, plus the environment's system administrator. */
export function notificationRecipients(tenant: Pick<TenantSnapshot, 'admins' | 'environments'>, envIds?: string | readonly string[]): string[] {
  const recipients = new Set(tenant.admins.map((a) => a.email));
  const concerned = new Set(typeof envIds === 'string' ? [envIds] : (envIds ?? []));
  for (const env of tenant.environments) if (concerned.has(env.id) && env.systemAdmin) recipients.add(env.systemAdmin);
  return [...recipients].sort();
}

/**
 * The system administrators of the environments concerned who are not also global or service administrators, each
 * with their own environments only (mail that must not list another's environments).
 */
export function systemAdminsOf(tenant: Pick<TenantSnapshot, 'admins' | 'environments'>, envIds: readonly string[]): Array<{ email: string; envs: string[] }> {
  const admins = new Set(tenant.admins.map((a) => a.email));
  const concerned = new Set(envIds);
  const byAdmin = new Map<string, string[]>();
  for (const env of tenant.environments) {
    if (!concerned.has(env.id) || !env.systemAdmin || admins.has(env.systemAdmin)) continue;
    const envs = byAdmin.get(env.systemAdmin) ?? [];
    envs.push(env.id);
    byAdmin.set(env.systemAdmin, envs);
  }
  return [...byAdmin].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([email, envs]) => ({ email, envs }));
}
