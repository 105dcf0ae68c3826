import type { Mailer } from '../mail/types';
import type { MailEvent } from '../workflows/notifications';

export interface NotificationInput {
  /** Unique per notification and derived from the workflow ID, so a retried activity mails nobody twice. */
  notificationId: string;
  tenant: string;
  recipients: string[];
  event: MailEvent;
  subject: string;
  body: string;
  occurredAt: string;
}

export function createNotificationActivities({ mailer }: { mailer: Mailer }) {
  return {
    /** R4: one message per recipient, exactly once (the per-recipient idempotency key is the outbox entry's ID). */
    async notifyAdministrators(input: NotificationInput): Promise<{ delivered: number }> {
      let delivered = 0;
      for (const to of input.recipients) {
        const result = await mailer.send({
          id: `${input.notificationId}:${to}`,
          tenant: input.tenant,
          to,
          subject: input.subject,
          event: input.event,
          body: input.body,
          sentAt: input.occurredAt,
        });
        if (result.delivered) delivered++;
      }
      return { delivered };
    },
  };
}
