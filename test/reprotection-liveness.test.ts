/**
 * Issue 14's second liveness risk: the end of a re-protection (the key marked Active, the replaced key retired from
 * the vault, the search attributes) runs in the background after the update that started it has returned. A throw
 * there used to be an unhandled rejection, which fails the workflow task on every attempt: a stuck tenant. Here the
 * vault refuses to delete the key a rollback replaced, at the end of the rollback's re-protection; the tenant runs on
 * with no failed workflow task, shows the fault where docs/RELIABILITY.md says (`key show --json`:
 * `faults.keysNotRemoved`, from the key's `retireFailure`), mails it once, and answers the next request.
 */
import { decodeOptionalFailureToOptionalError, loadDataConverter } from '@temporalio/common/lib/internal-non-workflow';
import { temporal } from '@temporalio/proto';
import { regionFaults } from '../api/service';
import { DEFAULT_POLICY } from '../domain/policy';
import { tenantWorkflowId } from '../workflows/messages';
import { testDataConverter } from './support/codec';
import { until, within } from './support/deadline';
import { refusing, vaultRefusal } from './support/parts';
import { ALICE, BOB, HOUR, keyChange, OPERATOR_ACTOR, timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();
const { EventType } = temporal.api.enums.v1;

/** Why the tenant workflow's tasks failed (a retried task's first failure is in its history), decoded. */
async function failedWorkflowTasks(tenant: string): Promise<string[]> {
  const events = (await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).fetchHistory()).events ?? [];
  const failures = events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED).map((e) => e.workflowTaskFailedEventAttributes?.failure);
  const converter = loadDataConverter(testDataConverter());
  return Promise.all(failures.map(async (failure) => (await decodeOptionalFailureToOptionalError(converter, failure))?.message ?? 'workflow task failed'));
}

test('the vault refuses to retire the rolled-back key at the end of the re-protection: the tenant runs on, shows the fault and answers the next request', async () => {
  let control = { refusing: false, calls: 0 };
  await harness.withTenant(
    async ({ plane, parts, tenant, stage }) => {
      const key = async (thumbprint: string) => (await plane.snapshot(tenant))!.regions.emea!.keys.find((k) => k.thumbprint === thumbprint)!;
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: 'prod', region: 'emea', systemAdmin: 'sam@example.com' });
      const first = await stage();
      await plane.changeKey(tenant, { ...keyChange(ALICE, first), name: 'first' });
      await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'apply', acceptRisk: true });
      await harness.env.sleep(25 * HOUR);
      const second = await stage();
      await plane.changeKey(tenant, { ...keyChange(BOB, second), name: 'second' });
      await until('prod is re-protected with the second key', async () => ((await key(second.thumbprint)).state === 'Active' ? true : undefined));
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);

      // alice puts the first key back: prod is re-protected with it, and at the end the second key, needed by
      // nothing now, is to leave the vault, which refuses.
      control.refusing = true;
      await plane.rollbackKey(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea' }, second.thumbprint);
      // Idle: the re-protection and what ends it are over (the update scheduled its first batch before returning).
      const idle = await harness.whenIdle(tenantWorkflowId(tenant));
      expect({ idle, failedWorkflowTasks: await failedWorkflowTasks(tenant) }).toEqual({ idle: true, failedWorkflowTasks: [] });
      await until('the re-protection after the rollback has ended', async () => ((await plane.snapshot(tenant))!.reprotections?.emea?.finishedAt ? true : undefined));
      expect(control.calls).toBe(1);
      expect((await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).describe()).status.name).toBe('RUNNING');

      // The end of the re-protection took effect; the key the vault kept is marked, shown by `key show` and mailed.
      const snapshot = (await plane.snapshot(tenant))!;
      expect(snapshot.environments.map((e) => [e.id, e.state, e.keyThumbprint])).toEqual([['prod', 'Online', first.thumbprint]]);
      expect(snapshot.regions.emea!.keys.map((k) => [k.name, k.state, k.inVault])).toEqual([['first', 'Active', true], ['second', 'Retired', true]]);
      expect(snapshot.reprotections!.emea).toMatchObject({ total: 1, done: 1, remaining: 0, refused: [] });
      expect(regionFaults(snapshot, 'emea')).toEqual({
        environments: [],
        keysNotRemoved: [{ name: 'second', thumbprint: second.thumbprint, code: 'VAULT_REFUSED', reason: expect.stringMatching(/delete permission/), at: expect.any(String) }],
      });
      expect(await parts.vault.getKey(second.vaultKey)).toBeDefined();
      const failed = (await parts.outbox.list(tenant)).filter((m) => m.event === 'operation-failed');
      expect(failed.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
      expect(failed[0]!.body).toMatch(/"second"[\s\S]*could not be removed from the vault[\s\S]*VAULT_REFUSED/);

      // The next request answers, the vault still refusing (tried again, not mailed again) ...
      const rekeyed = await within('env rekey answers', plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' }));
      expect(rekeyed).toMatchObject({ id: 'prod', state: 'Online', keyThumbprint: first.thumbprint });
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      expect(control.calls).toBe(2);
      expect((await key(second.thumbprint)).retireFailure).toMatchObject({ code: 'VAULT_REFUSED' });
      expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'operation-failed')).toHaveLength(2);

      // ... and once the vault is repaired, the next one retires the key (the repair docs/RELIABILITY.md names).
      control.refusing = false;
      await within('env rekey answers', plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' }));
      expect(await harness.whenIdle(tenantWorkflowId(tenant))).toBe(true);
      expect(await key(second.thumbprint)).toMatchObject({ state: 'Retired', inVault: false });
      expect(await parts.vault.getKey(second.vaultKey)).toBeUndefined();
      expect(await failedWorkflowTasks(tenant)).toEqual([]);
    },
    (parts) => {
      const r = refusing(parts.vault, 'deleteKey', vaultRefusal);
      control = r.control;
      control.refusing = false;
      return { vault: r.wrapped };
    },
  );
}, 90_000);
