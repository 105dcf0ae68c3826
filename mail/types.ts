import type { MailEvent } from '../workflows/notifications';

/** One message to one administrator. `id` is its idempotency key: the same id is delivered at most once. */
export interface OutgoingMail {
  id: string;
  tenant: string;
  to: string;
  subject: string;
  event: MailEvent;
  body: string;
  sentAt: string;
}

export interface Mailer {
  send(mail: OutgoingMail): Promise<{ delivered: boolean }>;
}
