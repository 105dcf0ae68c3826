/**
 * The console with a key that lives in the tenant's HSM (issues 17 and 19), in Debian's Chromium, each step checked
 * with `cmk` from outside: the key-exchange key downloads, the .byok (made here as the HSM would) uploads kept
 * Available, the key history shows it and activates it; environments are applied (CLI), backed up, changed and
 * restored, reverted in the page; a second key's re-protection progress fills in without a reload; the lock is proved
 * with a detached signature over a downloaded challenge (no .pfx exists); the .byok re-activates the key without a
 * password, one environment is unlocked and the other, not worth unlocking, is deleted now.
 */
import { createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startStack, type Stack } from '../harness/stack';
import { makeByok } from '../harness/keyfiles';
import { scratchDir } from './support/scratch';
import { until } from './support/deadline';
import { actWhenTimeAllows } from './support/console';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from './support/browser';

if (!haveChromium) console.warn(`console-hsm.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const browserTest = haveChromium ? test : test.skip;

const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const PASSWORD = 'Correct-horse-battery-9';
const { dir: work } = scratchDir('cmk-console-hsm-');

let stack: Stack;
let browser: Browser | undefined;
const pageErrors: string[] = [];

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '10s', CMK_UNLOCK_DELAY: '2s' });
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso Ltd', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  for (const env of ['prod', 'test']) expect((await stack.cmk(['env', 'create', '--tenant', 'contoso', '--env', env])).code).toBe(0);
  if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

const cmkJson = async (args: string[], as = ALICE) => (await stack.cmk([...args, '--tenant', 'contoso', '--json'], { as })).json();
const envOf = async (id: string) => ((await cmkJson(['env', 'list'])).environments as Array<{ id: string; state: string; protection: string; keyThumbprint: string | null }>).find((e) => e.id === id)!;

async function signIn(context: BrowserContext, as: string): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const r = await stack.cmk(['console', '--tenant', 'contoso', '--no-open'], { as });
  await page.goto(r.stdout.trim().split('\n').pop()!);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  return page;
}

async function open(page: Page, view: string, heading: string | RegExp): Promise<void> {
  await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: view }).click();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

/** The row of an environment in the Environments table. */
const row = (page: Page, env: string) => page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: env, exact: true }) });

browserTest('a key from an HSM: .byok kept Available then activated, backup and restore, progress, a lock by detached signature, re-activation, unlock, delete', async () => {
  const context = await browser!.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await signIn(context, ALICE);
  await open(page, 'Keys', 'Keys');
  const upload = page.getByRole('region', { name: 'Upload your own key' });

  // The key-exchange key downloads; the HSM (here: node) wraps its own key with it.
  const [kekDownload] = await Promise.all([page.waitForEvent('download'), upload.getByRole('button', { name: 'Download key-exchange key' }).click()]);
  expect(kekDownload.suggestedFilename()).toMatch(/^kek-[A-Za-z0-9._-]+\.pem$/);
  // The HSM is told the key-exchange key's ID as the page shows it.
  const kid = /Key-exchange key (\S+) downloaded/.exec(await upload.locator('.done').innerText())![1]!;
  const kekPem = readFileSync(await kekDownload.path(), 'utf8');
  expect(kekPem).toContain('-----BEGIN PUBLIC KEY-----');
  const hsmKey: KeyObject = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const byok = join(work, 'hsm-1.byok');
  writeFileSync(byok, makeByok(kekPem, kid, hsmKey));

  // Uploaded without activating: Available, nothing protected by it; `cmk key show` still has no tenant key.
  await upload.getByLabel('Key name').fill('hsm-1');
  await upload.getByLabel('Key file').setInputFiles(byok);
  await upload.getByLabel('Activate it now').uncheck();
  await upload.getByRole('button', { name: 'Upload key' }).click();
  await upload.locator('.done').filter({ hasText: 'kept Available' }).waitFor();
  expect((await cmkJson(['key', 'show'])).activeKey).toBeNull();
  const history = page.getByRole('region', { name: 'Key history' });
  await history.getByRole('row', { name: /^hsm-1 Available / }).waitFor();
  const [listed] = (await cmkJson(['key', 'history'])).keys as Array<{ name: string; state: string; thumbprint: string; source: string }>;
  expect(listed).toMatchObject({ name: 'hsm-1', state: 'Available', source: 'byok' });

  // Activated from the history (R5 counts from here).
  await history.getByRole('button', { name: 'Activate key hsm-1' }).click();
  await history.locator('.done').filter({ hasText: 'hsm-1 is active' }).waitFor();
  expect((await cmkJson(['key', 'show'])).activeKey).toMatchObject({ name: 'hsm-1', thumbprint: listed!.thumbprint, state: 'Active' });
  await history.getByRole('row', { name: /^hsm-1 Active / }).waitFor();

  // Both environments on the tenant key; prod gets a row, a backup, another row, then the backup back.
  for (const env of ['prod', 'test']) expect((await stack.cmk(['env', 'apply', '--tenant', 'contoso', '--env', env, '--accept-risk'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', 'contoso', '--env', 'prod', '--write', 'before the backup'], { as: ALICE })).code).toBe(0);
  await open(page, 'Environments', /Environments/);
  await row(page, 'prod').getByRole('button', { name: 'Backup', exact: true }).click();
  await row(page, 'prod').locator('.done').filter({ hasText: 'prod: backed up' }).waitFor();
  expect((await stack.cmk(['env', 'data', '--tenant', 'contoso', '--env', 'prod', '--write', 'after the backup'], { as: ALICE })).code).toBe(0);
  await row(page, 'prod').getByRole('button', { name: 'Restore', exact: true }).click();
  await row(page, 'prod').locator('.done').filter({ hasText: 'prod: restored from its newest backup' }).waitFor();
  const rows = JSON.stringify(await cmkJson(['env', 'data', '--env', 'prod']));
  expect(rows).toContain('before the backup');
  expect(rows).not.toContain('after the backup');

  // A second key (generated here) re-protects both: the progress reaches 2 / 2 on the Keys page without a reload.
  await open(page, 'Keys', 'Keys');
  const generate = page.getByRole('region', { name: 'Generate a key' });
  await generate.getByLabel('Key name').fill('k2');
  await generate.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await generate.getByLabel('Confirm password').fill(PASSWORD);
  await actWhenTimeAllows(generate, () => generate.getByRole('button', { name: 'Generate key' }).click(), /generated/);
  await page.getByText(/Re-protection 2 \/ 2/).waitFor();
  expect((await envOf('prod')).keyThumbprint).toBe((await cmkJson(['key', 'show'])).activeKey.thumbprint);
  // Bob rolls k2 back: hsm-1 again, whose only proof of possession is the HSM's signature.
  const bob = await signIn(await browser!.newContext(), BOB);
  await open(bob, 'Keys', 'Keys');
  await bob.getByRole('button', { name: 'Roll back' }).click();
  await bob.locator('.done').filter({ hasText: 'Rolled back' }).waitFor();
  expect((await cmkJson(['key', 'show'])).activeKey).toMatchObject({ name: 'hsm-1' });
  await bob.context().close();

  // test goes back to the provider key in the page.
  await open(page, 'Environments', /Environments/);
  await until('test is on the tenant key again', async () => ((await envOf('test')).keyThumbprint === listed!.thumbprint ? true : undefined), 60_000);
  await page.reload();
  await row(page, 'test').getByRole('button', { name: 'Revert', exact: true }).click();
  await row(page, 'test').locator('.done').filter({ hasText: 'test: back on the provider key' }).waitFor();
  expect(await envOf('test')).toMatchObject({ protection: 'provider' });

  // The lock, proved by a detached signature over the challenge the page downloads (there is no .pfx to sign with).
  await open(page, 'Lock', 'Lock the tenant');
  await page.getByLabel('A signature from your HSM').check();
  await page.getByLabel('Tenant name').fill('Contoso Ltd');
  // The embargo after the rollback holds the lock back; the page lets it through when it ends, without a reload.
  await page.getByText(/A lock becomes possible on/).waitFor();
  await page.getByRole('button', { name: 'Download challenge' }).and(page.locator(':enabled')).waitFor({ timeout: 60_000 });
  // A signature by another key: KEY_MISMATCH, nothing locked.
  const [challengeDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download challenge' }).click()]);
  const challenge = readFileSync(await challengeDownload.path());
  const wrong = join(work, 'wrong.sig');
  writeFileSync(wrong, sign('sha256', challenge, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey));
  await page.getByLabel('Signature file').setInputFiles(wrong);
  await page.getByRole('button', { name: 'Lock tenant' }).click();
  await page.getByRole('alert').filter({ hasText: 'KEY_MISMATCH' }).waitFor();
  expect(await envOf('prod')).toMatchObject({ state: 'Online' });
  // The HSM's own signature: locked once the embargo after the rollback has passed.
  const signature = join(work, 'lock.sig');
  await actWhenTimeAllows(
    page.getByRole('region', { name: /^Lock in / }),
    async () => {
      const [fresh] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download challenge' }).click()]);
      writeFileSync(signature, sign('sha256', readFileSync(await fresh.path()), createPrivateKey(hsmKey.export({ type: 'pkcs8', format: 'pem' }))));
      await page.getByLabel('Signature file').setInputFiles(signature);
      await page.getByRole('button', { name: 'Lock tenant' }).click();
    },
    /is locked/,
  );
  expect(await envOf('prod')).toMatchObject({ state: 'Locked' });

  // Re-activated with the .byok alone (no password), prod unlocked, test (on the provider key) deleted now.
  await open(page, 'Keys', 'Keys');
  const reactivate = page.getByRole('region', { name: 'Re-activate the key after a lock' });
  await reactivate.getByLabel('Locked key file').setInputFiles(byok);
  await reactivate.getByRole('button', { name: 'Re-activate key' }).click();
  await reactivate.locator('.done').filter({ hasText: 're-activated' }).waitFor();
  await open(page, 'Environments', /Environments/);
  await actWhenTimeAllows(row(page, 'prod'), () => row(page, 'prod').getByRole('button', { name: 'Unlock', exact: true }).click(), /unlocked/);
  expect(await envOf('prod')).toMatchObject({ state: 'Online', protection: 'tenant' });
  const testRow = row(page, 'test');
  await testRow.getByRole('button', { name: 'Delete…' }).click();
  await testRow.getByLabel('Type test to confirm').fill('prod');
  await testRow.getByRole('button', { name: 'Delete now' }).click();
  await testRow.getByRole('alert').filter({ hasText: 'INVALID_ARGUMENT' }).waitFor();
  expect(await envOf('test')).toMatchObject({ state: 'Locked' });
  await testRow.getByLabel('Type test to confirm').fill('test');
  await testRow.getByRole('button', { name: 'Delete now' }).click();
  await until('test is deleted', async () => ((await envOf('test'))?.state === 'Deleted' || (await envOf('test')) === undefined ? true : undefined), 60_000);
  await context.close();
  expect(pageErrors).toEqual([]);
}, 600_000);
