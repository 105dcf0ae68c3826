/**
 * Issue 18: the deadlines an operator searches for (`CmkNextDeletionAt`, `CmkLockEmbargoEndsAt`,
 * `CmkKeyChangeAllowedAt`, `CmkRollbackUntil`) through a whole key change → lock → warning → deletion cycle, on the
 * time-skipping server, read as the UI and `temporal workflow list --query` read them (`describe()`); plus the
 * current details and the timers' summaries that say which rule each deadline is.
 */
import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import { defaultPayloadConverter } from '@temporalio/common';
import { SEARCH_ATTRIBUTES, tenantWorkflowId } from '../workflows/messages';
import { DEFAULT_POLICY } from '../domain/policy';
import { testDataConverter } from './support/codec';
import { ALICE, HOUR, keyChange, OPERATOR_ACTOR, timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();
const DAY = 24 * HOUR;

test('deadline search attributes through key change, embargo, lock, warnings and deletion; rows and timers say what they wait for', async () => {
  await harness.withTenant(async ({ plane, tenant, stage, possession }) => {
    const handle = harness.env.client.workflow.getHandle(tenantWorkflowId(tenant));
    const attributes = async () => {
      await harness.whenIdle(tenantWorkflowId(tenant));
      const { typedSearchAttributes } = await handle.describe();
      const at = (key: typeof SEARCH_ATTRIBUTES.nextDeletionAt) => typedSearchAttributes.get(key)?.toISOString() ?? null;
      return {
        nextDeletionAt: at(SEARCH_ATTRIBUTES.nextDeletionAt),
        lockEmbargoEndsAt: at(SEARCH_ATTRIBUTES.lockEmbargoEndsAt),
        keyChangeAllowedAt: at(SEARCH_ATTRIBUTES.keyChangeAllowedAt),
        rollbackUntil: typedSearchAttributes.get(SEARCH_ATTRIBUTES.rollbackUntil) ?? null,
      };
    };
    const none = { nextDeletionAt: null, lockEmbargoEndsAt: null, keyChangeAllowedAt: null, rollbackUntil: null };
    expect(await attributes()).toEqual(none);
    // The row's static summary, set at start by the client library.
    expect(await (await handle.describe()).staticSummary()).toBe(`Tenant Contoso Ltd (${tenant}): keys and environments`);

    await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: null });
    const first = await plane.changeKey(tenant, keyChange(ALICE, await stage()));
    const firstAt = Date.parse(first.key.activatedAt!);
    const iso = (ms: number) => new Date(ms).toISOString();
    // A first key: R5 and R6 run, nothing to roll back to.
    expect(await attributes()).toEqual({ ...none, lockEmbargoEndsAt: iso(firstAt + DEFAULT_POLICY.lockEmbargoMs), keyChangeAllowedAt: iso(firstAt + DEFAULT_POLICY.keyChangeIntervalMs) });

    // R5 over after 24 h: its attribute goes, the embargo's stays.
    await harness.env.sleep(25 * HOUR);
    expect(await attributes()).toEqual({ ...none, lockEmbargoEndsAt: iso(firstAt + DEFAULT_POLICY.lockEmbargoMs) });

    // A second key: a rollback window opens until the new embargo ends.
    const second = await plane.changeKey(tenant, { ...keyChange(ALICE, await stage()), name: 'second' });
    const secondAt = Date.parse(second.key.activatedAt!);
    const embargoEnd = iso(secondAt + DEFAULT_POLICY.lockEmbargoMs);
    expect(await attributes()).toEqual({ ...none, lockEmbargoEndsAt: embargoEnd, keyChangeAllowedAt: iso(secondAt + DEFAULT_POLICY.keyChangeIntervalMs), rollbackUntil: embargoEnd });
    const pending = await handle.describe();
    const timers = (await handle.fetchHistory()).events!.filter((e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_TIMER_STARTED);
    expect(pending.status.name).toBe('RUNNING');
    const summaries = await Promise.all(timers.map((e) => summaryOf(e.userMetadata?.summary)));
    expect(summaries).toEqual(expect.arrayContaining(['R5 key change allowed again (emea)', 'R6 lock embargo ends (emea)']));

    // The embargo over: no deadline left. Then the lock: R9's deletion in 28 days.
    await harness.env.sleep(73 * HOUR);
    expect(await attributes()).toEqual(none);
    const lockedAt = Date.now();
    const proof = { challengeId: randomUUID(), tenant, region: 'emea', user: 'alice@example.com', operation: 'lock' as const, expiresAt: new Date(lockedAt + 400 * DAY).toISOString(), verifiedThumbprint: second.key.thumbprint };
    const lock = await plane.lockTenant(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', confirm: 'Contoso Ltd', proof, possession: await possession(proof) });
    expect(await attributes()).toEqual({ ...none, nextDeletionAt: lock.deleteAt });
    expect(await currentDetails(handle)).toContain(`waiting: deletion of 1 locked environment(s) on ${lock.deleteAt.slice(0, 10)} (R9)`);

    // Through both warnings the deadline stands; after the deletion it is unset.
    await harness.env.sleep(27 * DAY + HOUR);
    expect(await attributes()).toEqual({ ...none, nextDeletionAt: lock.deleteAt });
    await harness.env.sleep(DAY);
    expect((await plane.snapshot(tenant))!.environments.map((e) => e.state)).toEqual(['Deleted']);
    expect(await attributes()).toEqual(none);
    const named = await Promise.all((await handle.fetchHistory()).events!.map((e) => summaryOf(e.userMetadata?.summary)));
    expect(named).toEqual(
      expect.arrayContaining([
        'R6 rollback window ends (emea); R6 lock embargo ends (emea)',
        'R9 deletion warning for env prod',
        'R9 deletion of env prod',
        'R8 lock of emea: 1 environment(s) offline',
        'R4 mail: deletion-warning',
      ]),
    );
  });
});

/** A user-metadata summary as the UI shows it: decrypted with the codec, then converted. */
async function summaryOf(payload: temporal.api.common.v1.IPayload | null | undefined): Promise<string | null> {
  if (!payload) return null;
  const [decoded] = await testDataConverter().payloadCodecs![0]!.decode([payload]);
  return defaultPayloadConverter.fromPayload<string>(decoded!);
}

/** The workflow's current details, as the UI reads them (the SDK's built-in metadata query). */
async function currentDetails(handle: { query: (name: string) => Promise<unknown> }): Promise<string> {
  const metadata = (await handle.query('__temporal_workflow_metadata')) as { currentDetails?: string };
  return metadata.currentDetails ?? '';
}
