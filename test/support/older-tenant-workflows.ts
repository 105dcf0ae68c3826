/**
 * Tenant workflows as workers older than two queries answer them, for the client's fallbacks: one from before
 * `environmentSnapshot` (it answers `compactSnapshot` and `snapshot`), one from before `compactSnapshot` too (only
 * `snapshot`). Each holds the snapshot it is started with until it is terminated.
 */
import { condition, setHandler } from '@temporalio/workflow';
import { packEnvironments } from '../../domain/carried';
import { queries } from '../../workflows/messages';
import type { TenantSnapshot } from '../../domain/model';

export async function tenantWorkflowBeforeEnvironmentSnapshot(snapshot: TenantSnapshot): Promise<void> {
  setHandler(queries.snapshot, () => snapshot);
  setHandler(queries.compactSnapshot, () => {
    const { environments, ...rest } = snapshot;
    return { ...rest, packedEnvironments: packEnvironments(environments) };
  });
  await condition(() => false);
}

export async function tenantWorkflowBeforeCompactSnapshot(snapshot: TenantSnapshot): Promise<void> {
  setHandler(queries.snapshot, () => snapshot);
  await condition(() => false);
}
