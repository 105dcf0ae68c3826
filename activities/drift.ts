/**
 * The drift check's reading side: what each environment's database records as its protector (the SQLite key record;
 * on SQL Server the key record checked against sys.dm_database_encryption_keys) and whether the vault still holds
 * that key, compared (domain/drift.ts) with what the tenant workflow believes. Reads only; the findings go to the
 * tenant workflow, which keeps them for `env list`, mails a new drift once and audits it.
 */
import { findDrift, isSettling, type ObservedProtector } from '../domain/drift';
import { KeyRecordDisagreement, type EnvironmentDatabases } from '../database/types';
import type { Vault } from '../vault/types';
import type { EnvironmentRecord, TenantSnapshot } from '../domain/model';
import type { DriftFinding, DriftRecordRequest, DriftRecordResult } from '../workflows/messages';

/** How the drift check reaches the tenant workflows (the client library); undefined for a tenant whose workflow is gone. */
export interface DriftDirectory {
  runningTenants(): Promise<string[]>;
  snapshot(tenant: string): Promise<TenantSnapshot | undefined>;
  recordDrift(tenant: string, request: Pick<DriftRecordRequest, 'checkedAt' | 'findings' | 'operators'>): Promise<DriftRecordResult | undefined>;
}

/** Where the check counts what it found (the worker's Prometheus endpoint, worker/telemetry.ts); absent in tests. */
export interface DriftMetrics {
  recorded(result: DriftRecordResult): void;
}

export function createDriftActivities({
  databases,
  vault,
  drift,
  operatorEmails = [],
  driftMetrics,
  inRegion,
}: {
  databases: EnvironmentDatabases;
  vault: Vault;
  /** Each region's vault and databases (R1), as the API service reads them; absent: this worker's own serve every region. */
  inRegion?: (region: string) => { vault: Vault; databases: EnvironmentDatabases };
  drift?: DriftDirectory;
  operatorEmails?: string[];
  driftMetrics?: DriftMetrics;
}) {
  async function observe(tenant: string, env: string, region: string): Promise<ObservedProtector> {
    const parts = inRegion ? inRegion(region) : { vault, databases };
    let record;
    try {
      record = await parts.databases.describe(tenant, env);
    } catch (err) {
      // The database contradicts its own key record: that is drift. Any other fault (an outage) is retried.
      if (err instanceof KeyRecordDisagreement) return { unreadable: err.message };
      throw err;
    }
    if (!record) return {};
    const key = await parts.vault.getKey({ name: record.protector.name, version: record.protector.version });
    return { protector: record.protector, ...(key ? { vaultKey: { thumbprint: key.thumbprint, enabled: key.enabled } } : {}) };
  }

  return {
    /** Every tenant whose workflow runs: the Schedule's pass checks them one by one. */
    async driftTenants(): Promise<string[]> {
      if (!drift) throw new Error('The drift check needs a Temporal client to reach the tenant workflows; this worker was built without one.');
      return drift.runningTenants();
    },

    /** One tenant's environments read and compared, the findings recorded by its workflow; undefined when it has none. */
    async checkTenantDrift(input: { tenant: string; checkedAt: string }): Promise<DriftRecordResult | undefined> {
      if (!drift) throw new Error('The drift check needs a Temporal client to reach the tenant workflows; this worker was built without one.');
      const snapshot = await drift.snapshot(input.tenant);
      if (!snapshot) return undefined;
      const findings: DriftFinding[] = [];
      for (const env of snapshot.environments) {
        findings.push({ env: env.id, believed: { state: env.state, protection: env.protection, keyThumbprint: env.keyThumbprint }, differences: await compare(input.tenant, env) });
      }
      const result = await drift.recordDrift(input.tenant, { checkedAt: input.checkedAt, findings, operators: operatorEmails });
      if (result) driftMetrics?.recorded(result);
      return result;
    },
  };

  async function compare(tenant: string, env: EnvironmentRecord) {
    return isSettling(env.state) ? [] : findDrift(env, await observe(tenant, env.id, env.region));
  }
}
