/**
 * The mailer the configuration names (CMK_MAILER). The outbox keeps every message and its delivery state either way:
 * by default recording it is delivering it; behind SendGrid and SMTP it is the idempotency record and the retry queue.
 */
import type { Config } from '../config';
import type { Outbox } from './outbox';
import { PostOffice } from './post-office';
// Types only: each transport's module (and its client library: 12–19 MB of every process that loads it) is required
// when the configuration names it.
import type * as SendGridModule from './sendgrid';
import type * as SmtpModule from './smtp';

export type MailerConfig = Pick<Config, 'mailer' | 'sendgridApiKey' | 'sendgridBaseUrl' | 'mailFrom' | 'smtpUrl'>;

export function buildMailer(config: MailerConfig, outbox: Outbox): PostOffice {
  switch (config.mailer) {
    case 'outbox':
      return new PostOffice(outbox, null);
    case 'sendgrid': {
      if (!config.sendgridApiKey) throw new Error('CMK_MAILER=sendgrid needs CMK_SENDGRID_API_KEY.');
      const { SendGridMailer } = require('./sendgrid') as typeof SendGridModule;
      return new PostOffice(outbox, new SendGridMailer({ sendgridApiKey: config.sendgridApiKey, sendgridBaseUrl: config.sendgridBaseUrl, mailFrom: config.mailFrom }));
    }
    case 'smtp': {
      if (!config.smtpUrl) throw new Error('CMK_MAILER=smtp needs CMK_SMTP_URL.');
      const { SmtpMailer } = require('./smtp') as typeof SmtpModule;
      return new PostOffice(outbox, new SmtpMailer({ smtpUrl: config.smtpUrl, mailFrom: config.mailFrom }));
    }
  }
}

export { MAIL_GIVE_UP_MS, PostOffice } from './post-office';
