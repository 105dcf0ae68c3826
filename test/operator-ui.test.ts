/**
 * Issue 18, as an operator meets it: `npm start`'s stack, a tenant made with the real `cmk` bin, then the embedded
 * Temporal UI in Debian's Chromium (playwright-core). The UI decodes through the API's codec endpoint with the
 * stack's capability path; the page shows the tenant's display name, an environment ID and a key thumbprint, never
 * `binary/encrypted`; no decoded payload holds a secret; the endpoint refuses whoever is not the operator.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startStack, identityHeaders, type Stack } from '../harness/stack';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from './support/browser';
import { scratchDir } from './support/scratch';
import { UI_CODEC_CAPABILITY } from '../api/codec';
import { PURGE_SCHEDULE_ID, tenantWorkflowId } from '../workflows/messages';
import { PURGE_SUMMARY } from '../client/purge-schedule';

if (!haveChromium) console.warn(`operator-ui.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const browserTest = haveChromium ? test : test.skip;

const ALICE = 'alice@contoso.example';
const PASSWORD = 'correct horse battery staple';
const { dir: work, file } = scratchDir('cmk-operator-ui-');
console.log(`operator-ui: screenshots in ${work} and docs/img`);

let stack: Stack;
let browser: Browser | undefined;
let uiOrigin: string;
let apiUrl: string;
let capability: string;
let thumbprint: string;

beforeAll(async () => {
  stack = await startStack();
  const port = Number(stack.env.TEMPORAL_ADDRESS!.split(':')[1]);
  uiOrigin = `http://127.0.0.1:${port + 1000}`;
  apiUrl = `http://127.0.0.1:${stack.env.CMK_API_PORT}`;
  capability = Buffer.from(readFileSync(join(stack.secretsDir, UI_CODEC_CAPABILITY), 'utf8').trim(), 'base64').toString('base64url');
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso Ltd', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'contoso', '--env', 'prod-eu'])).code).toBe(0);
  const generated = await stack.cmk(['key', 'generate', '--tenant', 'contoso', '--name', 'k1', '--password-file', file('pw.txt', `${PASSWORD}\n`), '--out', join(work, 'k1.pfx'), '--json'], { as: ALICE });
  expect(generated.code).toBe(0);
  thumbprint = generated.json().activeKey.thumbprint as string;
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', 'contoso', '--env', 'prod-eu'], { as: ALICE })).code).toBe(0);
  if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

/** One encrypted payload of the tenant's history, as the UI would send it to the codec endpoint. */
async function somePayload(): Promise<{ metadata: Record<string, string>; data: string }> {
  const { Connection } = await import('@temporalio/client');
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  try {
    const history = await connection.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: tenantWorkflowId('contoso') } });
    const payload = history.history!.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    return {
      metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(payload.data!).toString('base64'),
    };
  } finally {
    await connection.close();
  }
}

async function decode(path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const response = await fetch(`${apiUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
    body: JSON.stringify({ payloads: [await somePayload()] }),
  });
  return { status: response.status, text: await response.text() };
}

test('the codec endpoint decodes for the operator only: the capability path or an operator token', async () => {
  const decoded = await decode(`/codec/${capability}/decode`, { origin: uiOrigin });
  expect(decoded.status).toBe(200);
  expect(Buffer.from((JSON.parse(decoded.text) as { payloads: Array<{ data: string }> }).payloads[0]!.data, 'base64').toString()).toContain('Contoso Ltd');
  expect((await decode('/codec/decode', await identityHeaders(stack.env, undefined))).status).toBe(200);

  // Refused: no capability and no token; a wrong capability; a tenant administrator's token; a foreign Origin.
  expect((await decode('/codec/decode')).status).toBe(401);
  expect((await decode(`/codec/${'A'.repeat(43)}/decode`)).status).toBe(403);
  expect((await decode('/codec/decode', await identityHeaders(stack.env, ALICE))).status).toBe(403);
  expect((await decode(`/codec/${capability}/decode`, { origin: 'http://127.0.0.1:1' })).status).toBe(403);
  expect((await decode(`/codec/${capability}/decode`, { origin: 'https://evil.example' })).status).toBe(403);
  // The UI's preflight is answered for its own origin only.
  const preflight = await fetch(`${apiUrl}/codec/${capability}/decode`, { method: 'OPTIONS', headers: { origin: uiOrigin, 'access-control-request-method': 'POST' } });
  expect(preflight.status).toBe(204);
  expect(preflight.headers.get('access-control-allow-origin')).toBe(uiOrigin);

  // Every decode is in the audit trail, with the credential that opened it.
  const audit = await stack.cmk(['audit', 'list', '--all', '--limit', '500', '--json']);
  const decodes = (audit.json().records as Array<{ action: string; details?: Record<string, unknown> }>).filter((r) => r.action === 'codec.decode');
  expect(decodes.map((r) => r.details?.via)).toEqual(expect.arrayContaining(['ui-capability', 'operator-token']));
}, 60_000);

/** Opens a UI page, records every codec answer, and returns the page's text once `expected` all show. */
async function openDecoded(page: Page, path: string, expected: string[]): Promise<{ text: string; decoded: string[] }> {
  const decoded: string[] = [];
  page.on('response', (response) => {
    if (response.url().includes('/codec/') && response.request().method() === 'POST') {
      void response
        .json()
        .then((body: { payloads?: Array<{ data?: string }> }) => body.payloads?.forEach((p) => decoded.push(Buffer.from(p.data ?? '', 'base64').toString())))
        .catch(() => undefined);
    }
  });
  await page.goto(`${uiOrigin}${path}`);
  const deadline = Date.now() + 60_000;
  let text = '';
  for (;;) {
    text = await page.locator('body').innerText();
    if (expected.every((e) => text.includes(e))) break;
    if (Date.now() > deadline) throw new Error(`The UI page ${path} did not show ${expected.join(', ')}:\n${text.slice(0, 3000)}`);
    await page.waitForTimeout(500);
  }
  return { text, decoded };
}

const SECRET_MARKERS = [PASSWORD, 'PRIVATE KEY', 'BEGIN ', '"pfx"', 'password'];

browserTest('the embedded UI shows a tenant workflow decoded: name, environment, thumbprint, summary; no secret', async () => {
  const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
  const id = encodeURIComponent(tenantWorkflowId('contoso'));
  // The deadline timer starts in the workflow task after the apply's update: wait for it as for the rest (the UI
  // refreshes itself), not only for the first thing the page shows.
  const { text, decoded } = await openDecoded(page, `/namespaces/default/workflows/${id}`, ['Contoso Ltd', 'R4 mail: key-changed', 'R5 key change allowed again']);
  const shots = join(__dirname, '..', 'docs', 'img');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'operator-ui-tenant.png') });
  // Neither the encoding's name nor its base64 (how the UI shows a payload it could not decode).
  expect(text).not.toContain('binary/encrypted');
  expect(text).not.toContain(Buffer.from('binary/encrypted').toString('base64').slice(0, 20));
  // The event history, expanded as an operator reads it: update arguments and results are decoded too. (UI 2.54
  // still shows the *Update Accepted* event's embedded request in its encoded form; its Admitted/Completed events and
  // the activities show the same data decoded.)
  await page.getByText(/^Event History/).first().click();
  await page.getByRole('button', { name: 'JSON' }).waitFor();
  const expand = page.getByRole('button', { name: /expand/i });
  if (await expand.count()) await expand.first().click();
  for (const row of await page.getByText(/changeKey|WorkflowExecutionUpdateCompleted|Update Completed/).all()) await row.click({ timeout: 2000 }).catch(() => undefined);
  const deadline = Date.now() + 30_000;
  while (!decoded.join('\n').includes(thumbprint) && Date.now() < deadline) await page.waitForTimeout(500);
  await page.screenshot({ path: join(work, 'operator-ui-tenant-expanded.png'), fullPage: true });
  // Timers and activities carry their rule (the event history's summaries).
  expect(text).toMatch(/R4 mail: key-changed/);
  expect(text).toMatch(/R5 key change allowed again/);
  // The history's update arguments and results: the environment and the key's thumbprint, decoded.
  const all = decoded.join('\n');
  expect(all).toContain('Tenant Contoso Ltd (contoso): keys and environments');
  expect(all).toContain('prod-eu');
  expect(all).toContain(thumbprint);
  for (const marker of SECRET_MARKERS) expect(all.toLowerCase()).not.toContain(marker.toLowerCase());
  await page.close();
}, 120_000);

browserTest('the embedded UI shows the purge Schedule decoded', async () => {
  const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
  const { text, decoded } = await openDecoded(page, `/namespaces/default/schedules/${PURGE_SCHEDULE_ID}`, [PURGE_SCHEDULE_ID]);
  expect(text).not.toContain('binary/encrypted');
  // Its action's only payload is its summary; UI 2.54 shows the Schedule without asking the codec for it.
  if (decoded.length) expect(decoded.join('\n')).toContain(PURGE_SUMMARY);
  for (const marker of SECRET_MARKERS) expect(decoded.join('\n').toLowerCase()).not.toContain(marker.toLowerCase());
  await page.screenshot({ path: join(work, 'operator-ui-schedule.png') });
  await page.close();
}, 120_000);
