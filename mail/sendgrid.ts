/**
 * SendGrid's v3 Mail Send API through `@sendgrid/mail`: one message per administrator, one attempt per call, its
 * answer classified (mail/post-office.ts keeps the delivery state and retries). SendGrid has no idempotency key, so a
 * crash between its 202 and the outbox update can send one message twice (at-least-once there);
 * `custom_args.notification_id` carries the ID so a duplicate is recognisable.
 */
import { MailService, type MailDataRequired } from '@sendgrid/mail';
import type { Attempt, MailTransport, OutgoingMail } from './types';

export interface SendGridMailerConfig {
  sendgridApiKey: string;
  sendgridBaseUrl: string;
  mailFrom: string;
}

/** Short: a provider that hangs is an outage, and the request that sent the mail must not wait for it. */
const REQUEST_TIMEOUT_MS = 10_000;

interface BaseUrlSetter {
  setDefaultRequest(key: 'baseUrl', value: string): unknown;
}

export class SendGridMailer implements MailTransport {
  private readonly service = new MailService();
  private readonly from: string;
  private readonly apiKey: string;

  constructor(config: SendGridMailerConfig) {
    this.apiKey = config.sendgridApiKey;
    this.from = config.mailFrom;
    // A client of our own, not the module's shared singleton; setApiKey resets the base URL, so set ours after it.
    this.service.setApiKey(config.sendgridApiKey);
    // MailService keeps its `@sendgrid/client` in `client`, which its typings leave out.
    (this.service as unknown as { client: BaseUrlSetter }).client.setDefaultRequest('baseUrl', `${config.sendgridBaseUrl.replace(/\/+$/, '')}/`);
    this.service.setTimeout(REQUEST_TIMEOUT_MS);
  }

  async attempt(mail: OutgoingMail): Promise<Attempt> {
    const message: MailDataRequired = {
      to: mail.to,
      from: { email: this.from, name: 'cmk' },
      subject: mail.subject,
      content: [{ type: 'text/plain', value: mail.body }],
      categories: ['cmk', mail.event],
      customArgs: { notification_id: mail.id, tenant: mail.tenant, event: mail.event },
    };
    try {
      await this.service.send(message);
    } catch (err) {
      return this.classify(err);
    }
    return { outcome: 'delivered' };
  }

  /**
   * A 4xx about the message (400: e.g. an address SendGrid will not send to): `rejected`, for this recipient only.
   * 401/403 (our key is wrong or revoked), 404 (a wrong base URL), 408, 429, 5xx and network faults: an `outage`.
   * Only text leaves here, never the library's error: it holds the request, Authorization header included.
   */
  private classify(err: unknown): Attempt {
    const status = responseStatus(err);
    if (status === undefined) {
      const code = typeof (err as { code?: unknown })?.code === 'string' ? ` (${(err as { code: string }).code})` : '';
      return { outcome: 'outage', reason: this.redact(`SendGrid could not be reached${code}: ${err instanceof Error ? err.message : String(err)}`).slice(0, 500) };
    }
    const reason = this.redact(`SendGrid answered ${status}${providerMessages(err)}`);
    if ([401, 403, 404, 408, 429].includes(status) || status >= 500) return { outcome: 'outage', reason };
    return { outcome: 'rejected', reason };
  }

  private redact(text: string): string {
    return this.apiKey ? text.split(this.apiKey).join('[redacted]') : text;
  }
}

/** `ResponseError` from `@sendgrid/helpers`: `code` is the HTTP status. */
function responseStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; response?: unknown } | null;
  return e && typeof e.code === 'number' && e.response !== undefined ? e.code : undefined;
}

function providerMessages(err: unknown): string {
  const body = (err as { response?: { body?: { errors?: unknown } } }).response?.body;
  const errors = Array.isArray(body?.errors) ? (body.errors as { message?: unknown; field?: unknown }[]) : [];
  const texts = errors
    .map((e) => [typeof e.field === 'string' ? e.field : '', typeof e.message === 'string' ? e.message : ''].filter(Boolean).join(': '))
    .filter(Boolean)
    .slice(0, 5);
  return texts.length ? `: ${texts.join('; ').slice(0, 500)}` : '';
}
