/**
 * cmk's Schedules (the daily R9 purge, the mail retry pass, the hourly drift check) are made by every worker at
 * start, and never changed afterwards: an operator may have paused one or changed its interval in the Temporal UI.
 * Each is described once (client/*-schedule.ts) and made here, the same way.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { Duration } from '@temporalio/common';

/** Creates the Schedule when it does not exist; an existing one is left as it is. */
export async function ensureSchedule(temporal: Client, schedule: ScheduleOptions): Promise<'created' | 'exists'> {
  try {
    await temporal.schedule.create(schedule);
    return 'created';
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return 'exists';
    throw err;
  }
}

/** One of cmk's Schedules: a workflow started every `everyMs`, never two at once. */
export interface CmkSchedule {
  scheduleId: string;
  workflowType: string;
  workflowId: string;
  args: unknown[];
  everyMs: number;
  /** How far back a pass missed while the workers were down is still made up. */
  catchupWindow: Duration;
  /** The Schedule's note in the Temporal UI. */
  note: string;
  /** Each run's row in the Temporal UI. */
  summary?: string;
}

export function ensureCmkSchedule(temporal: Client, taskQueue: string, s: CmkSchedule): Promise<'created' | 'exists'> {
  return ensureSchedule(temporal, {
    scheduleId: s.scheduleId,
    spec: { intervals: [{ every: s.everyMs }] },
    action: { type: 'startWorkflow', workflowType: s.workflowType, taskQueue, workflowId: s.workflowId, args: s.args, ...(s.summary ? { staticSummary: s.summary } : {}) },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: s.catchupWindow },
    state: { note: s.note },
  });
}
