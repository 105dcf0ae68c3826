/**
 * The outbox: one file per message (one notification, one recipient) under `<data dir>/outbox/<tenant>/`, named by a
 * hash of the message's idempotency key and created exclusively — so a retried activity records each message once.
 * The entry carries the message's delivery state: the embedded mailer delivers by recording (`delivered` at once);
 * behind SendGrid or SMTP a message is recorded `pending` and the provider's answers move it on (mail/post-office.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { createFileExclusive, readJsonIfExists, writeFileAtomic } from '../common/atomic';
import { isValidId } from '../domain/ids';
import type { Delivery, OutgoingMail } from './types';

export interface OutboxEntry {
  id: string;
  tenant?: string;
  to: string;
  subject: string;
  event: OutgoingMail['event'];
  body: string;
  sentAt: string;
  /** Absent in entries written before delivery states: those were delivered. */
  delivery?: Delivery;
  /** Why it is not delivered: the provider's words (secrets scrubbed), or why we gave up. */
  reason?: string;
  attempts?: number;
  lastAttemptAt?: string;
  /** When the message entered the outbox (the worker's clock): the retries' 7 days count from here. */
  recordedAt?: string;
}

/** An attempt's claim on a message older than this is a crashed attempt's, and is broken. */
const LEASE_STALE_MS = 5 * 60_000;

export class Outbox {
  private readonly root: string;

  constructor({ dataDir }: { dataDir: string }) {
    this.root = join(dataDir, 'outbox');
  }

  private tenantDir(tenant: string): string {
    if (!isValidId(tenant)) throw new Error(`Not a tenant ID: ${JSON.stringify(tenant)}`);
    return join(this.root, tenant);
  }

  private path(tenant: string, id: string): string {
    return join(this.tenantDir(tenant), `${createHash('sha256').update(id).digest('hex').slice(0, 32)}.json`);
  }

  /** The embedded mailer: recording the message is delivering it. */
  async send(mail: OutgoingMail): Promise<{ delivered: boolean }> {
    const { created } = await this.record(mail, 'delivered');
    return { delivered: created };
  }

  /** Records the message in the given state unless its ID is there already; either way returns what is stored. */
  async record(mail: OutgoingMail, delivery: Delivery, now = new Date()): Promise<{ entry: OutboxEntry; created: boolean }> {
    mkdirSync(this.tenantDir(mail.tenant), { recursive: true, mode: 0o700 });
    const entry: OutboxEntry = { id: mail.id, tenant: mail.tenant, to: mail.to, subject: mail.subject, event: mail.event, body: mail.body, sentAt: mail.sentAt, delivery, attempts: 0, recordedAt: now.toISOString() };
    if (await createFileExclusive(this.path(mail.tenant, mail.id), JSON.stringify(entry))) return { entry, created: true };
    return { entry: (await this.get(mail.tenant, mail.id)) ?? entry, created: false };
  }

  async get(tenant: string, id: string): Promise<OutboxEntry | undefined> {
    const entry = await readJsonIfExists<OutboxEntry>(this.path(tenant, id));
    return entry && withDefaults(entry, tenant);
  }

  /** Replaces a message's entry (its new delivery state), atomically. */
  async save(tenant: string, entry: OutboxEntry): Promise<void> {
    await writeFileAtomic(this.path(tenant, entry.id), JSON.stringify(entry));
  }

  /**
   * Runs `work` while holding the message's claim, so that two attempts (the activity, the background retry, another
   * worker) never send it at once; undefined when someone else holds it.
   */
  async withClaim<T>(tenant: string, id: string, work: () => Promise<T>): Promise<T | undefined> {
    const lease = this.path(tenant, id).replace(/\.json$/, '.claim');
    if (!(await createFileExclusive(lease, String(Date.now())))) {
      const since = Number(await fs.readFile(lease, 'utf8').catch(() => '0'));
      if (Date.now() - since < LEASE_STALE_MS) return undefined;
      await fs.rm(lease, { force: true });
      if (!(await createFileExclusive(lease, String(Date.now())))) return undefined;
    }
    try {
      return await work();
    } finally {
      await fs.rm(lease, { force: true });
    }
  }

  /** Every tenant with mail. */
  async tenants(): Promise<string[]> {
    const names = await fs.readdir(this.root).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    return names.filter(isValidId).sort();
  }

  /** Every message sent about the tenant, oldest first. */
  async list(tenant: string): Promise<Array<OutboxEntry & { delivery: Delivery }>> {
    const dir = this.tenantDir(tenant);
    const names = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    const entries = await Promise.all(
      names
        .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
        .map(async (n) => withDefaults(JSON.parse(await fs.readFile(join(dir, n), 'utf8')) as OutboxEntry, tenant)),
    );
    return entries.sort((a, b) => a.sentAt.localeCompare(b.sentAt) || a.id.localeCompare(b.id, 'en', { numeric: true }));
  }

  /** For operators (`cmk status`, metrics): mail not delivered, across tenants. */
  async summary(): Promise<{ pending: number; oldestPendingSince: string | null; rejected: number }> {
    let pending = 0;
    let rejected = 0;
    let oldest: string | null = null;
    for (const tenant of await this.tenants()) {
      for (const entry of await this.list(tenant)) {
        if (entry.delivery === 'rejected') rejected += 1;
        if (entry.delivery !== 'pending') continue;
        pending += 1;
        const since = entry.recordedAt ?? entry.sentAt;
        if (oldest === null || since < oldest) oldest = since;
      }
    }
    return { pending, oldestPendingSince: oldest, rejected };
  }
}

function withDefaults(entry: OutboxEntry, tenant: string): OutboxEntry & { delivery: Delivery } {
  return { ...entry, tenant: entry.tenant ?? tenant, delivery: entry.delivery ?? 'delivered' };
}
