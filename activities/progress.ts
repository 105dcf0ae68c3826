/**
 * Heartbeats for long activities: the progress recorded so far goes to Temporal as heartbeat details, and a retry
 * (after a worker died or a fault) starts from them instead of from the beginning. Outside a running activity (the
 * activity called directly, as some tests do) there is nothing to report to and nothing to resume.
 */
import { Context } from '@temporalio/activity';

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** Records `details` as this activity's progress; a later attempt reads them with `resumeFrom`. */
export function heartbeat(details: unknown): void {
  currentContext()?.heartbeat(details);
}

/** The details the previous attempt of this activity last recorded, if any. */
export function resumeFrom<T>(): T | undefined {
  return currentContext()?.info.heartbeatDetails as T | undefined;
}

/** Whether this is a retry of the activity (attempt 2 or later); false outside a running activity. */
export function isRetry(): boolean {
  return (currentContext()?.info.attempt ?? 1) > 1;
}

/** Aborted when this attempt is cut off (its timeout, a cancellation, the worker shutting down). */
export function attemptSignal(): AbortSignal | undefined {
  return currentContext()?.cancellationSignal;
}
