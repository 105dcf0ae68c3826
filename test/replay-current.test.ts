/**
 * Determinism guard for today's code: a tenant workflow history made now (signed start, key change, apply, the
 * deadline search attributes, a lock) replays against the same code, under its own workflow ID (the codec binds
 * payloads to it). The recorded fixtures (test/replay.test.ts) hold what older builds wrote. A replay after a real
 * worker restart mid re-protection is test/worker-crash.test.ts, which found a patch decided after a local activity.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { tenantWorkflowId } from '../workflows/messages';
import { DEFAULT_POLICY } from '../domain/policy';
import type { PossessionProof } from '../domain/rules';
import { testDataConverter } from './support/codec';
import { ALICE, HOUR, tenantWithProdOnItsKey, timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();

test('a history made by today\'s code replays against it', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, tenant } = ctx;
    const { staged } = await tenantWithProdOnItsKey(ctx);
    await harness.env.sleep(73 * HOUR);
    const proof: PossessionProof = {
      challengeId: randomUUID(),
      tenant,
      region: 'emea',
      user: 'alice@example.com',
      operation: 'lock',
      expiresAt: new Date((await harness.env.currentTimeMs()) + HOUR).toISOString(),
      verifiedThumbprint: staged.thumbprint,
    };
    await plane.lockTenant(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', confirm: 'Contoso Ltd', proof, possession: await ctx.possession(proof) });
    const history = await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).fetchHistory();
    expect(history.events?.length).toBeGreaterThan(10);
    // Under its own workflow ID: the codec binds each payload to its workflow (a replay's default ID would refuse them).
    await Worker.runReplayHistory({ workflowsPath: require.resolve('../workflows'), dataConverter: testDataConverter() }, history, tenantWorkflowId(tenant));
  });
}, 180_000);
