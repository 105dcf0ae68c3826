/**
 * `env delete` in the tenant workflow (issue 19), on the time-skipping server over the real local parts: a locked
 * environment not worth unlocking is destroyed now, by R9's own path (database, backups, key record), mailed, and
 * once none is left locked R11 no longer blocks a new key. Every refusal changes nothing.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { ALICE, BOB, HOUR, keyChange, OPERATOR_ACTOR, tenantWithProdOnItsKey, timeSkippingHarness } from './support/time-skipping';
import { refusing } from './support/parts';

const harness = timeSkippingHarness();
const SAM: Actor = { kind: 'user', email: 'sam@example.com' };

test('env delete: only a locked environment, by a global or service administrator, confirmed; destroyed as R9 does; R11 lifts with the last one', async () => {
  // The database server refuses a destruction while `control.refusing` is set.
  let control = { refusing: false, calls: 0 };
  await harness.withTenant(
    async (ctx) => {
      const { plane, parts, tenant } = ctx;
      const { staged } = await tenantWithProdOnItsKey(ctx);
      await parts.databases.writeRow(tenant, 'prod', 'a row');
      await plane.environmentBackup(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'backup', backupId: null });
      const remove = (env: string, actor: Actor = BOB, confirm = env) => plane.deleteEnvironment(tenant, { actor, policy: DEFAULT_POLICY, env, confirm });

      // Before the lock: nothing is Locked, so nothing may be deleted.
      const before = await harness.acceptedUpdates(tenant);
      await expect(remove('prod')).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/not locked .*only a locked environment can be deleted/) });
      expect(await harness.acceptedUpdates(tenant)).toBe(before);

      await harness.env.sleep(73 * HOUR);
      const proof = { challengeId: randomUUID(), tenant, region: 'emea', user: 'alice@example.com', operation: 'lock' as const, expiresAt: new Date((await harness.env.currentTimeMs()) + HOUR).toISOString(), verifiedThumbprint: staged.thumbprint };
      await plane.lockTenant(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', confirm: 'Contoso Ltd', proof, possession: await ctx.possession(proof) });

      // Refusals in DESIGN.md §4's order, none of which reaches history.
      const locked = await harness.acceptedUpdates(tenant);
      await expect(remove('prod', SAM)).rejects.toMatchObject({ code: 'FORBIDDEN' });
      await expect(remove('prod', OPERATOR_ACTOR)).rejects.toMatchObject({ code: 'FORBIDDEN' });
      await expect(remove('Prod!')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(remove('staging')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(remove('prod', BOB, 'dev')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/--confirm must repeat/) });
      await expect(remove('prod', BOB, '')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await harness.acceptedUpdates(tenant)).toBe(locked);

      // The database server refuses: the request fails with its reason (not a refusal of ours: the API answers
      // INTERNAL), prod stays Locked with its files.
      control.refusing = true;
      await expect(remove('prod')).rejects.toMatchObject({ cause: { type: 'DATABASE_REFUSED', message: expect.stringMatching(/could not be deleted; it stays locked/) } });
      control.refusing = false;
      expect((await plane.snapshot(tenant))!.environments.map((e) => [e.id, e.state])).toEqual([['prod', 'Locked'], ['dev', 'Locked']]);
      expect(existsSync(join(parts.config.dataDir, 'environments', tenant, 'prod'))).toBe(true);

      const deleted = await remove('prod');
      expect(deleted).toMatchObject({ id: 'prod', state: 'Deleted', deletedAt: expect.any(String) });
      expect(deleted.lock).toBeUndefined();
      // Crypto-shredding as R9's: the database, its key record and its backup are gone.
      expect(existsSync(join(parts.config.dataDir, 'environments', tenant, 'prod'))).toBe(false);
      expect(await parts.databases.listBackups(tenant, 'prod')).toEqual([]);
      const mails = (await parts.outbox.list(tenant)).filter((m) => m.event === 'environment-deleted');
      expect(mails.map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
      expect(mails[0]!.body).toMatch(/were locked and bob@example\.com deleted them on request at \S+, with their backups and their key records: prod\./);
      await expect(remove('prod')).rejects.toMatchObject({ code: 'NOT_FOUND' });

      // dev is still locked: R11 still holds. Once it goes too, a new key may be set.
      await expect(plane.changeKey(tenant, keyChange(ALICE, await ctx.stage()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
      expect(await remove('dev', ALICE)).toMatchObject({ state: 'Deleted' });
      expect((await plane.changeKey(tenant, keyChange(ALICE, await ctx.stage()))).key.state).toBe('Active');
      // No R9 deadline is left behind: nothing more is deleted or warned of later (3 mails for prod, 2 for dev).
      await harness.env.sleep(30 * 24 * HOUR);
      expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'environment-deleted' || m.event === 'deletion-warning')).toHaveLength(5);
    },
    (parts) => {
      const { wrapped, control: c } = refusing(parts.databases, 'destroy', () => ApplicationFailure.nonRetryable('The database server refused: the login lacks DROP DATABASE.', 'DATABASE_REFUSED'));
      control = c;
      control.refusing = false;
      return { databases: wrapped };
    },
  );
}, 180_000);
