import type { Mailer, MailRetryReport } from '../mail/types';
import type { MailEvent } from '../domain/notifications';

export interface NotificationInput {
  /** Unique per notification and derived from the workflow ID, so a retried activity mails nobody twice. */
  notificationId: string;
  tenant: string;
  recipients: string[];
  /** Each its own message (a system administrator's, naming only their environments); same event. */
  personal?: Array<{ to: string; subject: string; body: string }>;
  event: MailEvent;
  subject: string;
  body: string;
  occurredAt: string;
}

/** How a notification's mails stand when the activity returns (counts only: the outbox holds the rest). */
export interface NotificationResult {
  delivered: number;
  pending: number;
  rejected: number;
}

export function createNotificationActivities({ mailer }: { mailer: Mailer }) {
  return {
    /**
     * R4: one message per recipient, exactly once (the per-recipient idempotency key is the outbox entry's ID). Returns
     * once every recipient's mail is in the outbox and has been tried once; a refused recipient or a provider outage
     * is recorded there, never thrown (DESIGN.md §6: no outside fault fails a tenant).
     */
    async notifyAdministrators(input: NotificationInput): Promise<NotificationResult> {
      const messages = [...input.recipients.map((to) => ({ to, subject: input.subject, body: input.body })), ...(input.personal ?? [])];
      const results = await mailer.sendAll(
        messages.map(({ to, subject, body }) => ({
          id: `${input.notificationId}:${to}`,
          tenant: input.tenant,
          to,
          subject,
          event: input.event,
          body,
          sentAt: input.occurredAt,
        })),
      );
      const count = (state: string) => results.filter((r) => r.delivery === state).length;
      return { delivered: count('delivered'), pending: count('pending'), rejected: count('rejected') };
    },

    /**
     * Pending mails whose next attempt is due (the Schedule `cmk-mail-retry`), or every pending and rejected mail of
     * one tenant at once (`cmk mail retry`, operator).
     */
    async retryMail(input: { tenant?: string; now?: boolean }): Promise<MailRetryReport> {
      return mailer.retry(input);
    },
  };
}
