/**
 * The audit trail (audit/trail.ts) on real files: chained records, a signed head, every kind of tampering reported,
 * crash leftovers recovered and nothing else "repaired". Hashes and HMACs are recomputed here from the documented
 * format, not with the module's own helpers.
 */
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as atomic from '../common/atomic';
import { AuditTrail, type AuditEntry, type AuditRecord, type AuditVerification } from '../audit';
import { AuditEntryRefusedError } from '../audit/trail';
import { quotable, redactAuditEntry } from '../domain/audit-redaction';

const GENESIS = '0'.repeat(64);
const key = randomBytes(32);

const freshDir = (): string => join(mkdtempSync(join(tmpdir(), 'cmk-audit-')), 'audit');
const trailFile = (dir: string): string => join(dir, 'trail.jsonl');
const headFile = (dir: string): string => join(dir, 'head.json');

function entry(n: number, over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    id: `tenant/contoso/key.change/${n}`,
    at: `2024-05-01T12:00:${String(n % 60).padStart(2, '0')}Z`,
    actor: 'alice@contoso.example',
    action: 'key.generate',
    outcome: 'completed',
    tenant: 'contoso',
    region: 'eu',
    thumbprints: ['ab'.repeat(32)],
    details: { environment: 'prod', attempt: n, dryRun: false, note: null },
    ...over,
  };
}

/** A trail of `n` records, closed again (the writer's handle is dropped). */
function trailOf(n: number): string {
  const dir = freshDir();
  new AuditTrail(dir, key).append(Array.from({ length: n }, (_, i) => entry(i + 1)));
  return dir;
}

const readLinesOf = (dir: string): string[] => readFileSync(trailFile(dir), 'utf8').split('\n').slice(0, -1);
const writeLinesOf = (dir: string, lines: string[]): void => writeFileSync(trailFile(dir), lines.map((l) => `${l}\n`).join(''));

// The documented format, independently: SHA-256 over JSON with keys sorted recursively, `hash` left out.
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}
const hashOf = (record: Omit<AuditRecord, 'hash'> & { hash?: string }): string => {
  const { hash: _hash, ...body } = record;
  return createHash('sha256').update(canonical(body)).digest('hex');
};
const hmacOf = (k: Buffer, seq: number, hash: string): string => createHmac('sha256', k).update(`cmk-audit-head.v1:${seq}:${hash}`).digest('hex');
const signHead = (dir: string, seq: number, hash: string, k = key): void => writeFileSync(headFile(dir), JSON.stringify({ seq, hash, hmac: hmacOf(k, seq, hash) }));

/** Recomputes every prevHash and hash so the chain is whole again, as an attacker without the key could. */
function rechain(records: AuditRecord[]): AuditRecord[] {
  let prevHash = GENESIS;
  return records.map((r) => {
    const fixed = { ...r, prevHash };
    fixed.hash = hashOf(fixed);
    prevHash = fixed.hash;
    return fixed;
  });
}

const verifyDir = (dir: string): AuditVerification => new AuditTrail(dir, key).verify();
const mentions = (v: AuditVerification, seq: number): boolean => v.problems.some((p) => new RegExp(`\\bseq ${seq}\\b`).test(p.problem));

function expectBroken(v: AuditVerification, seq: number): void {
  expect(v.ok).toBe(false);
  expect(v.problems.length).toBeGreaterThan(0);
  for (const p of v.problems) expect(p.problem).toMatch(/^\S.*\.$/); // a sentence
  expect(mentions(v, seq)).toBe(true);
}

describe('appending and listing', () => {
  test('records are chained from genesis, hashed over their canonical JSON, with a signed head; files 0600 in a 0700 dir', () => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    const stored = trail.append([entry(1), entry(2, { tenant: null, thumbprints: undefined }), entry(3)]);

    expect(stored.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(stored[0]?.prevHash).toBe(GENESIS);
    expect(stored[1]?.prevHash).toBe(stored[0]?.hash);
    expect(stored[2]?.prevHash).toBe(stored[1]?.hash);
    for (const r of stored) expect(r.hash).toBe(hashOf(r));
    expect(stored[1]).not.toHaveProperty('thumbprints');

    const lines = readLinesOf(dir).map((l) => JSON.parse(l) as AuditRecord);
    expect(lines).toEqual(stored);
    const head = JSON.parse(readFileSync(headFile(dir), 'utf8')) as { seq: number; hash: string; hmac: string };
    expect(head).toEqual({ seq: 3, hash: stored[2]?.hash, hmac: hmacOf(key, 3, stored[2]?.hash ?? '') });

    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(trailFile(dir)).mode & 0o777).toBe(0o600);
    expect(statSync(headFile(dir)).mode & 0o777).toBe(0o600);
    expect(trail.verify()).toEqual({ ok: true, records: 3, headSeq: 3, problems: [] });
  });

  test('list filters by tenant and afterSeq, oldest first; limit keeps the last n that match', () => {
    const trail = new AuditTrail(freshDir(), key);
    trail.append([1, 2, 3, 4, 5, 6, 7].map((n) => entry(n, { tenant: n % 2 ? 'contoso' : 'fabrikam' })));
    trail.append([entry(8, { tenant: null })]);

    expect(trail.list().map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(trail.list({ tenant: 'contoso' }).map((r) => r.seq)).toEqual([1, 3, 5, 7]);
    expect(trail.list({ afterSeq: 5 }).map((r) => r.seq)).toEqual([6, 7, 8]);
    expect(trail.list({ limit: 3 }).map((r) => r.seq)).toEqual([6, 7, 8]);
    expect(trail.list({ tenant: 'contoso', limit: 2 }).map((r) => r.seq)).toEqual([5, 7]);
    expect(trail.list({ tenant: 'fabrikam', afterSeq: 2, limit: 10 }).map((r) => r.seq)).toEqual([4, 6]);
    expect(trail.list({ limit: 0 })).toEqual([]);
    expect(trail.list({ tenant: 'nobody' })).toEqual([]);
    expect(() => trail.list({ limit: -1 })).toThrow(/limit/);
  });

  test('re-appending an id is a no-op that returns the stored record, within a batch and after reopening', () => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    const [first] = trail.append([entry(1)]);

    const again = trail.append([entry(1, { at: '2024-06-01T00:00:00Z', message: 'Retried.' }), entry(2), entry(2, { outcome: 'failed' })]);
    expect(again[0]).toEqual(first);
    expect(again[1]?.seq).toBe(2);
    expect(again[2]).toEqual(again[1]);
    expect(readLinesOf(dir)).toHaveLength(2);

    const reopened = new AuditTrail(dir, key);
    expect(reopened.append([entry(2, { message: 'Once more.' }), entry(3)]).map((r) => [r.seq, r.outcome])).toEqual([
      [2, 'completed'],
      [3, 'completed'],
    ]);
    expect(readLinesOf(dir)).toHaveLength(3);
    expect(reopened.verify()).toMatchObject({ ok: true, records: 3, headSeq: 3 });
  });

  test('a never-written trail verifies with 0 records', () => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    expect(trail.verify()).toEqual({ ok: true, records: 0, headSeq: null, problems: [] });
    expect(trail.list()).toEqual([]);
    expect(existsSync(trailFile(dir))).toBe(false);
  });
});

describe('verify reports tampering', () => {
  test('a good trail verifies', () => {
    expect(verifyDir(trailOf(5))).toEqual({ ok: true, records: 5, headSeq: 5, problems: [] });
  });

  test('an edited field', () => {
    const dir = trailOf(5);
    const lines = readLinesOf(dir);
    lines[2] = lines[2]!.replace('"outcome":"completed"', '"outcome":"refused"');
    writeLinesOf(dir, lines);
    const v = verifyDir(dir);
    expectBroken(v, 3);
    expect(v.problems).toEqual([expect.objectContaining({ seq: 3, line: 3, problem: expect.stringMatching(/altered/) })]);
  });

  test('a record removed from the middle', () => {
    const dir = trailOf(5);
    writeLinesOf(dir, readLinesOf(dir).filter((_, i) => i !== 2));
    expectBroken(verifyDir(dir), 3);
  });

  test('a record removed from the middle with the chain after it recomputed', () => {
    const dir = trailOf(5);
    const records = readLinesOf(dir).map((l) => JSON.parse(l) as AuditRecord);
    writeLinesOf(dir, rechain(records.filter((r) => r.seq !== 3)).map((r) => JSON.stringify(r)));
    const v = verifyDir(dir);
    expectBroken(v, 3);
    expect(v.problems).toContainEqual(expect.objectContaining({ seq: 4, line: 3, problem: expect.stringMatching(/out of place: seq 3 was expected/) }));
  });

  test('a record replaced by a forged one that carries its own recomputed hash', () => {
    const dir = trailOf(5);
    const lines = readLinesOf(dir);
    const forged = { ...(JSON.parse(lines[2]!) as AuditRecord), outcome: 'refused' as const };
    forged.hash = hashOf(forged);
    lines[2] = JSON.stringify(forged);
    writeLinesOf(dir, lines);
    const v = verifyDir(dir);
    expectBroken(v, 3);
    expect(v.problems).toEqual([expect.objectContaining({ seq: 4, line: 4, problem: expect.stringMatching(/does not chain.*seq 3/) })]);
  });

  test('a record that repeats an earlier id, even in a chain signed with the key', () => {
    const dir = trailOf(5);
    const records = readLinesOf(dir).map((l) => JSON.parse(l) as AuditRecord);
    const chained = rechain(records.map((r) => (r.seq === 4 ? { ...r, id: records[1]!.id } : r)));
    writeLinesOf(dir, chained.map((r) => JSON.stringify(r)));
    signHead(dir, 5, chained[4]!.hash);
    const v = verifyDir(dir);
    expectBroken(v, 4);
    expect(v.problems).toEqual([expect.objectContaining({ seq: 4, line: 4, problem: expect.stringMatching(/repeats the id/) })]);
  });

  test('the last record removed', () => {
    const dir = trailOf(5);
    writeLinesOf(dir, readLinesOf(dir).slice(0, 4));
    const v = verifyDir(dir);
    expectBroken(v, 5);
    expect(v.records).toBe(4);
  });

  test('records reordered', () => {
    const dir = trailOf(5);
    const lines = readLinesOf(dir);
    writeLinesOf(dir, [lines[0]!, lines[2]!, lines[1]!, lines[3]!, lines[4]!]);
    expectBroken(verifyDir(dir), 2);
  });

  test('a forged record inserted in the middle, hashed and chained to the one before it', () => {
    const dir = trailOf(5);
    const lines = readLinesOf(dir);
    const before = JSON.parse(lines[1]!) as AuditRecord;
    const forged = { ...before, id: 'forged', message: 'Nothing to see.', seq: 3, prevHash: before.hash };
    forged.hash = hashOf(forged);
    lines.splice(2, 0, JSON.stringify(forged));
    writeLinesOf(dir, lines);
    expectBroken(verifyDir(dir), 3);
  });

  test('a forged record added after the last one the head vouches for', () => {
    const dir = trailOf(5);
    const trail = new AuditTrail(dir, key); // open before the forgery: a writer opened after it takes it for its own crash leftover
    const last = JSON.parse(readLinesOf(dir)[4]!) as AuditRecord;
    const forged = { ...last, id: 'forged', seq: 6, prevHash: last.hash };
    forged.hash = hashOf(forged);
    appendFileSync(trailFile(dir), `${JSON.stringify(forged)}\n`);
    const v = trail.verify();
    expectBroken(v, 6);
    expect(v.records).toBe(6);
    expect(() => trail.append([entry(7)])).toThrow(/changed on disk/);
  });

  test('a line cut short in the middle', () => {
    const dir = trailOf(5);
    const lines = readLinesOf(dir);
    lines[2] = lines[2]!.slice(0, 40);
    writeLinesOf(dir, lines);
    const v = verifyDir(dir);
    expectBroken(v, 3);
    expect(v.problems.some((p) => p.line === 3 && /cut short or garbled/.test(p.problem))).toBe(true);
  });

  test('the last line cut short is not mistaken for a crash leftover: the head vouches for it', () => {
    const dir = trailOf(5);
    const before = readFileSync(trailFile(dir));
    writeFileSync(trailFile(dir), before.subarray(0, before.length - 30));
    const v = verifyDir(dir); // opening it does not cut record 5 away
    expectBroken(v, 5);
    expect(readFileSync(trailFile(dir))).toEqual(before.subarray(0, before.length - 30));
  });

  test('head.json missing', () => {
    const dir = trailOf(5);
    rmSync(headFile(dir));
    expectBroken(verifyDir(dir), 5);
  });

  test('head.json edited', () => {
    const dir = trailOf(5);
    const head = JSON.parse(readFileSync(headFile(dir), 'utf8')) as { seq: number; hash: string; hmac: string };
    writeFileSync(headFile(dir), JSON.stringify({ ...head, seq: 4 }));
    const v = verifyDir(dir);
    expectBroken(v, 4);
    expect(v.problems.some((p) => /HMAC/.test(p.problem))).toBe(true);
  });

  test('head.json garbled', () => {
    const dir = trailOf(5);
    writeFileSync(headFile(dir), '{"seq":5,');
    const v = verifyDir(dir);
    expect(v.ok).toBe(false);
    expect(v.problems.some((p) => /head\.json cannot be read/.test(p.problem))).toBe(true);
  });

  test('a signed head pointing at an earlier seq (an old head put back)', () => {
    const dir = trailOf(5);
    const trail = new AuditTrail(dir, key);
    const third = JSON.parse(readLinesOf(dir)[2]!) as AuditRecord;
    signHead(dir, 3, third.hash);
    const v = trail.verify();
    expectBroken(v, 3);
    expect(v.headSeq).toBe(3);
  });

  test('a signed head with a different hash for the last seq', () => {
    const dir = trailOf(5);
    signHead(dir, 5, 'cd'.repeat(32));
    const v = verifyDir(dir);
    expectBroken(v, 5);
    expect(v.problems.some((p) => /not the hash of record seq 5/.test(p.problem))).toBe(true);
  });

  test('a signed head pointing past the end of the trail', () => {
    const dir = trailOf(5);
    const fifth = JSON.parse(readLinesOf(dir)[4]!) as AuditRecord;
    signHead(dir, 7, fifth.hash);
    expectBroken(verifyDir(dir), 7);
  });

  test.each([
    ['the old HMAC kept', (seq: number, hash: string, old: string) => old],
    ['an HMAC under another key', (seq: number, hash: string) => hmacOf(randomBytes(32), seq, hash)],
  ])('an edit with every hash recomputed and the head rewritten, %s, fails on the HMAC alone', (_name, hmac) => {
    const dir = trailOf(5);
    const records = readLinesOf(dir).map((l) => JSON.parse(l) as AuditRecord);
    records[2] = { ...records[2]!, actor: 'mallory@contoso.example' };
    const forged = rechain(records);
    writeLinesOf(dir, forged.map((r) => JSON.stringify(r)));
    const old = JSON.parse(readFileSync(headFile(dir), 'utf8')) as { hmac: string };
    const last = forged[4]!;
    writeFileSync(headFile(dir), JSON.stringify({ seq: 5, hash: last.hash, hmac: hmac(5, last.hash, old.hmac) }));

    const v = verifyDir(dir);
    expectBroken(v, 5);
    expect(v.problems).toHaveLength(1);
    expect(v.problems[0]?.problem).toMatch(/HMAC does not match/);
  });

  test.each([
    ['emptied', (dir: string) => writeFileSync(trailFile(dir), '')],
    ['deleted', (dir: string) => rmSync(trailFile(dir))],
  ])('a trail %s while the head claims records', (_name, wipe) => {
    const dir = trailOf(5);
    wipe(dir);
    const v = verifyDir(dir);
    expectBroken(v, 5);
    expect(v.records).toBe(0);
  });
});

describe('crash recovery', () => {
  test.each([
    ['a line with no trailing newline', '{"action":"key.gen'],
    ['an unparsable last line', '\0\0\0\0\0\0\n'],
  ])('%s after the head is cut away on open, and the trail verifies and grows', (_name, torn) => {
    const dir = trailOf(3);
    const whole = readFileSync(trailFile(dir));
    const writer = new AuditTrail(dir, key);
    appendFileSync(trailFile(dir), torn);

    const before = writer.verify();
    expect(before.ok).toBe(false);
    expect(before.problems.some((p) => p.line === 4 && /seq 4/.test(p.problem))).toBe(true);

    const reopened = new AuditTrail(dir, key);
    expect(readFileSync(trailFile(dir))).toEqual(whole);
    expect(reopened.verify()).toEqual({ ok: true, records: 3, headSeq: 3, problems: [] });
    const [fourth] = reopened.append([entry(4)]);
    expect(fourth?.seq).toBe(4);
    expect(fourth?.prevHash).toBe((JSON.parse(readLinesOf(dir)[2]!) as AuditRecord).hash);
    expect(reopened.verify()).toMatchObject({ ok: true, records: 4, headSeq: 4 });
  });

  test('records written before a crash that kept the head from being signed are set aside on open, never signed; the retried append writes them again', () => {
    const dir = trailOf(3);
    const oldHead = readFileSync(headFile(dir));
    const signedBytes = readFileSync(trailFile(dir));
    new AuditTrail(dir, key).append([entry(4), entry(5)]);
    writeFileSync(headFile(dir), oldHead); // as if the process died between fsync of the lines and the head rename
    appendFileSync(trailFile(dir), '{"id":"tenant/contoso/key.change/6","seq":6,"pre'); // and mid-way through a later line

    const reopened = new AuditTrail(dir, key);
    // Whoever can write the data dir could have appended well-formed records too: they are not vouched for.
    expect(readFileSync(headFile(dir))).toEqual(oldHead);
    expect(readFileSync(trailFile(dir))).toEqual(signedBytes);
    expect(reopened.verify()).toEqual({ ok: true, records: 3, headSeq: 3, problems: [] });
    const aside = readdirSync(dir).filter((f) => /^unsigned-.*\.jsonl$/.test(f));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]!), 'utf8').trimEnd().split('\n')).toHaveLength(2);
    const fifth = reopened.append([entry(4), entry(5), entry(6)]);
    expect(fifth.map((r) => r.seq)).toEqual([4, 5, 6]);
    expect(JSON.parse(readFileSync(headFile(dir), 'utf8'))).toEqual({ seq: 6, hash: fifth[2]!.hash, hmac: hmacOf(key, 6, fifth[2]!.hash) });
  });

  test('a crash in the very first append, after its lines and before its head, is recovered on open', () => {
    const dir = freshDir();
    const writer = new AuditTrail(dir, key);
    const real = atomic.writeFileAtomicSync;
    const spy = jest.spyOn(atomic, 'writeFileAtomicSync').mockImplementation((path, data, mode) => {
      if (String(data).includes('"seq":2')) throw new Error('simulated crash');
      real(path, data, mode);
    });
    try {
      expect(() => writer.append([entry(1), entry(2)])).toThrow(/simulated crash/);
    } finally {
      spy.mockRestore();
    }
    expect(readLinesOf(dir)).toHaveLength(2);
    expect(() => writer.append([entry(3)])).toThrow(/failed part-way/);

    const reopened = new AuditTrail(dir, key);
    expect(reopened.verify()).toEqual({ ok: true, records: 0, headSeq: null, problems: [] });
    expect(reopened.append([entry(1), entry(2), entry(3)]).map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  test('before it is reopened, a trail with unsigned records does not verify', () => {
    const dir = trailOf(3);
    const oldHead = readFileSync(headFile(dir));
    const writer = new AuditTrail(dir, key);
    writer.append([entry(4), entry(5)]);
    writeFileSync(headFile(dir), oldHead);
    expectBroken(writer.verify(), 5);
  });

  test('a head.json deleted by an attacker is not taken for a crash: not recreated, append refused', () => {
    const dir = trailOf(3);
    rmSync(headFile(dir));
    const trail = new AuditTrail(dir, key);
    const v = trail.verify();
    expectBroken(v, 3);
    expect(v.problems.some((p) => /head\.json is missing/.test(p.problem))).toBe(true);
    expect(() => trail.append([entry(4)])).toThrow(/does not verify/);
    expect(existsSync(headFile(dir))).toBe(false);
    expect(readLinesOf(dir)).toHaveLength(3);
  });

  test('records after the head are not signed when the chain before them was tampered with', () => {
    const dir = trailOf(3);
    const oldHead = readFileSync(headFile(dir));
    new AuditTrail(dir, key).append([entry(4), entry(5)]);
    writeFileSync(headFile(dir), oldHead);
    const lines = readLinesOf(dir);
    lines[1] = lines[1]!.replace('alice@', 'mallory@');
    writeLinesOf(dir, lines);
    appendFileSync(trailFile(dir), '{"torn');
    const trailBytes = readFileSync(trailFile(dir));

    const trail = new AuditTrail(dir, key);
    expect(readFileSync(headFile(dir))).toEqual(oldHead);
    expect(readFileSync(trailFile(dir))).toEqual(trailBytes);
    expectBroken(trail.verify(), 2);
    expect(() => trail.append([entry(6)])).toThrow(/does not verify/);
  });

  test('records after the head that do not continue its chain are not signed', () => {
    const dir = trailOf(3);
    const oldHead = readFileSync(headFile(dir));
    new AuditTrail(dir, key).append([entry(4), entry(5)]);
    writeFileSync(headFile(dir), oldHead);
    const lines = readLinesOf(dir);
    lines[3] = lines[3]!.replace('"attempt":4', '"attempt":40');
    writeLinesOf(dir, lines);

    const trail = new AuditTrail(dir, key);
    expect(readFileSync(headFile(dir))).toEqual(oldHead);
    expectBroken(trail.verify(), 4);
    expect(() => trail.append([entry(6)])).toThrow(/does not verify/);
  });
});

describe('append refuses', () => {
  test('to extend a trail that does not verify, and leaves it as found', () => {
    const dir = trailOf(4);
    const lines = readLinesOf(dir);
    lines[1] = lines[1]!.replace('"region":"eu"', '"region":"us"');
    writeLinesOf(dir, lines);
    const bytes = readFileSync(trailFile(dir));
    const head = readFileSync(headFile(dir));

    const trail = new AuditTrail(dir, key);
    expect(() => trail.append([entry(5)])).toThrow(/does not verify/);
    expect(readFileSync(trailFile(dir))).toEqual(bytes);
    expect(readFileSync(headFile(dir))).toEqual(head);
  });

  test('when the files change behind an open writer', () => {
    const dir = trailOf(4);
    const trail = new AuditTrail(dir, key);
    const lines = readLinesOf(dir);
    lines[3] = lines[3]!.replace('"region":"eu"', '"region":"us"'); // same length: only the content differs
    writeLinesOf(dir, lines);
    expect(() => trail.append([entry(5)])).toThrow(/changed on disk/);
    expect(readLinesOf(dir)).toHaveLength(4);
  });

  test.each([
    ['password', { details: { password: 'hunter2-value' } }],
    ['PFX in capitals', { details: { PFX: 'MIIhunter2-value' } }],
    ['privateKey', { details: { privateKey: 'hunter2-value' } }],
    ['private_key', { details: { private_key: 'hunter2-value' } }],
    ['dek', { details: { Dek: 'hunter2-value' } }],
    ['secret', { details: { SECRET: 'hunter2-value' } }],
    ['token', { details: { token: 'hunter2-value' } }],
    ['clientSecret', { details: { clientSecret: 'hunter2-value' } }],
    ['a PEM block in the message', { message: 'Here: -----BEGIN PRIVATE KEY----- hunter2-value' }],
    ['a PEM block in a details value', { details: { note: '-----BEGIN CERTIFICATE-----\nhunter2-value' } }],
    ['a PEM block in the actor', { actor: '-----begin rsa private key----- hunter2-value' }],
  ])('an entry that looks like it carries a secret (%s), without echoing it and writing nothing', (_name, over) => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    let message = '';
    try {
      trail.append([entry(1), entry(2, over as Partial<AuditEntry>)]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^Audit entry 2.*(looks like a secret|PEM block).*\.$/);
    expect(message).not.toContain('hunter2');
    expect(existsSync(trailFile(dir))).toBe(false);
    expect(trail.list()).toEqual([]);
  });

  test.each([
    ['an id that is not a string', { id: 42 }],
    ['an empty actor', { actor: '' }],
    ['a time that is not ISO', { at: 'yesterday' }],
    ['an unknown outcome', { outcome: 'ok' }],
    ['no tenant', { tenant: undefined }],
    ['a region that is a number', { region: 7 }],
    ['a message over 1,000 characters', { message: 'x'.repeat(1001) }],
    ['65 thumbprints', { thumbprints: Array.from({ length: 65 }, () => 'ab'.repeat(32)) }],
    ['an uppercase thumbprint', { thumbprints: ['AB'.repeat(32)] }],
    ['a nested details value', { details: { nested: { a: 1 } } }],
    ['a details value that is not finite', { details: { ratio: Number.NaN } }],
    ['a details value over 1,000 characters', { details: { note: 'y'.repeat(1001) } }],
    ['an unknown field', { seq: 99 }],
  ])('an entry with %s', (_name, over) => {
    const trail = new AuditTrail(freshDir(), key);
    const bad = { ...entry(1), ...over } as Record<string, unknown>;
    if ('tenant' in over && over.tenant === undefined) delete bad.tenant;
    expect(() => trail.append([bad as unknown as AuditEntry])).toThrow(/^Audit entry 1\b.*\.$/);
    expect(trail.list()).toEqual([]);
  });

  test('but accepts entries at the limits', () => {
    const trail = new AuditTrail(freshDir(), key);
    const [record] = trail.append([
      entry(1, {
        message: 'x'.repeat(1000),
        thumbprints: Array.from({ length: 64 }, (_, i) => createHash('sha256').update(String(i)).digest('hex')),
        details: { tokenCount: 3, dekVersion: 2, keyName: 'contoso-tde' },
        actor: 'operator',
        code: 'FORBIDDEN',
        environment: null,
      }),
    ]);
    expect(record?.thumbprints).toHaveLength(64);
    expect(trail.verify().ok).toBe(true);
  });
});

test('a 20,000-record trail verifies in one pass, and an edit deep inside it is found', () => {
  const dir = freshDir();
  const trail = new AuditTrail(dir, key);
  for (let batch = 0; batch < 20; batch += 1) {
    trail.append(Array.from({ length: 1000 }, (_, i) => entry(batch * 1000 + i + 1)));
  }
  expect(trail.verify()).toEqual({ ok: true, records: 20000, headSeq: 20000, problems: [] });
  expect(trail.list({ limit: 2 }).map((r) => r.seq)).toEqual([19999, 20000]);

  const lines = readLinesOf(dir);
  lines[14999] = lines[14999]!.replace('"outcome":"completed"', '"outcome":"failed"');
  writeLinesOf(dir, lines);
  const v = new AuditTrail(dir, key).verify();
  expect(v.ok).toBe(false);
  expect(v.problems).toEqual([expect.objectContaining({ seq: 15000, line: 15000 })]);
});

describe('redaction where the record is made (domain/audit-redaction.ts)', () => {
  test.each([
    ['a PEM block in the message', { message: 'Here: -----BEGIN PRIVATE KEY----- hunter2-value' }, 'message'],
    ['a PEM marker in a key name', { details: { name: 'k-----BEGIN hunter2-value' } }, 'details.name'],
    ['a PEM marker in an e-mail in details', { details: { email: '-----begin@hunter2.test' } }, 'details.email'],
    ['a PEM block in the actor', { actor: '-----begin rsa private key----- hunter2-value' }, 'actor'],
    ['a message over 1,000 characters', { message: 'hunter2'.repeat(200) }, 'message'],
    ['a secret-looking details key', { details: { password: 'hunter2-value', note: 'kept' } }, 'details'],
    ['a nested details value', { details: { nested: { hunter2: 1 } } as unknown as Record<string, string> }, 'details.nested'],
    ['an uppercase thumbprint', { thumbprints: ['AB'.repeat(32), 'cd'.repeat(32)] }, 'thumbprints'],
    ['a PEM block as the region', { region: '-----BEGIN X----- hunter2' }, 'region'],
  ])('%s: redacted, marked, and then kept by the trail', (_name, over, field) => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    const raw = entry(1, over as Partial<AuditEntry>);
    expect(() => new AuditTrail(freshDir(), key).append([raw])).toThrow(AuditEntryRefusedError);
    const [record] = trail.append([redactAuditEntry(raw)]);
    expect(record?.details?.redacted).toEqual(expect.stringContaining(field));
    expect(readFileSync(trailFile(dir), 'utf8')).not.toMatch(/hunter2|-----BEGIN/i);
    expect(trail.verify().ok).toBe(true);
  });

  test('a valid entry passes unchanged; IDs and addresses with no space are kept whatever they spell', () => {
    expect(redactAuditEntry(entry(1))).toEqual(entry(1));
    const odd = entry(2, { actor: '-----begin@x.test', tenant: 'a-----begin', environment: 'e-----begin' });
    expect(redactAuditEntry(odd)).toEqual(odd);
    expect(new AuditTrail(freshDir(), key).append([odd])[0]).toMatchObject({ actor: '-----begin@x.test', tenant: 'a-----begin' });
  });

  test('the trail says which entry of a batch it refused, so the writer keeps the others', () => {
    const trail = new AuditTrail(freshDir(), key);
    let refused: unknown;
    try {
      trail.append([entry(1), entry(2), entry(3, { message: '-----BEGIN CERTIFICATE-----' })]);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(AuditEntryRefusedError);
    expect((refused as AuditEntryRefusedError).index).toBe(2);
    expect(trail.list()).toEqual([]);
  });

  test('refusals quote a caller\'s text only short and plain', () => {
    expect(quotable('eu-west')).toBe('eu-west');
    expect(quotable('-----BEGIN x')).toBeNull();
    expect(quotable('a-----b')).toBeNull();
    expect(quotable('x'.repeat(100), 20)).toBe(`${'x'.repeat(20)}…`);
    expect(quotable('tab\there\n')).toBe('tab?here?');
  });
});

describe('the head known outside the trail', () => {
  test('a trail shorter, older or different than the head its writer saw written is reported as deleted or rolled back', () => {
    const dir = trailOf(5);
    const known = new AuditTrail(dir, key).head();
    expect(known.seq).toBe(5);
    expect(new AuditTrail(dir, key).checkKnownHead(known)).toBeNull();
    expect(new AuditTrail(dir, key).verify(known).ok).toBe(true);

    // Rolled back: the first three records, with a head signed for them (an older copy of both files).
    const older = trailOf(3);
    const rolled = new AuditTrail(older, key);
    expect(rolled.checkKnownHead(known)).toMatch(/deleted or rolled back: it ends at seq 3, .*\(records 4\.\.5 missing\)\.$/);
    const v = rolled.verify(known);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ seq: 5, problem: expect.stringMatching(/records 4\.\.5 missing/) });

    // Deleted: nothing left.
    const empty = new AuditTrail(freshDir(), key);
    expect(empty.checkKnownHead(known)).toMatch(/it holds no records, .*records 1\.\.5 missing/);
    expect(empty.verify(known).ok).toBe(false);

    // Replaced: as long, but other records.
    const other = freshDir();
    new AuditTrail(other, key).append(Array.from({ length: 5 }, (_, i) => entry(i + 1, { actor: 'mallory@example.com' })));
    expect(new AuditTrail(other, key).checkKnownHead(known)).toMatch(/head mismatch/);
    expect(new AuditTrail(other, key).verify(known).problems[0]?.problem).toMatch(/head mismatch/);
  });
});

describe('the per-tenant index', () => {
  test('a tenant\'s page holds exactly its records, across appends and reopening', () => {
    const dir = freshDir();
    const trail = new AuditTrail(dir, key);
    const tenants = ['contoso', 'fabrikam', 'northwind'];
    trail.append(Array.from({ length: 60 }, (_, i) => entry(i + 1, { tenant: tenants[i % 3]! })));
    trail.append([entry(61, { tenant: null }), entry(62, { tenant: 'fabrikam' })]);
    for (const reader of [trail, new AuditTrail(dir, key)]) {
      const all = reader.list();
      expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 62 }, (_, i) => i + 1));
      for (const tenant of tenants) {
        const mine = all.filter((r) => r.tenant === tenant);
        expect(reader.list({ tenant })).toEqual(mine);
        expect(reader.list({ tenant, limit: 4 })).toEqual(mine.slice(-4));
        expect(reader.list({ tenant, afterSeq: 30, limit: 3 })).toEqual(mine.filter((r) => r.seq > 30).slice(-3));
      }
      expect(reader.list({ tenant: 'nobody' })).toEqual([]);
      expect(reader.list({ afterSeq: 60 }).map((r) => r.seq)).toEqual([61, 62]);
    }
  });
});
