/**
 * The mailer the configuration names (CMK_MAILER). The outbox keeps a copy of every message either way: it is the
 * embedded mailer itself by default, and the idempotency record behind SendGrid and SMTP.
 */
import type { Config } from '../config';
import type { Outbox } from './outbox';
import { SendGridMailer } from './sendgrid';
import { SmtpMailer } from './smtp';
import type { Mailer } from './types';

export type MailerConfig = Pick<Config, 'mailer' | 'sendgridApiKey' | 'sendgridBaseUrl' | 'mailFrom' | 'smtpUrl'>;

export function buildMailer(config: MailerConfig, outbox: Outbox): Mailer {
  switch (config.mailer) {
    case 'outbox':
      return outbox;
    case 'sendgrid':
      if (!config.sendgridApiKey) throw new Error('CMK_MAILER=sendgrid needs CMK_SENDGRID_API_KEY.');
      return new SendGridMailer({ sendgridApiKey: config.sendgridApiKey, sendgridBaseUrl: config.sendgridBaseUrl, mailFrom: config.mailFrom }, outbox);
    case 'smtp':
      if (!config.smtpUrl) throw new Error('CMK_MAILER=smtp needs CMK_SMTP_URL.');
      return new SmtpMailer({ smtpUrl: config.smtpUrl, mailFrom: config.mailFrom }, outbox);
  }
}

export { MAIL_REJECTED, SendGridMailer } from './sendgrid';
export { NOTIFICATION_ID_HEADER, SmtpMailer } from './smtp';
