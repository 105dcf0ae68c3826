/**
 * SMTP through nodemailer, for on-premises relays (CMK_SMTP_URL: smtp://user:pass@relay:587 or smtps://…). As with
 * SendGrid, the outbox copy is written after the relay accepts the message and is the idempotency record; SMTP has no
 * idempotency key, so a crash between the relay's 250 and the copy can send one message twice (at-least-once there).
 * The `X-Cmk-Notification-Id` header carries the mail ID so a duplicate is recognisable.
 */
import { createTransport, type Transporter } from 'nodemailer';
import { ApplicationFailure } from '@temporalio/common';
import type { Outbox } from './outbox';
import type { Mailer, OutgoingMail } from './types';
import { MAIL_REJECTED, alreadySent } from './sendgrid';

export interface SmtpMailerConfig {
  smtpUrl: string;
  mailFrom: string;
}

export const NOTIFICATION_ID_HEADER = 'X-Cmk-Notification-Id';

export class SmtpMailer implements Mailer {
  private readonly transport: Transporter;
  private readonly from: string;
  private readonly secrets: string[];

  constructor(
    config: SmtpMailerConfig,
    private readonly outbox: Outbox,
  ) {
    // smtp:// must upgrade with STARTTLS (else credentials and mail cross in the clear), except to a loopback relay;
    // `?requireTLS=false` in CMK_SMTP_URL opts out explicitly (the URL's own options take precedence).
    this.transport = createTransport({ url: config.smtpUrl, requireTLS: !/^smtps?:\/\/(?:[^@/?#]*@)?(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])(?::\d+)?(?:[/?#]|$)/i.test(config.smtpUrl) });
    this.from = config.mailFrom;
    this.secrets = urlSecrets(config.smtpUrl);
  }

  async send(mail: OutgoingMail): Promise<{ delivered: boolean }> {
    if (await alreadySent(this.outbox, mail)) return { delivered: false };
    try {
      await this.transport.sendMail({
        from: { name: 'cmk', address: this.from },
        to: mail.to,
        subject: mail.subject,
        text: mail.body,
        headers: { [NOTIFICATION_ID_HEADER]: mail.id },
      });
    } catch (err) {
      throw this.failure(err);
    }
    await this.outbox.send(mail);
    return { delivered: true };
  }

  /** Closes the transport's connections (a pooled or idle socket would keep the process alive). */
  close(): void {
    this.transport.close();
  }

  /**
   * A permanent (5xx) reply: a non-retryable failure. 4xx replies and connection faults: a plain Error, retried by the
   * activity's policy. A fresh error without `cause`, its text scrubbed of the URL's credentials.
   */
  private failure(err: unknown): Error {
    const e = err as { responseCode?: unknown; code?: unknown; message?: unknown } | null;
    const responseCode = typeof e?.responseCode === 'number' ? e.responseCode : undefined;
    const code = typeof e?.code === 'string' ? ` (${e.code})` : '';
    const text = this.redact(`SMTP relay ${responseCode ? `answered ${responseCode}` : 'failed'}${code}: ${typeof e?.message === 'string' ? e.message : String(err)}`).slice(0, 1000);
    if (responseCode !== undefined && responseCode >= 500 && responseCode < 600) return ApplicationFailure.nonRetryable(text, MAIL_REJECTED);
    return new Error(text);
  }

  private redact(text: string): string {
    return this.secrets.reduce((t, secret) => t.split(secret).join('[redacted]'), text);
  }
}

/** The password in the URL, raw and decoded; nothing to scrub without one. */
function urlSecrets(url: string): string[] {
  try {
    const password = new URL(url).password;
    return password ? [...new Set([password, decodeURIComponent(password)])] : [];
  } catch {
    return [];
  }
}
