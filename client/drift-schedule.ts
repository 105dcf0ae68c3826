/**
 * The Schedule that runs the drift check (workflows/drift.ts) over every tenant, hourly unless CMK_DRIFT_CHECK_INTERVAL
 * says otherwise. Visible, and pausable, in the Temporal UI.
 */
import type { Client } from '@temporalio/client';
import { ensureCmkSchedule } from './schedules';
import { DRIFT_SCHEDULE_ID, DRIFT_WORKFLOW_TYPE } from '../workflows/messages';

export const DEFAULT_DRIFT_CHECK_INTERVAL_MS = 3_600_000;

/** Creates the Schedule when it does not exist; an existing one (perhaps paused by an operator) is left as it is. */
export async function ensureDriftSchedule(temporal: Client, options: { taskQueue: string; intervalMs?: number }): Promise<'created' | 'exists'> {
  return ensureCmkSchedule(temporal, options.taskQueue, {
    scheduleId: DRIFT_SCHEDULE_ID,
    workflowType: DRIFT_WORKFLOW_TYPE,
    workflowId: DRIFT_SCHEDULE_ID,
    args: [{}],
    everyMs: options.intervalMs ?? DEFAULT_DRIFT_CHECK_INTERVAL_MS,
    // A pass missed while the workers were down is simply the next one.
    catchupWindow: '1 hour',
    note: 'Compares every environment’s database and vault with what cmk believes; reads only. Created by cmk.',
  });
}
