/** What an operator sees of one of cmk's Schedules in the Temporal UI: its interval, its workflow, not paused. */
import type { Client } from '@temporalio/client';

export async function expectSchedule(temporal: Client, scheduleId: string, expected: { everyMs: number; workflowType: string }): Promise<void> {
  const described = await temporal.schedule.getHandle(scheduleId).describe();
  expect(described.spec.intervals).toEqual([expect.objectContaining({ every: expected.everyMs })]);
  expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: expected.workflowType });
  expect(described.state.paused).toBe(false);
}
