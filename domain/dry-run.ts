/**
 * Dry runs (issue 19): what a key change, rollback, apply, revert or lock would do to a tenant, read from its
 * snapshot — the environments it would touch, those that would go offline, and the mail it would send — without
 * doing it. The environments are those the workflow itself picks (model.ts `reprotectionTargets`, `lockTargets`),
 * the recipients those it addresses (access.ts `notificationRecipients`); whether it would be refused is answered by
 * the same checks of rules.ts, run by the API service before it plans.
 */
import { notificationRecipients } from './access';
import { environmentOperationEvent, type MailEvent } from './notifications';
import { lockTargets, reprotectionTargets, usableKeyOf, type EnvironmentRecord, type EnvironmentState, type Protection, type TenantSnapshot } from './model';
import type { Refusal } from './rules';

export type DryRunOperation = 'key.generate' | 'key.upload' | 'key.rollback' | 'env.apply' | 'env.revert' | 'tenant.lock';

/** What each operation is, in the words the CLI's and the console's reports use ("the real command would … "). */
export const DRY_RUN_WHAT: Readonly<Record<DryRunOperation, string>> = {
  'key.generate': 'generate a key',
  'key.upload': 'upload the key',
  'key.rollback': 'roll back the key',
  'env.apply': 'apply the tenant key',
  'env.revert': 'revert to the provider key',
  'tenant.lock': 'lock the tenant',
};

/** An environment's protection: `keyThumbprint` null for a key not made yet (generate) or not known here (the provider key, a .byok). */
export interface PlannedProtection {
  state: EnvironmentState;
  protection: Protection;
  keyThumbprint: string | null;
}

export interface PlannedEnvironment {
  id: string;
  from: PlannedProtection;
  to: PlannedProtection;
  goesOffline: boolean;
}

export interface PlannedMail {
  event: MailEvent;
  to: string[];
}

export interface Plan {
  environments: PlannedEnvironment[];
  mails: PlannedMail[];
}

export interface DryRunReport extends Plan {
  dryRun: true;
  operation: DryRunOperation;
  tenant: string;
  region: string;
  wouldSucceed: boolean;
  refusal: Refusal | null;
}

/** A refused request changes nothing: its report lists no environment and no mail. */
export function dryRunReport(operation: DryRunOperation, tenant: string, region: string, outcome: { refusal: Refusal } | { plan: Plan }): DryRunReport {
  if ('refusal' in outcome) return { dryRun: true, operation, tenant, region, wouldSucceed: false, refusal: outcome.refusal, environments: [], mails: [] };
  return { dryRun: true, operation, tenant, region, wouldSucceed: true, refusal: null, ...outcome.plan };
}

const now = (env: EnvironmentRecord): PlannedProtection => ({ state: env.state, protection: env.protection, keyThumbprint: env.keyThumbprint });

/**
 * A new active key (generate, upload) or the replaced key put back (rollback): every environment on the tenant key
 * is re-protected with it (R7), online throughout. Either is mailed to the administrators and, each in a mail of
 * their own, to the system administrators of the environments it re-protects (workflows/tenant/keys.ts).
 */
export function planKeyChange(tenant: TenantSnapshot, region: string, kind: 'change' | 'rollback', newThumbprint: string | null): Plan {
  const targets = reprotectionTargets(tenant, region);
  return {
    environments: targets.map((e) => ({ id: e.id, from: now(e), to: { state: 'Online', protection: 'tenant', keyThumbprint: newThumbprint }, goesOffline: false })),
    mails: [{ event: kind === 'change' ? 'key-changed' : 'key-rolled-back', to: notificationRecipients(tenant, targets.map((e) => e.id)) }],
  };
}

/** The key a rollback would put back (R6): the one the last change replaced. */
export function rollbackThumbprint(tenant: TenantSnapshot, region: string): string | null {
  return tenant.regions[region]?.rollbackThumbprint ?? null;
}

/** R7 apply or revert of one environment: it stays online; mailed to the administrators and its system administrator. */
export function planEnvironmentOperation(tenant: TenantSnapshot, env: EnvironmentRecord, operation: 'apply' | 'revert'): Plan {
  const to: PlannedProtection =
    operation === 'apply' ? { state: 'Online', protection: 'tenant', keyThumbprint: usableKeyOf(tenant.regions[env.region])?.thumbprint ?? null } : { state: 'Online', protection: 'provider', keyThumbprint: null };
  return { environments: [{ id: env.id, from: now(env), to, goesOffline: false }], mails: [{ event: environmentOperationEvent(operation), to: notificationRecipients(tenant, env.id) }] };
}

/** R8: every environment of the region goes offline and Locked (sealed when on the tenant key); mailed to all concerned. */
export function planLock(tenant: TenantSnapshot, region: string): Plan {
  const targets = lockTargets(tenant, region);
  return {
    environments: targets.map((e) => ({ id: e.id, from: now(e), to: { state: 'Locked', protection: e.protection, keyThumbprint: e.keyThumbprint }, goesOffline: true })),
    mails: [{ event: 'tenant-locked', to: notificationRecipients(tenant, targets.map((e) => e.id)) }],
  };
}
