/**
 * The SendGrid and SMTP mailers against real local servers: an HTTP endpoint that checks SendGrid's v3 Mail Send
 * request shape, and an `smtp-server` relay. No library is mocked; the outbox is the real one in a temporary directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { createNotificationActivities } from '../activities/notifications';
import { ConfigError, loadConfig } from '../config';
import { buildMailer, MAIL_REJECTED, NOTIFICATION_ID_HEADER, SendGridMailer, SmtpMailer } from '../mail';
import { Outbox } from '../mail/outbox';
import type { OutgoingMail } from '../mail/types';

const API_KEY = 'SG.test-only.k3y-that-must-never-leak';
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

/** Rejects with what `promise` threw, so a test can look at it. */
async function thrown(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function expectRejected(err: Error): void {
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).type).toBe(MAIL_REJECTED);
  expect((err as ApplicationFailure).nonRetryable).toBe(true);
}

function expectRetryable(err: Error): void {
  expect(err).toBeInstanceOf(Error);
  expect(err).not.toBeInstanceOf(ApplicationFailure);
}

// ---------------------------------------------------------------------------------------------------------------
// SendGrid

interface SendGridRequest {
  authorization: string | undefined;
  body: {
    personalizations: { to: { email: string }[] }[];
    from: { email: string; name?: string };
    subject: string;
    content: { type: string; value: string }[];
    categories: string[];
    custom_args: Record<string, string>;
  };
}

/** SendGrid's v3 `/v3/mail/send` as far as a sender can tell: auth, JSON, the required fields, 202 with no body. */
class FakeSendGrid {
  readonly requests: SendGridRequest[] = [];
  /** Statuses to answer next, in order (after the request passed the checks); 202 once empty. */
  readonly script: number[] = [];
  private server: Server = createServer((req, res) => {
    void this.handle(req).then(({ status, body }) => {
      res.writeHead(status, body ? { 'content-type': 'application/json' } : {});
      res.end(body ? JSON.stringify(body) : undefined);
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body?: unknown }> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const refuse = (status: number, message: string, field: string | null = null) => ({ status, body: { errors: [{ message, field, help: null }] } });
    if (req.method !== 'POST' || req.url !== '/v3/mail/send') return refuse(404, `no route ${req.method} ${req.url}`);
    if (req.headers.authorization !== `Bearer ${API_KEY}`) return refuse(401, 'The provided authorization grant is invalid, expired, or revoked');
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return refuse(415, 'Content-Type should be application/json.');
    let body: SendGridRequest['body'];
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as SendGridRequest['body'];
    } catch {
      return refuse(400, 'Bad Request', null);
    }
    const p = body.personalizations?.[0];
    if (!p || typeof p.to?.[0]?.email !== 'string') return refuse(400, 'The personalizations field is required and must have at least one personalization.', 'personalizations');
    if (body.personalizations.length !== 1 || p.to.length !== 1) return refuse(400, 'one administrator per message', 'personalizations');
    if (typeof body.from?.email !== 'string') return refuse(400, 'The from object must be provided for every email send.', 'from');
    if (typeof body.subject !== 'string' || !body.subject) return refuse(400, 'The subject is required.', 'subject');
    const c = body.content?.[0];
    if (!c || typeof c.type !== 'string' || typeof c.value !== 'string' || !c.value) return refuse(400, 'The content value must be a string at least one character in length.', 'content');
    if (!Array.isArray(body.categories) || !body.categories.every((x) => typeof x === 'string')) return refuse(400, 'categories must be strings', 'categories');
    if (typeof body.custom_args?.notification_id !== 'string') return refuse(400, 'notification_id missing', 'custom_args');
    this.requests.push({ authorization: req.headers.authorization, body });
    const status = this.script.shift() ?? 202;
    if (status === 202) return { status };
    return refuse(status, status === 429 ? 'too many requests' : `scripted ${status}`, status === 400 ? 'personalizations.0.to.0.email' : null);
  }
}

describe('SendGrid mailer', () => {
  let sendgrid: FakeSendGrid;
  let baseUrl: string;
  beforeEach(async () => {
    sendgrid = new FakeSendGrid();
    baseUrl = await sendgrid.start();
  });
  afterEach(() => sendgrid.stop());

  const mailer = () => new SendGridMailer({ sendgridApiKey: API_KEY, sendgridBaseUrl: baseUrl, mailFrom: FROM }, outbox);

  test('sends the v3 request shape, keeps an outbox copy, and sends a mail ID only once', async () => {
    const m = mailer();
    await expect(m.send(mail())).resolves.toEqual({ delivered: true });
    expect(sendgrid.requests).toHaveLength(1);
    const { authorization, body } = sendgrid.requests[0]!;
    expect(authorization).toBe(`Bearer ${API_KEY}`);
    expect(body.personalizations).toEqual([{ to: [{ email: 'alice@example.com' }] }]);
    expect(body.from).toEqual({ email: FROM, name: 'cmk' });
    expect(body.subject).toBe('Your key changed');
    expect(body.content).toEqual([{ type: 'text/plain', value: mail().body }]);
    expect(body.categories).toEqual(['cmk', 'key-changed']);
    expect(body.custom_args).toEqual({ notification_id: mail().id, tenant: 't1', event: 'key-changed' });
    expect(await outbox.list('t1')).toEqual([expect.objectContaining({ id: mail().id, to: 'alice@example.com', subject: 'Your key changed' })]);

    // The activity retried (or a second worker): the outbox already holds the ID, SendGrid is not called again.
    await expect(m.send(mail())).resolves.toEqual({ delivered: false });
    await expect(mailer().send(mail())).resolves.toEqual({ delivered: false });
    expect(sendgrid.requests).toHaveLength(1);
  });

  test('the notification activity sends one message per administrator', async () => {
    const { notifyAdministrators } = createNotificationActivities({ mailer: mailer() });
    const input = {
      notificationId: 'tenant-t1/key-changed/1',
      tenant: 't1',
      recipients: ['alice@example.com', 'bob@example.com'],
      event: 'key-changed' as const,
      subject: 'Your key changed',
      body: 'The key of tenant t1 changed.',
      occurredAt: '2026-01-02T03:04:05.000Z',
    };
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2 });
    expect(sendgrid.requests.map((r) => r.body.personalizations[0]!.to[0]!.email)).toEqual(['alice@example.com', 'bob@example.com']);
    expect(sendgrid.requests.map((r) => r.body.custom_args.notification_id)).toEqual(['tenant-t1/key-changed/1:alice@example.com', 'tenant-t1/key-changed/1:bob@example.com']);
    expect((await outbox.list('t1')).map((e) => e.to).sort()).toEqual(['alice@example.com', 'bob@example.com']);
    // The retried activity mails nobody twice.
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 0 });
    expect(sendgrid.requests).toHaveLength(2);
  });

  test('429 and 5xx are retryable; the retry delivers once', async () => {
    const m = mailer();
    sendgrid.script.push(429, 503);
    const first = await thrown(m.send(mail()));
    expectRetryable(first);
    expect(first.message).toMatch(/429/);
    expectRetryable(await thrown(m.send(mail())));
    expect(await outbox.list('t1')).toEqual([]);
    await expect(m.send(mail())).resolves.toEqual({ delivered: true });
    expect(sendgrid.requests).toHaveLength(3);
    expect(await outbox.list('t1')).toHaveLength(1);
  });

  test('a 4xx is a non-retryable MAIL_REJECTED failure, and nothing is recorded as sent', async () => {
    sendgrid.script.push(400);
    const err = await thrown(mailer().send(mail()));
    expectRejected(err);
    expect(err.message).toMatch(/400/);
    expect(await outbox.list('t1')).toEqual([]);
  });

  test('a wrong key (401) is rejected, and no error ever shows the key', async () => {
    const wrong = new SendGridMailer({ sendgridApiKey: 'SG.wrong-key-do-not-print', sendgridBaseUrl: baseUrl, mailFrom: FROM }, outbox);
    const unauthorised = await thrown(wrong.send(mail()));
    expectRejected(unauthorised);
    expect(JSON.stringify({ m: unauthorised.message, s: unauthorised.stack, c: unauthorised.cause })).not.toContain('SG.wrong-key-do-not-print');

    const errors: Error[] = [unauthorised];
    for (const status of [429, 500, 400]) {
      sendgrid.script.push(status);
      errors.push(await thrown(mailer().send(mail())));
    }
    await sendgrid.stop();
    const unreachable = await thrown(mailer().send(mail()));
    expectRetryable(unreachable);
    errors.push(unreachable);
    for (const err of errors) {
      expect(err.cause).toBeUndefined();
      expect(`${err.message}\n${err.stack}`).not.toContain(API_KEY);
    }
    sendgrid = new FakeSendGrid(); // afterEach stops a fresh one
    await sendgrid.start();
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
    const m = new SmtpMailer({ smtpUrl: url, mailFrom: FROM }, outbox);
    mailers.push(m);
    return m;
  };

  test('delivers from/to/subject/body with the notification ID header, keeps a copy, sends an ID once', async () => {
    const m = mailer();
    await expect(m.send(mail())).resolves.toEqual({ delivered: true });
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
    expect(await outbox.list('t1')).toEqual([expect.objectContaining({ id: mail().id })]);

    await expect(m.send(mail())).resolves.toEqual({ delivered: false });
    await expect(mailer().send(mail())).resolves.toEqual({ delivered: false });
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
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 2 });
    await expect(notifyAdministrators(input)).resolves.toEqual({ delivered: 0 });
    expect(relay.received.map((r) => r.to)).toEqual([['alice@example.com'], ['bob@example.com']]);
  });

  test('550 for the recipient is a non-retryable MAIL_REJECTED failure', async () => {
    relay.rejectRecipients = 550;
    const err = await thrown(mailer().send(mail()));
    expectRejected(err);
    expect(err.message).toMatch(/550/);
    expect(relay.received).toEqual([]);
    expect(await outbox.list('t1')).toEqual([]);
  });

  test('451 is retryable, and the retry delivers', async () => {
    relay.rejectRecipients = 451;
    const m = mailer();
    const err = await thrown(m.send(mail()));
    expectRetryable(err);
    expect(err.message).toMatch(/451/);
    relay.rejectRecipients = null;
    await expect(m.send(mail())).resolves.toEqual({ delivered: true });
    expect(relay.received).toHaveLength(1);
  });

  test('a relay that cannot be reached is retryable', async () => {
    await relay.stop();
    expectRetryable(await thrown(mailer().send(mail())));
    relay = new Relay();
    port = await relay.start();
  });

  test('authenticates with the URL credentials and never shows the password', async () => {
    const secured = new Relay({ user: 'cmk', pass: 'p@ss w0rd!' });
    const securedPort = await secured.start();
    try {
      await expect(mailer(`smtp://cmk:${encodeURIComponent('p@ss w0rd!')}@127.0.0.1:${securedPort}`).send(mail())).resolves.toEqual({ delivered: true });
      expect(secured.received).toHaveLength(1);
      const err = await thrown(mailer(`smtp://cmk:${encodeURIComponent('wr0ng-secret')}@127.0.0.1:${securedPort}`).send(mail({ id: 'other' })));
      expectRejected(err);
      expect(`${err.message}\n${err.stack}`).not.toMatch(/wr0ng-secret|wr0ng%2Dsecret/);
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
    expect(buildMailer(config, outbox)).toBe(outbox);
  });

  test('sendgrid needs a key; the error does not echo secrets', () => {
    expect(() => loadConfig({ CMK_MAILER: 'sendgrid' })).toThrow(ConfigError);
    const config = loadConfig({ CMK_MAILER: 'sendgrid', CMK_SENDGRID_API_KEY: API_KEY, CMK_SENDGRID_BASE_URL: 'http://127.0.0.1:9/', CMK_MAIL_FROM: FROM });
    expect(config).toMatchObject({ mailer: 'sendgrid', sendgridApiKey: API_KEY, sendgridBaseUrl: 'http://127.0.0.1:9', mailFrom: FROM });
    expect(buildMailer(config, outbox)).toBeInstanceOf(SendGridMailer);
  });

  test('smtp needs an smtp:// or smtps:// URL, without echoing it', () => {
    expect(() => loadConfig({ CMK_MAILER: 'smtp' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'http://u:hunter2@relay' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'http://u:hunter2@relay' })).not.toThrow(/hunter2/);
    const config = loadConfig({ CMK_MAILER: 'smtp', CMK_SMTP_URL: 'smtps://u:p@relay:465' });
    const m = buildMailer(config, outbox);
    expect(m).toBeInstanceOf(SmtpMailer);
    (m as SmtpMailer).close();
  });

  test('CMK_MAILER and CMK_MAIL_FROM are validated', () => {
    expect(() => loadConfig({ CMK_MAILER: 'postfix' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAIL_FROM: 'not an address' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_MAIL_FROM: 'cmk <cmk@example.com>' })).toThrow(ConfigError);
  });
});
