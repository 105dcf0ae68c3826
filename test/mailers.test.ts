/**
 * The SendGrid and SMTP mailers against real local servers: an HTTP endpoint that checks SendGrid's v3 Mail Send
 * request shape (harness/sendgrid-double.ts), and an `smtp-server` relay. No library is mocked; the outbox is the
 * real one in a temporary directory. Delivery is per recipient: a refused recipient is `rejected`, the others get
 * theirs; a provider outage leaves mail `pending`, retried with backoff and delivered once when it is back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { createNotificationActivities } from '../activities/notifications';
import { ConfigError, loadConfig } from '../config';
import { buildMailer, MAIL_GIVE_UP_MS, PostOffice } from '../mail';
import { SendGridMailer } from '../mail/sendgrid';
import { NOTIFICATION_ID_HEADER, SmtpMailer } from '../mail/smtp';
import { Outbox } from '../mail/outbox';
import type { OutgoingMail } from '../mail/types';
import { FakeSendGrid, SENDGRID_TEST_KEY as API_KEY } from '../harness/sendgrid-double';

const FROM = 'cmk@example.com';

let dataDir: string;
let outbox: Outbox;
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'cmk-mailers-'));
  outbox = new Outbox({ dataDir });
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

const mail = (over: Partial<OutgoingMail> = {}): OutgoingMail => ({
  id: 'notify-t1-key-changed-1:alice@example.com',
  tenant: 't1',
  to: 'alice@example.com',
  subject: 'Your key changed',
  event: 'key-changed',
  body: 'The key of tenant t1 changed.\nThumbprint: ab12cd34.',
  sentAt: '2026-01-02T03:04:05.000Z',
  ...over,
});

const notification = (recipients: string[], id = 'tenant-t1/key-changed/1') => ({
  notificationId: id,
  tenant: 't1',
  recipients,
  event: 'key-changed' as const,
  subject: 'Your key changed',
  body: 'The key of tenant t1 changed.',
  occurredAt: '2026-01-02T03:04:05.000Z',
});

/** A clock the test moves: the retries' backoff and the 7 days are the post office's, not the machine's. */
function testClock() {
  let now = Date.parse('2026-01-02T03:04:05.000Z');
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const states = async (tenant = 't1') => (await outbox.list(tenant)).map((e) => [e.to, e.delivery]).sort(([a], [b]) => a!.localeCompare(b!));

// ---------------------------------------------------------------------------------------------------------------
// SendGrid

describe('SendGrid mailer', () => {
  let sendgrid: FakeSendGrid;
  let baseUrl: string;
  beforeEach(async () => {
    sendgrid = new FakeSendGrid();
    baseUrl = await sendgrid.start();
  });
  afterEach(() => sendgrid.stop());

  const transport = (apiKey = API_KEY) => new SendGridMailer({ sendgridApiKey: apiKey, sendgridBaseUrl: baseUrl, mailFrom: FROM });
  const postOffice = (clock = testClock(), apiKey = API_KEY) => new PostOffice(outbox, transport(apiKey), { now: clock.now });

  test('sends the v3 request shape, records the mail as delivered, and sends a mail ID only once', async () => {
    await expect(transport().attempt(mail())).resolves.toEqual({ outcome: 'delivered' });
    expect(sendgrid.requests).toHaveLength(1);
    const { authorization, body } = sendgrid.requests[0]!;
    expect(authorization).toBe(`Bearer ${API_KEY}`);
    expect(body.personalizations).toEqual([{ to: [{ email: 'alice@example.com' }] }]);
    expect(body.from).toEqual({ email: FROM, name: 'cmk' });
    expect(body.subject).toBe('Your key changed');
    expect(body.content).toEqual([{ type: 'text/plain', value: mail().body }]);
    expect(body.categories).toEqual(['cmk', 'key-changed']);
    expect(body.custom_args).toEqual({ notification_id: mail().id, tenant: 't1', event: 'key-changed' });

    const office = postOffice();
    await expect(office.sendAll([mail({ id: 'n2:alice@example.com' })])).resolves.toEqual([{ to: 'alice@example.com', delivery: 'delivered' }]);
    expect(await outbox.list('t1')).toEqual([expect.objectContaining({ id: 'n2:alice@example.com', delivery: 'delivered', attempts: 1 })]);
    // The activity retried (or a second worker): the outbox holds the ID as delivered, SendGrid is not called again.
    await office.sendAll([mail({ id: 'n2:alice@example.com' })]);
    await postOffice().sendAll([mail({ id: 'n2:alice@example.com' })]);
    await office.retry({ tenant: 't1', now: true });
    expect(sendgrid.requests).toHaveLength(2);
  });

  test('the notification activity sends one message per administrator, once', async () => {
    const { notifyAdministrators } = createNotificationActivities({ mailer: postOffice() });
    const input = notification(['alice@example.com', 'bob@example.com']);
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2, pending: 0, rejected: 0 });
    expect(sendgrid.requests.map((r) => r.body.personalizations[0]!.to[0]!.email)).toEqual(['alice@example.com', 'bob@example.com']);
    expect(sendgrid.requests.map((r) => r.body.custom_args.notification_id)).toEqual(['tenant-t1/key-changed/1:alice@example.com', 'tenant-t1/key-changed/1:bob@example.com']);
    // The retried activity mails nobody twice.
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2, pending: 0, rejected: 0 });
    expect(sendgrid.requests).toHaveLength(2);
  });

  test('a recipient SendGrid refuses (400) is rejected with its reason; the others still get theirs; nothing throws', async () => {
    sendgrid.rejectAddresses.add('bob@example.com');
    const { notifyAdministrators } = createNotificationActivities({ mailer: postOffice() });
    await expect(notifyAdministrators(notification(['bob@example.com', 'alice@example.com', 'carol@example.com']))).resolves.toEqual({ delivered: 2, pending: 0, rejected: 1 });
    expect(sendgrid.delivered().map((d) => d.to)).toEqual(['alice@example.com', 'carol@example.com']);
    const bob = (await outbox.list('t1')).find((e) => e.to === 'bob@example.com')!;
    expect(bob).toMatchObject({ delivery: 'rejected', attempts: 1, reason: 'SendGrid answered 400: personalizations.0.to.0.email: Does not contain a valid address.' });
    // A rejected mail is not retried in the background; the operator's retry tries it again (and it is still refused).
    await postOffice().retry({});
    expect(sendgrid.requests).toHaveLength(3);
    const report = await postOffice().retry({ tenant: 't1', now: true });
    expect(report.tried).toEqual([expect.objectContaining({ to: 'bob@example.com', delivery: 'rejected', attempts: 2 })]);
  });

  test.each([401, 403, 429, 500, 503])('%i is an outage: the mail stays pending, the rest are not tried now, and the retry delivers each once when SendGrid is back', async (status) => {
    const clock = testClock();
    const office = postOffice(clock);
    sendgrid.down = status;
    const { notifyAdministrators } = createNotificationActivities({ mailer: office });
    await expect(notifyAdministrators(notification(['alice@example.com', 'bob@example.com']))).resolves.toEqual({ delivered: 0, pending: 2, rejected: 0 });
    // One attempt found SendGrid down; bob's mail waits without an attempt of its own.
    expect(await outbox.list('t1')).toEqual([
      expect.objectContaining({ to: 'alice@example.com', delivery: 'pending', attempts: 1, reason: expect.stringContaining(`SendGrid answered ${status}`) }),
      expect.objectContaining({ to: 'bob@example.com', delivery: 'pending', attempts: 0 }),
    ]);
    // The background pass: bob's is due (never tried), alice's backs off a minute.
    await office.retry({});
    expect((await outbox.list('t1')).map((e) => e.attempts)).toEqual([1, 1]);
    await office.retry({});
    expect((await outbox.list('t1')).map((e) => e.attempts)).toEqual([1, 1]);
    clock.advance(61_000);
    await office.retry({});
    expect((await outbox.list('t1')).map((e) => e.attempts)).toEqual([2, 1]);

    sendgrid.down = null;
    clock.advance(3_600_000);
    const report = await office.retry({});
    expect(report.stillPending).toBe(0);
    expect(report.tried.map((t) => [t.to, t.delivery]).sort()).toEqual([['alice@example.com', 'delivered'], ['bob@example.com', 'delivered']]);
    await office.retry({});
    await office.retry({ tenant: 't1', now: true });
    expect(sendgrid.delivered().map((d) => d.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
    expect(await states()).toEqual([['alice@example.com', 'delivered'], ['bob@example.com', 'delivered']]);
  });

  test('SendGrid unreachable is an outage; after 7 days of outage a pending mail is given up as rejected', async () => {
    const clock = testClock();
    const office = postOffice(clock);
    await sendgrid.stop();
    await expect(office.sendAll([mail(), mail({ id: 'n1:bob@example.com', to: 'bob@example.com' })])).resolves.toEqual([
      { to: 'alice@example.com', delivery: 'pending', reason: expect.stringMatching(/SendGrid could not be reached/) },
      { to: 'bob@example.com', delivery: 'pending' },
    ]);
    for (let day = 1; day < 7; day++) {
      clock.advance(86_400_000);
      await office.retry({});
    }
    expect(await states()).toEqual([['alice@example.com', 'pending'], ['bob@example.com', 'pending']]);
    clock.advance(MAIL_GIVE_UP_MS - 6 * 86_400_000);
    await office.retry({});
    const entries = await outbox.list('t1');
    expect(entries.map((e) => e.delivery)).toEqual(['rejected', 'rejected']);
    expect(entries.find((e) => e.to === 'alice@example.com')!.reason).toMatch(/^gave up after \d+ attempt\(s\) over 7 day\(s\); last answer: SendGrid could not be reached/);
    expect(await office.outbox.summary()).toEqual({ pending: 0, oldestPendingSince: null, rejected: 2 });
    sendgrid = new FakeSendGrid(); // afterEach stops a fresh one
    await sendgrid.start();
  });

  test('no reason recorded ever shows the key', async () => {
    sendgrid.down = 401;
    await postOffice().sendAll([mail()]);
    sendgrid.down = null;
    const wrong = postOffice(testClock(), 'SG.wrong-key-do-not-print');
    await wrong.sendAll([mail({ id: 'n3:alice@example.com' })]);
    sendgrid.script.push(400);
    await postOffice().sendAll([mail({ id: 'n4:alice@example.com' })]);
    const entries = await outbox.list('t1');
    expect(Object.fromEntries(entries.map((e) => [e.id.split(':')[0], e.delivery]))).toEqual({ 'notify-t1-key-changed-1': 'pending', n3: 'pending', n4: 'rejected' });
    expect(JSON.stringify(entries)).not.toMatch(/SG\.wrong-key-do-not-print|k3y-that-must-never-leak/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// SMTP

interface Received {
  from: string | undefined;
  to: string[];
  raw: string;
}

/** Headers (unfolded, lower-cased names) and body of a raw RFC 5322 message. */
function parse(raw: string): { headers: Record<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body: raw.slice(split + 4).replace(/\r\n/g, '\n').trimEnd() };
}

class Relay {
  readonly received: Received[] = [];
  /** The reply code to refuse the next recipients with (550, 451…), or null to accept them. */
  rejectRecipients: number | null = null;
  /** Addresses refused with 550, every time. */
  readonly rejectAddresses = new Set<string>();
  readonly server: SMTPServer;

  constructor(auth?: { user: string; pass: string }) {
    this.server = new SMTPServer({
      secure: false,
      disabledCommands: auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
      authOptional: !auth,
      allowInsecureAuth: !!auth,
      logger: false,
      onAuth: (a, _session, callback) => {
        if (auth && a.username === auth.user && a.password === auth.pass) return callback(null, { user: a.username });
        const err = Object.assign(new Error('Authentication failed'), { responseCode: 535 });
        return callback(err);
      },
      onRcptTo: (address: SMTPServerAddress, _session, callback) => {
        if (this.rejectAddresses.has(address.address)) return callback(Object.assign(new Error(`No such user ${address.address}`), { responseCode: 550 }));
        if (this.rejectRecipients === null) return callback();
        const text = this.rejectRecipients >= 500 ? `No such user ${address.address}` : 'Try again later';
        return callback(Object.assign(new Error(text), { responseCode: this.rejectRecipients }));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          this.received.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString('utf8'),
          });
          callback();
        });
      },
    });
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('SMTP mailer', () => {
  let relay: Relay;
  let port: number;
  const mailers: SmtpMailer[] = [];
  beforeEach(async () => {
    relay = new Relay();
    port = await relay.start();
  });
  afterEach(async () => {
    mailers.splice(0).forEach((m) => m.close());
    await relay.stop();
  });

  const mailer = (url = `smtp://127.0.0.1:${port}`) => {
    const m = new SmtpMailer({ smtpUrl: url, mailFrom: FROM });
    mailers.push(m);
    return new PostOffice(outbox, m);
  };
  const first = async (office: PostOffice, m: OutgoingMail) => (await office.sendAll([m]))[0]!;

  test('delivers from/to/subject/body with the notification ID header, keeps a copy, sends an ID once', async () => {
    const m = mailer();
    await expect(first(m, mail())).resolves.toEqual({ to: 'alice@example.com', delivery: 'delivered' });
    expect(relay.received).toHaveLength(1);
    const { from, to, raw } = relay.received[0]!;
    expect(from).toBe(FROM);
    expect(to).toEqual(['alice@example.com']);
    const { headers, body } = parse(raw);
    expect(headers.from).toBe(`cmk <${FROM}>`);
    expect(headers.to).toBe('alice@example.com');
    expect(headers.subject).toBe('Your key changed');
    expect(headers[NOTIFICATION_ID_HEADER.toLowerCase()]).toBe(mail().id);
    expect(body).toBe(mail().body);
    expect(await outbox.list('t1')).toEqual([expect.objectContaining({ id: mail().id, delivery: 'delivered' })]);

    await first(m, mail());
    await first(mailer(), mail());
    expect(relay.received).toHaveLength(1);
  });

  test('the notification activity sends one message per administrator', async () => {
    const { notifyAdministrators } = createNotificationActivities({ mailer: mailer() });
    const input = {
      notificationId: 'tenant-t1/admin-changed/7',
      tenant: 't1',
      recipients: ['alice@example.com', 'bob@example.com'],
      event: 'admin-changed' as const,
      subject: 'Administrators changed',
      body: 'Bob is now an administrator.',
      occurredAt: '2026-01-02T03:04:05.000Z',
    };
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2, pending: 0, rejected: 0 });
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2, pending: 0, rejected: 0 });
    expect(relay.received.map((r) => r.to)).toEqual([['alice@example.com'], ['bob@example.com']]);
  });

  test('550 for a recipient: that mail is rejected with the relay’s reason, the others still get theirs', async () => {
    const { notifyAdministrators } = createNotificationActivities({ mailer: mailer() });
    relay.rejectAddresses.add('bob@example.com');
    await expect(notifyAdministrators(notification(['bob@example.com', 'alice@example.com']))).resolves.toEqual({ delivered: 1, pending: 0, rejected: 1 });
    expect(relay.received.map((r) => r.to)).toEqual([['alice@example.com']]);
    expect((await outbox.list('t1')).find((e) => e.to === 'bob@example.com')).toMatchObject({ delivery: 'rejected', reason: expect.stringMatching(/550.*No such user bob@example.com/) });
  });

  test('451 is an outage: pending, and the retry delivers once', async () => {
    relay.rejectRecipients = 451;
    const m = mailer();
    const result = await first(m, mail());
    expect(result).toMatchObject({ delivery: 'pending', reason: expect.stringMatching(/451/) });
    relay.rejectRecipients = null;
    await m.retry({ tenant: 't1', now: true });
    await m.retry({ tenant: 't1', now: true });
    expect(relay.received).toHaveLength(1);
    expect(await states()).toEqual([['alice@example.com', 'delivered']]);
  });

  test('a relay that cannot be reached is an outage', async () => {
    await relay.stop();
    expect(await first(mailer(), mail())).toMatchObject({ delivery: 'pending' });
    relay = new Relay();
    port = await relay.start();
  });

  test('authenticates with the URL credentials and never shows the password', async () => {
    const secured = new Relay({ user: 'cmk', pass: 'p@ss w0rd!' });
    const securedPort = await secured.start();
    try {
      await expect(first(mailer(`smtp://cmk:${encodeURIComponent('p@ss w0rd!')}@127.0.0.1:${securedPort}`), mail())).resolves.toMatchObject({ delivery: 'delivered' });
      expect(secured.received).toHaveLength(1);
      // A refused login is the relay refusing us, not the recipient: an outage, the mail waits.
      const refused = await first(mailer(`smtp://cmk:${encodeURIComponent('wr0ng-secret')}@127.0.0.1:${securedPort}`), mail({ id: 'other' }));
      expect(refused).toMatchObject({ delivery: 'pending', reason: expect.stringMatching(/535/) });
      expect(JSON.stringify(await outbox.list('t1'))).not.toMatch(/wr0ng-secret|wr0ng%2Dsecret/);
    } finally {
      await secured.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Configuration

describe('mail configuration', () => {
  test('defaults: the outbox is the mailer', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ mailer: 'outbox', sendgridBaseUrl: 'https://api.sendgrid.com', mailFrom: 'cmk@localhost' });
    const mailer = buildMailer(config, outbox);
    expect(mailer).toBeInstanceOf(PostOffice);
    expect(mailer.outbox).toBe(outbox);
  });

  test('sendgrid needs a key; the error does not echo secrets', () => {
    expect(() => loadConfig({ CMK_MAILER: 'sendgrid' })).toThrow(ConfigError);
    const config = loadConfig({ CMK_MAILER: 'sendgrid', CMK_SENDGRID_API_KEY: API_KEY, CMK_SENDGRID_BASE_URL: 'http://127.0.0.1:9/', CMK_MAIL_FROM: FROM });
    expect(config).toMatchObject({ mailer: 'sendgrid', sendgridApiKey: API_KEY, sendgridBaseUrl: 'http://127.0.0.1:9', mailFrom: FROM });
    expect(buildMailer(config, outbox)).toBeInstanceOf(PostOffice);
  });

  test('smtp needs an smtp:// or smtps:// URL, without echoing it', () => {
    expect(() => loadConfig({ CMK_MAILER: 'smtp' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'http://u:hunter2@relay' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'http://u:hunter2@relay' })).not.toThrow(/hunter2/);
    const config = loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'smtps://u:p@relay:465' });
    buildMailer(config, outbox).close();
  });

  test('CMK_MAILER and CMK_MAIL_FROM are validated', () => {
    expect(() => loadConfig({ CMK_MAILER: 'postfix' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAIL_FROM: 'not an address' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAIL_FROM: 'cmk <cmk@example.com>' })).toThrow(ConfigError);
  });
});
