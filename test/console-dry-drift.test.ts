/**
 * Issue 19 in the console, as tenant administrators meet it (`npm start`'s stack, Debian's Chromium): a Preview
 * beside generate, upload, rollback, apply, revert and lock calls the same route with `"dryRun": true` and says in
 * words what would happen — environments, those going offline, mails and their recipients, or the refusal with its
 * code — and nothing changes (key, environments and mail read with `cmk` before and after). The lock's preview sends
 * neither the .pfx nor its password. Then drift: a key record changed behind cmk's back, **Check drift now**, and the
 * environments table's Drift badge; axe-core on the pages with the panels open.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { startStack, type Stack } from '../harness/stack';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { generateKeyPfx } from '../keyfiles/generate';
import { parsePfx } from '../keyfiles/pfx';
import { scratchDir } from './support/scratch';
import { onceTimeAllows, until } from './support/deadline';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, seriousAxeViolations } from './support/browser';

if (!haveChromium) console.warn(`console-dry-drift.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const browserTest = haveChromium ? test : test.skip;

const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SAM = 'sam@contoso.example';
const PASSWORD = 'Correct-horse-battery-9';
const tenant = 'contoso';
const { dir: work, file } = scratchDir('cmk-console-dry-');
const passwordFile = file('password.txt', `${PASSWORD}\n`);

let stack: Stack;
let browser: Browser | undefined;
let base: string;
const pageErrors: string[] = [];
afterEach(() => expect(pageErrors.splice(0)).toEqual([]));

beforeAll(async () => {
  // The embargo after a key change (R6) is long enough for Bob's rollback preview to find it open, short enough to wait out.
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '40s', CMK_DRIFT_CHECK_INTERVAL: '2h' });
  base = `http://127.0.0.1:${stack.env.CMK_API_PORT}`;
  if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Contoso Ltd', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  for (const env of ['prod', 'stage', 'dev']) expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', env, ...(env === 'prod' ? ['--admin', SAM] : [])])).code).toBe(0);
  // prod and stage on k1, dev on the provider key; then k2 replaces k1 (so that a rollback is open).
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', passwordFile, '--out', join(work, 'k1.pfx'), '--wait'], { as: ALICE })).code).toBe(0);
  for (const env of ['prod', 'stage']) expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', env, '--accept-risk'], { as: ALICE })).code).toBe(0);
  const k2 = await onceTimeAllows('k2 once R5 allows it', () => stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k2', '--password-file', passwordFile, '--out', join(work, 'k2.pfx'), '--wait'], { as: ALICE }));
  expect(k2.code).toBe(0);
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

interface Person {
  context: BrowserContext;
  page: Page;
  requests: Request[];
  downloads: string[];
}

async function signIn(as: string): Promise<Person> {
  const r = await stack.cmk(['console', '--tenant', tenant, '--no-open'], { as });
  expect(r.code).toBe(0);
  const context = await browser!.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const requests: Request[] = [];
  const downloads: string[] = [];
  page.on('request', (q) => requests.push(q));
  page.on('download', (d) => downloads.push(d.suggestedFilename()));
  page.on('pageerror', (e) => pageErrors.push(`${as}: ${e.message}`));
  await page.goto(r.stdout.trim().split('\n').pop()!);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  return { context, page, requests, downloads };
}

async function open(person: Person, view: string, heading: string | RegExp): Promise<Page> {
  await person.page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: view }).click();
  await person.page.getByRole('heading', { level: 1, name: heading }).waitFor();
  return person.page;
}

const json = async (args: string[], as?: string) => {
  const r = await stack.cmk([...args, '--json'], as ? { as } : {});
  expect(r.code).toBe(0);
  return r.json();
};
/** What a preview must leave as it was: the key, the environments, the mail. */
const state = async () => {
  // The rollback window (R6) closes while the test waits out the embargo: the clock's doing, not a preview's.
  const { rollbackAvailableUntil: _closesWithTime, ...key } = await json(['key', 'show', '--tenant', tenant], ALICE);
  return {
    key,
    environments: (await json(['env', 'list', '--tenant', tenant], ALICE)).environments,
    mails: (await json(['mail', 'list', '--tenant', tenant])).mails,
  };
};

/** The preview panel (a polite live region) named `name` in `scope`, once it shows a report. */
async function report(scope: ReturnType<Page['locator']>, name: string): Promise<string> {
  const panel = scope.getByRole('status', { name });
  await panel.filter({ hasText: 'Preview: nothing was changed' }).waitFor();
  expect(await panel.getAttribute('aria-live')).toBe('polite');
  return panel.innerText();
}

browserTest('Preview beside each action says what would happen, or the refusal with its code; nothing changes', async () => {
  const before = await state();
  const k1 = parsePfx(readFileSync(join(work, 'k1.pfx')), PASSWORD);
  const k2 = before.key.activeKey.thumbprint as string;

  // ---- Bob, service administrator: the rollback Alice's change allows (R6), previewed first while its window is open.
  const bob = await signIn(BOB);
  let page = await open(bob, 'Keys', 'Keys');
  const rollback = page.getByRole('region', { name: 'Roll back the last key change' });
  await rollback.getByRole('button', { name: 'Preview rollback' }).click();
  let text = await report(rollback, 'Preview of the rollback');
  expect(text).toContain('(roll back the key, region');
  expect(text).toContain('would be accepted');
  expect(text).toMatch(new RegExp(`prod: Online on the tenant key ${k2.slice(0, 16)}… → Online on the tenant key ${k1.thumbprint.slice(0, 16)}…`));
  expect(text).toMatch(/stage: Online on the tenant key/);
  expect(text).not.toMatch(/dev:/);
  expect(text).toContain('No environment would go offline.');
  expect(text).toMatch(/“key-rolled-back” to .*alice@contoso\.example/);
  await bob.context.close();

  // ---- Alice, global administrator.
  const alice = await signIn(ALICE);
  page = await open(alice, 'Keys', 'Keys');
  // Her own change: the service refuses her the rollback's preview as the rollback itself (R6), code and sentence.
  const ownRollback = page.getByRole('region', { name: 'Roll back the last key change' });
  await ownRollback.getByRole('button', { name: 'Preview rollback' }).click();
  await ownRollback.getByRole('alert').filter({ hasText: /FORBIDDEN .+/ }).waitFor();

  // Generate: the new key would re-protect prod and stage, mailed to the administrators and prod's system administrator.
  const generate = page.getByRole('region', { name: 'Generate a key' });
  await generate.getByLabel('Key name').fill('k3');
  await generate.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await generate.getByLabel('Confirm password').fill(PASSWORD);
  await generate.getByRole('button', { name: 'Preview generate' }).click();
  text = await report(generate, 'Preview of the key generation');
  expect(text).toContain('(generate a key, region');
  expect(text).toContain('would be accepted');
  expect(text).toContain('Environments touched (2):');
  expect(text).toMatch(/prod: Online on the tenant key .+ → Online on the new key/);
  expect(text).toMatch(/stage: Online on the tenant key .+ → Online on the new key/);
  expect(text).toContain('No environment would go offline.');
  expect(text).toMatch(/“key-changed” to .*alice@contoso\.example/);
  expect(text).toContain(SAM);
  // A password the real generate refuses: the report says so, with the code and its sentence.
  await generate.getByLabel('Password', { exact: true }).fill('short');
  await generate.getByLabel('Confirm password').fill('short');
  await generate.getByRole('button', { name: 'Preview generate' }).click();
  await generate.getByRole('status', { name: 'Preview of the key generation' }).filter({ hasText: /would be refused:\s*WEAK_PASSWORD .*at least 12 characters/ }).waitFor();

  // Upload: a .pfx made outside (opened by the service, its thumbprint shown); a wrong password is refused.
  const own = await generateKeyPfx({ name: 'own', password: PASSWORD });
  const ownPath = file('own.pfx', own.pfx);
  const upload = page.getByRole('region', { name: 'Upload your own key' });
  await upload.getByLabel('Key name').fill('own');
  await upload.getByLabel('Key file').setInputFiles(ownPath);
  await upload.getByLabel('Password').fill('not the password');
  await upload.getByRole('button', { name: 'Preview upload' }).click();
  await upload.getByRole('status', { name: 'Preview of the upload' }).filter({ hasText: /would be refused:\s*WRONG_PASSWORD \S/ }).waitFor();
  await upload.getByLabel('Password').fill(PASSWORD);
  await upload.getByRole('button', { name: 'Preview upload' }).click();
  await upload.getByRole('status', { name: 'Preview of the upload' }).filter({ hasText: 'would be accepted' }).waitFor();
  text = await report(upload, 'Preview of the upload');
  expect(text).toContain(`Key “own” (pfx), thumbprint ${own.thumbprint}.`);
  expect(text).toContain('Environments touched (2):');

  // ---- Environments: revert of prod, apply of dev; apply of prod meets its refusal.
  page = await open(alice, 'Environments', /Environments/);
  const row = (id: string) => page.locator('tbody tr').filter({ has: page.getByRole('rowheader', { name: id, exact: true }) });
  await row('prod').getByRole('button', { name: 'Preview revert' }).click();
  text = await report(row('prod'), 'Preview for prod');
  expect(text).toContain('(revert to the provider key, region');
  expect(text).toMatch(/prod: Online on the tenant key .+ → Online on the provider key/);
  expect(text).toMatch(/“environment-reverted” to .*sam@contoso\.example/);
  await row('dev').getByRole('button', { name: 'Preview apply' }).click();
  text = await report(row('dev'), 'Preview for dev');
  expect(text).toMatch(new RegExp(`dev: Online on the provider key → Online on the tenant key ${k2.slice(0, 16)}…`));
  expect(text).toContain('“environment-applied” to');
  await row('prod').getByRole('button', { name: 'Preview apply' }).click();
  await row('prod').getByRole('status', { name: 'Preview for prod' }).filter({ hasText: /would be refused:\s*ALREADY_EXISTS Environment prod is already protected/ }).waitFor();

  // ---- Lock: the preview reads neither the key file nor its password, though both are filled in.
  page = await open(alice, 'Lock', 'Lock the tenant');
  const lock = page.getByRole('region', { name: /Lock in/ });
  alice.requests.length = 0;
  await lock.getByLabel('Key file').setInputFiles(join(work, 'k2.pfx'));
  await lock.getByLabel('Password').fill(PASSWORD);
  await lock.getByLabel('Tenant name').fill('Contoso');
  await lock.getByRole('button', { name: 'Preview lock' }).click();
  await lock.getByRole('status', { name: 'Preview of the lock' }).filter({ hasText: /would be refused:\s*TENANT_NAME_MISMATCH Type the tenant's display name exactly/ }).waitFor();
  await lock.getByLabel('Tenant name').fill('Contoso Ltd');
  // The embargo after k2 (R6) is a refusal too; previewed again until only the plan is left.
  await until('the lock preview is accepted once the embargo is over', async () => {
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${base}/v1/tenants/${tenant}/lock` && r.request().method() === 'POST'),
      lock.getByRole('button', { name: 'Preview lock' }).click(),
    ]);
    const dry = (await answer.json()) as { wouldSucceed: boolean; refusal: { code: string } | null };
    if (dry.wouldSucceed) return true;
    expect(dry.refusal?.code).toBe('LOCK_EMBARGO');
    await lock.getByRole('status', { name: 'Preview of the lock' }).filter({ hasText: /would be refused:\s*LOCK_EMBARGO \S/ }).waitFor();
    await page.waitForTimeout(1000);
    return undefined;
  }, 90_000);
  await lock.getByRole('status', { name: 'Preview of the lock' }).filter({ hasText: 'would be accepted' }).waitFor();
  text = await report(lock, 'Preview of the lock');
  expect(text).toContain('(lock the tenant, region');
  for (const id of ['prod', 'stage']) expect(text).toMatch(new RegExp(`${id}: Online on the tenant key .+ → Locked on the tenant key .+ — goes offline`));
  expect(text).toMatch(/dev: Online on the provider key → Locked on the provider key — goes offline/);
  expect(text).toMatch(/Would go offline: (prod|stage|dev), (prod|stage|dev), (prod|stage|dev)\./);
  expect(text).toContain('The real lock also needs proof that you hold the active key “k2”');
  expect(text).toMatch(/“tenant-locked” to .*sam@contoso\.example/);
  // Every request while previewing: no challenge asked for, and no body with the .pfx (raw or base64) or the password.
  const pfx = readFileSync(join(work, 'k2.pfx'));
  const bodies = alice.requests.map((r) => r.postDataBuffer() ?? Buffer.alloc(0));
  expect(alice.requests.filter((r) => r.url().endsWith('/lock')).length).toBeGreaterThanOrEqual(2);
  expect(alice.requests.filter((r) => r.url().includes('/challenges'))).toEqual([]);
  for (const body of bodies) {
    expect(body.includes(pfx.subarray(0, 64))).toBe(false);
    expect(body.toString('latin1')).not.toContain(pfx.toString('base64').slice(0, 64));
    expect(body.toString('utf8')).not.toContain(PASSWORD);
  }
  for (const body of alice.requests.filter((r) => r.url().endsWith('/lock')).map((r) => r.postDataJSON() as Record<string, unknown>)) {
    expect(Object.keys(body).sort()).toEqual(['confirm', 'dryRun', 'region']);
    expect(body.dryRun).toBe(true);
  }

  // Nothing changed: no key made or uploaded, nothing downloaded, no environment moved, no mail.
  expect(alice.downloads).toEqual([]);
  expect(await state()).toEqual(before);
  await alice.context.close();
}, 300_000);

browserTest('drift: Check drift now finds a key record changed behind cmk’s back, and the table shows its badge', async () => {
  const alice = await signIn(ALICE);
  const page = await open(alice, 'Environments', /Environments/);
  const row = (id: string) => page.locator('tbody tr').filter({ has: page.getByRole('rowheader', { name: id, exact: true }) });
  const drift = page.getByRole('region', { name: 'Drift' });
  expect(await page.locator('tbody .badge').count()).toBe(0);
  await drift.getByRole('button', { name: 'Check drift now' }).click();
  await drift.getByRole('status', { name: 'Drift check result' }).filter({ hasText: `No drift: every environment of ${tenant} is as cmk set it` }).waitFor();
  expect(await page.locator('tbody .badge').count()).toBe(0);

  // prod's key record re-wrapped with the provider key, behind the workflow's back (as test/drift-e2e.test.ts does).
  const parts = buildParts(loadConfig({ CMK_DATA_DIR: stack.dataDir, CMK_SECRETS_DIR: stack.secretsDir }));
  const dev = await parts.databases.describe(tenant, 'dev');
  await parts.databases.reprotect(tenant, 'prod', dev!.protector);

  await drift.getByRole('button', { name: 'Check drift now' }).click();
  const result = drift.getByRole('status', { name: 'Drift check result' });
  await result.filter({ hasText: 'Drift in 1 environment' }).waitFor();
  expect(await result.innerText()).toMatch(/prod: .*protected by the provider key, not the tenant key.*, new\)/);
  // The table follows: prod carries the badge and the summary, the others nothing.
  await row('prod').locator('.badge').filter({ hasText: 'Drift' }).waitFor();
  expect(await row('prod').getByRole('cell').filter({ has: page.locator('.badge') }).innerText()).toContain('protected by the provider key, not the tenant key');
  expect(await row('stage').locator('.badge').count()).toBe(0);
  expect(await row('dev').locator('.badge').count()).toBe(0);
  expect(await page.getByRole('columnheader', { name: 'Drift' }).count()).toBe(1);
  // What the console shows is env list's drift.
  const listed = (await json(['env', 'list', '--tenant', tenant], ALICE)).environments as Array<{ id: string; drift?: { summary: string } }>;
  expect(listed.filter((e) => e.drift).map((e) => e.id)).toEqual(['prod']);
  expect(await row('prod').innerText()).toContain(listed.find((e) => e.id === 'prod')!.drift!.summary);
  await alice.context.close();

  // Sam, prod's system administrator, sees the badge; the check is not his to run (the route refuses him too).
  const sam = await signIn(SAM);
  const samPage = await open(sam, 'Environments', /Environments/);
  await samPage.locator('tbody tr .badge').filter({ hasText: 'Drift' }).waitFor();
  const samDrift = samPage.getByRole('region', { name: 'Drift' });
  expect(await samDrift.getByRole('button', { name: 'Check drift now' }).isDisabled()).toBe(true);
  await expect(samDrift.locator('.why').innerText()).resolves.toContain("global and service administrators");
  const forbidden = await stack.api('POST', `/v1/tenants/${tenant}/drift-check`, { as: SAM, body: {} });
  expect(forbidden.status).toBe(403);
  await sam.context.close();
}, 180_000);

browserTest('axe-core finds nothing serious or critical with the preview and drift panels open', async () => {
  const violations: string[] = [];
  const scan = async (page: Page, name: string) => void violations.push(...(await seriousAxeViolations(page, name)));
  const alice = await signIn(ALICE);
  let page = await open(alice, 'Keys', 'Keys');
  const generate = page.getByRole('region', { name: 'Generate a key' });
  await generate.getByLabel('Key name').fill('k3');
  await generate.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await generate.getByLabel('Confirm password').fill(PASSWORD);
  await generate.getByRole('button', { name: 'Preview generate' }).click();
  await report(generate, 'Preview of the key generation');
  const rollback = page.getByRole('region', { name: 'Roll back the last key change' });
  await rollback.getByRole('button', { name: 'Preview rollback' }).click();
  await rollback.getByRole('alert').waitFor();
  await scan(page, 'Keys');

  page = await open(alice, 'Environments', /Environments/);
  const prod = page.locator('tbody tr').filter({ has: page.getByRole('rowheader', { name: 'prod', exact: true }) });
  await prod.getByRole('button', { name: 'Preview revert' }).click();
  await report(prod, 'Preview for prod');
  const drift = page.getByRole('region', { name: 'Drift' });
  await drift.getByRole('button', { name: 'Check drift now' }).click();
  await drift.getByRole('status', { name: 'Drift check result' }).filter({ hasText: /Drift in|No drift/ }).waitFor();
  await scan(page, 'Environments');

  page = await open(alice, 'Lock', 'Lock the tenant');
  const lock = page.getByRole('region', { name: /Lock in/ });
  await lock.getByLabel('Tenant name').fill('Contoso Ltd');
  await lock.getByRole('button', { name: 'Preview lock' }).click();
  await report(lock, 'Preview of the lock');
  await scan(page, 'Lock');
  expect(violations).toEqual([]);
  await alice.context.close();
}, 180_000);
