/**
 * Workflow runs as workers from before signed requests leave them: no `signed-requests` (or `signed-audit-records`)
 * marker, so today's code replays them without the worker's trust. Only that matters here, so the stand-ins issue
 * no command: the tenant workflow is started from carried state, as every run continued as new is, and today's
 * tenant workflow then issues none before its main loop's wait either; the audit writer, idle, issues none too. So
 * today's workers replay their histories as their own.
 */
import { condition } from '@temporalio/workflow';
import type { TenantWorkflowInput } from '../../workflows/messages';

export async function tenantWorkflow(_input: TenantWorkflowInput): Promise<void> {
  await condition(() => false);
}

/** The audit trail's writer from before signed records, idle (records would only add activities to match). */
export async function auditTrailWorkflow(_input: { pending?: unknown[] } = {}): Promise<void> {
  await condition(() => false);
}
