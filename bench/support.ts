/** What the benches share: their arguments, the worker's resident memory, and the tenant workflow's histories. */
import { readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import { tenantWorkflowId } from '../workflows/messages';
import { stackTemporalPid, stackWorkerPid } from '../harness/stack';

export const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};

/** `work` over the items, at most `bound` at once. */
export async function pool<T>(items: readonly T[], bound: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) await work(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, bound), items.length) }, lane));
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** The stack's worker process: its resident memory now (`VmRSS`) and at its highest (`VmHWM`), in MB. */
export function workerMemory(dataDir: string): (field: 'VmRSS' | 'VmHWM') => number {
  return processMemory(stackWorkerPid(dataDir));
}

/** The stack's Temporal dev server, the same way as `workerMemory`. */
export function temporalServerMemory(dataDir: string): (field: 'VmRSS' | 'VmHWM') => number {
  return processMemory(stackTemporalPid(dataDir));
}

function processMemory(pid: number): (field: 'VmRSS' | 'VmHWM') => number {
  return (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

/** A process's CPU time so far (user + system), in seconds: where a phase's time went, process by process. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1)!.split(' ');
  // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command's closing parenthesis; 100 ticks a second on Linux.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

type HistoryEvents = NonNullable<Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>['events']>;

/** Every run of the tenant's workflow (it continues as new when its history grows), each history on its own. */
export async function tenantHistories(client: Client, tenant: string): Promise<HistoryEvents[]> {
  const runs: HistoryEvents[] = [];
  for await (const run of client.workflow.list({ query: `WorkflowId = "${tenantWorkflowId(tenant)}"` })) {
    runs.push((await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory()).events ?? []);
  }
  return runs;
}

/** Scheduled → completed, in ms, of every activity of this type across the runs. */
export function activityLatencies(runs: HistoryEvents[], activityType: string): number[] {
  const scheduled = new Map<string, number>();
  const latencies: number[] = [];
  for (const e of runs.flatMap((events, run) => events.map((event) => Object.assign(event, { run })))) {
    const at = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === activityType) scheduled.set(`${e.run}/${e.eventId}`, at);
    const c = e.activityTaskCompletedEventAttributes;
    const key = `${e.run}/${c?.scheduledEventId}`;
    if (c && scheduled.has(key)) latencies.push(at - scheduled.get(key)!);
  }
  return latencies.sort((a, b) => a - b);
}
