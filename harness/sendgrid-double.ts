/**
 * SendGrid's v3 `/v3/mail/send` as far as a sender can tell: auth, JSON, the required fields, 202 with no body — a
 * local HTTP endpoint the SendGrid adapter is pointed at (CMK_SENDGRID_BASE_URL). It can refuse given addresses (400
 * naming the field, as SendGrid does for an address it will not send to) or be down (a status for every request).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export const SENDGRID_TEST_KEY = 'SG.test-only.k3y-that-must-never-leak';

export interface SendGridRequest {
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

export class FakeSendGrid {
  /** Requests that passed the checks, accepted or not. */
  readonly requests: SendGridRequest[] = [];
  /** Statuses to answer next, in order (after the request passed the checks); 202 once empty. */
  readonly script: number[] = [];
  /** Addresses answered 400 ("does not contain a valid address"), every time. */
  readonly rejectAddresses = new Set<string>();
  /** A status for every request (e.g. 503: down; 401: our key revoked), or null to work. */
  down: number | null = null;
  private server: Server = createServer((req, res) => {
    void this.handle(req).then(({ status, body }) => {
      res.writeHead(status, body ? { 'content-type': 'application/json' } : {});
      res.end(body ? JSON.stringify(body) : undefined);
    });
  });

  constructor(private readonly apiKey = SENDGRID_TEST_KEY) {}

  /** Accepted messages, as (recipient, notification ID). */
  delivered(): Array<{ to: string; id: string }> {
    return this.accepted.map((r) => ({ to: r.body.personalizations[0]!.to[0]!.email, id: r.body.custom_args.notification_id! }));
  }

  private readonly accepted: SendGridRequest[] = [];

  async start(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
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
    if (this.down !== null) return refuse(this.down, this.down === 401 ? 'The provided authorization grant is invalid, expired, or revoked' : `scripted ${this.down}`);
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) return refuse(401, 'The provided authorization grant is invalid, expired, or revoked');
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
    if (this.rejectAddresses.has(p.to[0]!.email)) return refuse(400, 'Does not contain a valid address.', 'personalizations.0.to.0.email');
    const status = this.script.shift() ?? 202;
    if (status === 202) {
      this.accepted.push({ authorization: req.headers.authorization, body });
      return { status };
    }
    return refuse(status, status === 429 ? 'too many requests' : `scripted ${status}`, status === 400 ? 'personalizations.0.to.0.email' : null);
  }
}
