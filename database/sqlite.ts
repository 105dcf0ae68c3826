// Over 400 lines: one engine class over one on-disk layout (key record, database, offline mark, backups), each operation crash-safe against the others.
/**
 * The embedded database engine: one SQLite file per environment, encrypted page by page (SQLCipher scheme of
 * better-sqlite3-multiple-ciphers) with a random 256-bit DEK. The DEK is wrapped (RSA-OAEP-256, by the vault) by
 * exactly one protector and kept in the environment's key record — as TDE keeps the encrypted DEK in the boot
 * record. The unwrapped DEK lives only inside one call and is never written anywhere.
 *
 * The key record also keeps the earlier DEKs (one per rekey, numbered by generation), sealed under the current DEK,
 * which the one protector wraps: backups taken under them stay restorable through any later apply, revert, rekey or
 * rotation; a re-protection re-wraps one DEK however many there are; and a lock that withdraws the protector seals
 * them all together.
 *
 * An environment's directory: `key-record.json`, `database.sqlite`, `offline.json` while it is locked (R8), and
 * `backups/<id>.sqlite` + `backups/<id>.json` (the copy and which DEK generation opens it — never a key).
 */
import Database from 'better-sqlite3-multiple-ciphers';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { createFileExclusive, fsyncPath, readJsonIfExists, writeFileAtomic } from '../common/atomic';
import { isValidId } from '../domain/ids';
import { assertBackupId, assertEnvironmentIds, assertOfflineMark, newBackupId } from './ids';
import type { Vault } from '../vault/types';
import type { BackupView, EnvironmentDatabases, KeyRecordView, OfflineEnvironment, OfflineMark, Protector, Row } from './types';

/**
 * A DEK of an earlier generation (backups taken under it need it), sealed with AES-256-GCM under a key derived from
 * the record's current DEK: the protector wraps the current DEK, the current DEK opens the earlier ones. So the one
 * protector still guards them all (a lock seals them with the database), and a re-protection re-wraps one DEK, not
 * one per rekey the environment ever had.
 */
interface EarlierDek {
  generation: number;
  sealedDek: string;
}

/** The DEK state a key record settles on: the current DEK, its generation, and the earlier ones. */
interface DekSet {
  protector: Protector;
  wrappedDek: string;
  /** Absent in records (and pending sets) written before generations: 1, with no earlier DEKs. */
  generation?: number;
  earlierDeks?: EarlierDek[];
}

interface KeyRecord extends KeyRecordView, DekSet {
  /**
   * Set only while a rekey or a restore runs: the DEK set that will hold once the database file is under the new
   * DEK, written before the file changes. After a crash the database opens with whichever of the two DEKs it is
   * under, and the record is settled on that set — so a SIGKILL in the middle never loses the database. Both sets
   * hold every generation, so neither settlement loses one.
   */
  pending?: DekSet;
}

interface BackupMeta extends BackupView {
  /** The DEK generation the copy is encrypted under (a reference into the key record; never a key). */
  generation: number;
}

type RekeyHooks = { afterPagesRewritten?: () => void; onProgress?: (percentComplete: number) => void };

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

  private offlinePath(tenant: string, env: string): string {
    return join(this.dir(tenant, env), 'offline.json');
  }

  private databasePath(tenant: string, env: string): string {
    return join(this.dir(tenant, env), 'database.sqlite');
  }

  private backupDir(tenant: string, env: string): string {
    return join(this.dir(tenant, env), 'backups');
  }

  private async record(tenant: string, env: string): Promise<KeyRecord> {
    const record = await readJsonIfExists<KeyRecord>(this.recordPath(tenant, env));
    if (!record) throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
    return record;
  }

  private view(record: KeyRecord): KeyRecordView {
    return { tenant: record.tenant, env: record.env, protector: record.protector, algorithm: record.algorithm, updatedAt: record.updatedAt };
  }

  /** R8: nothing reads, writes, backs up, restores or re-keys a locked (offline) environment. */
  private assertOnline(tenant: string, env: string): void {
    if (existsSync(this.offlinePath(tenant, env))) {
      throw new CmkError('ENVIRONMENT_LOCKED', `Environment ${env} is locked: its data cannot be read, changed, backed up or restored until the tenant is unlocked.`);
    }
  }

  /** Opens the database with its DEK, runs `work`, closes it: handles are never kept (two processes share files). */
  private async withDatabase<T>(tenant: string, env: string, work: (db: Database.Database) => T): Promise<T> {
    this.assertOnline(tenant, env);
    const db = await this.openSettled(tenant, env);
    try {
      return work(db);
    } finally {
      db.close();
    }
  }

  private async openWith(path: string, protector: Protector, wrapped: string): Promise<Database.Database> {
    const dek = await this.vault.unwrapKey(protector, Buffer.from(wrapped, 'base64'));
    try {
      return open(path, dek);
    } finally {
      dek.fill(0);
    }
  }

  /**
   * Opens the database; if a rekey or restore was interrupted, settles the key record on the DEK the file is really
   * under. `given` is the record to start from when the caller is about to change it (bringOnline's re-binding).
   */
  private async openSettled(tenant: string, env: string, given?: KeyRecord): Promise<Database.Database> {
    const record = given ?? (await this.record(tenant, env));
    const path = this.databasePath(tenant, env);
    if (!record.pending) return this.openWith(path, record.protector, record.wrappedDek);
    const { pending } = record;
    try {
      const db = await this.openWith(path, pending.protector, pending.wrappedDek);
      await this.writeRecord({ ...record, ...pending, pending: undefined, updatedAt: new Date().toISOString() });
      return db;
    } catch {
      const db = await this.openWith(path, record.protector, record.wrappedDek);
      await this.writeRecord({ ...record, pending: undefined });
      return db;
    }
  }

  private writeRecord(record: KeyRecord): Promise<void> {
    return writeFileAtomic(this.recordPath(record.tenant, record.env), JSON.stringify(record));
  }

  /** Every DEK of the record (current and earlier), opened, passed to `use`, then zeroed. One unwrap in the vault. */
  private async withAllDeks<T>(tenant: string, env: string, record: DekSet, use: (current: Buffer, earlier: Array<{ generation: number; dek: Buffer }>) => Promise<T>): Promise<T> {
    const current = await this.vault.unwrapKey(record.protector, Buffer.from(record.wrappedDek, 'base64'));
    const earlier: Array<{ generation: number; dek: Buffer }> = [];
    try {
      for (const e of record.earlierDeks ?? []) earlier.push({ generation: e.generation, dek: openEarlier(current, tenant, env, e) });
      return await use(current, earlier);
    } finally {
      current.fill(0);
      for (const e of earlier) e.dek.fill(0);
    }
  }

  private async wrap(protector: Protector, dek: Buffer): Promise<string> {
    return (await this.vault.wrapKey(protector, dek)).toString('base64');
  }

  async create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    const dir = this.dir(tenant, env);
    const existing = await readJsonIfExists<KeyRecord>(this.recordPath(tenant, env));
    if (existing) return this.view(existing);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const databasePath = this.databasePath(tenant, env);
    // A database without a key record is a leftover of a crash before the record was written: nothing can open it.
    if (existsSync(databasePath)) rmSync(databasePath);
    const dek = randomBytes(32);
    const db = open(databasePath, dek);
    try {
      // No fsync inside SQLite (2 ms of blocked event loop per database): the file is fsynced below, off the event
      // loop, before the key record that makes it an environment is written. A crash before that leaves a database
      // without a record, which the next attempt removes (above).
      db.pragma('synchronous=OFF');
      db.exec('CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at TEXT NOT NULL)');
    } finally {
      db.close();
    }
    await fsyncPath(databasePath);
    const record: KeyRecord = {
      tenant,
      env,
      protector,
      algorithm: 'RSA-OAEP-256',
      updatedAt: new Date().toISOString(),
      wrappedDek: await this.wrap(protector, dek),
      generation: 1,
      earlierDeks: [],
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
   * `ALTER DATABASE ENCRYPTION KEY REGENERATE`. Nothing that opened the old DEK opens data written afterwards; the
   * old DEK joins the earlier ones (for backups), and every one of them is wrapped by `protector` (apply is a rekey
   * onto the tenant key), computed before the pending set is written.
   */
  async rekey(tenant: string, env: string, protector: Protector, hooks: RekeyHooks = {}): Promise<KeyRecordView> {
    this.assertOnline(tenant, env);
    const db = await this.openSettled(tenant, env);
    const dek = randomBytes(32);
    try {
      const record = await this.record(tenant, env);
      const generation = record.generation ?? 1;
      // The old DEK joins the earlier ones; all of them are sealed under the new DEK, which `protector` wraps.
      const earlierDeks = await this.withAllDeks(tenant, env, record, async (current, earlier) =>
        byGeneration([...earlier, { generation, dek: current }].map((e) => sealEarlier(dek, tenant, env, e))),
      );
      // After a restore the current generation need not be the highest: the new one is above every one kept.
      const pending: DekSet = { protector, wrappedDek: await this.wrap(protector, dek), generation: nextGeneration(record), earlierDeks };
      await this.writeRecord({ ...record, pending });
      hooks.onProgress?.(0);
      db.pragma(`rekey="x'${dek.toString('hex')}'"`);
      dek.fill(0);
      hooks.onProgress?.(100);
      hooks.afterPagesRewritten?.();
      const next: KeyRecord = { ...record, ...pending, pending: undefined, updatedAt: new Date().toISOString() };
      await this.writeRecord(next);
      return this.view(next);
    } finally {
      dek.fill(0);
      db.close();
    }
  }

  /** The current DEK unwrapped with the old protector and re-wrapped with `protector`, in one write (the earlier ones ride along under it). */
  async reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    this.assertOnline(tenant, env);
    // Only an interrupted apply or rekey (a pending DEK) needs the database opened to settle it: otherwise that open
    // would be a third vault call per environment, on a path that runs for every environment of a tenant.
    // The record is read once; only after a settlement (which rewrites it) a second time.
    let record = await this.record(tenant, env);
    if (record.pending) {
      (await this.openSettled(tenant, env, record)).close();
      record = await this.record(tenant, env);
    }
    if (samePlace(record.protector, protector)) return this.view(record);
    // Only the current DEK is wrapped by the protector (the earlier ones are sealed under it): one unwrap, one wrap.
    const current = await this.vault.unwrapKey(record.protector, Buffer.from(record.wrappedDek, 'base64'));
    let wrappedDek: string;
    try {
      wrappedDek = await this.wrap(protector, current);
    } finally {
      current.fill(0);
    }
    const next: KeyRecord = { ...record, protector, wrappedDek, updatedAt: new Date().toISOString() };
    await this.writeRecord(next);
    return this.view(next);
  }

  // ------------------------------------------------------------------------------------------ lock (R8–R10)

  /** R8. The mark is created only if absent (atomically, first writer wins), so a repeat keeps the first mark. */
  async takeOffline(tenant: string, env: string, mark: OfflineMark): Promise<void> {
    assertOfflineMark(mark);
    await this.record(tenant, env);
    await createFileExclusive(this.offlinePath(tenant, env), JSON.stringify({ lockedAt: mark.lockedAt, deleteAt: mark.deleteAt }));
  }

  async offlineMark(tenant: string, env: string): Promise<OfflineMark | undefined> {
    const mark = await readJsonIfExists<OfflineMark>(this.offlinePath(tenant, env));
    return mark && { lockedAt: mark.lockedAt, deleteAt: mark.deleteAt };
  }

  async listOffline(): Promise<OfflineEnvironment[]> {
    const found: OfflineEnvironment[] = [];
    const names = (dir: string) => (existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && isValidId(d.name)).map((d) => d.name) : []);
    for (const tenant of names(this.root)) {
      for (const env of names(join(this.root, tenant))) {
        const mark = await this.offlineMark(tenant, env);
        if (mark) found.push({ tenant, env, ...mark });
      }
    }
    return found.sort((a, b) => a.deleteAt.localeCompare(b.deleteAt) || a.tenant.localeCompare(b.tenant) || a.env.localeCompare(b.env));
  }

  /**
   * R10. KEY_MISMATCH (nothing changed) for another key. The DEK must open the database — through the re-bound
   * protector when one is given — before the re-bound record is written and the mark removed.
   */
  async bringOnline(tenant: string, env: string, protector?: Protector): Promise<KeyRecordView> {
    const record = await this.record(tenant, env);
    let candidate = record;
    if (protector) {
      if (protector.thumbprint !== record.protector.thumbprint) {
        throw new CmkError('KEY_MISMATCH', `Environment ${env} is sealed under the key with thumbprint ${record.protector.thumbprint}, not ${protector.thumbprint}; it stays locked.`);
      }
      // The same RSA key under a new vault version (re-activated): only the reference changes, the wrapped DEKs stay.
      if (!samePlace(record.protector, protector)) {
        const rebind = (set: DekSet | undefined) => set && (set.protector.thumbprint === protector.thumbprint ? { ...set, protector } : set);
        candidate = { ...record, protector, pending: rebind(record.pending), updatedAt: new Date().toISOString() };
      }
    }
    // Proves that the DEK opens the database before anyone is told it is back (settling writes the candidate).
    const db = await this.openSettled(tenant, env, candidate);
    try {
      db.prepare('SELECT count(*) FROM rows').get();
    } finally {
      db.close();
    }
    if (candidate !== record && !candidate.pending) await this.writeRecord(candidate);
    rmSync(this.offlinePath(tenant, env), { force: true });
    return this.view(await this.record(tenant, env));
  }

  /**
   * R9 crypto-shredding. The key record (every wrapped DEK) goes first: from then on nothing opens the database or a
   * backup. The offline mark goes last, so an interrupted destroy stays in `listOffline` and the purge finishes it.
   */
  async destroy(tenant: string, env: string): Promise<void> {
    const dir = this.dir(tenant, env);
    if (!existsSync(dir)) return;
    rmSync(this.recordPath(tenant, env), { force: true });
    for (const name of readdirSync(dir)) if (name !== 'offline.json') rmSync(join(dir, name), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    await fsyncPath(join(this.root, tenant));
  }

  // ------------------------------------------------------------------------------------------ backups

  /**
   * A copy of the encrypted file, taken inside a read transaction: its SHARED lock (rollback journal) lets no writer
   * commit while the bytes are copied. The generation is read under the same lock, so it names the DEK of the copy.
   */
  async backup(tenant: string, env: string): Promise<BackupView> {
    this.assertOnline(tenant, env);
    const dir = this.backupDir(tenant, env);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // IDs (and times) strictly after the latest backup's, so that "the latest" is never ambiguous.
    const latest = (await this.backupMetas(tenant, env)).at(-1);
    const now = new Date(Math.max(Date.now(), latest ? Date.parse(latest.createdAt) + 1 : 0));
    const id = newBackupId(now);
    const target = join(dir, `${id}.sqlite`);
    const db = await this.openSettled(tenant, env);
    let generation: number;
    try {
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_master').get();
      generation = (await this.record(tenant, env)).generation ?? 1;
      copyFileSync(this.databasePath(tenant, env), `${target}.tmp`);
      db.exec('COMMIT');
    } finally {
      db.close();
    }
    await fsyncPath(`${target}.tmp`);
    renameSync(`${target}.tmp`, target);
    await fsyncPath(dir);
    const meta: BackupMeta = { id, tenant, env, createdAt: now.toISOString(), sizeBytes: statSync(target).size, generation };
    await writeFileAtomic(join(dir, `${id}.json`), JSON.stringify(meta));
    return publicBackup(meta);
  }

  /** Complete backups (metadata and copy), oldest first. */
  private async backupMetas(tenant: string, env: string): Promise<BackupMeta[]> {
    const dir = this.backupDir(tenant, env);
    if (!existsSync(dir)) return [];
    const metas: BackupMeta[] = [];
    for (const name of readdirSync(dir).sort()) {
      const id = name.slice(0, -'.json'.length);
      if (!name.endsWith('.json') || !isValidId(id)) continue;
      const meta = await readJsonIfExists<BackupMeta>(join(dir, name));
      if (meta?.id === id && existsSync(join(dir, `${id}.sqlite`))) metas.push(meta);
    }
    return metas;
  }

  async listBackups(tenant: string, env: string): Promise<BackupView[]> {
    return (await this.backupMetas(tenant, env)).map(publicBackup);
  }

  /**
   * The backup's bytes are copied beside the database and proven to open (and pass `quick_check`) with the DEK of
   * its generation; only then do they replace the database, by a rename, under an exclusive lock of the old file,
   * with the record's pending set covering a crash. That DEK becomes the current one; the others stay.
   */
  async restore(tenant: string, env: string, backupId?: string): Promise<BackupView> {
    this.assertOnline(tenant, env);
    if (backupId !== undefined) assertBackupId(backupId);
    const metas = await this.backupMetas(tenant, env);
    const meta = backupId === undefined ? metas.at(-1) : metas.find((m) => m.id === backupId);
    if (!meta) throw new CmkError('NOT_FOUND', backupId === undefined ? `Environment ${env} has no backup.` : `Environment ${env} has no backup ${backupId}.`);

    // Settle any interrupted change and hold an exclusive lock: no reader or writer is inside the old file at the swap.
    const db = await this.openSettled(tenant, env);
    const databasePath = this.databasePath(tenant, env);
    const staging = `${databasePath}.restore`;
    try {
      db.exec('BEGIN EXCLUSIVE');
      const record = await this.record(tenant, env);
      const known = [record.generation ?? 1, ...(record.earlierDeks ?? []).map((e) => e.generation)];
      if (!known.includes(meta.generation)) throw new CmkError('NOT_FOUND', `The key of backup ${meta.id} is no longer in the key record of environment ${env}.`);

      rmSync(staging, { force: true });
      copyFileSync(join(this.backupDir(tenant, env), `${meta.id}.sqlite`), staging);
      let pending: DekSet;
      try {
        // The backup's DEK becomes the current one: the protector wraps it, every other generation is sealed under it.
        pending = await this.withAllDeks(tenant, env, record, async (current, earlier) => {
          const all = [...earlier, { generation: record.generation ?? 1, dek: current }];
          const chosen = all.find((d) => d.generation === meta.generation)!;
          try {
            assertSound(staging, chosen.dek);
          } catch {
            throw new CmkError('INVALID_ARGUMENT', `Backup ${meta.id} of environment ${env} is damaged and cannot be restored; the database was left as it was.`);
          }
          const earlierDeks = byGeneration(all.filter((d) => d !== chosen).map((d) => sealEarlier(chosen.dek, tenant, env, d)));
          return { protector: record.protector, wrappedDek: await this.wrap(record.protector, chosen.dek), generation: meta.generation, earlierDeks };
        });
        await fsyncPath(staging);
      } catch (err) {
        rmSync(staging, { force: true });
        throw err;
      }
      await this.writeRecord({ ...record, pending });
      renameSync(staging, databasePath);
      await fsyncPath(this.dir(tenant, env));
      await this.writeRecord({ ...record, ...pending, pending: undefined, updatedAt: new Date().toISOString() });
    } finally {
      db.close();
    }
    return publicBackup(meta);
  }
}

const samePlace = (a: Protector, b: Protector): boolean => a.name === b.name && a.version === b.version;


/** Above every generation the record holds (current and earlier). */
function nextGeneration(record: DekSet): number {
  return Math.max(record.generation ?? 1, ...(record.earlierDeks ?? []).map((e) => e.generation)) + 1;
}

const byGeneration = (deks: EarlierDek[]): EarlierDek[] => [...deks].sort((a, b) => a.generation - b.generation);

/** The key that seals earlier DEKs: derived from the current DEK (never the DEK itself, which SQLCipher uses). */
const sealingKey = (current: Buffer): Buffer => Buffer.from(hkdfSync('sha256', current, Buffer.alloc(0), 'cmk earlier DEKs v1', 32));
/** Bound to the environment and the generation: a sealed DEK moved to another record or slot does not open. */
const sealContext = (tenant: string, env: string, generation: number): Buffer => Buffer.from(`${tenant}/${env}/${generation}`);

function sealEarlier(current: Buffer, tenant: string, env: string, { generation, dek }: { generation: number; dek: Buffer }): EarlierDek {
  const key = sealingKey(current);
  const iv = randomBytes(12);
  try {
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(sealContext(tenant, env, generation));
    const sealed = Buffer.concat([cipher.update(dek), cipher.final()]);
    return { generation, sealedDek: Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64') };
  } finally {
    key.fill(0);
  }
}

function openEarlier(current: Buffer, tenant: string, env: string, { generation, sealedDek }: EarlierDek): Buffer {
  const bytes = Buffer.from(sealedDek, 'base64');
  const key = sealingKey(current);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
    decipher.setAAD(sealContext(tenant, env, generation));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]);
  } finally {
    key.fill(0);
  }
}

function publicBackup({ id, tenant, env, createdAt, sizeBytes }: BackupMeta): BackupView {
  return { id, tenant, env, createdAt, sizeBytes };
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

/** The file opens with `dek` and every page reads back whole: `PRAGMA quick_check` answers ok. */
function assertSound(path: string, dek: Buffer): void {
  const db = open(path, dek);
  try {
    const result = db.pragma('quick_check', { simple: true });
    if (result !== 'ok') throw new Error(`quick_check: ${String(result)}`);
    db.prepare('SELECT count(*) FROM rows').get();
  } finally {
    db.close();
  }
}
