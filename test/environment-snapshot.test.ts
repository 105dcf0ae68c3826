/**
 * `environmentSnapshot`: a request about one environment reads that environment and the caller's own as system
 * administrator, not the whole tenant — and every privilege and rule check gives the same answer on it as on the
 * whole tenant, for every actor, environment and operation.
 */
import { ALICE, OPERATOR_ACTOR, timeSkippingHarness } from './support/time-skipping';
import { queries, tenantWorkflowId } from '../workflows/messages';
import { isAllowed, type Actor } from '../domain/access';
import { normaliseEmail } from '../domain/ids';
import type { TenantSnapshot } from '../domain/model';
import { DEFAULT_POLICY } from '../domain/policy';
import { checkBackup, checkEnvironmentOperation, checkUnlock } from '../domain/rules';

const harness = timeSkippingHarness();

test('a scoped snapshot keeps the environment and the caller’s own, and every check answers as on the whole tenant', async () => {
  await harness.withTenant(async ({ plane, tenant }) => {
    const systemAdmins: Record<string, string | null> = { prod: 'sam@example.com', dev: 'sam@example.com', test: null, hr: 'kim@example.com' };
    for (const [env, systemAdmin] of Object.entries(systemAdmins)) {
      await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env, region: 'emea', systemAdmin });
    }
    // Enough environments that reading all of them is what the scope saves.
    for (let i = 0; i < 40; i++) await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env: `bulk-${i}`, region: 'emea', systemAdmin: null });
    const whole = (await plane.snapshot(tenant))!;
    expect(whole.environments).toHaveLength(44);

    const ids = (s: TenantSnapshot | undefined) => s!.environments.map((e) => e.id).sort();
    expect(ids(await plane.snapshot(tenant, { env: 'test', caller: 'sam@example.com' }))).toEqual(['dev', 'prod', 'test']);
    expect(ids(await plane.snapshot(tenant, { env: 'hr', caller: null }))).toEqual(['hr']);
    expect(ids(await plane.snapshot(tenant, { env: 'no-such-env', caller: 'alice@example.com' }))).toEqual([]);
    // The answer is what travels: a fraction of the whole tenant's.
    const handle = harness.env.client.workflow.getHandle(tenantWorkflowId(tenant));
    const scopedBytes = JSON.stringify(await handle.query(queries.environmentSnapshot, { env: 'bulk-7', caller: null })).length;
    const wholeBytes = JSON.stringify(await handle.query(queries.compactSnapshot)).length;
    expect(scopedBytes).toBeLessThan(wholeBytes / 2);

    const actors: Actor[] = [OPERATOR_ACTOR, ALICE, ...['sam@example.com', 'kim@example.com', 'nobody@example.com'].map((email) => ({ kind: 'user' as const, email }))];
    for (const actor of actors) {
      for (const env of [...Object.keys(systemAdmins), 'bulk-3', 'no-such-env']) {
        const scoped = (await plane.snapshot(tenant, { env, caller: actor.kind === 'user' ? normaliseEmail(actor.email) : null }))!;
        for (const operation of ['apply', 'revert', 'rekey'] as const) {
          expect([actor, env, operation, checkEnvironmentOperation(scoped, { actor, env, operation })]).toEqual([actor, env, operation, checkEnvironmentOperation(whole, { actor, env, operation })]);
          expect(isAllowed(scoped, actor, `env.${operation}`, env)).toBe(isAllowed(whole, actor, `env.${operation}`, env));
        }
        for (const operation of ['backup', 'restore'] as const) {
          expect(checkBackup(scoped, { actor, env, operation, backupId: null })).toEqual(checkBackup(whole, { actor, env, operation, backupId: null }));
        }
        expect(checkUnlock(scoped, { actor, env }, Date.now(), DEFAULT_POLICY)).toEqual(checkUnlock(whole, { actor, env }, Date.now(), DEFAULT_POLICY));
        expect(isAllowed(scoped, actor, 'env.data', env)).toBe(isAllowed(whole, actor, 'env.data', env));
      }
    }
  });
});
