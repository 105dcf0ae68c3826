// Over 400 lines: the writer, its crash recovery and the verifier read one on-disk format, kept together so they cannot drift apart.
/**
 * The audit trail: an append-only, tamper-evident record of who asked for what and how it ended, on local disk.
 *
 * `trail.jsonl` holds one record a line. Each record carries `seq` (1, 2, 3, …), the hash of the record before it
 * (`prevHash`; 64 zeros for the first) and its own `hash`: SHA-256 over its canonical JSON (keys sorted, `hash`
 * left out). Editing, removing, reordering or inserting a record breaks the chain. `head.json` names the last record
 * and is signed with an HMAC under a key kept outside the data dir, so an attacker who rewrites the whole chain (or
 * cuts records off its end) cannot sign a head that matches it.
 *
 * One writer per directory: an AuditTrail is the writer's handle. Opening it recovers from a crash of the previous
 * writer (a torn last line is cut away; whole records written after the head was last signed are moved aside to
 * `unsigned-<time>.jsonl`, never signed: anyone who can write the data dir could have appended them, and the writer
 * that crashed never acknowledged them, so its retried append writes them again) and nothing else: a trail that does
 * not verify up to its head is left as found for verify() to report, and append refuses to extend it. Entries are never logged, and error messages name fields, never their values.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, chmodSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { fsyncPathSync, writeFileAtomicSync } from '../common/atomic';
import { AUDIT_LIMITS, AUDIT_OUTCOMES, auditStringProblem, looksLikeSecretName } from '../domain/audit-redaction';
import type { AuditEntry, AuditOutcome } from '../domain/audit-entry';

export type { AuditEntry, AuditOutcome } from '../domain/audit-entry';

export interface AuditRecord extends AuditEntry {
  seq: number;
  prevHash: string;
  hash: string;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  headSeq: number | null;
  problems: Array<{ seq: number | null; line: number | null; problem: string }>;
}

/** The head a writer last saw written (seq 0 and the genesis hash before the first record). */
export interface AuditHead {
  seq: number;
  hash: string;
}

/** Thrown by append when an entry's content is not fit for the trail (a producer skipped the redaction): the same
 *  entry will be refused again, so it is never worth retrying. `index` is the first such entry in the batch. */
export class AuditEntryRefusedError extends Error {
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
    this.name = 'AuditEntryRefusedError';
  }
}

export const TRAIL_FILE = 'trail.jsonl';
export const HEAD_FILE = 'head.json';
export const GENESIS_HASH = '0'.repeat(64);

const MAX_STRING = AUDIT_LIMITS.maxString;
const MAX_THUMBPRINTS = AUDIT_LIMITS.maxThumbprints;
const MAX_DETAILS = AUDIT_LIMITS.maxDetails;
/** verify() lists this many problems, then says how many more there were. */
const MAX_PROBLEMS = 100;
const CHUNK = 1 << 20;

const OUTCOMES: readonly string[] = AUDIT_OUTCOMES;
const ENTRY_FIELDS = new Set(['id', 'at', 'actor', 'action', 'outcome', 'tenant', 'region', 'environment', 'code', 'message', 'thumbprints', 'details']);
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const HEX64 = /^[0-9a-f]{64}$/;

type Problem = AuditVerification['problems'][number];

export class AuditTrail {
  private readonly trailPath: string;
  private readonly headPath: string;
  /** Each stored id and the byte offset of its line, so a repeated id returns the stored record. */
  private readonly ids = new Map<string, number>();
  private headSeq = 0;
  private headHash = GENESIS_HASH;
  /** head.json exactly as this writer last saw it; null when there is none yet. */
  private headText: string | null = null;
  private size = 0;
  private last: { offset: number; bytes: Buffer } | null = null;
  /** Why append must refuse; null while the trail is fit to extend. */
  private broken: string | null = null;
  /** Where each record's line is, for the whole trail and per tenant: a tenant's page reads its own lines only. */
  private readonly index = new RecordIndex();

  constructor(
    private readonly dir: string,
    private readonly hmacKey: Buffer,
  ) {
    if (!Buffer.isBuffer(hmacKey) || hmacKey.length < 16) throw new Error('The audit trail HMAC key must be a Buffer of at least 16 bytes.');
    if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
    this.trailPath = join(dir, TRAIL_FILE);
    this.headPath = join(dir, HEAD_FILE);
    this.open();
  }

  /** Appends the entries in order, all or none validated first. Returns the records as stored: for an id already
   *  in the trail (a retried activity), the stored record, unchanged. Throws when the trail does not verify. */
  append(entries: AuditEntry[]): AuditRecord[] {
    if (!Array.isArray(entries)) throw new Error('append takes an array of audit entries.');
    const clean = entries.map((entry, index) => {
      try {
        return validateEntry(entry, index);
      } catch (err) {
        throw new AuditEntryRefusedError(err instanceof Error ? err.message : String(err), index);
      }
    });
    this.assertWritable();

    const results: AuditRecord[] = [];
    const fresh = new Map<string, AuditRecord>();
    const lines: Array<{ id: string; tenant: string | null; seq: number; bytes: Buffer }> = [];
    let seq = this.headSeq;
    let prevHash = this.headHash;
    for (const entry of clean) {
      const storedAt = this.ids.get(entry.id);
      const again = storedAt === undefined ? fresh.get(entry.id) : this.readRecordAt(storedAt);
      if (again) {
        results.push(again);
        continue;
      }
      seq += 1;
      const body = { ...entry, seq, prevHash };
      const record: AuditRecord = { ...body, hash: sha256(canonicalJson(body)) };
      prevHash = record.hash;
      fresh.set(entry.id, record);
      lines.push({ id: entry.id, tenant: entry.tenant, seq, bytes: Buffer.from(`${canonicalJson(record)}\n`) });
      results.push(record);
    }
    if (lines.length === 0) return results;

    try {
      // A signed genesis head before the first line: from then on a missing head.json is never a crash, so it is
      // never taken for one.
      if (this.headText === null) this.writeHead(0, GENESIS_HASH);
      const created = !existsSync(this.trailPath);
      const fd = openSync(this.trailPath, 'a', 0o600);
      let offset = this.size;
      try {
        for (const { id, tenant, seq: at, bytes } of lines) {
          writeAll(fd, bytes);
          this.ids.set(id, offset);
          this.index.add(tenant, { seq: at, offset, length: bytes.length });
          this.last = { offset, bytes };
          offset += bytes.length;
        }
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      if (created) fsyncPathSync(this.dir);
      this.size = offset;
      this.writeHead(seq, prevHash);
    } catch (err) {
      this.broken = 'An earlier append to the audit trail failed part-way; open the trail again so it is recovered and verified.';
      throw err;
    }
    return results;
  }

  /** Records oldest first, optionally of one tenant and after a seq; `limit` keeps the last n that match. Reads only
   *  the lines of the page, found in the index (one tenant's page costs its own records, not the whole trail). */
  list(filter: { tenant?: string; afterSeq?: number; limit?: number } = {}): AuditRecord[] {
    const { tenant, afterSeq = 0, limit } = filter;
    if (tenant !== undefined && typeof tenant !== 'string') throw new Error('The tenant filter must be a string.');
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new Error('afterSeq must be a whole number, 0 or more.');
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new Error('limit must be a whole number, 0 or more.');
    if (limit === 0) return [];
    const entries = tenant === undefined ? this.index.all : (this.index.byTenant.get(tenant) ?? []);
    const first = firstAfter(entries, afterSeq);
    const from = limit === undefined ? first : Math.max(first, entries.length - limit);
    if (from >= entries.length) return [];
    const out: AuditRecord[] = [];
    let fd: number;
    try {
      fd = openSync(this.trailPath, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    try {
      for (let i = from; i < entries.length; i += 1) {
        const { seq, offset, length } = entries[i]!;
        const bytes = Buffer.alloc(length);
        if (readSync(fd, bytes, 0, length, offset) !== length || bytes[length - 1] !== 10) continue;
        const parsed = parseRecord(bytes.toString('utf8', 0, length - 1));
        // A line changed behind this writer's back: verify() reports it; the page leaves it out.
        if (typeof parsed === 'string' || parsed.seq !== seq || (tenant !== undefined && parsed.tenant !== tenant)) continue;
        out.push(parsed);
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }

  /** The head this writer last wrote or found (seq 0 and the genesis hash before the first record). */
  head(): AuditHead {
    return { seq: this.headSeq, hash: this.headHash };
  }

  /**
   * Compares this trail with the head its writer last saw written, known outside the data dir (the audit workflow
   * keeps it): a trail that is shorter, or holds another record at that seq, was deleted or rolled back. A sentence
   * saying so, or null.
   */
  checkKnownHead(known: AuditHead | null): string | null {
    if (!known || known.seq <= 0) return null;
    if (this.headSeq < known.seq) return rolledBack(this.headSeq, known, null);
    const at = this.index.find(known.seq);
    let stored: AuditRecord | null = null;
    try {
      stored = at === undefined ? null : this.readRecordAt(at.offset);
    } catch {
      stored = null; // changed on disk since it was opened: not the record that was written either
    }
    return stored?.hash === known.hash ? null : rolledBack(this.headSeq, known, stored?.hash ?? null);
  }

  /** Reads the whole trail once, line by line, and says everything that is wrong with it; given the head its writer
   *  last saw written (kept outside the data dir), also whether the trail was deleted or rolled back since. */
  verify(known: AuditHead | null = null): AuditVerification {
    const head = readHead(this.headPath);
    const probe = known && known.seq > 0 ? known.seq : null;
    const scan = scanTrail(this.trailPath, head.kind === 'ok' ? head.seq : null, new Map(), null, probe);
    const headProblems = checkHead(head, scan, this.hmacKey);
    const problems = [...scan.problems];
    let count = scan.problemCount;
    if (known && probe !== null && scan.hashAtProbe !== known.hash) {
      problems.unshift({ seq: known.seq, line: null, problem: rolledBack(scan.last?.seq ?? 0, known, scan.hashAtProbe) });
      count += 1;
    }
    if (scan.tail) {
      problems.push(tailProblem(scan.tail));
      count += 1;
    }
    if (headProblems.beyondHead && scan.last) {
      headProblems.problems.push({
        seq: scan.last.seq,
        line: null,
        problem: `The trail holds records up to seq ${scan.last.seq} after seq ${head.kind === 'ok' ? head.seq : 0}, the last one head.json vouches for; nothing signed them.`,
      });
    }
    for (const p of headProblems.problems) {
      count += 1;
      if (problems.length < MAX_PROBLEMS) problems.push(p);
    }
    if (count > problems.length) problems.push({ seq: null, line: null, problem: `${count - problems.length} more problems were found and not listed.` });
    const headSeq = head.kind === 'ok' && head.seq > 0 ? head.seq : null;
    return { ok: problems.length === 0, records: scan.records, headSeq, problems };
  }

  /** Loads the ids, recovers from the previous writer's crash, and decides whether the trail may be extended. */
  private open(): void {
    for (const name of readdirSync(this.dir)) {
      if (/^\.head\.json\.[0-9a-f]+\.tmp$/.test(name)) rmSync(join(this.dir, name), { force: true });
    }
    const head = readHead(this.headPath);
    const scan = scanTrail(this.trailPath, head.kind === 'ok' ? head.seq : null, this.ids, this.index);
    const { problems, beyondHead } = checkHead(head, scan, this.hmacKey);
    const first = scan.problems[0] ?? problems[0];
    if (first) {
      this.broken = `The audit trail in ${this.dir} does not verify (${first.problem}); nothing will be appended to it.`;
      return;
    }
    if (head.kind !== 'ok') {
      // Never written: no head, no records (checkHead refuses anything else).
      if (scan.tail) this.broken = `The audit trail in ${this.dir} holds data but no head.json; nothing will be appended to it.`;
      return;
    }
    this.headText = head.text;
    this.headSeq = head.seq;
    this.headHash = head.hash;
    this.size = scan.size;
    this.last = scan.last && { offset: scan.last.offset, bytes: scan.last.bytes };
    if (scan.tail) {
      // A line cut short by a crash, after every record the head vouches for: it was never acknowledged.
      const fd = openSync(this.trailPath, 'r+');
      try {
        ftruncateSync(fd, scan.tail.offset);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      this.size = scan.tail.offset;
    }
    if (beyondHead && scan.last) {
      // Whole records past the signed head: the crashed writer never acknowledged them (its caller retries, and the
      // ids make that harmless), and anyone with the data dir could have written them. Kept aside, never signed.
      this.setAside(scan.endOfHeadSeq);
      this.ids.clear();
      this.index.clear();
      this.open();
    }
  }

  /** Moves everything after `offset` into `unsigned-<time>.jsonl` (for the operator to look at) and cuts it off. */
  private setAside(offset: number): void {
    const all = readFileSync(this.trailPath);
    const aside = join(this.dir, `unsigned-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.jsonl`);
    writeFileAtomicSync(aside, all.subarray(offset), 0o600);
    const fd = openSync(this.trailPath, 'r+');
    try {
      ftruncateSync(fd, offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Refuses when open() found the trail broken, or when the files changed behind this writer's back. */
  private assertWritable(): void {
    if (this.broken) throw new Error(this.broken);
    const head = readTextIfExists(this.headPath);
    let drifted = head !== this.headText;
    if (!drifted && existsSync(this.trailPath)) {
      const fd = openSync(this.trailPath, 'r');
      try {
        drifted = fstatSync(fd).size !== this.size;
        if (!drifted && this.last) {
          const now = Buffer.alloc(this.last.bytes.length);
          drifted = readSync(fd, now, 0, now.length, this.last.offset) !== now.length || !now.equals(this.last.bytes);
        }
      } finally {
        closeSync(fd);
      }
    } else if (!drifted) {
      drifted = this.size !== 0;
    }
    if (drifted) {
      this.broken = `The audit trail in ${this.dir} changed on disk since it was opened; open it again so it is verified before anything is appended.`;
      throw new Error(this.broken);
    }
  }

  private writeHead(seq: number, hash: string): void {
    const text = `${JSON.stringify({ seq, hash, hmac: headHmac(this.hmacKey, seq, hash) })}\n`;
    writeFileAtomicSync(this.headPath, text, 0o600);
    this.headText = text;
    this.headSeq = seq;
    this.headHash = hash;
  }

  private readRecordAt(offset: number): AuditRecord {
    for (const line of readLines(this.trailPath, offset)) {
      const parsed = parseRecord(line.text);
      if (typeof parsed === 'string') break;
      return parsed;
    }
    throw new Error(`The audit trail in ${this.dir} changed on disk since it was opened; open it again so it is verified.`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation of what callers hand in.

function validateEntry(entry: unknown, index: number): AuditEntry {
  const where = `Audit entry ${index + 1}`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new Error(`${where} is not an object.`);
  const e = entry as Record<string, unknown>;
  for (const key of Object.keys(e)) {
    if (!ENTRY_FIELDS.has(key)) throw new Error(`${where} has a field the audit trail does not know${safeName(key) ? ` (${key})` : ''}.`);
  }
  const text = (field: string, value: unknown, nullable: boolean): void => {
    if (value === null && nullable) return;
    if (typeof value !== 'string') throw new Error(`${where}: ${field} must be a string${nullable ? ' or null' : ''}.`);
    checkString(`${where}: ${field}`, value, IDENTIFYING.has(field));
  };
  for (const field of ['id', 'at', 'actor', 'action'] as const) {
    text(field, e[field], false);
    if (e[field] === '') throw new Error(`${where}: ${field} must not be empty.`);
  }
  if (!ISO_TIME.test(e.at as string) || !Number.isFinite(Date.parse(e.at as string))) throw new Error(`${where}: at must be an ISO 8601 time such as 2024-05-01T12:00:00Z.`);
  if (typeof e.outcome !== 'string' || !OUTCOMES.includes(e.outcome)) throw new Error(`${where}: outcome must be one of ${OUTCOMES.join(', ')}.`);
  if (!('tenant' in e)) throw new Error(`${where}: tenant must be given (a tenant name, or null).`);
  text('tenant', e.tenant, true);
  for (const field of ['region', 'environment', 'code', 'message'] as const) {
    if (e[field] !== undefined) text(field, e[field], true);
  }
  if (e.thumbprints !== undefined) {
    if (!Array.isArray(e.thumbprints)) throw new Error(`${where}: thumbprints must be an array.`);
    if (e.thumbprints.length > MAX_THUMBPRINTS) throw new Error(`${where} has more than ${MAX_THUMBPRINTS} thumbprints.`);
    for (const t of e.thumbprints) {
      if (typeof t !== 'string' || !HEX64.test(t)) throw new Error(`${where}: each thumbprint must be a lowercase hex SHA-256 (64 characters).`);
    }
  }
  if (e.details !== undefined) {
    const details = e.details;
    if (typeof details !== 'object' || details === null || Array.isArray(details) || ![Object.prototype, null].includes(Object.getPrototypeOf(details))) {
      throw new Error(`${where}: details must be a plain object.`);
    }
    const keys = Object.keys(details);
    if (keys.length > MAX_DETAILS) throw new Error(`${where} has more than ${MAX_DETAILS} details.`);
    for (const key of keys) {
      checkString(`${where}: a details key`, key);
      if (key === '__proto__') throw new Error(`${where}: __proto__ is not a details key.`);
      if (looksLikeSecretName(key)) throw new Error(`${where}: details.${key} looks like a secret; the audit trail never stores secrets.`);
      const label = `${where}: details${safeName(key) ? `.${key}` : ' value'}`;
      const value = (details as Record<string, unknown>)[key];
      if (typeof value === 'string') checkString(label, value);
      else if (typeof value === 'number' ? !Number.isFinite(value) : typeof value !== 'boolean' && value !== null) {
        throw new Error(`${label} must be a string, a finite number, a boolean or null.`);
      }
    }
  }
  // A copy of the known fields only, so the caller cannot change what is stored after the fact.
  const out: AuditEntry = { id: e.id as string, at: e.at as string, actor: e.actor as string, action: e.action as string, outcome: e.outcome as AuditOutcome, tenant: e.tenant as string | null };
  for (const field of ['region', 'environment', 'code', 'message'] as const) {
    if (e[field] !== undefined) out[field] = e[field] as string | null;
  }
  if (e.thumbprints !== undefined) out.thumbprints = [...(e.thumbprints as string[])];
  if (e.details !== undefined) out.details = { ...(e.details as Record<string, string | number | boolean | null>) };
  return out;
}

/** Fields that name who or where (domain/audit-redaction.ts): a plain token there is kept whatever it spells. */
const IDENTIFYING = new Set(['id', 'actor', 'tenant', 'region', 'environment']);

function checkString(label: string, value: string, identifying = false): void {
  const problem = auditStringProblem(value, identifying);
  if (problem === 'too long') throw new Error(`${label} is longer than ${MAX_STRING} characters.`);
  if (problem) throw new Error(`${label} holds a PEM block ("-----BEGIN"); the audit trail never stores keys or certificates.`);
}

/** A key short and plain enough to name in an error message without echoing what a caller should not have sent. */
const safeName = (key: string): boolean => /^[A-Za-z0-9_.-]{1,64}$/.test(key);

// ---------------------------------------------------------------------------------------------------------------
// Hashing, the head, and reading the trail.

/** JSON with every object's keys sorted (undefined members left out): one text for one value. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  const text = JSON.stringify(value);
  if (text === undefined) throw new Error('The audit trail can only store JSON values.');
  return text;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

function headHmac(key: Buffer, seq: number, hash: string): string {
  return createHmac('sha256', key).update(`cmk-audit-head.v1:${seq}:${hash}`).digest('hex');
}

function hashOf(record: AuditRecord): string {
  const { hash: _hash, ...body } = record;
  return sha256(canonicalJson(body));
}

/** A record's frame (seq, prevHash, hash, id); everything else is covered by its hash. A sentence when it is not one. */
function parseRecord(text: string): AuditRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'is not valid JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON object';
  const r = value as Partial<Record<keyof AuditRecord, unknown>>;
  if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1) return 'has no valid seq';
  if (typeof r.prevHash !== 'string' || !HEX64.test(r.prevHash)) return 'has no valid prevHash';
  if (typeof r.hash !== 'string' || !HEX64.test(r.hash)) return 'has no valid hash';
  if (typeof r.id !== 'string') return 'has no id';
  return value as AuditRecord;
}

interface Line {
  text: string;
  number: number;
  offset: number;
  bytes: Buffer;
  terminated: boolean;
}

/** The file's lines from `start`, read in 1 MiB chunks; the last one unterminated when it has no newline. */
function* readLines(path: string, start = 0): Generator<Line> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    const chunk = Buffer.allocUnsafe(CHUNK);
    let position = start;
    let lineStart = start;
    let number = 0;
    let carry: Buffer[] = [];
    for (;;) {
      const n = readSync(fd, chunk, 0, CHUNK, position);
      if (n === 0) break;
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl !== -1 && nl < n; nl = chunk.indexOf(10, from)) {
        const bytes = Buffer.concat([...carry, chunk.subarray(from, nl + 1)]);
        carry = [];
        number += 1;
        yield { text: bytes.toString('utf8', 0, bytes.length - 1), number, offset: lineStart, bytes, terminated: true };
        lineStart = position + nl + 1;
        from = nl + 1;
      }
      if (from < n) carry.push(Buffer.from(chunk.subarray(from, n)));
      position += n;
    }
    if (carry.length > 0) {
      const bytes = Buffer.concat(carry);
      yield { text: bytes.toString('utf8'), number: number + 1, offset: lineStart, bytes, terminated: false };
    }
  } finally {
    closeSync(fd);
  }
}

interface Tail {
  line: number;
  offset: number;
  expectedSeq: number;
  why: string;
}

interface Scan {
  problems: Problem[];
  problemCount: number;
  /** The last line when it is unterminated or unreadable: what a crash mid-write leaves. */
  tail: Tail | null;
  records: number;
  last: { seq: number; hash: string; offset: number; bytes: Buffer } | null;
  /** The hash of the record with the seq head.json names, when there is one. */
  hashAtHeadSeq: string | null;
  /** The byte offset just past that record (0 for a head at seq 0). */
  endOfHeadSeq: number;
  /** The hash of the record with the seq asked for (the head known outside the data dir), when there is one. */
  hashAtProbe: string | null;
  size: number;
}

/** One pass over trail.jsonl: the chain from genesis, seq by seq. `ids` collects each id's offset when given. */
function scanTrail(path: string, headSeq: number | null, ids = new Map<string, number>(), index: RecordIndex | null = null, probeSeq: number | null = null): Scan {
  const scan: Scan = { problems: [], problemCount: 0, tail: null, records: 0, last: null, hashAtHeadSeq: null, endOfHeadSeq: 0, hashAtProbe: null, size: 0 };
  const report = (p: Problem): void => {
    scan.problemCount += 1;
    if (scan.problems.length < MAX_PROBLEMS) scan.problems.push(p);
  };
  let expected = 1;
  let prevHash: string | null = GENESIS_HASH;
  let pending: Tail | null = null; // an unreadable line: torn if it is the last one, damage if anything follows it
  for (const line of readLines(path)) {
    scan.size = line.offset + line.bytes.length;
    if (pending) {
      report(tailProblem(pending));
      pending = null;
    }
    const parsed = line.terminated ? parseRecord(line.text) : 'has no trailing newline';
    if (typeof parsed === 'string') {
      pending = { line: line.number, offset: line.offset, expectedSeq: expected, why: parsed };
      expected += 1;
      prevHash = null; // unknown: the next record is checked for seq and its own hash only
      continue;
    }
    const at = `Record seq ${parsed.seq} on line ${line.number}`;
    if (parsed.seq !== expected) {
      report({ seq: parsed.seq, line: line.number, problem: `${at} is out of place: seq ${expected} was expected there (records removed, inserted or reordered).` });
    }
    if (prevHash !== null && parsed.prevHash !== prevHash) {
      report({ seq: parsed.seq, line: line.number, problem: `${at} does not chain to the record before it: its prevHash is not the hash of seq ${parsed.seq - 1} as stored.` });
    }
    if (hashOf(parsed) !== parsed.hash) {
      report({ seq: parsed.seq, line: line.number, problem: `${at} was altered: its content does not match its hash.` });
    }
    if (ids.has(parsed.id)) {
      report({ seq: parsed.seq, line: line.number, problem: `${at} repeats the id of an earlier record.` });
    } else {
      ids.set(parsed.id, line.offset);
    }
    if (parsed.seq === probeSeq && scan.hashAtProbe === null) scan.hashAtProbe = parsed.hash;
    index?.add(typeof parsed.tenant === 'string' ? parsed.tenant : null, { seq: parsed.seq, offset: line.offset, length: line.bytes.length });
    if (parsed.seq === headSeq && scan.hashAtHeadSeq === null) {
      scan.hashAtHeadSeq = parsed.hash;
      scan.endOfHeadSeq = line.offset + line.bytes.length;
    }
    scan.records += 1;
    scan.last = { seq: parsed.seq, hash: parsed.hash, offset: line.offset, bytes: line.bytes };
    expected = parsed.seq + 1;
    prevHash = parsed.hash;
  }
  scan.tail = pending;
  return scan;
}

/** The sentence for a trail that lost records its writer saw written (`end`: its last seq now). */
function rolledBack(end: number, known: AuditHead, hashThere: string | null): string {
  if (end < known.seq) {
    const now = end === 0 ? 'it holds no records' : `it ends at seq ${end}`;
    return `The audit trail was deleted or rolled back: ${now}, but records up to seq ${known.seq} were written (records ${end + 1}..${known.seq} missing).`;
  }
  return `The audit trail was deleted or rolled back: record seq ${known.seq} ${hashThere === null ? 'is missing' : 'is not the one that was written'} (head mismatch: records up to seq ${known.seq} were replaced).`;
}

interface IndexEntry {
  seq: number;
  offset: number;
  length: number;
}

/** Each record's line (seq order), for the whole trail and per tenant; built on open, extended on append. */
class RecordIndex {
  all: IndexEntry[] = [];
  byTenant = new Map<string, IndexEntry[]>();

  add(tenant: string | null, entry: IndexEntry): void {
    this.all.push(entry);
    if (tenant === null) return;
    let mine = this.byTenant.get(tenant);
    if (!mine) this.byTenant.set(tenant, (mine = []));
    mine.push(entry);
  }

  find(seq: number): IndexEntry | undefined {
    const i = firstAfter(this.all, seq - 1);
    return this.all[i]?.seq === seq ? this.all[i] : undefined;
  }

  clear(): void {
    this.all = [];
    this.byTenant.clear();
  }
}

/** The position of the first entry with a seq above `seq` (entries in seq order). */
function firstAfter(entries: IndexEntry[], seq: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid]!.seq <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function tailProblem(tail: Tail): Problem {
  return { seq: null, line: tail.line, problem: `Line ${tail.line}, where seq ${tail.expectedSeq} was expected, ${tail.why}: it was cut short or garbled.` };
}

type HeadRead = { kind: 'missing' } | { kind: 'invalid'; why: string } | { kind: 'ok'; seq: number; hash: string; hmac: string; text: string };

function readTextIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function readHead(path: string): HeadRead {
  const text = readTextIfExists(path);
  if (text === null) return { kind: 'missing' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'invalid', why: 'it is not valid JSON' };
  }
  const h = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (typeof h.seq !== 'number' || !Number.isSafeInteger(h.seq) || h.seq < 0) return { kind: 'invalid', why: 'it has no valid seq' };
  if (typeof h.hash !== 'string' || !HEX64.test(h.hash) || typeof h.hmac !== 'string' || !HEX64.test(h.hmac)) return { kind: 'invalid', why: 'it has no valid hash and hmac' };
  return { kind: 'ok', seq: h.seq, hash: h.hash, hmac: h.hmac, text };
}

/** What is wrong between head.json and the trail, and whether records follow the last one the head vouches for. */
function checkHead(head: HeadRead, scan: Scan, key: Buffer): { problems: Problem[]; beyondHead: boolean } {
  const lastSeq = scan.last?.seq ?? null;
  if (head.kind === 'missing') {
    if (lastSeq === null) return { problems: [], beyondHead: false };
    return { problems: [{ seq: lastSeq, line: null, problem: `head.json is missing, so nothing vouches for the ${scan.records} records in the trail (up to seq ${lastSeq}).` }], beyondHead: false };
  }
  if (head.kind === 'invalid') return { problems: [{ seq: null, line: null, problem: `head.json cannot be read: ${head.why}.` }], beyondHead: false };

  const problems: Problem[] = [];
  const mac = Buffer.from(headHmac(key, head.seq, head.hash), 'hex');
  if (!timingSafeEqual(mac, Buffer.from(head.hmac, 'hex'))) {
    problems.push({ seq: head.seq, line: null, problem: `head.json (seq ${head.seq}) is not signed with this trail's key: its HMAC does not match, so it was edited or forged.` });
  }
  if (head.seq === 0) {
    if (head.hash !== GENESIS_HASH) problems.push({ seq: 0, line: null, problem: 'head.json names seq 0 with a hash other than the genesis hash.' });
  } else if (lastSeq === null) {
    problems.push({ seq: head.seq, line: null, problem: `head.json vouches for records up to seq ${head.seq}, but the trail holds no records.` });
  } else if (scan.hashAtHeadSeq === null) {
    const why = lastSeq < head.seq ? `the trail ends at seq ${lastSeq}: records were removed from its end` : `the trail has no record with that seq`;
    problems.push({ seq: head.seq, line: null, problem: `head.json vouches for records up to seq ${head.seq}, but ${why}.` });
  } else if (scan.hashAtHeadSeq !== head.hash) {
    problems.push({ seq: head.seq, line: null, problem: `head.json's hash for seq ${head.seq} is not the hash of record seq ${head.seq} in the trail.` });
  }
  const beyondHead = lastSeq !== null && lastSeq > head.seq;
  return { problems, beyondHead };
}

function writeAll(fd: number, data: Buffer): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
}
