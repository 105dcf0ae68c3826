import type { MailEvent } from '../domain/notifications';

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

/** A mail's state in the outbox (DESIGN.md §4 `mail list`). */
export type Delivery = 'delivered' | 'pending' | 'rejected';

/**
 * What one attempt at one mail came to. `rejected`: the provider refused this recipient or message (a bad address);
 * trying again will not help. `outage`: the provider refused *us* (credentials) or could not be reached; the mail
 * stays pending and is tried again later. Reasons are the provider's words, scrubbed of secrets.
 */
export type Attempt = { outcome: 'delivered' } | { outcome: 'rejected' | 'outage'; reason: string };

/** A mail provider (SendGrid, an SMTP relay): one attempt, its answer classified; never throws for the provider's faults. */
export interface MailTransport {
  attempt(mail: OutgoingMail): Promise<Attempt>;
  /** Closes pooled connections, if it keeps any. */
  close?(): void;
}

/** What a retry pass did, mail by mail (no bodies). */
export interface MailRetryReport {
  tried: Array<{ tenant: string; to: string; subject: string; event: MailEvent; delivery: Delivery; reason?: string; attempts: number }>;
  /** Pending mails not tried in this pass: not due yet, or the provider was found down. */
  stillPending: number;
}

/** The mailer the activities use: every mail recorded in the outbox first, delivered per recipient, retried later. */
export interface Mailer {
  /**
   * One notification's mails, one per recipient: all recorded (pending) first, then each tried once. Never throws for
   * a provider's refusal or outage; a mail already recorded under its ID is not sent again.
   */
  sendAll(mails: OutgoingMail[]): Promise<Array<{ to: string; delivery: Delivery; reason?: string }>>;
  /**
   * Pending mails whose next attempt is due (the background retry), or — `tenant` given with `now` — every pending and
   * rejected mail of that tenant, at once (the operator's `cmk mail retry`).
   */
  retry(options: { tenant?: string; now?: boolean }): Promise<MailRetryReport>;
}
