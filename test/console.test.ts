/**
 * Issue 17, as tenant administrators meet it: `npm start`'s stack, the console at `/` in Debian's Chromium
 * (playwright-core), signed in with `cmk console` links. A whole journey as three people — Alice (global) generates
 * a key and its .pfx downloads; Sam (system administrator of prod) sees only prod and applies the key; Bob (service)
 * rolls back; after the embargo Alice locks (the challenge signed in the page: no request carries the .pfx or its
 * password), re-activates and unlocks — each step checked with `cmk` from outside. Then: axe-core on every page, the
 * Content-Security-Policy, sign-in links used twice, a session that ends mid-form, a phone-width screen. Screenshots
 * of the main pages go to docs/img (docs/CONSOLE.md shows them).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { startStack, type Stack } from '../harness/stack';
import { parsePfx } from '../keyfiles/pfx';
import { scratchDir } from './support/scratch';
import { until } from './support/deadline';
import { actWhenTimeAllows } from './support/console';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, seriousAxeViolations } from './support/browser';

if (!haveChromium) console.warn(`console.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const browserTest = haveChromium ? test : test.skip;

const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SAM = 'sam@contoso.example';
const PASSWORD = 'Correct-horse-battery-9';
const SECOND_PASSWORD = 'Tr0ubadour&3-staple-long';
const { dir: work } = scratchDir('cmk-console-');
const shots = join(__dirname, '..', 'docs', 'img');

let stack: Stack;
/** Script errors in any page: none expected (checked after each test). */
const pageErrors: string[] = [];
afterEach(() => expect(pageErrors.splice(0)).toEqual([]));
let browser: Browser | undefined;
let base: string;

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '15s', CMK_UNLOCK_DELAY: '2s' });
  base = `http://127.0.0.1:${stack.env.CMK_API_PORT}`;
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso Ltd', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'contoso', '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'contoso', '--env', 'test'])).code).toBe(0);
  if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  mkdirSync(shots, { recursive: true });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

/** A sign-in link from the real `cmk console` (its last line). */
async function signInLink(as: string): Promise<string> {
  const r = await stack.cmk(['console', '--tenant', 'contoso', '--no-open'], { as });
  expect(r.code).toBe(0);
  const link = r.stdout.trim().split('\n').pop()!;
  expect(link).toMatch(new RegExp(`^${base}/#/sign-in/[A-Za-z0-9_-]+/contoso$`));
  return link;
}

interface Person {
  context: BrowserContext;
  page: Page;
  /** Every request the page made, with its body. */
  requests: Request[];
}

async function signIn(as: string, viewport = { width: 1280, height: 900 }): Promise<Person> {
  const context = await browser!.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const requests: Request[] = [];
  page.on('request', (r) => requests.push(r));
  page.on('pageerror', (e) => pageErrors.push(`${as}: ${e.message}`));
  await page.goto(await signInLink(as));
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  // The ticket is spent and gone from the address bar.
  expect(page.url()).toBe(`${base}/#/t/contoso`);
  return { context, page, requests };
}

async function open(person: Person, view: string, heading: string | RegExp): Promise<Page> {
  await person.page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: view }).click();
  await person.page.getByRole('heading', { level: 1, name: heading }).waitFor();
  return person.page;
}

const keyShow = async () => (await stack.cmk(['key', 'show', '--tenant', 'contoso', '--json'], { as: ALICE })).json();
const envList = async () => (await stack.cmk(['env', 'list', '--tenant', 'contoso', '--json'], { as: ALICE })).json().environments as Array<{ id: string; state: string; protection: string; keyThumbprint: string }>;
const envOf = async (id: string) => (await envList()).find((e) => e.id === id)!;

/** Clicks `button` until its refusal is no longer one that only time lifts (R5, the embargo, R15). */
const clickOnceTimeAllows = (scope: ReturnType<Page['locator']>, button: string, done: RegExp) => actWhenTimeAllows(scope, () => scope.getByRole('button', { name: button, exact: true }).click(), done);

browserTest('a tenant journey as three people, each step checked with cmk; the lock sends neither the .pfx nor its password', async () => {
  // ---- Alice, global administrator: the overview, then a key generated in the browser; its .pfx downloads.
  const alice = await signIn(ALICE);
  expect(await alice.page.getByText('No tenant key').isVisible()).toBe(true);
  await alice.page.screenshot({ path: join(shots, 'console-overview.png'), fullPage: true });
  let page = await open(alice, 'Keys', 'Keys');
  const generate = page.getByRole('region', { name: 'Generate a key' });
  await generate.getByLabel('Key name').fill('k1');
  await generate.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await generate.getByLabel('Confirm password').fill(`${PASSWORD}x`);
  await generate.getByRole('button', { name: 'Generate key' }).click();
  await generate.getByRole('alert').filter({ hasText: 'The two passwords differ' }).waitFor();
  expect((await keyShow()).activeKey).toBeNull();
  // A password the service refuses (R3): its code's sentence beside the control, nothing generated.
  await generate.getByLabel('Password', { exact: true }).fill('short');
  await generate.getByLabel('Confirm password').fill('short');
  await generate.getByRole('button', { name: 'Generate key' }).click();
  await generate.getByRole('alert').filter({ hasText: /WEAK_PASSWORD.*at least 12 characters/s }).waitFor();
  expect((await keyShow()).activeKey).toBeNull();
  // By keyboard: type, Tab to the next field, Enter submits.
  await generate.getByLabel('Password', { exact: true }).fill('');
  await generate.getByLabel('Password', { exact: true }).pressSequentially(PASSWORD);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(PASSWORD);
  const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
  expect(download.suggestedFilename()).toBe('k1.pfx');
  const k1Path = join(work, 'k1.pfx');
  await download.saveAs(k1Path);
  await generate.locator('.done').waitFor();
  const k1 = parsePfx(readFileSync(k1Path), PASSWORD);
  const shown = await keyShow();
  expect(shown.activeKey).toMatchObject({ name: 'k1', thumbprint: k1.thumbprint, activatedBy: ALICE });
  await page.screenshot({ path: join(shots, 'console-keys.png'), fullPage: true });

  // ---- Sam, system administrator of prod: sees prod only, applies the key to it; keys are not his to change.
  const sam = await signIn(SAM);
  page = await open(sam, 'Environments', /Environments/);
  const rows = page.locator('tbody tr');
  await expect(rows.count()).resolves.toBe(1);
  const prod = rows.filter({ hasText: 'prod' });
  // The tenant's first apply asks for the opt-in: Apply stays disabled, saying why, until the box is ticked.
  await until('the key is active for Sam', async () => ((await prod.locator('.why').innerText()).includes('Accept the risk first') ? true : (await page.reload(), undefined)));
  expect(await prod.getByRole('button', { name: 'Apply', exact: true }).isEnabled()).toBe(false);
  await expect(page.getByRole('region', { name: 'Before the first key is applied' }).innerText()).resolves.toMatch(/cannot be recovered by anyone/);
  await page.getByLabel('I understand and accept the risk').check();
  await prod.getByRole('button', { name: 'Apply', exact: true }).click();
  await prod.locator('.done').waitFor();
  // Recorded once for the tenant, and never asked again.
  expect((await stack.cmk(['tenant', 'show', '--tenant', 'contoso', '--json'], { as: ALICE })).json().tenant.riskAcceptance).toMatchObject({ accepted: true, by: SAM });
  await expect(page.getByRole('region', { name: 'Before the first key is applied' }).count()).resolves.toBe(0);
  expect(await envOf('prod')).toMatchObject({ protection: 'tenant', keyThumbprint: k1.thumbprint });
  expect(await envOf('test')).toMatchObject({ protection: 'provider' });
  await page.screenshot({ path: join(shots, 'console-environments.png'), fullPage: true });
  page = await open(sam, 'Keys', 'Keys');
  expect(await page.getByRole('button', { name: 'Generate key' }).count()).toBe(0);
  // What the page does not offer, the API refuses too: Sam's session (CSRF token and all) cannot generate a key; and
  // without the CSRF token, no state-changing request goes through at all.
  const forged = await page.evaluate(async () => {
    const { csrf } = (await (await fetch('/v1/console/session')).json()) as { csrf: string };
    const body = '{"name":"x","password":"aaaaaaaaaaaaaaaa"}';
    const withToken = await fetch('/v1/tenants/contoso/keys/generate', { method: 'POST', body, headers: { 'x-cmk-csrf': csrf } });
    const without = await fetch('/v1/tenants/contoso/environments/prod/revert', { method: 'POST' });
    return { withToken: [withToken.status, await withToken.text()], without: [without.status, await without.text()] };
  });
  expect(forged.withToken[0]).toBe(403);
  expect(forged.withToken[1]).toContain('FORBIDDEN');
  expect(forged.without[0]).toBe(403);
  expect(forged.without[1]).toContain('CSRF');
  expect(await envOf('prod')).toMatchObject({ protection: 'tenant' });

  // ---- Alice: a second key; prod follows it. She made the change, so the console does not offer her its rollback.
  page = await open(alice, 'Keys', 'Keys');
  const again = page.getByRole('region', { name: 'Generate a key' });
  await again.getByLabel('Key name').fill('k2');
  await again.getByLabel('Password', { exact: true }).fill(SECOND_PASSWORD);
  await again.getByLabel('Confirm password').fill(SECOND_PASSWORD);
  const downloaded = page.waitForEvent('download');
  await clickOnceTimeAllows(again, 'Generate key', /generated/);
  const k2Path = join(work, 'k2.pfx');
  await (await downloaded).saveAs(k2Path);
  const k2 = parsePfx(readFileSync(k2Path), SECOND_PASSWORD);
  expect((await keyShow()).activeKey.thumbprint).toBe(k2.thumbprint);
  await until('prod is re-protected with k2', async () => ((await envOf('prod')).keyThumbprint === k2.thumbprint ? true : undefined));
  const ownRollback = page.getByRole('region', { name: 'Roll back the last key change' });
  await expect(ownRollback.getByRole('button', { name: 'Roll back' }).isDisabled()).resolves.toBe(true);
  await expect(ownRollback.locator('.why').innerText()).resolves.toContain('another global or service administrator');

  // ---- Bob, service administrator: another administrator rolls the change back within the embargo (R6).
  const bob = await signIn(BOB);
  page = await open(bob, 'Keys', 'Keys');
  const rollback = page.getByRole('region', { name: 'Roll back the last key change' });
  await rollback.getByRole('button', { name: 'Roll back' }).click();
  await rollback.locator('.done').waitFor();
  expect((await keyShow()).activeKey).toMatchObject({ name: 'k1', thumbprint: k1.thumbprint });
  await until('prod is back on k1', async () => ((await envOf('prod')).keyThumbprint === k1.thumbprint ? true : undefined));

  // ---- Alice: the lock, once the embargo after the rollback is over, with k1's .pfx.
  page = await open(alice, 'Lock', 'Lock the tenant');
  const lock = page.getByRole('region', { name: /Lock in/ });
  // The embargo's refusal says when a lock becomes possible.
  await expect(lock.locator('.why').innerText()).resolves.toMatch(/A lock becomes possible on .*R6/);
  await page.screenshot({ path: join(shots, 'console-lock.png'), fullPage: true });
  await until('the embargo is over', async () => {
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Lock the tenant' }).waitFor();
    return (await lock.getByRole('button', { name: 'Lock tenant' }).isEnabled()) ? true : undefined;
  }, 60_000);
  const pfxBytes = readFileSync(k1Path);
  alice.requests.length = 0;
  // A wrong name: refused with its code and a sentence in the console's words, nothing locked.
  await lock.getByLabel('Tenant name').fill('Contoso');
  await lock.getByLabel('Key file').setInputFiles(k1Path);
  await lock.getByLabel('Password').fill(PASSWORD);
  await lock.getByRole('button', { name: 'Lock tenant' }).click();
  await lock.getByRole('alert').filter({ hasText: /TENANT_NAME_MISMATCH Type the tenant's display name exactly/ }).waitFor();
  expect(await envOf('prod')).toMatchObject({ state: 'Online' });
  // A wrong password: refused in the page, before anything is sent but the challenge request.
  await lock.getByLabel('Tenant name').fill('Contoso Ltd');
  await lock.getByLabel('Password').fill('not the password');
  await lock.getByRole('button', { name: 'Lock tenant' }).click();
  await lock.getByRole('alert').filter({ hasText: 'WRONG_PASSWORD' }).waitFor();
  expect(await envOf('prod')).toMatchObject({ state: 'Online' });
  await lock.getByLabel('Password').fill(PASSWORD);
  await lock.getByRole('button', { name: 'Lock tenant' }).click();
  await lock.locator('.done').waitFor();
  // R8: every environment of the region goes offline; prod (tenant key) is sealed, test locked by decision.
  expect(await envOf('prod')).toMatchObject({ state: 'Locked' });
  expect(await envOf('test')).toMatchObject({ state: 'Locked' });
  // Every request the page made while locking: none carries the .pfx (raw or base64) or its password.
  const bodies = alice.requests.map((r) => r.postDataBuffer() ?? Buffer.alloc(0));
  expect(bodies.length).toBeGreaterThan(0);
  const pfxBase64 = pfxBytes.toString('base64');
  for (const body of bodies) {
    expect(body.includes(pfxBytes.subarray(0, 64))).toBe(false);
    expect(body.toString('latin1')).not.toContain(pfxBase64.slice(0, 64));
    expect(body.toString('utf8')).not.toContain(PASSWORD);
  }
  // The wrong name reached the service; the wrong password did not (the page refused it).
  expect(alice.requests.filter((r) => r.url().endsWith('/lock')).length).toBe(2);

  // ---- Alice: re-activate the same key (R10), then unlock prod once R15's delay is over.
  page = await open(alice, 'Keys', 'Keys');
  const reactivate = page.getByRole('region', { name: 'Re-activate the key after a lock' });
  await reactivate.getByLabel('Locked key file').setInputFiles(k1Path);
  await reactivate.getByLabel('Key file password').fill(PASSWORD);
  await reactivate.getByRole('button', { name: 'Re-activate key' }).click();
  await reactivate.locator('.done').waitFor();
  expect((await keyShow()).activeKey).toMatchObject({ thumbprint: k1.thumbprint, state: 'Active' });
  page = await open(alice, 'Environments', /Environments/);
  const lockedProd = page.locator('tbody tr').filter({ hasText: 'prod' });
  await clickOnceTimeAllows(lockedProd, 'Unlock', /unlocked/);
  expect(await envOf('prod')).toMatchObject({ state: 'Online', protection: 'tenant' });
  await page.locator('tbody tr').filter({ hasText: 'test' }).getByRole('button', { name: 'Unlock' }).click();
  await page.locator('tbody tr').filter({ hasText: 'test' }).locator('.done').waitFor();
  expect(await envOf('test')).toMatchObject({ state: 'Online', protection: 'provider' });

  // ---- Notifications and the audit trail, filtered by actor and event.
  page = await open(alice, 'Notifications', 'Notifications');
  await page.locator('tbody tr').first().waitFor();
  expect(await page.locator('tbody').innerText()).toContain(ALICE);
  await page.screenshot({ path: join(shots, 'console-notifications.png'), fullPage: true });
  page = await open(alice, 'Audit trail', 'Audit trail');
  await page.getByText('The trail verifies').waitFor();
  await page.getByLabel('Actor').fill(BOB);
  await page.getByLabel('Event').fill('key.rollback');
  await until('the filtered audit', async () => ((await page.locator('tbody tr').count()) === 1 ? true : undefined));
  expect(await page.locator('tbody tr').innerText()).toContain('key.rollback');
  await page.screenshot({ path: join(shots, 'console-audit.png'), fullPage: true });
  for (const person of [alice, sam, bob]) await person.context.close();
}, 600_000);

browserTest('sign-in links work once; a forged or reused one is refused; sign-out ends the session', async () => {
  const link = await signInLink(ALICE);
  const context = await browser!.newContext();
  const page = await context.newPage();
  await page.goto(link);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const second = await browser!.newContext();
  const other = await second.newPage();
  await other.goto(link);
  await other.getByRole('alert').filter({ hasText: 'already used' }).waitFor();
  await other.goto(`${base}/#/sign-in/${'A'.repeat(43)}`);
  // Only the fragment changes, so the page stays and still shows the first refusal until the second one answers.
  await other.getByRole('alert').filter({ hasText: 'not known' }).waitFor();
  // The API says the same to any client, and never sets a cookie for it.
  const reused = await fetch(`${base}/v1/console/session`, { method: 'POST', body: JSON.stringify({ ticket: link.split('/sign-in/')[1]!.split('/')[0] }) });
  expect(reused.status).toBe(401);
  expect(reused.headers.get('set-cookie')).toBeNull();
  // The cookie: HttpOnly, SameSite=Strict, not readable by the page.
  const [cookie] = await context.cookies();
  expect(cookie).toMatchObject({ name: 'cmk_session', httpOnly: true, sameSite: 'Strict' });
  expect(await page.evaluate('document.cookie')).toBe('');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to cmk' }).waitFor();
  const after = await page.evaluate(async () => (await fetch('/v1/tenants/contoso')).status);
  expect(after).toBe(401);
  await context.close();
  await second.close();
}, 120_000);

browserTest('a session that ends mid-form asks for a new sign-in over the page, and the typed input survives', async () => {
  const alice = await signIn(ALICE);
  const page = await open(alice, 'Keys', 'Keys');
  const upload = page.getByRole('region', { name: 'Upload your own key' });
  await upload.getByLabel('Key name').fill('typed before the session ended');
  // The session ends elsewhere (signed out in another tab).
  const tab = await alice.context.newPage();
  await tab.goto(`${base}/#/t/contoso`);
  await tab.getByRole('button', { name: 'Sign out' }).click();
  await tab.getByRole('heading', { name: 'Sign in to cmk' }).waitFor();
  await upload.getByRole('button', { name: 'Download key-exchange key' }).click();
  const dialog = page.getByRole('dialog', { name: 'Sign in again' });
  await dialog.waitFor();
  await dialog.getByLabel('Sign-in link').fill(await signInLink(ALICE));
  await dialog.getByRole('button', { name: 'Sign in' }).click();
  await dialog.waitFor({ state: 'detached' });
  expect(await upload.getByLabel('Key name').inputValue()).toBe('typed before the session ended');
  await alice.context.close();
}, 120_000);

browserTest('every page: a strict CSP with no inline script, security headers, hashed long-cached assets; axe finds nothing serious', async () => {
  const index = await fetch(`${base}/`);
  const csp = index.headers.get('content-security-policy')!;
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain('unsafe-inline');
  expect(csp).not.toContain('unsafe-eval');
  expect(index.headers.get('x-frame-options')).toBe('DENY');
  const html = await index.text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
  expect(assets.length).toBe(3);
  for (const asset of assets) {
    expect(asset).toMatch(/-[A-Z0-9]{8,}\.(js|css|svg)$/);
    const r = await fetch(`${base}${asset}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
  }
  expect((await fetch(`${base}/assets/../package.json`)).status).not.toBe(200);
  expect((await fetch(`${base}/assets/nothing.js`)).status).toBe(404);

  const violations: string[] = [];
  const scan = async (page: Page, name: string) => void violations.push(...(await seriousAxeViolations(page, name)));
  const cspViolations: string[] = [];
  const context = await browser!.newContext();
  const signInPage = await context.newPage();
  signInPage.on('console', (m) => m.text().includes('Content Security Policy') && cspViolations.push(m.text()));
  await signInPage.goto(`${base}/`);
  await signInPage.getByRole('heading', { name: 'Sign in to cmk' }).waitFor();
  expect(await signInPage.locator('script:not([src])').count()).toBe(0);
  await scan(signInPage, 'sign-in');
  await context.close();

  const alice = await signIn(ALICE);
  alice.page.on('console', (m) => m.text().includes('Content Security Policy') && cspViolations.push(m.text()));
  for (const [view, heading] of [['Overview', 'Overview'], ['Keys', 'Keys'], ['Environments', /Environments/], ['Lock', 'Lock the tenant'], ['Notifications', 'Notifications'], ['Audit trail', 'Audit trail']] as const) {
    const page = await open(alice, view, heading);
    await page.waitForLoadState('networkidle');
    await scan(page, view);
  }
  expect(violations).toEqual([]);
  expect(cspViolations).toEqual([]);
  await alice.context.close();
}, 180_000);

browserTest('readable at phone width: no sideways scrolling, every control reachable', async () => {
  const sam = await signIn(SAM, { width: 390, height: 844 });
  for (const [view, heading] of [['Overview', 'Overview'], ['Environments', /Environments/], ['Keys', 'Keys']] as const) {
    const page = await open(sam, view, heading);
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
    expect(overflow).toBeLessThanOrEqual(0);
  }
  await open(sam, 'Environments', /Environments/);
  await sam.page.screenshot({ path: join(shots, 'console-phone.png'), fullPage: true });
  await sam.context.close();
}, 120_000);

test('the console is served only where it belongs: API paths still need a token; its routes are in the OpenAPI document', async () => {
  expect((await fetch(`${base}/v1/tenants/contoso`)).status).toBe(401);
  expect((await fetch(`${base}/somewhere-else`)).status).toBe(401);
  const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
  expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/console/links', '/v1/console/session', '/v1/console/sign-out']));
  // A link is for the caller the token names: no token, no link.
  expect((await fetch(`${base}/v1/console/links`, { method: 'POST' })).status).toBe(401);
  // A state-changing request with a session cookie but without its CSRF token is refused, and changes nothing.
  expect(existsSync(join(__dirname, '..', 'dist', 'console', 'index.html'))).toBe(true);
});
