/**
 * The Schedule that retries mail a provider outage left pending (workflows/mail.ts) every minute; each mail's own
 * backoff (1 minute doubling to an hour, for 7 days) decides whether a pass tries it. Visible, and pausable, in the
 * Temporal UI. A Schedule rather than timers in each tenant workflow: the outage is the provider's, not a tenant's,
 * so one pass serves every tenant, and the tenant workflows' histories (and their recorded replays) stay as they are.
 */
import type { Client } from '@temporalio/client';
import { ensureCmkSchedule } from './schedules';
import { MAIL_RETRY_SCHEDULE_ID, MAIL_RETRY_WORKFLOW_TYPE } from '../workflows/messages';

export const MAIL_RETRY_INTERVAL_MS = 60_000;

/** Creates the Schedule when it does not exist; an existing one (perhaps paused by an operator) is left as it is. */
export async function ensureMailRetrySchedule(temporal: Client, options: { taskQueue: string; intervalMs?: number }): Promise<'created' | 'exists'> {
  return ensureCmkSchedule(temporal, options.taskQueue, {
    scheduleId: MAIL_RETRY_SCHEDULE_ID,
    workflowType: MAIL_RETRY_WORKFLOW_TYPE,
    workflowId: MAIL_RETRY_SCHEDULE_ID,
    args: [{}],
    everyMs: options.intervalMs ?? MAIL_RETRY_INTERVAL_MS,
    // A pass missed while the workers were down is simply the next one: no catch-up of many.
    catchupWindow: '2 minutes',
    note: 'Delivers mail a provider outage left pending, with backoff, for 7 days. Created by cmk.',
  });
}
