/**
 * cmk's Schedules (the daily R9 purge, the mail retry pass) are made by every worker at start, and never changed
 * afterwards: an operator may have paused one or changed its interval in the Temporal UI.
 */
import { ScheduleAlreadyRunning, type Client, type ScheduleOptions } from '@temporalio/client';

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
