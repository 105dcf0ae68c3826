/**
 * A bulk creation (`env create --from-file`, issue 20) that meets a fault midway is resumed, not rolled back: the
 * tenant workflow on the time-skipping server with the real activities, real vault and real SQLite files, behind a
 * wrapper whose `create` fails as a full disk would (a plain error: a fault, retried) for some environments, after
 * others of the same batch were made. The operation completes, every environment is recorded once and has its
 * database; a refused list leaves no update in history and nothing on disk.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_POLICY } from '../domain/policy';
import { parseEnvironmentList } from '../domain/bulk';
import type { EnvironmentDatabases } from '../database/types';
import { ALICE, timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();

/** `create` fails with ENOSPC for these environments, `times` times each, then works. */
function fullDiskFor(databases: EnvironmentDatabases, envs: string[], times: number) {
  const failures = new Map(envs.map((env) => [env, times]));
  const wrapped: EnvironmentDatabases = Object.create(databases) as EnvironmentDatabases;
  wrapped.create = async (tenant, env, protector) => {
    const left = failures.get(env) ?? 0;
    if (left > 0) {
      failures.set(env, left - 1);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
    return databases.create(tenant, env, protector);
  };
  return { wrapped, failuresLeft: () => [...failures.values()].reduce((a, b) => a + b, 0) };
}

const ids = Array.from({ length: 600 }, (_, i) => `app-${i}`);
let disk: ReturnType<typeof fullDiskFor> | undefined;

test('a full disk midway: the batches are retried until they succeed; every environment recorded once, each with its database', async () => {
  await harness.withTenant(
    async ({ plane, parts, tenant }) => {
      const { list } = parseEnvironmentList(ids.map((id, i) => (i === 5 ? `${id},Sam@Example.com` : id)).join('\n'));
      const result = await plane.createEnvironments(tenant, { actor: ALICE, policy: DEFAULT_POLICY, operation: 'op-1', region: 'emea', list });
      expect(result).toMatchObject({ operation: 'op-1', region: 'emea', created: 600, protection: 'provider', refused: [] });
      expect(disk!.failuresLeft()).toBe(0);

      const snapshot = (await plane.snapshot(tenant))!;
      expect(snapshot.environments.map((e) => e.id)).toEqual(ids);
      expect(snapshot.environments[5]).toMatchObject({ state: 'Online', systemAdmin: 'sam@example.com', keyThumbprint: result.keyThumbprint });
      expect(readdirSync(join(parts.config.dataDir, 'environments', tenant)).sort()).toEqual([...ids].sort());
      for (const env of ['app-0', 'app-260', 'app-599']) expect((await parts.databases.describe(tenant, env))?.protector.thumbprint).toBe(result.keyThumbprint);
      expect(await plane.environmentCreation(tenant, 'op-1')).toMatchObject({ total: 600, created: 600, finishedAt: expect.any(String) });

      // The same list again: refused by the validator, naming the first line; no update reaches history.
      const accepted = await harness.acceptedUpdates(tenant);
      await expect(plane.createEnvironments(tenant, { actor: ALICE, policy: DEFAULT_POLICY, operation: 'op-2', region: 'emea', list })).rejects.toMatchObject({
        code: 'ALREADY_EXISTS',
        message: expect.stringMatching(/^line 1: environment app-0 already exists\. 599 more line\(s\) refused: 2, 3, .*Nothing was created\.$/),
      });
      expect(await harness.acceptedUpdates(tenant)).toBe(accepted);
      expect((await plane.snapshot(tenant))!.environments).toHaveLength(600);
    },
    // Twice each: app-260 and app-261 in the second batch, after others of it were made; app-599, the very last.
    (parts) => ({ databases: (disk = fullDiskFor(parts.databases, ['app-260', 'app-261', 'app-599'], 2)).wrapped }),
  );
});

test('the same request sent again (the CLI after a dropped connection) attaches to the running operation: one update, one creation', async () => {
  await harness.withTenant(async ({ plane, tenant }) => {
    const { list } = parseEnvironmentList(ids.slice(0, 300).join('\n'));
    const accepted = await harness.acceptedUpdates(tenant);
    const request = { actor: ALICE, policy: DEFAULT_POLICY, operation: 'op-again', region: 'emea', list };
    const [first, again] = await Promise.all([plane.createEnvironments(tenant, request), plane.createEnvironments(tenant, request)]);
    expect(again).toEqual(first);
    expect(first.created).toBe(300);
    expect(await harness.acceptedUpdates(tenant)).toBe(accepted + 1);
    expect((await plane.snapshot(tenant))!.environments.map((e) => e.id)).toEqual(ids.slice(0, 300));
  });
});
