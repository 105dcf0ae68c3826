/**
 * Delivery per recipient, over the outbox (DESIGN.md §4, §6 "no outside fault fails a tenant"). A notification's mails
 * are recorded first, one per recipient, as `pending`; each is then tried once. A recipient the provider refuses is
 * `rejected` with the provider's reason and the others still get theirs; a provider that refuses us or is down leaves
 * the mails `pending`, for the background retry (the Schedule `cmk-mail-retry`, workflows/mail.ts) to deliver with
 * backoff once it is back — for 7 days, then they are `rejected` ("gave up after …"). The outbox entry is the
 * idempotency record: a message is delivered at most once per (notification, recipient), except that a crash between
 * the provider's acceptance and the entry's update can send it twice (the providers have no idempotency key).
 */
import type { Outbox, OutboxEntry } from './outbox';
import type { Attempt, Delivery, Mailer, MailRetryReport, MailTransport, OutgoingMail } from './types';

/** How long a pending mail is retried before it is given up (≥ 7 days: a long weekend's outage and then some). */
export const MAIL_GIVE_UP_MS = 7 * 24 * 3_600_000;
/** The first retry of a pending mail a minute after its attempt, doubling up to an hour between attempts. */
const FIRST_RETRY_MS = 60_000;
const MAX_RETRY_MS = 3_600_000;

const iso = (ms: number): string => new Date(ms).toISOString();

/** When a pending mail is next tried: at once if never tried, else after its backoff. */
export function nextAttemptAt(entry: OutboxEntry): number {
  const attempts = entry.attempts ?? 0;
  if (attempts === 0 || !entry.lastAttemptAt) return 0;
  return Date.parse(entry.lastAttemptAt) + Math.min(FIRST_RETRY_MS * 2 ** (attempts - 1), MAX_RETRY_MS);
}

export class PostOffice implements Mailer {
  private readonly now: () => number;
  private readonly giveUpAfterMs: number;

  /** `transport` null: the embedded mailer, where a mail in the outbox is a mail delivered. */
  constructor(
    readonly outbox: Outbox,
    private readonly transport: MailTransport | null,
    options: { now?: () => number; giveUpAfterMs?: number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.giveUpAfterMs = options.giveUpAfterMs ?? MAIL_GIVE_UP_MS;
  }

  async sendAll(mails: OutgoingMail[]): Promise<Array<{ to: string; delivery: Delivery; reason?: string }>> {
    // All recorded before any is tried: a crash or an outage part way leaves every recipient's mail in the outbox.
    const recorded: OutboxEntry[] = [];
    for (const mail of mails) recorded.push((await this.outbox.record(mail, this.transport ? 'pending' : 'delivered', new Date(this.now()))).entry);
    let down = false;
    const results: Array<{ to: string; delivery: Delivery; reason?: string }> = [];
    for (const entry of recorded) {
      let after = entry;
      if (!down && entry.delivery === 'pending') {
        after = (await this.attempt(entry, false)) ?? entry;
        // The provider is down or refuses us: the rest wait for the background retry rather than each time out here.
        if (after.delivery === 'pending') down = true;
      }
      results.push({ to: after.to, delivery: after.delivery ?? 'delivered', ...(after.reason ? { reason: after.reason } : {}) });
    }
    return results;
  }

  async retry({ tenant, now: force = false }: { tenant?: string; now?: boolean }): Promise<MailRetryReport> {
    const report: MailRetryReport = { tried: [], stillPending: 0 };
    if (!this.transport) return report;
    const candidates: OutboxEntry[] = [];
    for (const t of tenant ? [tenant] : await this.outbox.tenants()) {
      for (const entry of await this.outbox.list(t)) if (entry.delivery === 'pending' || (force && entry.delivery === 'rejected')) candidates.push(entry);
    }
    // Longest waiting first: while the provider is down, each pass probes it with a different mail.
    candidates.sort((a, b) => nextAttemptAt(a) - nextAttemptAt(b));
    let down = false;
    for (const entry of candidates) {
      if (down || (!force && nextAttemptAt(entry) > this.now())) {
        // Not tried in this pass; one that has waited long enough is given up all the same.
        if (entry.delivery === 'pending' && !(await this.giveUpIfOverdue(entry))) report.stillPending += 1;
        continue;
      }
      const after = await this.attempt(entry, force);
      if (!after) {
        report.stillPending += 1;
        continue;
      }
      report.tried.push({ tenant: entry.tenant!, to: after.to, subject: after.subject, event: after.event, delivery: after.delivery ?? 'delivered', ...(after.reason ? { reason: after.reason } : {}), attempts: after.attempts ?? 0 });
      if (after.delivery === 'pending') {
        down = true;
        report.stillPending += 1;
      }
    }
    return report;
  }

  close(): void {
    this.transport?.close?.();
  }

  /** One attempt at one mail, under its claim; undefined when another attempt holds it. */
  private attempt(entry: OutboxEntry, retryRejected: boolean): Promise<OutboxEntry | undefined> {
    const tenant = entry.tenant!;
    return this.outbox.withClaim(tenant, entry.id, async () => {
      // Read again under the claim: another attempt may have delivered it meanwhile.
      const current = await this.outbox.get(tenant, entry.id);
      if (!current || current.delivery === 'delivered' || (current.delivery === 'rejected' && !retryRejected)) return current;
      let result: Attempt;
      try {
        result = await this.transport!.attempt({ id: current.id, tenant, to: current.to, subject: current.subject, event: current.event, body: current.body, sentAt: current.sentAt });
      } catch (err) {
        // The transports classify the providers' answers; anything else is ours, and worth another try.
        result = { outcome: 'outage', reason: `The mail could not be handed to the provider: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500) };
      }
      const at = this.now();
      const next: OutboxEntry = { ...current, attempts: (current.attempts ?? 0) + 1, lastAttemptAt: iso(at) };
      delete next.reason;
      if (result.outcome === 'delivered') next.delivery = 'delivered';
      else if (result.outcome === 'rejected') Object.assign(next, { delivery: 'rejected', reason: result.reason });
      else if (this.overdue(current, at)) Object.assign(next, { delivery: 'rejected', reason: this.gaveUp(next, result.reason) });
      else Object.assign(next, { delivery: 'pending', reason: result.reason });
      await this.outbox.save(tenant, next);
      return next;
    });
  }

  private overdue(entry: OutboxEntry, at: number): boolean {
    return at - Date.parse(entry.recordedAt ?? entry.sentAt) >= this.giveUpAfterMs;
  }

  private gaveUp(entry: OutboxEntry, lastReason: string | undefined): string {
    const days = Math.round(this.giveUpAfterMs / 86_400_000);
    return `gave up after ${entry.attempts ?? 0} attempt(s) over ${days} day(s)${lastReason ? `; last answer: ${lastReason}` : ''}`.slice(0, 600);
  }

  private async giveUpIfOverdue(entry: OutboxEntry): Promise<boolean> {
    if (!this.overdue(entry, this.now())) return false;
    const tenant = entry.tenant!;
    const done = await this.outbox.withClaim(tenant, entry.id, async () => {
      const current = await this.outbox.get(tenant, entry.id);
      if (current?.delivery !== 'pending') return true;
      await this.outbox.save(tenant, { ...current, delivery: 'rejected', reason: this.gaveUp(current, current.reason) });
      return true;
    });
    return done === true;
  }
}
