/**
 * The embedded database engine: one SQLite file per environment, encrypted page by page (SQLCipher scheme of
 * better-sqlite3-multiple-ciphers) with a random 256-bit DEK. The DEK is wrapped (RSA-OAEP-256, by the vault) by
 * exactly one protector and kept in the environment's key record — as TDE keeps the encrypted DEK in the boot
 * record. The unwrapped DEK lives only inside one call and is never written anywhere.
 */
import Database from 'better-sqlite3-multiple-ciphers';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { readJsonIfExists, writeFileAtomic } from '../common/atomic';
import { assertEnvironmentIds } from './ids';
import type { Vault } from '../vault/types';
import type { EnvironmentDatabases, KeyRecordView, Protector, Row } from './types';

interface KeyRecord extends KeyRecordView {
  wrappedDek: string;
  /**
   * Set only while a rekey runs: the new DEK, wrapped by the new protector, written before the pages are
   * re-encrypted. After a crash the database opens with whichever of the two DEKs it is under, and the record is
   * settled on that one — so a SIGKILL in the middle of a rekey never loses the database.
   */
  pending?: { protector: Protector; wrappedDek: string };
}

export class SqliteEnvironmentDatabases implements EnvironmentDatabases {
  private readonly root: string;
  private readonly vault: Vault;

  constructor({ dataDir, vault }: { dataDir: string; vault: Vault }) {
    this.root = join(dataDir, 'environments');
    this.vault = vault;
  }

  private dir(tenant: string, env: string): string {
    assertEnvironmentIds(tenant, env);
    return join(this.root, tenant, env);
  }

  private recordPath(tenant: string, env: string): string {
    return join(this.dir(tenant, env), 'key-record.json');
  }

  private async record(tenant: string, env: string): Promise<KeyRecord> {
    const record = await readJsonIfExists<KeyRecord>(this.recordPath(tenant, env));
    if (!record) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    return record;
  }

  private view({ wrappedDek: _dek, pending: _pending, ...view }: KeyRecord): KeyRecordView {
    return view;
  }

  /** Opens the database with its DEK, runs `work`, closes it: handles are never kept (two processes share files). */
  private async withDatabase<T>(tenant: string, env: string, work: (db: Database.Database) => T): Promise<T> {
    const db = await this.openSettled(tenant, env);
    try {
      return work(db);
    } finally {
      db.close();
    }
  }

  /** Opens the database; if a rekey was interrupted, settles the key record on the DEK the file is really under. */
  private async openSettled(tenant: string, env: string): Promise<Database.Database> {
    const record = await this.record(tenant, env);
    const path = join(this.dir(tenant, env), 'database.sqlite');
    const attempt = async (protector: Protector, wrapped: string) => {
      const dek = await this.vault.unwrapKey(protector, Buffer.from(wrapped, 'base64'));
      try {
        return open(path, dek);
      } finally {
        dek.fill(0);
      }
    };
    if (!record.pending) return attempt(record.protector, record.wrappedDek);
    const { pending } = record;
    try {
      const db = await attempt(pending.protector, pending.wrappedDek);
      await this.writeRecord({ ...record, protector: pending.protector, wrappedDek: pending.wrappedDek, pending: undefined, updatedAt: new Date().toISOString() });
      return db;
    } catch {
      const db = await attempt(record.protector, record.wrappedDek);
      await this.writeRecord({ ...record, pending: undefined });
      return db;
    }
  }

  private writeRecord(record: KeyRecord): Promise<void> {
    return writeFileAtomic(this.recordPath(record.tenant, record.env), JSON.stringify(record));
  }

  async create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    const dir = this.dir(tenant, env);
    const existing = await readJsonIfExists<KeyRecord>(this.recordPath(tenant, env));
    if (existing) return this.view(existing);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const databasePath = join(dir, 'database.sqlite');
    // A database without a key record is a leftover of a crash before the record was written: nothing can open it.
    if (existsSync(databasePath)) rmSync(databasePath);
    const dek = randomBytes(32);
    const db = open(databasePath, dek);
    try {
      db.exec('CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at TEXT NOT NULL)');
    } finally {
      db.close();
    }
    const record: KeyRecord = {
      tenant,
      env,
      protector,
      algorithm: 'RSA-OAEP-256',
      updatedAt: new Date().toISOString(),
      wrappedDek: (await this.vault.wrapKey(protector, dek)).toString('base64'),
    };
    dek.fill(0);
    await writeFileAtomic(this.recordPath(tenant, env), JSON.stringify(record));
    return this.view(record);
  }

  async describe(tenant: string, env: string): Promise<KeyRecordView | undefined> {
    const record = await readJsonIfExists<KeyRecord>(this.recordPath(tenant, env));
    return record && this.view(record);
  }

  readRows(tenant: string, env: string): Promise<Row[]> {
    return this.withDatabase(tenant, env, (db) =>
      (db.prepare('SELECT id, text, created_at AS createdAt FROM rows ORDER BY id').all() as Row[]).map((r) => ({ id: r.id, text: r.text, createdAt: r.createdAt })),
    );
  }

  writeRow(tenant: string, env: string, text: string): Promise<Row> {
    const createdAt = new Date().toISOString();
    return this.withDatabase(tenant, env, (db) => {
      const { lastInsertRowid } = db.prepare('INSERT INTO rows (text, created_at) VALUES (?, ?)').run(text, createdAt);
      return { id: Number(lastInsertRowid), text, createdAt };
    });
  }

  /**
   * A new random DEK and every page re-encrypted under it (`PRAGMA rekey`), wrapped by `protector` — like
   * `ALTER DATABASE ENCRYPTION KEY REGENERATE`. Nothing that opened the old DEK opens data written afterwards.
   */
  async rekey(tenant: string, env: string, protector: Protector, hooks: { afterPagesRewritten?: () => void } = {}): Promise<KeyRecordView> {
    const db = await this.openSettled(tenant, env);
    try {
      const record = await this.record(tenant, env);
      const dek = randomBytes(32);
      const pending = { protector, wrappedDek: (await this.vault.wrapKey(protector, dek)).toString('base64') };
      await this.writeRecord({ ...record, pending });
      db.pragma(`rekey="x'${dek.toString('hex')}'"`);
      dek.fill(0);
      hooks.afterPagesRewritten?.();
      const next: KeyRecord = { ...record, protector, wrappedDek: pending.wrappedDek, pending: undefined, updatedAt: new Date().toISOString() };
      await this.writeRecord(next);
      return this.view(next);
    } finally {
      db.close();
    }
  }

  async reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    await this.openSettled(tenant, env).then((db) => db.close());
    const record = await this.record(tenant, env);
    if (record.protector.name === protector.name && record.protector.version === protector.version) return this.view(record);
    const dek = await this.vault.unwrapKey(record.protector, Buffer.from(record.wrappedDek, 'base64'));
    const wrappedDek = (await this.vault.wrapKey(protector, dek)).toString('base64');
    dek.fill(0);
    const next: KeyRecord = { ...record, protector, wrappedDek, updatedAt: new Date().toISOString() };
    await this.writeRecord(next);
    return this.view(next);
  }
}

function open(path: string, dek: Buffer): Database.Database {
  const db = new Database(path);
  try {
    db.pragma(`cipher='sqlcipher'`);
    db.pragma(`legacy=4`);
    db.pragma(`key="x'${dek.toString('hex')}'"`);
    // Touching the schema proves the key opens the file (SQLCipher checks lazily).
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
