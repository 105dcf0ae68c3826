/**
 * SendGrid's v3 Mail Send API through `@sendgrid/mail`: one message per administrator. The outbox copy is written after
 * the provider accepts the message and is the idempotency record: a mail ID already in the outbox is not sent again.
 * SendGrid has no idempotency key, so a crash between its 202 and the outbox copy can send one message twice
 * (at-least-once there); `custom_args.notification_id` carries the ID so a duplicate is recognisable.
 */
import { MailService, type MailDataRequired } from '@sendgrid/mail';
import { ApplicationFailure } from '@temporalio/common';
import type { Outbox } from './outbox';
import type { Mailer, OutgoingMail } from './types';

export interface SendGridMailerConfig {
  sendgridApiKey: string;
  sendgridBaseUrl: string;
  mailFrom: string;
}

/** The failure type of a message the provider refused for good (a 4xx from SendGrid, a 5xx reply from an SMTP relay). */
export const MAIL_REJECTED = 'MAIL_REJECTED';

const REQUEST_TIMEOUT_MS = 30_000;

interface BaseUrlSetter {
  setDefaultRequest(key: 'baseUrl', value: string): unknown;
}

export class SendGridMailer implements Mailer {
  private readonly service = new MailService();
  private readonly from: string;
  private readonly apiKey: string;

  constructor(
    config: SendGridMailerConfig,
    private readonly outbox: Outbox,
  ) {
    this.apiKey = config.sendgridApiKey;
    this.from = config.mailFrom;
    // A client of our own, not the module's shared singleton; setApiKey resets the base URL, so set ours after it.
    this.service.setApiKey(config.sendgridApiKey);
    // MailService keeps its `@sendgrid/client` in `client`, which its typings leave out.
    (this.service as unknown as { client: BaseUrlSetter }).client.setDefaultRequest('baseUrl', `${config.sendgridBaseUrl.replace(/\/+$/, '')}/`);
    this.service.setTimeout(REQUEST_TIMEOUT_MS);
  }

  async send(mail: OutgoingMail): Promise<{ delivered: boolean }> {
    if (await alreadySent(this.outbox, mail)) return { delivered: false };
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
      throw this.failure(err);
    }
    await this.outbox.send(mail);
    return { delivered: true };
  }

  /**
   * 429, 5xx and network faults: a plain Error, retried by the activity's policy. Any other 4xx: a non-retryable
   * failure. A fresh error without `cause`: the library's errors hold the request, Authorization header included.
   */
  private failure(err: unknown): Error {
    const status = responseStatus(err);
    if (status === undefined) {
      const code = typeof (err as { code?: unknown })?.code === 'string' ? ` (${(err as { code: string }).code})` : '';
      return new Error(this.redact(`SendGrid could not be reached${code}: ${err instanceof Error ? err.message : String(err)}`));
    }
    const detail = this.redact(`SendGrid answered ${status}${providerMessages(err)}`);
    if (status === 429 || status === 408 || status >= 500) return new Error(detail);
    return ApplicationFailure.nonRetryable(detail, MAIL_REJECTED);
  }

  private redact(text: string): string {
    return this.apiKey ? text.split(this.apiKey).join('[redacted]') : text;
  }
}

/** The outbox holds every message delivered, by ID: one already there was sent (or recorded) before. */
export async function alreadySent(outbox: Outbox, mail: OutgoingMail): Promise<boolean> {
  return (await outbox.list(mail.tenant)).some((entry) => entry.id === mail.id);
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
