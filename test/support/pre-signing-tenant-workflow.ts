/**
 * A tenant workflow run as a worker from before signed requests leaves it: no `signed-requests` marker (so today's
 * code replays it without the worker's trust). Only that matters here, so the stand-in starts from carried state,
 * as every run continued as new does: today's tenant workflow issues no command before its main loop's wait then,
 * and neither does this one, so today's workers replay its history as their own.
 */
import { condition } from '@temporalio/workflow';
import type { TenantWorkflowInput } from '../../workflows/messages';

export async function tenantWorkflow(_input: TenantWorkflowInput): Promise<void> {
  await condition(() => false);
}
