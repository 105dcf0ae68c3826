/**
 * Issue 17's sign-in with an external issuer: the console signs in with OpenID Connect authorization code + PKCE at a
 * real issuer (`oidc-provider` from npm, test/support/oidc-issuer.ts) that also vouches for the API's bearer tokens,
 * as one organisation's identity service would. In Debian's Chromium: a whole sign-in that ends in the HttpOnly
 * session cookie (no token reaches the page or its storage), an unverified e-mail refused, a callback URL replayed in
 * another browser refused, and a session that ends mid-form renewed in a window of its own with the typed input kept.
 * Over plain HTTP: each refusal of the flow (unknown state, another browser, the issuer's "access denied", a forged
 * code) answers a redirect to the sign-in page and no session, and a sign-in link posted from another site is refused.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort, startStack, type Stack } from '../harness/stack';
import { OPERATOR_ROLE, OPERATOR_ROLE_CLAIM } from '../common/tokens';
import { loadConfig } from '../config';
import { scratchDir } from './support/scratch';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from './support/browser';

if (!haveChromium) console.warn(`console-oidc.test.ts: the browser tests skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const browserTest = haveChromium ? test : test.skip;

const ALICE = 'alice@contoso.example';
const CLIENT_ID = 'cmk-console';
const { dir: work } = scratchDir('cmk-console-oidc-');

let stack: Stack;
let issuerProcess: ChildProcess;
let issuer: string;
let base: string;
let signingKey: KeyObject;
let browser: Browser | undefined;
const pageErrors: string[] = [];
afterEach(() => expect(pageErrors.splice(0)).toEqual([]));

/** A bearer token from the organisation's issuer (its own signing key), as its CLI users would hold one. */
async function tokenFor(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'issuer-1' }).setIssuer(issuer).setAudience('cmk-api').setIssuedAt().setExpirationTime('1h').sign(signingKey);
}
const operatorCmk = async (args: string[]) => stack.cmk(args, { env: { CMK_TOKEN: await tokenFor({ [OPERATOR_ROLE_CLAIM]: OPERATOR_ROLE }) } });

beforeAll(async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  signingKey = privateKey;
  const jwks = join(work, 'issuer-jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'issuer-1', alg: 'RS256', use: 'sig' }] }), { mode: 0o600 });
  const [apiPort, issuerPort] = [await freePort(), await freePort()];
  issuer = `http://127.0.0.1:${issuerPort}`;
  base = `http://127.0.0.1:${apiPort}`;
  issuerProcess = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'support', 'oidc-issuer.ts'), String(issuerPort), CLIENT_ID, `${base}/v1/console/oidc/callback`, jwks], {
    cwd: join(__dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let said = '';
    const timer = setTimeout(() => reject(new Error(`the issuer did not start:\n${said}`)), 30_000);
    const read = (d: Buffer) => {
      said += d.toString();
      if (said.includes('issuer ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    issuerProcess.stdout!.on('data', read);
    issuerProcess.stderr!.on('data', read);
    issuerProcess.once('exit', (code) => reject(new Error(`the issuer exited (${code}):\n${said}`)));
  });
  stack = await startStack({
    CMK_API_PORT: String(apiPort),
    CMK_AUTH_ISSUER: issuer,
    CMK_AUTH_JWKS_URL: `${issuer}/jwks`,
    CMK_CONSOLE_OIDC_CLIENT_ID: CLIENT_ID,
  });
  expect((await operatorCmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso Ltd', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await operatorCmk(['env', 'create', '--tenant', 'contoso', '--env', 'prod'])).code).toBe(0);
  if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  issuerProcess?.kill();
});

/** The issuer's own (development) sign-in form: any password; the login name is the e-mail. */
async function signInAtIssuer(page: Page, login: string): Promise<void> {
  await page.waitForURL((url) => url.href.startsWith(issuer));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any password the issuer checks');
  await page.locator('button[type="submit"]').click();
}

const sessionCookieOf = (setCookies: string[]) => setCookies.find((c) => c.startsWith('cmk_session=') && !c.startsWith('cmk_session=;'));

browserTest('a tenant administrator signs in at the issuer: code + PKCE, a session cookie, no token in the page; the callback works once', async () => {
  const context = await browser!.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const urls: string[] = [];
  page.on('request', (r) => urls.push(r.url()));
  const cspViolations: string[] = [];
  page.on('console', (m) => m.text().includes('Content Security Policy') && cspViolations.push(m.text()));
  await page.goto(`${base}/#/t/contoso`);
  await page.getByRole('heading', { name: 'Sign in to cmk' }).waitFor();
  // The sign-in page with both ways in: axe finds nothing serious (axe goes in through the automation channel: the CSP forbids inline script).
  await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const found = (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id))`)) as string[];
  expect(found).toEqual([]);
  await page.getByRole('link', { name: `Sign in with 127.0.0.1:${new URL(issuer).port}` }).click();
  await signInAtIssuer(page, ALICE);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  expect(page.url()).toBe(`${base}/#/t/contoso`);
  // The authorization request: S256 PKCE, state and nonce; the verifier never travels through the browser.
  const authorize = new URL(urls.find((u) => u.startsWith(`${issuer}/auth?`))!);
  expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authorize.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(authorize.searchParams.get('state')).toBeTruthy();
  expect(authorize.searchParams.get('nonce')).toBeTruthy();
  expect(authorize.searchParams.get('redirect_uri')).toBe(`${base}/v1/console/oidc/callback`);
  expect(urls.some((u) => u.includes('code_verifier'))).toBe(false);
  // The session: an HttpOnly, SameSite=Strict cookie; the flow's cookie is gone; nothing in the page's reach.
  const cookies = await context.cookies(base);
  expect(cookies.find((c) => c.name === 'cmk_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
  expect(cookies.find((c) => c.name === 'cmk_oidc')).toBeUndefined();
  expect(await page.evaluate('[document.cookie, localStorage.length, sessionStorage.length]')).toEqual(['', 0, 0]);
  expect(await page.evaluate(async () => ((await (await fetch('/v1/console/session')).json()) as { user: string }).user)).toBe(ALICE);
  // The callback URL, replayed in another browser: refused, no session.
  expect(cspViolations).toEqual([]);
  const callback = urls.find((u) => u.startsWith(`${base}/v1/console/oidc/callback?`))!;
  const other = await browser!.newContext();
  const elsewhere = await other.newPage();
  await elsewhere.goto(callback);
  await elsewhere.getByRole('alert').filter({ hasText: 'already used or took longer than 10 minutes' }).waitFor();
  expect((await other.cookies(base)).find((c) => c.name === 'cmk_session')).toBeUndefined();
  await other.close();
  await context.close();
}, 120_000);

browserTest('an account whose e-mail the issuer has not verified gets no session, and is told why', async () => {
  const context = await browser!.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/`);
  await page.getByRole('link', { name: /^Sign in with / }).click();
  await signInAtIssuer(page, 'unverified@contoso.example');
  await page.getByRole('alert').filter({ hasText: 'no verified e-mail address' }).waitFor();
  expect(page.url()).toBe(`${base}/#/sign-in-refused/email`);
  expect((await context.cookies(base)).find((c) => c.name === 'cmk_session')).toBeUndefined();
  await context.close();
}, 120_000);

browserTest('a session that ends mid-form is renewed at the issuer in a window of its own; the typed input survives', async () => {
  const context = await browser!.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/#/t/contoso`);
  await page.getByRole('link', { name: /^Sign in with / }).click();
  await signInAtIssuer(page, ALICE);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Keys' }).click();
  const upload = page.getByRole('region', { name: 'Upload your own key' });
  await upload.getByLabel('Key name').fill('typed before the session ended');
  const tab = await context.newPage();
  await tab.goto(`${base}/#/t/contoso`);
  await tab.getByRole('button', { name: 'Sign out' }).click();
  await tab.getByRole('heading', { name: 'Sign in to cmk' }).waitFor();
  await tab.close();
  await upload.getByRole('button', { name: 'Download key-exchange key' }).click();
  const dialog = page.getByRole('dialog', { name: 'Sign in again' });
  await dialog.waitFor();
  const [popup] = await Promise.all([page.waitForEvent('popup'), dialog.getByRole('button', { name: /^Sign in with / }).click()]);
  // The issuer remembers Alice (its own session): it may send her straight back, or ask again.
  await popup.waitForURL((url) => url.href.startsWith(`${issuer}/interaction/`) || url.hash === '#/signed-in');
  if (popup.url().startsWith(`${issuer}/interaction/`)) await signInAtIssuer(popup, ALICE);
  await dialog.waitFor({ state: 'detached' });
  expect(await upload.getByLabel('Key name').inputValue()).toBe('typed before the session ended');
  expect(await page.evaluate(async () => ((await (await fetch('/v1/console/session')).json()) as { user: string }).user)).toBe(ALICE);
  // The window closes itself, or (where the browser does not let it) says that the sign-in is done.
  if (!popup.isClosed()) await popup.getByText('You are signed in').waitFor();
  await context.close();
}, 120_000);

test('each refusal of the flow answers a redirect to the sign-in page and no session', async () => {
  const options = (await (await fetch(`${base}/v1/console/sign-in-options`)).json()) as { links: boolean; issuer: { name: string; start: string } };
  expect(options).toEqual({ links: true, issuer: { name: new URL(issuer).host, start: '/v1/console/oidc/start' } });
  const get = (path: string, cookie?: string) => fetch(`${base}${path}`, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  const start = async () => {
    const r = await get('/v1/console/oidc/start?tenant=contoso');
    expect(r.status).toBe(303);
    const location = new URL(r.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(`${issuer}/auth`);
    const flowCookie = r.headers.getSetCookie().find((c) => c.startsWith('cmk_oidc='))!;
    expect(flowCookie).toMatch(/HttpOnly/);
    expect(flowCookie).toMatch(/SameSite=Lax/);
    expect(flowCookie).toMatch(/Path=\/v1\/console\/oidc\//);
    return { state: location.searchParams.get('state')!, cookie: flowCookie.split(';')[0]! };
  };
  const refusedTo = async (r: Response, reason: string) => {
    expect([r.status, r.headers.get('location')]).toEqual([303, `/#/sign-in-refused/${reason}`]);
    expect(sessionCookieOf(r.headers.getSetCookie())).toBeUndefined();
  };
  // A state this service never made; then a real one without the browser's flow cookie (another browser).
  await refusedTo(await get('/v1/console/oidc/callback?code=x&state=made-up'), 'expired');
  const first = await start();
  await refusedTo(await get(`/v1/console/oidc/callback?code=x&state=${first.state}`), 'browser');
  // …and that state is spent: the right browser cannot use it afterwards either.
  await refusedTo(await get(`/v1/console/oidc/callback?code=x&state=${first.state}`, first.cookie), 'expired');
  // The issuer said no (the user cancelled).
  const second = await start();
  await refusedTo(await get(`/v1/console/oidc/callback?error=access_denied&state=${second.state}&iss=${encodeURIComponent(issuer)}`, second.cookie), 'denied');
  // A code the issuer never issued: its token endpoint refuses the exchange.
  const third = await start();
  await refusedTo(await get(`/v1/console/oidc/callback?code=forged-code&state=${third.state}&iss=${encodeURIComponent(issuer)}`, third.cookie), 'issuer');
});

test('a sign-in link posted from another site is refused and stays unspent (login CSRF)', async () => {
  const alice = await tokenFor({ email: ALICE, email_verified: true });
  const link = await fetch(`${base}/v1/console/links`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'contoso' }) });
  expect(link.status).toBe(200);
  const ticket = ((await link.json()) as { path: string }).path.split('/sign-in/')[1]!.split('/')[0]!;
  const foreign = await fetch(`${base}/v1/console/session`, { method: 'POST', headers: { origin: 'https://attacker.example' }, body: JSON.stringify({ ticket }) });
  expect([foreign.status, ((await foreign.json()) as { error: { code: string } }).error.code]).toEqual([403, 'FORBIDDEN']);
  expect(sessionCookieOf(foreign.headers.getSetCookie())).toBeUndefined();
  const own = await fetch(`${base}/v1/console/session`, { method: 'POST', headers: { origin: base }, body: JSON.stringify({ ticket }) });
  expect(own.status).toBe(200);
  expect(sessionCookieOf(own.headers.getSetCookie())).toBeDefined();
});

test('configuration: the console client needs an external issuer, https (plain http on loopback only); its redirect URI follows CMK_API_URL', () => {
  const external = { CMK_AUTH_ISSUER: 'https://login.example', CMK_AUTH_JWKS_URL: 'https://login.example/jwks', CMK_API_HOST: '0.0.0.0', CMK_API_URL: 'https://cmk.example/' };
  expect(loadConfig({ ...external }).consoleOidc).toBeUndefined();
  expect(loadConfig({ ...external, CMK_CONSOLE_OIDC_CLIENT_ID: 'cmk', CMK_CONSOLE_OIDC_SCOPES: 'profile openid' }).consoleOidc).toEqual({
    issuer: 'https://login.example',
    clientId: 'cmk',
    scopes: 'openid email profile',
    redirectUri: 'https://cmk.example/v1/console/oidc/callback',
  });
  expect(() => loadConfig({ CMK_CONSOLE_OIDC_CLIENT_ID: 'cmk' })).toThrow(/needs an external issuer/);
  expect(() => loadConfig({ ...external, CMK_CONSOLE_OIDC_CLIENT_SECRET: 's3cret' })).toThrow(/CMK_CONSOLE_OIDC_CLIENT_ID is required/);
  expect(() => loadConfig({ ...external, CMK_CONSOLE_OIDC_CLIENT_ID: 'cmk', CMK_CONSOLE_OIDC_ISSUER: 'http://login.example' })).toThrow(/must be https/);
  let refusal = '';
  try {
    loadConfig({ ...external, CMK_CONSOLE_OIDC_CLIENT_ID: 'cmk', CMK_CONSOLE_OIDC_CLIENT_SECRET: 'never-in-a-message', CMK_CONSOLE_OIDC_ISSUER: 'ftp://x' });
  } catch (err) {
    refusal = String(err);
  }
  expect(refusal).toMatch(/must be https/);
  expect(refusal).not.toContain('never-in-a-message');
});
