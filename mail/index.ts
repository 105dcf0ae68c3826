/**
 * The mailer the configuration names (CMK_MAILER). The outbox keeps every message and its delivery state either way:
 * by default recording it is delivering it; behind SendGrid and SMTP it is the idempotency record and the retry queue.
 */
import type { Config } from '../config';
import type { Outbox } from './outbox';
import { SendGridMailer } from './sendgrid';
import { SmtpMailer } from './smtp';
import { PostOffice } from './post-office';

export type MailerConfig = Pick<Config, 'mailer' | 'sendgridApiKey' | 'sendgridBaseUrl' | 'mailFrom' | 'smtpUrl'>;

export function buildMailer(config: MailerConfig, outbox: Outbox): PostOffice {
  switch (config.mailer) {
    case 'outbox':
      return new PostOffice(outbox, null);
    case 'sendgrid':
      if (!config.sendgridApiKey) throw new Error('CMK_MAILER=sendgrid needs CMK_SENDGRID_API_KEY.');
      return new PostOffice(outbox, new SendGridMailer({ sendgridApiKey: config.sendgridApiKey, sendgridBaseUrl: config.sendgridBaseUrl, mailFrom: config.mailFrom }));
    case 'smtp':
      if (!config.smtpUrl) throw new Error('CMK_MAILER=smtp needs CMK_SMTP_URL.');
      return new PostOffice(outbox, new SmtpMailer({ smtpUrl: config.smtpUrl, mailFrom: config.mailFrom }));
  }
}

export { SendGridMailer } from './sendgrid';
export { MAIL_GIVE_UP_MS, PostOffice } from './post-office';
export { NOTIFICATION_ID_HEADER, SmtpMailer } from './smtp';
