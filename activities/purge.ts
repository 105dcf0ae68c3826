/**
 * R9's safety net, run daily by a Temporal Schedule: every environment the database engine holds offline past its
 * deadline is deleted. Normally the tenant workflow's own timer has done it already and there is nothing to do; the
 * pass exists for what a timer missed — above all a tenant workflow that is no longer running (terminated by
 * mistake, failed), which no timer of its own will ever wake again.
 */
import type { EnvironmentDatabases } from '../database/types';
import type { PurgeResult } from '../workflows/messages';

/** How the purge reaches the tenant workflows: the client library, or undefined for a tenant whose workflow is gone. */
export interface TenantDirectory {
  purgeOverdue(tenant: string): Promise<PurgeResult | undefined>;
}

export interface PurgeReport {
  checkedAt: string;
  /** Environments offline (locked) in the engine when the pass began. */
  offline: number;
  /** Deleted by this pass, through their tenant workflow (which records and mails it) or directly. */
  deleted: Array<{ tenant: string; env: string; deleteAt: string; by: 'tenant-workflow' | 'purge' }>;
  /** Tenants whose workflow is not running: their overdue environments were destroyed directly, without mail. */
  orphanedTenants: string[];
}

export function createPurgeActivities({ databases, tenants }: { databases: EnvironmentDatabases; tenants?: TenantDirectory }) {
  return {
    async purgeOverdueEnvironments(): Promise<PurgeReport> {
      if (!tenants) throw new Error('The purge needs a Temporal client to reach the tenant workflows; this worker was built without one.');
      const now = Date.now();
      const offline = await databases.listOffline();
      const overdue = offline.filter((o) => Date.parse(o.deleteAt) <= now);
      const report: PurgeReport = { checkedAt: new Date(now).toISOString(), offline: offline.length, deleted: [], orphanedTenants: [] };
      for (const tenant of [...new Set(overdue.map((o) => o.tenant))].sort()) {
        const mine = overdue.filter((o) => o.tenant === tenant);
        const result = await tenants.purgeOverdue(tenant);
        if (result) {
          for (const env of result.deleted) report.deleted.push({ tenant, env, deleteAt: mine.find((o) => o.env === env)?.deleteAt ?? '', by: 'tenant-workflow' });
          continue;
        }
        // No workflow answers for this tenant: nobody else will ever delete these, so the purge does (crypto-shredding).
        report.orphanedTenants.push(tenant);
        for (const o of mine) {
          await databases.destroy(tenant, o.env);
          report.deleted.push({ tenant, env: o.env, deleteAt: o.deleteAt, by: 'purge' });
        }
      }
      return report;
    },
  };
}
