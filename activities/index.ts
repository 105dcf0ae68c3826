/**
 * Activities: the control plane's side effects (vault, environment databases, mail), built by a factory from their
 * dependencies so that the worker (worker/main.ts) is the only composition root and tests build the same activities
 * with real local parts. Inputs and results are references, thumbprints and IDs only (DESIGN.md §6).
 */
import { ApplicationFailure } from '@temporalio/common';
import { isCmkError } from '../common/errors';
import type { Vault } from '../vault/types';
import type { EnvironmentDatabases } from '../database/types';
import type { Mailer } from '../mail/types';
import { createEnvironmentActivities } from './environments';
import { createKeyActivities } from './keys';
import { createNotificationActivities } from './notifications';
import { createLockActivities } from './lock';
import { createPurgeActivities, type TenantDirectory } from './purge';
import { createAuditActivities, type AuditSink } from './audit';
import type { AuditTrail } from '../audit/trail';
import type { RequestTrust } from '../domain/signed';
import type { ChallengeOpener } from './lock';
import { createTrustActivities } from './trust';
import { createDriftActivities, type DriftDirectory, type DriftMetrics } from './drift';

export interface ActivityDependencies {
  vault: Vault;
  databases: EnvironmentDatabases;
  mailer: Mailer;
  /** The tenant workflows as the daily purge reaches them (a Temporal client); absent in tests that do not purge. */
  tenants?: TenantDirectory;
  /** The tenant workflows as the drift check reaches them (a Temporal client); absent in tests that do not check drift. */
  drift?: DriftDirectory;
  /** Where a drift is mailed besides the tenant's administrators (CMK_OPERATOR_EMAIL). */
  operatorEmails?: string[];
  /** Each region's vault and databases (R1; worker/parts.ts), for the drift check's reads of every region. */
  inRegion?: (region: string) => { vault: Vault; databases: EnvironmentDatabases };
  /** The drift check's Prometheus series on the worker (cmk_drift_environments, cmk_drift_detected_total). */
  driftMetrics?: DriftMetrics;
  /** Where the workflows' audit records go (the audit workflow, through a Temporal client). */
  auditSink?: AuditSink;
  /** The trail itself: only on the worker that is its single writer. */
  auditTrail?: AuditTrail;
  /** The keys that verify signed requests, and the policy: what the workflows trust (common/request-signing.ts). */
  requestTrust: RequestTrust;
  /** Opens the API service's lock challenges (the `challenge-key`), to check a lock's proof again; without, no lock. */
  challenges?: ChallengeOpener;
}

export function createActivities(deps: ActivityDependencies) {
  return refusalsAsFailures({
    ...createKeyActivities(deps),
    ...createEnvironmentActivities(deps),
    ...createNotificationActivities(deps),
    ...createLockActivities(deps),
    ...createPurgeActivities(deps),
    ...createAuditActivities(deps),
    ...createTrustActivities(deps),
    ...createDriftActivities(deps),
  });
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * A CmkError is a business refusal: retrying cannot help, so it crosses into the workflow as a non-retryable
 * ApplicationFailure whose type is the stable code. Anything else (I/O, vault faults) is retried by policy.
 */
function refusalsAsFailures<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        if (isCmkError(err)) throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
        throw err;
      }
    };
  }
  return wrapped as T;
}
