/**
 * The daily purge of locked environments past their R9 deadline, started by the Schedule `cmk-purge-locked-environments`
 * (created at stack start, visible in the Temporal UI). Its result is the report of what it did.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PurgeReport } from '../activities/purge';

const { purgeOverdueEnvironments } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 10 },
});

export async function purgeLockedEnvironmentsWorkflow(): Promise<PurgeReport> {
  return purgeOverdueEnvironments();
}
