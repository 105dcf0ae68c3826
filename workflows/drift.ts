/**
 * The drift check: every running tenant hourly from the Schedule `cmk-drift-check`, or one tenant now (`cmk drift
 * check`). Each tenant is read and compared by an activity (activities/drift.ts, domain/drift.ts) and its findings
 * recorded by its own workflow, which mails a new drift once. Its result is the report of what it found.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DriftCheckReport, DriftRecordResult } from './messages';

const { driftTenants, checkTenantDrift } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 5 },
});

export async function driftCheckWorkflow(input: { tenant?: string } = {}): Promise<DriftCheckReport> {
  const checkedAt = new Date(Date.now()).toISOString();
  const tenants = input.tenant ? [input.tenant] : await driftTenants();
  const results: DriftRecordResult[] = [];
  for (const tenant of tenants) {
    const result = await checkTenantDrift({ tenant, checkedAt });
    if (result) results.push(result);
  }
  return { checkedAt, tenants: results };
}
