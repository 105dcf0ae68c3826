/**
 * Issue 15 end to end on `npm start`'s stack with CMK_MAILER=sendgrid, pointed at the SendGrid double: a recipient
 * SendGrid refuses does not lose the tenant (create prints "created", the next requests work, the other administrator
 * gets the mail), `mail list` shows every mail's delivery, `status` warns while staying ready, and the operator's
 * `mail retry` delivers what waits once SendGrid takes it — after an outage too.
 */
import { Client, Connection } from '@temporalio/client';
import { loadDataConverter } from '../codec';
import { MAIL_RETRY_SCHEDULE_ID } from '../workflows/messages';
import { freePort, startStack, type Stack } from '../harness/stack';
import { FakeSendGrid, SENDGRID_TEST_KEY } from '../harness/sendgrid-double';

let stack: Stack;
let sendgrid: FakeSendGrid;
let metricsPort: number;
const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';

beforeAll(async () => {
  sendgrid = new FakeSendGrid();
  const baseUrl = await sendgrid.start();
  metricsPort = await freePort();
  stack = await startStack({ CMK_MAILER: 'sendgrid', CMK_SENDGRID_API_KEY: SENDGRID_TEST_KEY, CMK_SENDGRID_BASE_URL: baseUrl, CMK_MAIL_FROM: 'cmk@example.com', CMK_API_METRICS_PORT: String(metricsPort) });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sendgrid?.stop();
});

type Mail = { to: string; event: string; delivery: string; reason?: string; attempts?: number };
const mails = async (tenant: string): Promise<Mail[]> => (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Mail[];

test('a refused administrator address: the tenant is created and keeps working, the other administrator gets the mail, the refusal is listed', async () => {
  sendgrid.rejectAddresses.add(BOB);
  const created = await stack.cmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`]);
  expect(created.stderr).toBe('');
  expect(created.code).toBe(0);
  expect(created.stdout).toMatch(/created/);

  // The next requests find the tenant; a second create finds it too.
  const env = await stack.cmk(['env', 'create', '--tenant', 'contoso', '--env', 'prod', '--json']);
  expect(env.code).toBe(0);
  const list = await stack.cmk(['env', 'list', '--tenant', 'contoso', '--json'], { as: ALICE });
  expect(list.code).toBe(0);
  expect(list.json().environments.map((e: { id: string }) => e.id)).toEqual(['prod']);
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso', '--admin', `${ALICE}:global`])).stderr).toMatch(/^ALREADY_EXISTS: /);
  const added = await stack.cmk(['tenant', 'admin', 'add', '--tenant', 'contoso', '--admin', 'carol@contoso.example:global'], { as: ALICE });
  expect(added.code).toBe(0);

  const listed = await mails('contoso');
  expect(listed.filter((m) => m.to === ALICE).every((m) => m.delivery === 'delivered')).toBe(true);
  expect(listed.filter((m) => m.to === ALICE)).toHaveLength(2);
  const refused = listed.filter((m) => m.to === BOB);
  expect(refused).toHaveLength(2);
  for (const m of refused) expect(m).toMatchObject({ delivery: 'rejected', attempts: 1, reason: expect.stringMatching(/SendGrid answered 400.*valid address/) });
  expect(sendgrid.delivered().map((d) => d.to)).not.toContain(BOB);
  const text = await stack.cmk(['mail', 'list', '--tenant', 'contoso'], { as: ALICE });
  expect(text.stdout).toMatch(/rejected \(1 attempt\(s\): SendGrid answered 400/);

  // Operators see it: a warning in status (still ready), and the gauges.
  const status = await stack.cmk(['status', '--json']);
  expect(status.code).toBe(0);
  expect(status.json()).toMatchObject({ ready: true, mail: { pending: 0, rejected: 2 } });
  expect(status.json().warnings).toEqual([expect.stringMatching(/^mail: 0 pending, 2 rejected/)]);
  expect((await stack.cmk(['status'])).stdout).toMatch(/Warning: mail: 0 pending, 2 rejected/);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^cmk_mail_rejected 2$/m);
  expect(metrics).toMatch(/^cmk_mail_pending 0$/m);

  // Only the operator retries; once SendGrid takes the address, the retry delivers each mail once.
  const forbidden = await stack.cmk(['mail', 'retry', '--tenant', 'contoso', '--json'], { as: ALICE });
  expect(forbidden.code).toBe(3);
  expect(forbidden.stderr).toMatch(/^FORBIDDEN: /);
  expect((await stack.cmk(['mail', 'retry', '--tenant', 'nobody'])).stderr).toMatch(/^NOT_FOUND: /);
  sendgrid.rejectAddresses.clear();
  const retried = await stack.cmk(['mail', 'retry', '--tenant', 'contoso', '--json']);
  expect(retried.code).toBe(0);
  expect(retried.json().tried.map((t: Mail) => [t.to, t.delivery])).toEqual([[BOB, 'delivered'], [BOB, 'delivered']]);
  expect((await mails('contoso')).every((m) => m.delivery === 'delivered')).toBe(true);
  expect((await stack.cmk(['mail', 'retry', '--tenant', 'contoso'])).stdout).toMatch(/No mail of contoso to retry/);
  expect(sendgrid.delivered().filter((d) => d.to === BOB)).toHaveLength(2);
  expect((await stack.cmk(['status', '--json'])).json().warnings).toEqual([]);
});

test('SendGrid down (503) or refusing our key (401): requests answer at once, mail waits as pending, and goes out once when it is back', async () => {
  const created = await stack.cmk(['tenant', 'create', '--tenant', 'fabrikam', '--name', 'Fabrikam', '--admin', `${ALICE}:global`]);
  expect(created.code).toBe(0);
  sendgrid.down = 503;
  expect((await stack.cmk(['tenant', 'admin', 'add', '--tenant', 'fabrikam', '--admin', `${BOB}:service`], { as: ALICE })).code).toBe(0);
  sendgrid.down = 401;
  expect((await stack.cmk(['env', 'create', '--tenant', 'fabrikam', '--env', 'prod', '--admin', 'sam@contoso.example'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['tenant', 'admin', 'remove', '--tenant', 'fabrikam', '--admin', BOB], { as: ALICE })).code).toBe(0);
  const waiting = (await mails('fabrikam')).filter((m) => m.delivery !== 'delivered');
  expect(waiting.length).toBeGreaterThanOrEqual(4);
  expect(waiting.every((m) => m.delivery === 'pending')).toBe(true);
  const status = (await stack.cmk(['status', '--json'])).json();
  expect(status.ready).toBe(true);
  expect(status.warnings[0]).toMatch(/^mail: \d+ pending since \d{4}-/);

  sendgrid.down = null;
  const retried = await stack.cmk(['mail', 'retry', '--tenant', 'fabrikam', '--json']);
  expect(retried.code).toBe(0);
  expect((await mails('fabrikam')).every((m) => m.delivery === 'delivered')).toBe(true);
  const ids = sendgrid.delivered().map((d) => d.id);
  expect(new Set(ids).size).toBe(ids.length);
});

test('the stack creates the Schedule cmk-mail-retry; its passes deliver pending mail once SendGrid is back, without anyone asking', async () => {
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS });
  try {
    const temporal = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
    const schedule = temporal.schedule.getHandle(MAIL_RETRY_SCHEDULE_ID);
    const described = await schedule.describe();
    expect(described.spec.intervals).toEqual([expect.objectContaining({ every: 60_000 })]);
    expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'mailRetryWorkflow' });

    sendgrid.down = 503;
    expect((await stack.cmk(['tenant', 'create', '--tenant', 'northwind', '--name', 'Northwind', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
    expect((await mails('northwind')).map((m) => m.delivery)).toEqual(['pending', 'pending']);
    sendgrid.down = null;
    await schedule.trigger();
    // Bob's mail was never tried (the outage stopped the attempts): it is due at once. Alice's backs off a minute.
    const deadline = Date.now() + 180_000;
    while ((await mails('northwind')).some((m) => m.delivery !== 'delivered')) {
      if (Date.now() > deadline) throw new Error(`mail still pending: ${JSON.stringify(await mails('northwind'))}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(sendgrid.delivered().filter((d) => d.id.startsWith('cmk-tenant/northwind#')).map((d) => d.to).sort()).toEqual([ALICE, BOB]);
  } finally {
    await connection.close();
  }
}, 240_000);
