/**
 * The embedded engine's lock and backup life (R8–R10, DESIGN.md §6) on real encrypted SQLite files and a real local
 * vault: offline marks, re-binding to a re-activated key, backups that survive rekeys and re-protections, restore,
 * and crypto-shredding. Every refusal is a clear one and leaves the files as they were.
 */
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { localParts } from './support/parts';
import type { Protector } from '../database/types';

const T = 'contoso';
const mark = { lockedAt: '2026-11-29T00:00:00.000Z', deleteAt: '2026-12-27T00:00:00.000Z' };
/** Three RSA-2048 keys made once for the file (each test has its own vault): 0 is the provider key, 1 and 2 tenant keys. */
const KEYS: KeyObject[] = [];
beforeAll(() => {
  for (let i = 0; i < 3; i++) KEYS.push(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
});
const rsa = (i: 0 | 1 | 2): KeyObject => KEYS[i]!;
const BACKUP_ID = /^b-\d{17}-[0-9a-f]{4}$/;
const ID_GRAMMAR = /^[a-z0-9][a-z0-9-]{0,62}$/;

const filesUnder = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name)) : [join(dir, d.name)])) : [];
/** Every file under `dir` with a hash of its bytes: equal snapshots mean nothing changed. */
const snapshot = (dir: string) => Object.fromEntries(filesUnder(dir).map((f) => [relative(dir, f), createHash('sha256').update(readFileSync(f)).digest('hex')]));
const texts = (rows: Array<{ text: string }>) => rows.map((r) => r.text);

interface StoredRecord {
  protector: Protector;
  wrappedDek: string;
  generation?: number;
  earlierDeks?: Array<{ generation: number; sealedDek: string }>;
  pending?: unknown;
}

async function setUp(env = 'prod') {
  const parts = localParts();
  const protect = async (key: KeyObject, name = `tenant-${T}-default`, enabled = true): Promise<Protector> => {
    const stored = await parts.vault.importKey(name, key.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled });
    return { kind: 'tenant', name: stored.name, version: stored.version, thumbprint: stored.thumbprint };
  };
  const provider: Protector = { ...(await protect(rsa(0), 'provider-default')), kind: 'provider' };
  await parts.databases.create(T, env, provider);
  const envDir = join(parts.config.dataDir, 'environments', T, env);
  const recordPath = join(envDir, 'key-record.json');
  const readRecord = () => JSON.parse(readFileSync(recordPath, 'utf8')) as StoredRecord;
  return { ...parts, protect, provider, envDir, recordPath, readRecord };
}

describe('offline (R8, R10)', () => {
  test('every data path answers ENVIRONMENT_LOCKED and changes nothing; back online with the same rows', async () => {
    const { databases, protect, envDir, provider } = await setUp();
    await databases.writeRow(T, 'prod', 'one');
    const backup = await databases.backup(T, 'prod');
    await databases.takeOffline(T, 'prod', mark);
    const other = await protect(rsa(1));
    const before = snapshot(envDir);
    for (const attempt of [
      () => databases.readRows(T, 'prod'),
      () => databases.writeRow(T, 'prod', 'two'),
      () => databases.backup(T, 'prod'),
      () => databases.restore(T, 'prod'),
      () => databases.restore(T, 'prod', backup.id),
      () => databases.rekey(T, 'prod', other),
      () => databases.reprotect(T, 'prod', other),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED', message: expect.stringMatching(/^Environment prod is locked: /) });
    }
    expect(snapshot(envDir)).toEqual(before);
    expect((await databases.describe(T, 'prod'))?.protector).toEqual(provider);

    expect((await databases.bringOnline(T, 'prod')).protector).toEqual(provider);
    expect(await databases.offlineMark(T, 'prod')).toBeUndefined();
    expect(existsSync(join(envDir, 'offline.json'))).toBe(false);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one']);
    await databases.writeRow(T, 'prod', 'two');
    // Idempotent: online already.
    await databases.bringOnline(T, 'prod');
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one', 'two']);
  });

  test('takeOffline keeps the first mark and refuses what does not exist or is not a mark; listOffline by deleteAt', async () => {
    const { databases, provider, envDir, config } = await setUp();
    await databases.create(T, 'test', provider);
    await databases.create(T, 'stays-online', provider);
    await databases.takeOffline(T, 'prod', mark);
    await databases.takeOffline(T, 'prod', { lockedAt: '2030-01-01T00:00:00.000Z', deleteAt: '2030-02-01T00:00:00.000Z' });
    expect(await databases.offlineMark(T, 'prod')).toEqual(mark);
    expect(JSON.parse(readFileSync(join(envDir, 'offline.json'), 'utf8'))).toEqual(mark);
    const sooner = { lockedAt: '2026-11-28T00:00:00.000Z', deleteAt: '2026-12-26T00:00:00.000Z' };
    await databases.takeOffline(T, 'test', sooner);
    expect(await databases.listOffline()).toEqual([
      { tenant: T, env: 'test', ...sooner },
      { tenant: T, env: 'prod', ...mark },
    ]);
    expect(await databases.offlineMark(T, 'stays-online')).toBeUndefined();

    await expect(databases.takeOffline(T, 'nope', mark)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(existsSync(join(config.dataDir, 'environments', T, 'nope'))).toBe(false);
    await expect(databases.takeOffline(T, '../etc', mark)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(databases.takeOffline(T, 'stays-online', { lockedAt: 'yesterday', deleteAt: mark.deleteAt })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await databases.offlineMark(T, 'stays-online')).toBeUndefined();
    expect((await databases.listOffline()).map((o) => o.env)).toEqual(['test', 'prod']);
  });

  test('a sealed record is re-bound to the same key re-imported under a new version; another key is KEY_MISMATCH', async () => {
    const { databases, vault, protect, provider, envDir, readRecord } = await setUp();
    await databases.writeRow(T, 'prod', 'on the provider key');
    const onProvider = await databases.backup(T, 'prod');
    const key = rsa(1);
    const first = await protect(key);
    await databases.rekey(T, 'prod', first); // apply
    await databases.writeRow(T, 'prod', 'sealed row');
    const onTenantKey = await databases.backup(T, 'prod');
    await databases.takeOffline(T, 'prod', mark);
    // The lock's seal: the tenant key version is gone from the vault (and the provider key has long been retired).
    await vault.deleteKey(first);
    await vault.deleteKey(provider);
    const sealed = snapshot(envDir);

    const stranger = await protect(rsa(2));
    await expect(databases.bringOnline(T, 'prod', stranger)).rejects.toMatchObject({ code: 'KEY_MISMATCH', message: expect.stringContaining(first.thumbprint) });
    // Without the key nothing opens it; a staged (disabled) version of it does not either.
    await expect(databases.bringOnline(T, 'prod')).rejects.toThrow();
    await expect(databases.bringOnline(T, 'prod', await protect(key, undefined, false))).rejects.toThrow(/disabled/);
    expect(snapshot(envDir)).toEqual(sealed);
    expect(await databases.offlineMark(T, 'prod')).toEqual(mark);

    const again = await protect(key);
    expect(again.version).not.toBe(first.version);
    expect(again.thumbprint).toBe(first.thumbprint);
    const wrappedBefore = readRecord();
    const view = await databases.bringOnline(T, 'prod', again);
    expect(view.protector).toEqual(again);
    // Only the reference changed: every wrapped DEK is as it was.
    expect(readRecord()).toMatchObject({ protector: again, wrappedDek: wrappedBefore.wrappedDek, earlierDeks: wrappedBefore.earlierDeks });
    expect(await databases.offlineMark(T, 'prod')).toBeUndefined();
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['on the provider key', 'sealed row']);
    expect((await databases.bringOnline(T, 'prod', again)).protector).toEqual(again); // idempotent
    // Backups from before the apply and before the lock open through the re-activated key alone.
    await databases.restore(T, 'prod', onProvider.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['on the provider key']);
    await databases.restore(T, 'prod', onTenantKey.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['on the provider key', 'sealed row']);
  });
});

describe('backups', () => {
  test('a backup restores the rows of its moment through apply, rekey and rotation; it holds no plaintext and no key', async () => {
    const { databases, vault, protect, provider, envDir, readRecord } = await setUp();
    await databases.writeRow(T, 'prod', 'ROW-AT-BACKUP-91c2');
    const backup = await databases.backup(T, 'prod');
    expect(backup).toEqual({ id: expect.stringMatching(BACKUP_ID), tenant: T, env: 'prod', createdAt: expect.any(String), sizeBytes: expect.any(Number) });
    expect(backup.id).toMatch(ID_GRAMMAR);
    const bytes = readFileSync(join(envDir, 'backups', `${backup.id}.sqlite`));
    expect(bytes.length).toBe(backup.sizeBytes);
    expect(bytes.includes(Buffer.from('ROW-AT-BACKUP-91c2'))).toBe(false);
    expect(bytes.subarray(0, 16).toString('latin1')).not.toBe('SQLite format 3\0');
    expect(bytes.includes(Buffer.from('SQLite format 3'))).toBe(false);
    // The metadata names the DEK generation, never a DEK.
    expect(Object.keys(JSON.parse(readFileSync(join(envDir, 'backups', `${backup.id}.json`), 'utf8'))).sort()).toEqual(['createdAt', 'env', 'generation', 'id', 'sizeBytes', 'tenant']);

    await databases.writeRow(T, 'prod', 'after');
    const tenantKey = await protect(rsa(1));
    await databases.rekey(T, 'prod', tenantKey); // apply: a new DEK under the tenant key
    await databases.rekey(T, 'prod', tenantKey); // rekey: another
    const rotated = await protect(rsa(2));
    await databases.reprotect(T, 'prod', rotated); // a rotation re-wraps the current DEK; the earlier ones ride along under it
    // One protector for the record: the rotated key wraps the current DEK, which seals the earlier ones; nothing else is needed.
    const record = readRecord();
    expect(record.protector).toEqual(rotated);
    expect(record.generation).toBe(3);
    expect(record.earlierDeks?.map((e) => e.generation)).toEqual([1, 2]);
    (await vault.unwrapKey(rotated, Buffer.from(record.wrappedDek, 'base64'))).fill(0);
    // The earlier DEKs are not wrapped by any vault key: only the current DEK opens them.
    expect(JSON.stringify(record.earlierDeks)).not.toMatch(/wrappedDek/);
    await vault.deleteKey(provider);
    await vault.deleteKey(tenantKey);

    const later = await databases.backup(T, 'prod');
    await databases.writeRow(T, 'prod', 'latest');
    expect((await databases.listBackups(T, 'prod')).map((b) => b.id)).toEqual([backup.id, later.id]);
    expect(await databases.restore(T, 'prod', backup.id)).toEqual(backup);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['ROW-AT-BACKUP-91c2']);
    // Without an ID: the latest; and the earlier one still restores after that.
    expect((await databases.restore(T, 'prod')).id).toBe(later.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['ROW-AT-BACKUP-91c2', 'after']);
    await databases.restore(T, 'prod', backup.id);
    await databases.writeRow(T, 'prod', 'written after a restore');
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['ROW-AT-BACKUP-91c2', 'written after a restore']);
    expect(readRecord().earlierDeks?.map((e) => e.generation)).toEqual([2, 3]);
  });

  test('generations stay distinct after a restore: a rekey after a restore, then every backup still restores', async () => {
    const { databases, provider, readRecord } = await setUp();
    await databases.writeRow(T, 'prod', 'one');
    const b1 = await databases.backup(T, 'prod');
    await databases.rekey(T, 'prod', provider);
    await databases.writeRow(T, 'prod', 'two');
    const b2 = await databases.backup(T, 'prod');
    await databases.restore(T, 'prod', b1.id);
    expect(readRecord().generation).toBe(1);
    await databases.rekey(T, 'prod', provider);
    expect(readRecord().generation).toBe(3);
    await databases.writeRow(T, 'prod', 'three');
    const b3 = await databases.backup(T, 'prod');
    for (const [b, rows] of [
      [b2, ['one', 'two']],
      [b3, ['one', 'three']],
      [b1, ['one']],
      [b3, ['one', 'three']],
    ] as const) {
      await databases.restore(T, 'prod', b.id);
      expect(texts(await databases.readRows(T, 'prod'))).toEqual(rows);
    }
  });

  test('an interrupted rekey settles on the DEK the file is under and keeps every earlier generation', async () => {
    const { databases, provider, readRecord } = await setUp();
    await databases.writeRow(T, 'prod', 'one');
    const b1 = await databases.backup(T, 'prod');
    await databases.rekey(T, 'prod', provider);
    await databases.writeRow(T, 'prod', 'two');
    const b2 = await databases.backup(T, 'prod');

    const killed = () => {
      throw new Error('killed');
    };
    // Killed after the pending set was written, before any page was re-encrypted: settles back on the old DEK.
    await expect(databases.rekey(T, 'prod', provider, { onProgress: (p) => (p === 0 ? killed() : undefined) })).rejects.toThrow('killed');
    expect(readRecord().pending).toBeDefined();
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one', 'two']);
    expect(readRecord()).toMatchObject({ generation: 2, earlierDeks: [{ generation: 1 }] });
    expect(readRecord().pending).toBeUndefined();
    // Killed after every page was re-encrypted, before the record was settled: settles on the new DEK.
    await expect(databases.rekey(T, 'prod', provider, { afterPagesRewritten: killed })).rejects.toThrow('killed');
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one', 'two']);
    expect(readRecord()).toMatchObject({ generation: 3, earlierDeks: [{ generation: 1 }, { generation: 2 }] });

    await databases.restore(T, 'prod', b1.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one']);
    await databases.restore(T, 'prod', b2.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one', 'two']);
  });

  test('a re-protection after an interrupted rekey settles the record first, then re-wraps the DEK the file is under', async () => {
    const killed = () => {
      throw new Error('killed');
    };
    for (const hooks of [
      // Killed before any page was re-encrypted (settles on the old DEK), then after all were (on the new one).
      { onProgress: (p: number) => (p === 0 ? killed() : undefined) },
      { afterPagesRewritten: killed },
    ]) {
      const { databases, protect, provider, readRecord } = await setUp();
      await databases.writeRow(T, 'prod', 'kept');
      await expect(databases.rekey(T, 'prod', provider, hooks)).rejects.toThrow('killed');
      expect(readRecord().pending).toBeDefined();
      const tenantKey = await protect(rsa(1));
      expect((await databases.reprotect(T, 'prod', tenantKey)).protector).toEqual(tenantKey);
      expect(readRecord()).toMatchObject({ protector: tenantKey });
      expect(readRecord().pending).toBeUndefined();
      expect(texts(await databases.readRows(T, 'prod'))).toEqual(['kept']);
    }
  });

  test('restore refuses no backup, a malformed, unknown or damaged one, changing nothing', async () => {
    const { databases, envDir } = await setUp();
    await databases.writeRow(T, 'prod', 'kept');
    await expect(databases.restore(T, 'prod')).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'Environment prod has no backup.' });
    const backup = await databases.backup(T, 'prod');
    await databases.writeRow(T, 'prod', 'also kept');
    const before = snapshot(envDir);
    for (const id of ['../../etc/passwd', 'B-20000101000000000-ABCD', '', 'b-'.padEnd(64, '0')]) {
      await expect(databases.restore(T, 'prod', id)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(databases.restore(T, 'prod', 'b-20000101000000000-abcd')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(snapshot(envDir)).toEqual(before);

    // A damaged copy (page 2 altered; page 1 still opens): refused before it replaces anything.
    const file = join(envDir, 'backups', `${backup.id}.sqlite`);
    const bytes = readFileSync(file);
    bytes[4096 + 200] = (bytes[4096 + 200] ?? 0) ^ 0xff;
    writeFileSync(file, bytes);
    const damaged = snapshot(envDir);
    await expect(databases.restore(T, 'prod', backup.id)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/damaged/) });
    expect(snapshot(envDir)).toEqual(damaged);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['kept', 'also kept']);
  });

  test('restore without an ID takes the latest, even of backups taken in the same millisecond', async () => {
    const { databases } = await setUp();
    // The clock stands still (only Date is faked): all three are taken in one millisecond.
    jest.useFakeTimers({ now: Date.parse('2026-11-29T10:00:00.000Z'), doNotFake: ['hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
    try {
      const taken = [];
      for (const text of ['a', 'b', 'c']) {
        await databases.writeRow(T, 'prod', text);
        taken.push(await databases.backup(T, 'prod'));
      }
      expect(await databases.listBackups(T, 'prod')).toEqual(taken);
      expect(new Set(taken.map((b) => b.createdAt.slice(0, 19))).size).toBe(1);
      expect(taken.map((b) => b.id)).toEqual([...taken.map((b) => b.id)].sort());
      await databases.writeRow(T, 'prod', 'd');
      expect(await databases.restore(T, 'prod')).toEqual(taken[2]);
      expect(texts(await databases.readRows(T, 'prod'))).toEqual(['a', 'b', 'c']);
    } finally {
      jest.useRealTimers();
    }
    expect(await databases.listBackups(T, 'other-env')).toEqual([]);
  });
});

describe('destroy (R9)', () => {
  test('crypto-shreds the database, its key record, its mark and its backups; a second destroy is fine', async () => {
    const { databases, config, provider } = await setUp('payroll-eu');
    await databases.create(T, 'prod', provider);
    await databases.writeRow(T, 'prod', 'neighbour');
    await databases.writeRow(T, 'payroll-eu', 'gone');
    await databases.backup(T, 'payroll-eu');
    await databases.takeOffline(T, 'payroll-eu', mark);
    await databases.destroy(T, 'payroll-eu');
    await databases.destroy(T, 'payroll-eu');
    await databases.destroy(T, 'never-existed');
    await expect(databases.destroy(T, '../prod')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });

    // Nothing under the data dir names the environment, by path or by content.
    for (const f of filesUnder(config.dataDir)) {
      expect(f).not.toContain('payroll-eu');
      expect(readFileSync(f).includes(Buffer.from('payroll-eu'))).toBe(false);
    }
    expect(readdirSync(join(config.dataDir, 'environments', T))).toEqual(['prod']);
    expect(await databases.describe(T, 'payroll-eu')).toBeUndefined();
    expect(await databases.offlineMark(T, 'payroll-eu')).toBeUndefined();
    expect(await databases.listBackups(T, 'payroll-eu')).toEqual([]);
    expect(await databases.listOffline()).toEqual([]);
    await expect(databases.readRows(T, 'payroll-eu')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['neighbour']);
  });
});

describe('key records written before DEK generations', () => {
  test('still open, rekey, back up and restore', async () => {
    const { databases, recordPath, readRecord, protect } = await setUp();
    await databases.writeRow(T, 'prod', 'legacy');
    const { generation: _g, earlierDeks: _e, ...legacy } = readRecord();
    writeFileSync(recordPath, JSON.stringify(legacy));
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['legacy']);
    const backup = await databases.backup(T, 'prod');
    await databases.rekey(T, 'prod', await protect(rsa(1)));
    expect(readRecord()).toMatchObject({ generation: 2, earlierDeks: [{ generation: 1 }] });
    await databases.writeRow(T, 'prod', 'new');
    await databases.restore(T, 'prod', backup.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['legacy']);
  });

  test('a rekey the old code left pending settles on the DEK the file is under', async () => {
    const { databases, recordPath, readRecord, provider } = await setUp();
    await databases.writeRow(T, 'prod', 'legacy');
    await expect(
      databases.rekey(T, 'prod', provider, {
        afterPagesRewritten: () => {
          throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    // As the old code wrote it: no generations, and a pending of protector and wrapped DEK only.
    const { generation: _g, earlierDeks: _e, pending, ...rest } = readRecord();
    const { protector, wrappedDek } = pending as StoredRecord;
    writeFileSync(recordPath, JSON.stringify({ ...rest, pending: { protector, wrappedDek } }));
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['legacy']);
    expect(readRecord()).toMatchObject({ wrappedDek });
    expect(readRecord().pending).toBeUndefined();
    const backup = await databases.backup(T, 'prod');
    await databases.writeRow(T, 'prod', 'new');
    await databases.restore(T, 'prod', backup.id);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['legacy']);
  });
});

describe('earlier DEKs', () => {
  test('are sealed for their environment and generation: swapped slots do not open, and the restore changes nothing', async () => {
    const { databases, provider, envDir, recordPath, readRecord } = await setUp();
    await databases.writeRow(T, 'prod', 'one');
    const b1 = await databases.backup(T, 'prod');
    await databases.rekey(T, 'prod', provider);
    const b2 = await databases.backup(T, 'prod');
    await databases.rekey(T, 'prod', provider);
    const record = readRecord();
    expect(record.earlierDeks?.map((e) => e.generation)).toEqual([1, 2]);
    // Swap the two sealed DEKs between their generations, as an attacker editing the record would.
    const [e1, e2] = record.earlierDeks!;
    writeFileSync(recordPath, JSON.stringify({ ...record, earlierDeks: [{ ...e1!, sealedDek: e2!.sealedDek }, { ...e2!, sealedDek: e1!.sealedDek }] }));
    const before = snapshot(envDir);
    await expect(databases.restore(T, 'prod', b1.id)).rejects.toThrow();
    await expect(databases.restore(T, 'prod', b2.id)).rejects.toThrow();
    expect(snapshot(envDir)).toEqual(before);
    expect(texts(await databases.readRows(T, 'prod'))).toEqual(['one']);
  });
});
