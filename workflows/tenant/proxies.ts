/**
 * The tenant workflow's activities, one proxy group per timeout and retry profile. Proxies are plain objects: making
 * them changes nothing in history; calling them schedules the activity.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { Activities } from '../../activities';
import type { BackgroundFailure } from '../../domain/model';
import { ERROR_CODES } from '../../domain/codes';

const RETRY: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes: [...ERROR_CODES] };

/**
 * The activities that touch a region's vault and databases (R1), on the task queue given: the region's own when the
 * deployment routes by region (`Policy.regions`), else the workflow's. Proxies are plain objects, so making them
 * per call is deterministic.
 */
export function regionActivities(taskQueue: string | undefined) {
  const on = taskQueue ? { taskQueue } : {};
  return {
    /** Vault and database calls: quick, retried with backoff on faults; refusals (our codes) are not retried. */
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '1 minute', retry: RETRY }), ['activateStagedKey', 'deleteTenantKey', 'provisionEnvironmentDatabase', 'revertToProviderKey', 'verifyLockPossession']),
    /**
     * Re-protection after a key change, a batch of environments per activity: re-wrapping one DEK takes
     * milliseconds, so one activity per environment would spend most of the time (and most of the history) on
     * orchestration. Each batch heartbeats its progress; a worker that dies is noticed within the heartbeat timeout
     * and the retry resumes from the last heartbeat. Faults are retried with backoff for as long as it takes.
     */
    reprotectEnvironments: proxyActivities<Activities>({ ...on, startToCloseTimeout: '10 minutes', heartbeatTimeout: '10 seconds', retry: RETRY }).reprotectEnvironments,
    /**
     * `env create --from-file`: a batch of new databases per activity, heartbeating; a fault (a full disk, a dead
     * worker) is retried with backoff until it succeeds, and the batch is idempotent (workflows/tenant/bulk.ts).
     */
    provisionEnvironmentDatabases: proxyActivities<Activities>({ ...on, startToCloseTimeout: '10 minutes', heartbeatTimeout: '10 seconds', retry: RETRY }).provisionEnvironmentDatabases,
    /** The one-environment-per-activity re-protection of workflows started before batches (see `startReprotection`). */
    reprotectEnvironment: proxyActivities<Activities>({ ...on, startToCloseTimeout: '20 seconds', retry: RETRY }).reprotectEnvironment,
    // Re-encrypting every page of a database takes as long as the database is large: hours for a large one, so
    // longer than an attempt. Each poll of the scan heartbeats; a dead worker is noticed within the heartbeat timeout,
    // and a retry (also after 30 minutes) waits for the scan already running instead of starting another.
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', heartbeatTimeout: '1 minute', retry: RETRY }), ['applyTenantKey', 'rekeyEnvironmentDatabase']),
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', retry: RETRY }), ['withdrawTenantKeys', 'bringEnvironmentOnline', 'backupEnvironment', 'restoreEnvironment']),
    // A lock's and a deletion's work on many environments (offline marks, crypto-shredding), checkpointed by heartbeat.
    ...pick(proxyActivities<Activities>({ ...on, startToCloseTimeout: '30 minutes', heartbeatTimeout: '30 seconds', retry: RETRY }), ['takeEnvironmentsOffline', 'destroyEnvironments']),
  };
}

export type RegionActivities = ReturnType<typeof regionActivities>;

function pick<T extends object, K extends keyof T>(from: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, from[k]])) as Pick<T, K>;
}

/** Mail: retried for as long as it takes; the outbox entry IDs make every retry harmless. */
export const { notifyAdministrators } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

/** Audit records: handed to the trail's single writer; retried until they are (the record IDs make retries harmless). */
export const { recordAudit } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Local: the worker's own configuration, read once per run. */
export const { requestTrust } = proxyLocalActivities<Activities>({ startToCloseTimeout: '10 seconds' });

/** The refusal an activity failed with (an ActivityFailure's cause carries it), or the refusal itself. */
export function refusalOf(err: unknown): ApplicationFailure | undefined {
  return err instanceof ApplicationFailure ? err : err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
}

/** What a refused activity said: its stable code and message, for the records and mail. */
export function failureOf(err: unknown, at: string): BackgroundFailure {
  const failure = refusalOf(err);
  return { at, code: failure?.type ?? 'INTERNAL', message: (failure?.message ?? String(err)).slice(0, 500) };
}
