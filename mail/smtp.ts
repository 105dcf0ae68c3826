/**
 * SMTP through nodemailer, for on-premises relays (CMK_SMTP_URL: smtp://user:pass@relay:587 or smtps://…): one
 * attempt per call, its answer classified (mail/post-office.ts keeps the delivery state and retries). SMTP has no
 * idempotency key, so a crash between the relay's 250 and the outbox update can send one message twice
 * (at-least-once there). The `X-Cmk-Notification-Id` header carries the mail ID so a duplicate is recognisable.
 */
import { createTransport, type Transporter } from 'nodemailer';
import type { Attempt, MailTransport, OutgoingMail } from './types';

/** A relay that has not answered by then is an outage: the request that sent the mail must not wait for it. */
const ATTEMPT_TIMEOUT_MS = 15_000;

export interface SmtpMailerConfig {
  smtpUrl: string;
  mailFrom: string;
}

export const NOTIFICATION_ID_HEADER = 'X-Cmk-Notification-Id';

export class SmtpMailer implements MailTransport {
  private readonly transport: Transporter;
  private readonly from: string;
  private readonly secrets: string[];

  constructor(config: SmtpMailerConfig) {
    this.transport = createTransport(config.smtpUrl);
    this.from = config.mailFrom;
    this.secrets = urlSecrets(config.smtpUrl);
  }

  async attempt(mail: OutgoingMail): Promise<Attempt> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })), ATTEMPT_TIMEOUT_MS);
    });
    try {
      const sending = this.transport.sendMail({
        from: { name: 'cmk', address: this.from },
        to: mail.to,
        subject: mail.subject,
        text: mail.body,
        headers: { [NOTIFICATION_ID_HEADER]: mail.id },
      });
      await Promise.race([sending, timeout]);
    } catch (err) {
      return this.classify(err);
    } finally {
      clearTimeout(timer);
    }
    return { outcome: 'delivered' };
  }

  /** Closes the transport's connections (a pooled or idle socket would keep the process alive). */
  close(): void {
    this.transport.close();
  }

  /**
   * A permanent (5xx) refusal of the recipient (RCPT TO) or of the message (DATA): `rejected`, for this mail only.
   * A refused login (EAUTH), any other 5xx (e.g. our sender address), 4xx replies and connection faults: an `outage`.
   * Only text leaves here, scrubbed of the URL's credentials.
   */
  private classify(err: unknown): Attempt {
    const e = err as { responseCode?: unknown; code?: unknown; message?: unknown } | null;
    const responseCode = typeof e?.responseCode === 'number' ? e.responseCode : undefined;
    const code = typeof e?.code === 'string' ? e.code : undefined;
    const reason = this.redact(`SMTP relay ${responseCode ? `answered ${responseCode}` : 'failed'}${code ? ` (${code})` : ''}: ${typeof e?.message === 'string' ? e.message : String(err)}`).slice(0, 500);
    const permanent = responseCode !== undefined && responseCode >= 500 && responseCode < 600;
    if (permanent && (code === 'EENVELOPE' || code === 'EMESSAGE')) return { outcome: 'rejected', reason };
    return { outcome: 'outage', reason };
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
