/**
 * The drift check's findings (workflows/drift.ts) kept where `env list` reads them, and told once: a drift found for
 * the first time (or changed) is mailed to the administrators, the environment's system administrator and the
 * operators, and audited; the same drift found again an hour later changes only when it was last seen. A finding
 * without differences clears the environment's drift (audited as resolved); one about a belief that changed since the
 * check read it (an operation started meanwhile) is dropped. Nothing here repairs anything.
 *
 * No recorded history holds this update: its mail and audit commands appear only in runs that receive it, so the
 * handler needs no patch (as `refreshTrust`).
 */
import { setHandler } from '@temporalio/workflow';
import { updates, type DriftRecordRequest, type DriftRecordResult } from '../messages';
import { checkDriftRecord } from '../../domain/rules';
import { describeDrift, driftSignature } from '../../domain/drift';
import { driftDetectedMail } from '../../domain/notifications';
import { refuseIf, type TenantContext } from './context';

export function registerDrift(ctx: TenantContext): void {
  const { tenant } = ctx;
  setHandler(
    updates.recordDrift,
    (request: DriftRecordRequest): Promise<DriftRecordResult> =>
      ctx.exclusively(async () => {
        const drift = (tenant.drift ??= {});
        const newlyFound: string[] = [];
        for (const { env, believed, differences } of request.findings) {
          // An operation that started after the check read its snapshot (apply, revert, a re-protection) changed the
          // database legitimately: that finding says nothing, either way; the next check reads the new state.
          const now = tenant.environments.find((e) => e.id === env);
          if (now && (now.state !== believed.state || now.protection !== believed.protection || now.keyThumbprint !== believed.keyThumbprint)) continue;
          const known = drift[env];
          if (differences.length === 0) {
            if (known) {
              delete drift[env];
              await ctx.audit('env.drift.resolved', 'cmk', 'completed', { environment: env, details: { was: known.summary.slice(0, 400) } });
            }
            continue;
          }
          const signature = driftSignature(differences);
          if (known?.signature === signature) {
            known.checkedAt = request.checkedAt;
            continue;
          }
          const summary = describeDrift(differences);
          drift[env] = { foundAt: request.checkedAt, checkedAt: request.checkedAt, summary, differences, signature };
          newlyFound.push(env);
          await ctx.audit('env.drift', 'cmk', 'completed', { environment: env, details: { kinds: differences.map((d) => d.kind).join(','), summary: summary.slice(0, 400) } });
        }
        if (newlyFound.length) {
          const drifts = newlyFound.map((env) => ({ env, summary: drift[env]!.summary }));
          await ctx.notify(driftDetectedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, drifts, at: request.checkedAt }), newlyFound, undefined, request.operators);
        }
        if (Object.keys(drift).length === 0) delete tenant.drift;
        const drifting = Object.entries(tenant.drift ?? {}).map(([env, d]) => ({ env, ...d }));
        return { tenant: tenant.tenant, drifting, newlyFound };
      }),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.recordDrift.name, request);
        refuseIf(checkDriftRecord(request.actor));
      },
    },
  );
}
