/**
 * Issue 19, what the reference document has and cmk lacked, end to end through `npm start`'s stack and the real `cmk`
 * bin: `env delete` of a locked environment (R11 lifts with the last one). Durations are short (R14); time rules are
 * waited for by asking again (onceTimeAllows), never by a fixed sleep.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from '../harness/stack';
import { onceTimeAllows } from './support/deadline';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-reference-e2e-');
const ALICE = 'alice@tailspin.example';
const BOB = 'bob@tailspin.example';
const SAM = 'sam@tailspin.example';

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '3s', CMK_UNLOCK_DELAY: '1s' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'tailspin key password 1\n');

/** A tenant with prod (system administrator sam) on its own generated key and dev on the provider key. */
async function tenantWithKey(tenant: string, name: string): Promise<string> {
  const pfx = join(work, `${tenant}.pfx`);
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', name, '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'dev'])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', `${tenant}-1`, '--password-file', password, '--out', pfx], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  return pfx;
}

const states = async (tenant: string) => ((await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ id: string; state: string }>).map((e) => [e.id, e.state]);

describe('env delete', () => {
  const tenant = 'tailspin';
  const del = (env: string, confirm: string | null, as = ALICE) => stack.cmk(['env', 'delete', '--tenant', tenant, '--env', env, ...(confirm === null ? [] : ['--confirm', confirm]), '--json'], { as });

  test('a locked environment is deleted now, mailed and audited; refusals change nothing; R11 lifts with the last one', async () => {
    const pfx = await tenantWithKey(tenant, 'Tailspin Toys');
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'a row'], { as: SAM })).code).toBe(0);
    expect((await stack.cmk(['env', 'backup', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);

    // Online: not deletable.
    const online = await del('prod', 'prod');
    expect([online.code, online.json().error.code]).toEqual([3, 'ALREADY_EXISTS']);
    expect(online.stderr).toMatch(/^ALREADY_EXISTS: Environment prod is not locked .*only a locked environment can be deleted/);

    const locked = await onceTimeAllows('the embargo lets the lock in', () => stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Tailspin Toys', '--file', pfx, '--password-file', password, '--json'], { as: ALICE }));
    expect(locked.code).toBe(0);

    // Refusals, in the order of DESIGN.md §4: usage, FORBIDDEN, NOT_FOUND, INVALID_ARGUMENT.
    expect((await del('prod', null)).code).toBe(2);
    expect((await del('prod', 'prod', SAM)).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['env', 'delete', '--tenant', tenant, '--env', 'prod', '--confirm', 'prod', '--json'])).json().error.code).toBe('FORBIDDEN');
    expect((await del('staging', 'staging')).json().error.code).toBe('NOT_FOUND');
    const mismatch = await del('prod', 'dev');
    expect([mismatch.code, mismatch.json().error.code]).toEqual([3, 'INVALID_ARGUMENT']);
    expect(await states(tenant)).toEqual([['prod', 'Locked'], ['dev', 'Locked']]);
    const envDir = join(stack.dataDir, 'environments', tenant, 'prod');
    expect(existsSync(envDir)).toBe(true);

    const deleted = await stack.cmk(['env', 'delete', '--tenant', tenant, '--env', 'prod', '--confirm', 'prod'], { as: BOB });
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(/^Environment prod deleted at \S+, with its backups and key record: no one can recover its data\.$/m);
    expect(existsSync(envDir)).toBe(false);
    expect(await states(tenant)).toEqual([['prod', 'Deleted'], ['dev', 'Locked']]);
    expect((await del('prod', 'prod')).json().error.code).toBe('NOT_FOUND');

    // R11 holds while dev is locked; it lifts once dev is deleted too.
    const newKey = () => stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'after-the-lock', '--password-file', password, '--out', join(work, `after-${Date.now()}.pfx`), '--json'], { as: ALICE });
    expect((await newKey()).json().error.code).toBe('LOCKED_ENVIRONMENTS_EXIST');
    const dev = await del('dev', 'dev');
    expect(dev.json().environment).toMatchObject({ id: 'dev', state: 'Deleted', deletedAt: expect.any(String) });
    const generated = await newKey();
    expect(generated.code).toBe(0);
    expect(generated.json().activeKey).toMatchObject({ name: 'after-the-lock', state: 'Active' });

    // R4: mailed to the administrators, and prod's deletion to its system administrator; audited with who did it.
    const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string }>;
    expect(mails.filter((m) => m.event === 'environment-deleted').map((m) => m.to).sort()).toEqual([ALICE, ALICE, BOB, BOB, SAM]);
    const records = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE })).json().records as Array<{ action: string; actor: string; outcome: string; environment?: string; code?: string }>;
    const deletions = records.filter((r) => r.action === 'env.delete');
    expect(deletions.filter((r) => r.outcome === 'completed').map((r) => [r.actor, r.environment])).toEqual([[BOB, 'prod'], [ALICE, 'dev']]);
    expect(deletions.filter((r) => r.outcome === 'refused').map((r) => r.code)).toEqual(expect.arrayContaining(['ALREADY_EXISTS', 'FORBIDDEN', 'INVALID_ARGUMENT', 'NOT_FOUND']));
  }, 120_000);
});
