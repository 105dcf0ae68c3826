/**
 * The embedded mailer: one file per message under `<data dir>/outbox/<tenant>/`, named by a hash of the message's
 * idempotency key, created exclusively — so a retried activity delivers each message exactly once.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { createFileExclusive } from '../common/atomic';
import { isValidId } from '../workflows/rules';
import type { Mailer, OutgoingMail } from './types';

export interface OutboxEntry {
  id: string;
  to: string;
  subject: string;
  event: OutgoingMail['event'];
  body: string;
  sentAt: string;
}

export class Outbox implements Mailer {
  private readonly root: string;

  constructor({ dataDir }: { dataDir: string }) {
    this.root = join(dataDir, 'outbox');
  }

  private tenantDir(tenant: string): string {
    if (!isValidId(tenant)) throw new Error(`Not a tenant ID: ${JSON.stringify(tenant)}`);
    return join(this.root, tenant);
  }

  async send(mail: OutgoingMail): Promise<{ delivered: boolean }> {
    const dir = this.tenantDir(mail.tenant);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const name = `${createHash('sha256').update(mail.id).digest('hex').slice(0, 32)}.json`;
    const entry: OutboxEntry = { id: mail.id, to: mail.to, subject: mail.subject, event: mail.event, body: mail.body, sentAt: mail.sentAt };
    return { delivered: await createFileExclusive(join(dir, name), JSON.stringify(entry)) };
  }

  /** Every message sent about the tenant, oldest first. */
  async list(tenant: string): Promise<OutboxEntry[]> {
    const dir = this.tenantDir(tenant);
    const names = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    const entries = await Promise.all(
      names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).map(async (n) => JSON.parse(await fs.readFile(join(dir, n), 'utf8')) as OutboxEntry),
    );
    return entries.sort((a, b) => a.sentAt.localeCompare(b.sentAt) || a.id.localeCompare(b.id, 'en', { numeric: true }));
  }
}
