/**
 * A worker whose tenant workflow fails every workflow task (a plain Error, not a Temporal failure: the SDK fails the
 * task and the server retries it), as a worker does that crashes, runs out of memory or times out under load: the
 * server then refuses updates to that tenant with FAILED_PRECONDITION ("Workflow Task in failed state").
 */
import type { TenantWorkflowInput } from '../../workflows/messages';

export async function tenantWorkflow(_input: TenantWorkflowInput): Promise<void> {
  throw new Error('this stand-in fails its workflow task on purpose');
}
