/**
 * Issue 19: the two-administrator lock. `cmk tenant policy --lock-approval 2` makes a lock one global or service
 * administrator asks for wait for a second one's `cmk tenant lock approve` within the approval window; the one who
 * asked cannot approve it, a cancelled or lapsed request locks nothing, a lowering of the policy holds only after
 * the window, and a raw Temporal client cannot approve. Every step is checked from the outside (env list, key show,
 * mail list, audit list) on `npm start`'s stack.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { chromium, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from './support/browser';
import { actWhenTimeAllows } from './support/console';
import { startStack, type Stack } from '../harness/stack';
import { loadDataConverter } from '../codec';
import { DEFAULT_POLICY } from '../domain/policy';
import { tenantWorkflowId, updates } from '../workflows/messages';
import { scratchDir } from './support/scratch';
import { onceTimeAllows, until } from './support/deadline';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-lock-approval-');
const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SAM = 'sam@contoso.example';
const WINDOW_S = 60;

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '2s', CMK_UNLOCK_DELAY: '1s', CMK_LOCK_APPROVAL_WINDOW: `${WINDOW_S}s` });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'contoso key password 1\n');
const refusal = (r: { code: number; json: () => object }) => [r.code, (r.json() as { error: { code: string } }).error.code];
const policy = async (tenant: string, as = ALICE) => (await stack.cmk(['tenant', 'policy', '--tenant', tenant, '--json'], { as })).json();
const envState = async (tenant: string, env: string) => ((await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ id: string; state: string }>).find((e) => e.id === env)?.state;
const keyState = async (tenant: string) => (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json().activeKey?.state as string;
const mails = async (tenant: string, event: string) => ((await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ event: string; to: string; subject: string; body?: string }>).filter((m) => m.event === event);
const askLock = (tenant: string, name: string, as: string, extra: string[] = []) =>
  stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', name, '--file', `${work}/${tenant}.pfx`, '--password-file', password, '--json', ...extra], { as });

/** A tenant with two administrators, a key applied to one environment, and the embargo over. */
async function tenantWithKey(tenant: string, name: string): Promise<void> {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', name, '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', password, '--out', `${work}/${tenant}.pfx`, '--wait'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'prod', '--accept-risk'], { as: ALICE })).code).toBe(0);
}

test('the policy: off by default; two need a second administrator; only global or service administrators set it', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'solo', '--name', 'Solo', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await policy('solo')).lockApproval).toBe(1);
  expect(refusal(await stack.cmk(['tenant', 'policy', '--tenant', 'solo', '--lock-approval', '2', '--json'], { as: ALICE }))).toEqual([3, 'INVALID_ARGUMENT']);
  expect((await stack.cmk(['tenant', 'policy', '--tenant', 'solo', '--lock-approval', '3'], { as: ALICE })).code).toBe(2);
  expect(refusal(await stack.cmk(['tenant', 'policy', '--tenant', 'solo', '--lock-approval', '1', '--json'], { as: 'mallory@evil.example' }))).toEqual([3, 'FORBIDDEN']);
  const junk = await stack.api('POST', '/v1/tenants/solo/policy', { as: ALICE, body: { lockApproval: '2' } });
  expect([junk.status, junk.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
  expect((await policy('solo')).lockApproval).toBe(1);
  // Setting what holds already changes nothing and mails nobody.
  expect((await stack.cmk(['tenant', 'policy', '--tenant', 'solo', '--lock-approval', '1', '--json'], { as: ALICE })).json().lockApproval).toBe(1);
  expect(await mails('solo', 'lock-policy-changed')).toEqual([]);
}, 60_000);

test('a lock asked for waits; the one who asked cannot approve; cancelled, nothing is locked; approved by a second administrator, it locks', async () => {
  await tenantWithKey('contoso', 'Contoso Ltd');
  const set = await stack.cmk(['tenant', 'policy', '--tenant', 'contoso', '--lock-approval', '2', '--json'], { as: ALICE });
  expect(set.code).toBe(0);
  expect(set.json()).toMatchObject({ tenant: 'contoso', lockApproval: 2, setBy: ALICE, pendingLock: null });
  expect((await mails('contoso', 'lock-policy-changed')).map((m) => m.to).sort()).toEqual([ALICE, BOB]);
  // A system administrator may not change it.
  expect(refusal(await stack.cmk(['tenant', 'policy', '--tenant', 'contoso', '--lock-approval', '1', '--json'], { as: SAM }))).toEqual([3, 'FORBIDDEN']);

  // Asked for (once the embargo is over): nothing locked yet; every administrator mailed.
  const asked = await onceTimeAllows('the embargo is over', () => askLock('contoso', 'Contoso Ltd', ALICE));
  expect(asked.code).toBe(0);
  const pending = asked.json().pendingLock as { id: string; requestedBy: string; expiresAt: string; regions: Array<{ region: string; thumbprint: string }> };
  expect(pending).toMatchObject({ requestedBy: ALICE, allRegions: false, regions: [{ region: 'default' }] });
  expect(Date.parse(pending.expiresAt) - Date.now()).toBeLessThanOrEqual(WINDOW_S * 1000);
  expect([await envState('contoso', 'prod'), await keyState('contoso')]).toEqual(['Online', 'Active']);
  expect((await mails('contoso', 'lock-requested')).map((m) => m.to).sort()).toEqual([ALICE, BOB]);
  expect((await policy('contoso')).pendingLock.id).toBe(pending.id);
  // `tenant show` names it without the key's thumbprint (the operator reads it too); the policy is the administrators'.
  expect((await stack.cmk(['tenant', 'show', '--tenant', 'contoso', '--json'])).json().tenant.pendingLock).toEqual({ ...pending, regions: [{ region: 'default' }] });
  expect(refusal(await stack.cmk(['tenant', 'policy', '--tenant', 'contoso', '--json']))).toEqual([3, 'FORBIDDEN']);
  const text = await stack.cmk(['tenant', 'policy', '--tenant', 'contoso'], { as: BOB });
  expect(text.stdout).toContain(`Waiting for approval: the lock asked for by ${ALICE}`);

  // Refused, each leaving it waiting: a second request; the requester's own approval; a wrong name; a system admin.
  expect(refusal(await askLock('contoso', 'Contoso Ltd', BOB))).toEqual([3, 'OPERATION_IN_PROGRESS']);
  const own = await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--json'], { as: ALICE });
  expect(refusal(own)).toEqual([3, 'FORBIDDEN']);
  expect(own.json().error.message).toMatch(/second global or service administrator/);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'contoso ltd', '--json'], { as: BOB }))).toEqual([3, 'TENANT_NAME_MISMATCH']);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--json'], { as: SAM }))).toEqual([3, 'FORBIDDEN']);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--id', 'not-it', '--json'], { as: BOB }))).toEqual([3, 'INVALID_ARGUMENT']);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--id', '00000000-0000-4000-8000-000000000000', '--json'], { as: BOB }))).toEqual([3, 'NOT_FOUND']);
  expect((await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso'], { as: BOB })).code).toBe(2);
  expect([await envState('contoso', 'prod'), await keyState('contoso')]).toEqual(['Online', 'Active']);

  // Through the Temporal frontend, with the codec key but without the API's signing key: refused, still waiting.
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  try {
    const raw = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir, {}) });
    const forged = { actor: { kind: 'user', email: BOB }, policy: DEFAULT_POLICY, id: pending.id, confirm: 'Contoso Ltd' };
    await expect(raw.workflow.getHandle(tenantWorkflowId('contoso')).executeUpdate(updates.approveLock.name, { args: [forged] })).rejects.toThrow();
  } finally {
    await connection.close();
  }
  expect((await policy('contoso')).pendingLock?.id).toBe(pending.id);

  // Cancelled by the other administrator: nothing locked, mailed; approving it now finds nothing.
  const cancelled = await stack.cmk(['tenant', 'lock', 'cancel', '--tenant', 'contoso', '--json'], { as: BOB });
  expect(cancelled.code).toBe(0);
  expect(cancelled.json().cancelled.id).toBe(pending.id);
  expect((await policy('contoso')).pendingLock).toBeNull();
  expect((await mails('contoso', 'lock-request-closed')).map((m) => m.to).sort()).toEqual([ALICE, BOB]);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--json'], { as: BOB }))).toEqual([3, 'NOT_FOUND']);
  expect(refusal(await stack.cmk(['tenant', 'lock', 'cancel', '--tenant', 'contoso', '--json'], { as: BOB }))).toEqual([3, 'NOT_FOUND']);
  expect([await envState('contoso', 'prod'), await keyState('contoso')]).toEqual(['Online', 'Active']);

  // A dry run says it would wait.
  const dry = await stack.cmk(['tenant', 'lock', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--dry-run', '--json'], { as: ALICE });
  expect(dry.code).toBe(0);
  expect(dry.json()).toMatchObject({ wouldSucceed: true, approval: { required: 2 }, mails: [{ event: 'lock-requested' }, { event: 'tenant-locked' }] });
  const dryText = await stack.cmk(['tenant', 'lock', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--dry-run'], { as: ALICE });
  expect(dryText.stdout).toMatch(/would wait for approval/);

  // Asked again by Bob, approved by Alice: locked, the mail says who asked and who approved; audited.
  const again = await askLock('contoso', 'Contoso Ltd', BOB);
  expect(again.code).toBe(0);
  const approved = await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'contoso', '--confirm', 'Contoso Ltd', '--json'], { as: ALICE });
  expect(approved.code).toBe(0);
  expect(approved.json()).toMatchObject({ tenant: 'contoso', requestedBy: BOB, approvedBy: ALICE, regions: [{ region: 'default', sealed: ['prod'] }] });
  expect([await envState('contoso', 'prod'), await keyState('contoso')]).toEqual(['Locked', 'Locked']);
  const locked = await mails('contoso', 'tenant-locked');
  expect(locked.length).toBeGreaterThan(0);
  expect(locked.map((m) => m.to)).toEqual(expect.arrayContaining([ALICE, BOB, SAM]));
  const audit = (await stack.cmk(['audit', 'list', '--tenant', 'contoso', '--limit', '200', '--json'], { as: ALICE })).json().records as Array<{ action: string; actor: string; outcome: string; details?: Record<string, unknown> }>;
  expect(audit.filter((r) => r.outcome === 'completed').map((r) => `${r.action} ${r.actor}`)).toEqual(expect.arrayContaining([`tenant.policy ${ALICE}`, `tenant.lock.request ${ALICE}`, `tenant.lock.cancel ${BOB}`, `tenant.lock.request ${BOB}`, `tenant.lock ${ALICE}`]));
  expect(audit.find((r) => r.action === 'tenant.lock' && r.outcome === 'completed')?.details).toMatchObject({ approved: true, requestedBy: BOB });
}, 180_000);

test('a request nobody approves lapses at the end of the window; a lowering of the policy holds only after it', async () => {
  await tenantWithKey('fabrikam', 'Fabrikam');
  expect((await stack.cmk(['tenant', 'policy', '--tenant', 'fabrikam', '--lock-approval', '2'], { as: BOB })).code).toBe(0);
  const asked = await onceTimeAllows('the embargo is over', () => askLock('fabrikam', 'Fabrikam', ALICE));
  expect(asked.code).toBe(0);
  // Lowered meanwhile: a lock still takes two until the window has passed.
  const lowered = await stack.cmk(['tenant', 'policy', '--tenant', 'fabrikam', '--lock-approval', '1', '--json'], { as: ALICE });
  expect(lowered.json()).toMatchObject({ lockApproval: 2, lockApprovalFrom: { value: 1 } });
  expect((await mails('fabrikam', 'lock-policy-changed')).some((m) => m.subject.includes('one administrator'))).toBe(true);

  const closed = await until('the request lapsed', async () => ((await mails('fabrikam', 'lock-request-closed')).length > 0 ? true : undefined), (WINDOW_S + 30) * 1000);
  expect(closed).toBe(true);
  expect((await policy('fabrikam')).pendingLock).toBeNull();
  const late = await stack.cmk(['tenant', 'lock', 'approve', '--tenant', 'fabrikam', '--confirm', 'Fabrikam', '--json'], { as: BOB });
  expect(refusal(late)).toEqual([3, 'NOT_FOUND']);
  expect([await envState('fabrikam', 'prod'), await keyState('fabrikam')]).toEqual(['Online', 'Active']);

  // The lowering holds now: one administrator locks alone again.
  await until('the lowering holds', async () => ((await policy('fabrikam')).lockApproval === 1 ? true : undefined), (WINDOW_S + 30) * 1000);
  const alone = await askLock('fabrikam', 'Fabrikam', ALICE);
  expect(alone.code).toBe(0);
  expect(alone.json()).toMatchObject({ region: 'default', sealed: ['prod'] });
  expect(await envState('fabrikam', 'prod')).toBe('Locked');
}, 180_000);

const browserTest = haveChromium ? test : test.skip;

browserTest('the console: one administrator requires a second, asks for a lock; the other approves it', async () => {
  await tenantWithKey('northwind', 'Northwind');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const open = async (as: string): Promise<Page> => {
      const page = await (await browser.newContext()).newPage();
      const link = await stack.cmk(['console', '--tenant', 'northwind', '--no-open'], { as });
      await page.goto(link.stdout.trim().split('\n').pop()!);
      await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Lock' }).click();
      return page;
    };
    const alice = await open(ALICE);
    const bodies: string[] = [];
    alice.on('request', (r) => bodies.push(r.postData() ?? ''));
    const policySection = alice.getByRole('region', { name: 'Two-administrator lock' });
    await policySection.getByRole('button', { name: 'Require a second administrator' }).click();
    await policySection.locator('.done').filter({ hasText: 'needs a second administrator' }).waitFor();
    expect((await policy('northwind')).lockApproval).toBe(2);

    // Asked for in the page, the .pfx signing there: it waits.
    const lock = alice.getByRole('region', { name: 'Lock in default' });
    await lock.getByLabel('Tenant name').fill('Northwind');
    await lock.getByLabel('Key file').setInputFiles(`${work}/northwind.pfx`);
    await actWhenTimeAllows(
      lock,
      async () => {
        await lock.getByLabel('Password').fill('contoso key password 1');
        await lock.getByRole('button', { name: 'Lock tenant' }).click();
      },
      /waits for a second administrator's approval/,
    );
    expect(await envState('northwind', 'prod')).toBe('Online');
    // The one who asked sees it waiting and cannot approve it.
    const waitingForAlice = alice.getByRole('region', { name: 'Lock waiting for approval' });
    await waitingForAlice.waitFor();
    expect(await waitingForAlice.getByRole('button', { name: 'Approve lock' }).isDisabled()).toBe(true);
    const b64 = readFileSync(`${work}/northwind.pfx`).toString('base64');
    expect(bodies.filter((b) => b.includes('contoso key password 1') || b.includes(b64.slice(0, 64)))).toEqual([]);

    // The second administrator: a wrong name refused beside the control; the right one locks.
    const bob = await open(BOB);
    const waiting = bob.getByRole('region', { name: 'Lock waiting for approval' });
    await waiting.getByText(`${ALICE} asked`).waitFor();
    await waiting.getByLabel('Tenant name to approve').fill('northwind');
    await waiting.getByRole('button', { name: 'Approve lock' }).click();
    await waiting.getByRole('alert').filter({ hasText: 'TENANT_NAME_MISMATCH' }).waitFor();
    expect(await envState('northwind', 'prod')).toBe('Online');
    await waiting.getByLabel('Tenant name to approve').fill('Northwind');
    await waiting.getByRole('button', { name: 'Approve lock' }).click();
    await bob.locator('.done').filter({ hasText: `asked for by ${ALICE}, approved by ${BOB}` }).waitFor();
    expect([await envState('northwind', 'prod'), await keyState('northwind')]).toEqual(['Locked', 'Locked']);
  } finally {
    await browser.close();
  }
}, 240_000);
