/**
 * Issue 19: `cmk tenant lock --all-regions` — the reference document's lock of the whole tenant, on a stack serving
 * two regions, each with its own key. One confirmation; each region proved by the .pfx whose key is its active key;
 * all or none: any refusal (a missing key file, a region with environments but no key, a wrong name, another key,
 * the embargo) locks nothing in any region. Then every region is Locked, each region's key re-activates and unlocks.
 * The console does the same in Debian's Chromium, each region's .pfx signing its challenge in the page.
 */
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startStack, type Stack } from '../harness/stack';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from './support/browser';
import { scratchDir } from './support/scratch';
import { until } from './support/deadline';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-lock-all-');
const ALICE = 'alice@globex.example';
const BOB = 'bob@globex.example';
const tenant = 'globex';

beforeAll(async () => {
  stack = await startStack({ CMK_REGIONS: 'eu,us', CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '8s', CMK_UNLOCK_DELAY: '1s' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'globex key password 1\n');
const otherPassword = file('other-password.txt', 'another key password 2\n');
const pfx = (name: string) => `${work}/${name}.pfx`;
const lockAll = (files: string[], passwords: string[], extra: string[] = [], as = ALICE) =>
  stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Globex Corp', '--all-regions', ...files.flatMap((f) => ['--file', f]), ...passwords.flatMap((p) => ['--password-file', p]), '--json', ...extra], { as });
const states = async () =>
  Object.fromEntries(
    ((await stack.cmk(['env', 'list', '--tenant', tenant, '--region', 'eu', '--json'], { as: ALICE })).json().environments as Array<{ id: string; state: string }>)
      .concat((await stack.cmk(['env', 'list', '--tenant', tenant, '--region', 'us', '--json'], { as: ALICE })).json().environments)
      .map((e) => [e.id, e.state]),
  );
const keyState = async (region: string) => (await stack.cmk(['key', 'show', '--tenant', tenant, '--region', region, '--json'], { as: ALICE })).json().activeKey?.state;

test('every region locked at once with one confirmation; any refusal locks nothing anywhere', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Globex Corp', '--region', 'eu', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  for (const [env, region] of [['prod-eu', 'eu'], ['prod-us', 'us'], ['dev-us', 'us']] as const) {
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', env, '--region', region])).code).toBe(0);
  }
  // Only eu has a key so far: us has environments and no key, so a lock of every region is refused, naming it.
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'eu-1', '--region', 'eu', '--password-file', password, '--out', pfx('eu'), '--wait'], { as: ALICE })).code).toBe(0);
  const noKey = await lockAll([pfx('eu')], [password]);
  expect([noKey.code, noKey.json().error.code]).toEqual([3, 'KEY_NOT_ACTIVE']);
  expect(noKey.json().error.message).toMatch(/Region us has environments but no active key/);

  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'us-1', '--region', 'us', '--password-file', otherPassword, '--out', pfx('us'), '--wait'], { as: ALICE })).code).toBe(0);
  for (const env of ['prod-eu', 'prod-us']) expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', env, '--accept-risk'], { as: ALICE })).code).toBe(0);
  const before = await states();
  expect(before).toEqual({ 'prod-eu': 'Online', 'prod-us': 'Online', 'dev-us': 'Online' });

  // Refused, each with nothing locked anywhere.
  const usage = await lockAll([pfx('eu'), pfx('us')], [password, otherPassword], ['--region', 'eu']);
  expect(usage.code).toBe(2);
  const wrongPasswords = await lockAll([pfx('eu'), pfx('us')], [password, password, password]);
  expect(wrongPasswords.code).toBe(2);
  const missing = await lockAll([pfx('eu')], [password]);
  expect([missing.code, missing.json().error.code]).toEqual([3, 'KEY_MISMATCH']);
  expect(missing.json().error.message).toMatch(/region us's active key "us-1"/);
  const wrongName = await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'globex corp', '--all-regions', '--file', pfx('eu'), '--file', pfx('us'), '--password-file', password, '--password-file', otherPassword, '--json'], { as: ALICE });
  expect([wrongName.code, wrongName.json().error.code]).toEqual([3, 'TENANT_NAME_MISMATCH']);
  const service = await lockAll([pfx('eu'), pfx('us')], [password, otherPassword], [], 'mallory@evil.example');
  expect([service.code, service.json().error.code]).toEqual([3, 'FORBIDDEN']);
  // Over the API: a proof given twice for one region, or a region with nothing to lock.
  const twice = await stack.api('POST', `/v1/tenants/${tenant}/lock/all-regions`, { as: ALICE, body: { confirm: 'Globex Corp', proofs: [{ region: 'eu', challenge: 'x', signature: 'AA==' }, { region: 'eu', challenge: 'y', signature: 'AA==' }] } });
  expect([twice.status, twice.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
  const junk = await stack.api('POST', `/v1/tenants/${tenant}/lock/all-regions`, { as: ALICE, body: { confirm: 'Globex Corp', proofs: 'all of them' } });
  expect([junk.status, junk.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
  expect(await states()).toEqual(before);
  expect([await keyState('eu'), await keyState('us')]).toEqual(['Active', 'Active']);

  // Accepted once the embargo after the last key change has passed: every region's environments Locked, both keys.
  let locked = await lockAll([pfx('eu'), pfx('us')], [password, otherPassword]);
  await until('the embargo has passed', async () => {
    if (locked.code === 0) return true;
    expect(locked.json().error.code).toBe('LOCK_EMBARGO');
    expect(await states()).toEqual(before);
    locked = await lockAll([pfx('eu'), pfx('us')], [password, otherPassword]);
    return undefined;
  }, 60_000);
  const report = locked.json();
  expect(report.regions.map((r: { region: string }) => r.region)).toEqual(['eu', 'us']);
  expect(report.regions.find((r: { region: string }) => r.region === 'us')).toMatchObject({ sealed: ['prod-us'], lockedByDecisionOnly: ['dev-us'] });
  expect(await states()).toEqual({ 'prod-eu': 'Locked', 'prod-us': 'Locked', 'dev-us': 'Locked' });
  expect([await keyState('eu'), await keyState('us')]).toEqual(['Locked', 'Locked']);
  // One audit record says it all.
  const audit = await stack.cmk(['audit', 'list', '--tenant', tenant, '--json'], { as: ALICE });
  const records = (audit.json().records ?? audit.json().entries ?? []) as Array<{ action: string; outcome: string; details?: Record<string, unknown> }>;
  expect(records.filter((r) => r.action === 'tenant.lock' && r.outcome === 'completed')).toEqual([expect.objectContaining({ details: expect.objectContaining({ regions: 'eu,us' }) })]);
  // Again: nothing left to lock (every region has locked environments).
  const again = await lockAll([pfx('eu'), pfx('us')], [password, otherPassword]);
  expect([again.code, again.json().error.code]).toEqual([3, 'LOCKED_ENVIRONMENTS_EXIST']);

  // Each region's key re-activates and its environments unlock, one at a time.
  for (const [region, file, pw] of [['eu', pfx('eu'), password], ['us', pfx('us'), otherPassword]] as const) {
    expect((await stack.cmk(['key', 'reactivate', '--tenant', tenant, '--region', region, '--file', file, '--password-file', pw], { as: ALICE })).code).toBe(0);
  }
  for (const env of ['prod-eu', 'prod-us']) {
    await until(`${env} unlocks`, async () => ((await stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', env], { as: ALICE })).code === 0 ? true : undefined), 30_000);
  }
  expect(await states()).toMatchObject({ 'prod-eu': 'Online', 'prod-us': 'Online', 'dev-us': 'Locked' });
}, 300_000);

const browserTest = haveChromium ? test : test.skip;

browserTest('the console locks every region at once, each .pfx signing in the page; a refusal locks nothing', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await (await browser.newContext()).newPage();
    const bodies: string[] = [];
    page.on('request', (r) => bodies.push(r.postData() ?? ''));
    const link = await stack.cmk(['console', '--tenant', tenant, '--no-open'], { as: ALICE });
    await page.goto(link.stdout.trim().split('\n').pop()!);
    await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Lock' }).click();
    const every = page.getByRole('region', { name: 'Lock every region at once' });
    await every.getByLabel('Tenant name').fill('Globex Corp');
    // The files swapped: refused in the page, before any challenge is asked for.
    await every.getByLabel('Key file for eu').setInputFiles(pfx('us'));
    await every.getByLabel('Password for eu').fill('another key password 2');
    await every.getByLabel('Key file for us').setInputFiles(pfx('eu'));
    await every.getByLabel('Password for us').fill('globex key password 1');
    await every.getByRole('button', { name: 'Lock every region' }).click();
    await every.getByRole('alert').filter({ hasText: /KEY_MISMATCH The file chosen for eu/ }).waitFor();
    // The right files, but dev-us is still locked from the first test: the service refuses, nothing is locked.
    await every.getByLabel('Key file for eu').setInputFiles(pfx('eu'));
    await every.getByLabel('Password for eu').fill('globex key password 1');
    await every.getByLabel('Key file for us').setInputFiles(pfx('us'));
    await every.getByLabel('Password for us').fill('another key password 2');
    await every.getByRole('button', { name: 'Lock every region' }).click();
    await every.getByRole('alert').filter({ hasText: 'LOCKED_ENVIRONMENTS_EXIST' }).waitFor();
    expect(await states()).toEqual({ 'prod-eu': 'Online', 'prod-us': 'Online', 'dev-us': 'Locked' });
    // dev-us, not worth unlocking, is deleted; then every region locks at once.
    expect((await stack.cmk(['env', 'delete', '--tenant', tenant, '--env', 'dev-us', '--confirm', 'dev-us'], { as: ALICE })).code).toBe(0);
    await every.getByLabel('Password for eu').fill('globex key password 1');
    await every.getByLabel('Password for us').fill('another key password 2');
    await every.getByRole('button', { name: 'Lock every region' }).click();
    await every.locator('.done').filter({ hasText: 'locked in every region (eu, us)' }).waitFor();
    expect(await states()).toMatchObject({ 'prod-eu': 'Locked', 'prod-us': 'Locked' });
    // Neither .pfx nor its password left the page.
    for (const [file, password] of [[pfx('eu'), 'globex key password 1'], [pfx('us'), 'another key password 2']] as const) {
      const b64 = readFileSync(file).toString('base64');
      expect(bodies.filter((b) => b.includes(password) || b.includes(b64.slice(0, 64)))).toEqual([]);
    }
  } finally {
    await browser.close();
  }
}, 180_000);
