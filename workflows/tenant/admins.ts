/** The tenant's administrators (R12): added or removed, every administrator told (R4), the removed one too. */
import { setHandler } from '@temporalio/workflow';
import { updates, type AdminChangeRequest, type AdminChangeResult } from '../messages';
import { describeActor } from '../../domain/access';
import { normaliseEmail } from '../../domain/ids';
import { checkAdminChange } from '../../domain/rules';
import { adminChangedMail } from '../../domain/notifications';
import { iso, refuseIf, type TenantContext } from './context';

/** Registers the update `changeAdmin`. */
export function registerAdmins(ctx: TenantContext): void {
  const { tenant } = ctx;
  setHandler(
    updates.changeAdmin,
    ctx.audited<AdminChangeRequest, AdminChangeResult>('tenant.admin', (r) => ({ details: { change: r.change, email: normaliseEmail(r.email), role: r.role } }), (request) =>
      ctx.exclusively(async () => {
        const email = normaliseEmail(request.email);
        const at = iso(Date.now());
        const before = tenant.admins.find((a) => a.email === email);
        let role = request.role ?? before?.role ?? 'global';
        if (request.change === 'add') {
          tenant.admins = [...tenant.admins.filter((a) => a.email !== email), { email, role }];
        } else {
          role = before?.role ?? role;
          // The removed administrator is told too: they should know they lost access.
          await ctx.notify(adminChangedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, change: 'removed', email, role, by: describeActor(request.actor), at }));
          tenant.admins = tenant.admins.filter((a) => a.email !== email);
          return { admins: tenant.admins };
        }
        await ctx.notify(adminChangedMail({ tenantName: tenant.displayName, tenant: tenant.tenant, change: 'added', email, role, by: describeActor(request.actor), at }));
        return { admins: tenant.admins };
      }),
    ),
    {
      validator: (request) => {
        ctx.refuseUnsigned(updates.changeAdmin.name, request);
        refuseIf(checkAdminChange(tenant, request, Date.now()));
      },
    },
  );
}
