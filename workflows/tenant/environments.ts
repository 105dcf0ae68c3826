/**
 * The tenant's environments: create, apply / revert / rekey (R7), backup and restore. Each answers with the
 * environment's record; apply, revert and rekey mail the administrators and the environment's system administrator.
 */
import { patched, setHandler } from '@temporalio/workflow';
import { ENVIRONMENT_OPERATION_STATES, updates, type BackupRequest, type BackupResult, type EnvironmentCreateRequest, type EnvironmentOperationRequest } from '../messages';
import { describeActor } from '../../domain/access';
import { normaliseEmail } from '../../domain/ids';
import { activeKeyOf, riskAcceptanceOf, usableKeyOf, type EnvironmentOperation, type EnvironmentRecord } from '../../domain/model';
import { checkBackup, checkEnvironmentCreate, checkEnvironmentOperation } from '../../domain/rules';
import { environmentOperationMail } from '../../domain/notifications';
import { iso, refuseIf, type TenantContext } from './context';
import { retireUnused } from './retirement';

/** Applies accepted since the opt-in record who accepted the risk; histories recorded before replay without it. */
const RISK_ACCEPTANCE_PATCH = 'risk-acceptance';

/** Registers the updates `createEnvironment` and `environmentOperation` (apply, revert, rekey). */
export function registerEnvironments(ctx: TenantContext): void {
  const { tenant, provisioning } = ctx;
  /** An apply's audit record says whether it carried the opt-in, and who accepted the risk for the tenant. */
  const applyFacts = (r: EnvironmentOperationRequest) =>
    r.operation === 'apply' ? { details: { acceptRisk: r.acceptRisk === true, riskAcceptedBy: riskAcceptanceOf(tenant)?.by ?? null } } : {};

  setHandler(
    updates.createEnvironment,
    ctx.audited<EnvironmentCreateRequest, EnvironmentRecord>('env.create', (r, env) => ({ region: r.region, environment: r.env, ...(env ? { thumbprints: [env.keyThumbprint] } : {}) }), async (request) => {
      provisioning.add(request.env);
      try {
        return await ctx.exclusively(async () => {
          const created = await ctx.inRegion(request.region).provisionEnvironmentDatabase({ tenant: tenant.tenant, env: request.env, region: request.region });
          const record: EnvironmentRecord = {
            id: request.env,
            region: request.region,
            state: 'Online',
            protection: created.protection,
            keyThumbprint: created.keyThumbprint,
            systemAdmin: request.systemAdmin === null ? null : normaliseEmail(request.systemAdmin),
            createdAt: iso(Date.now()),
          };
          tenant.environments.push(record);
          ctx.publishSearchAttributes();
          return record;
        });
      } finally {
        provisioning.delete(request.env);
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.createEnvironment.name, request);
        const pending = [...provisioning].map((id) => ({ id }) as EnvironmentRecord);
        refuseIf(checkEnvironmentCreate({ ...tenant, environments: [...tenant.environments, ...pending] }, request));
      },
    },
  );

  setHandler(
    updates.environmentOperation,
    ctx.audited<EnvironmentOperationRequest, EnvironmentRecord>((r) => `env.${r.operation}`, (r, env) => ({ environment: r.env, ...(env ? { region: env.region, thumbprints: [env.keyThumbprint] } : {}), ...applyFacts(r) }), async (request) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      if (request.operation === 'apply' && request.acceptRisk === true && !riskAcceptanceOf(tenant) && patched(RISK_ACCEPTANCE_PATCH)) {
        // The opt-in, once for the tenant: who and when, kept across continue-as-new (issue 19).
        tenant.riskAcceptance = { by: describeActor(request.actor), at: iso(Date.now()) };
      }
      // Marked before the first await: a different request for this environment answers OPERATION_IN_PROGRESS,
      // the same one (same update ID, see environmentOperationUpdateId) attaches to this one.
      env.state = ENVIRONMENT_OPERATION_STATES[request.operation];
      env.operationSeq = (env.operationSeq ?? 0) + 1;
      env.runningOperation = request.operation;
      try {
        return await ctx.exclusively(() => environmentOperation(ctx, request));
      } finally {
        env.state = 'Online';
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.environmentOperation.name, request);
        refuseIf(checkEnvironmentOperation(tenant, request));
      },
    },
  );
}

/**
 * Registers the update `environmentBackup` (backup, restore). Separate from `registerEnvironments` because the order
 * of registration is the order in which updates buffered at a run's start reach their handlers: it stays as the
 * recorded histories have it (after the lock's updates).
 */
export function registerBackups(ctx: TenantContext): void {
  const { tenant } = ctx;
  setHandler(
    updates.environmentBackup,
    ctx.audited<BackupRequest, BackupResult>((r: BackupRequest) => `env.${r.operation}`, (r: BackupRequest) => ({ environment: r.env, details: { backupId: r.backupId } }), async (request: BackupRequest) => {
      const env = tenant.environments.find((e) => e.id === request.env)!;
      env.runningOperation = request.operation;
      try {
        return await ctx.exclusively(async () => {
          const ids = { tenant: tenant.tenant, env: env.id };
          if (request.operation === 'backup') return { environment: env, backup: await ctx.inRegion(env.region).backupEnvironment(ids) };
          const backup = await ctx.inRegion(env.region).restoreEnvironment({ ...ids, backupId: request.backupId });
          if (env.protection === 'tenant') {
            // The restored DEK may be one the provider once held (a backup from before the apply): a new DEK, every
            // page re-encrypted, so that nothing the provider held opens what is written from now on (R7, §6).
            const done = await ctx.inRegion(env.region).rekeyEnvironmentDatabase(ids);
            env.keyThumbprint = done.keyThumbprint;
          }
          return { environment: env, backup };
        });
      } finally {
        delete env.runningOperation;
      }
    }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.environmentBackup.name, request);
        refuseIf(checkBackup(tenant, request));
      },
    },
  );
}

async function environmentOperation(ctx: TenantContext, request: EnvironmentOperationRequest): Promise<EnvironmentRecord> {
  const { tenant } = ctx;
  const env = tenant.environments.find((e) => e.id === request.env)!;
  const at = () => iso(Date.now());
  const done = await runOnEnvironment(ctx, env, request.operation);
  env.protection = done.protection;
  env.keyThumbprint = done.keyThumbprint;
  ctx.publishSearchAttributes();
  await ctx.notify(
    environmentOperationMail({ operation: request.operation, tenantName: tenant.displayName, env: env.id, thumbprint: env.keyThumbprint, by: describeActor(request.actor), at: at() }),
    env.id,
  );
  // Keys that no record depends on any more, and that no rollback may need, leave the vault.
  const region = tenant.regions[env.region];
  if (region) await retireUnused(ctx, region);
  return env;
}

function runOnEnvironment(ctx: TenantContext, env: EnvironmentRecord, operation: EnvironmentOperation) {
  const { tenant } = ctx;
  const ids = { tenant: tenant.tenant, env: env.id };
  if (operation === 'revert') return ctx.inRegion(env.region).revertToProviderKey.executeWithOptions({ summary: `R7 revert of env ${env.id} to the provider key` }, [{ ...ids, region: env.region }]);
  if (operation === 'rekey') {
    // An environment a refused re-protection left on an older tenant key moves to the active one with its new DEK.
    const active = usableKeyOf(tenant.regions[env.region]);
    const behind = env.protection === 'tenant' && active && active.thumbprint !== env.keyThumbprint && active.state !== 'Locked';
    if (!behind || !patched('rekey-moves-left-behind')) return ctx.inRegion(env.region).rekeyEnvironmentDatabase.executeWithOptions({ summary: `rekey of env ${env.id}: new DEK` }, [ids]);
    return ctx.inRegion(env.region).applyTenantKey.executeWithOptions({ summary: `rekey of env ${env.id} onto the active key "${active.name}"` }, [{ ...ids, tenantKey: { ...active.vaultKey, thumbprint: active.thumbprint } }]);
  }
  const key = activeKeyOf(tenant.regions[env.region])!;
  return ctx.inRegion(env.region).applyTenantKey.executeWithOptions({ summary: `R7 apply of key "${key.name}" to env ${env.id}` }, [{ ...ids, tenantKey: { ...key.vaultKey, thumbprint: key.thumbprint } }]);
}
