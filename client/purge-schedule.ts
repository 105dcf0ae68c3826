/**
 * The Schedule that runs the purge of locked environments past their R9 deadline (workflows/purge.ts) every day:
 * a safety net beside each tenant workflow's own timers, visible (and pausable) in the Temporal UI.
 */
import type { Client } from '@temporalio/client';
import { ensureCmkSchedule } from './schedules';
import { PURGE_SCHEDULE_ID, PURGE_WORKFLOW_TYPE } from '../workflows/messages';

export const DEFAULT_PURGE_INTERVAL_MS = 24 * 3_600_000;

/** Each purge run's row in the Temporal UI (decoded by the codec endpoint like every payload). */
export const PURGE_SUMMARY = 'R9 purge: locked environments past their deletion deadline, every tenant';

/**
 * Creates the Schedule when it does not exist. An existing one is left as it is: an operator may have paused it or
 * changed its interval in the UI, and every worker of a deployment calls this at start.
 */
export async function ensurePurgeSchedule(temporal: Client, options: { taskQueue: string; intervalMs?: number }): Promise<'created' | 'exists'> {
  return ensureCmkSchedule(temporal, options.taskQueue, {
    scheduleId: PURGE_SCHEDULE_ID,
    workflowType: PURGE_WORKFLOW_TYPE,
    workflowId: 'cmk-purge',
    args: [],
    everyMs: options.intervalMs ?? DEFAULT_PURGE_INTERVAL_MS,
    catchupWindow: '1 day',
    note: 'Deletes locked environments past their deadline (R9) that a tenant timer missed. Created by cmk.',
    summary: PURGE_SUMMARY,
  });
}
