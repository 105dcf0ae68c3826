/**
 * Hostile input (DESIGN.md §6), shared by the property tests (test/property-*.test.ts) and the long fuzz run
 * (scripts/fuzz.ts): fast-check generators for key files and API requests, and the properties they must keep.
 *
 * - Key files: arbitrary bytes, random DER trees, byte-level and structure-aware mutations of valid files (made by
 *   node-forge, the hand assembler, OpenSSL when present and generateKeyPfx), deeply nested DER, huge length fields,
 *   random and byok-shaped JSON. Property: a valid result, or a CmkError with one of the input codes.
 * - API: every POST route of the live OpenAPI document, with random JSON, objects with the route's field names but
 *   hostile values, prototype-pollution keys, invalid base64, non-JSON text, oversized bodies and junk path segments.
 *   Property: status < 500, and either 200 with JSON or `{error:{code,message}}` with a stable code.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { extname } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import forge from 'node-forge';
import { CmkError } from '../common/errors';
import { assertSupportedKey, privateKeyFromPkcs8 } from '../common/keys';
import { detectKeyFileKind, generateKeyPfx, MAX_KEY_FILE_BYTES, parseByok, parsePfx, unwrapByokCiphertext, wrapForByok } from '../keyfiles';
import { OID } from '../keyfiles/pfx';
import { ERROR_CODES, httpStatusOf, type ErrorCode } from '../domain/codes';
import { ACTIONS } from '../domain/access';
import { assemblePfx, certificateDer, hasOpenssl, makeOpensslPfx, makePfx, opensslSupportsLegacy } from './keyfiles';
import type { ApiResult } from './stack';

/** The codes a key-file parser may answer (DESIGN.md §4's input codes for files). */
export const KEY_FILE_CODES: readonly ErrorCode[] = ['INVALID_KEY_FILE', 'UNSUPPORTED_KEY', 'PASSWORD_REQUIRED', 'WRONG_PASSWORD'];

/** A property violation: what fast-check reports, with the input it shrank to. */
export class PropertyViolation extends Error {
  override name = 'PropertyViolation';
}

const violated = (message: string): never => {
  throw new PropertyViolation(message);
};

/**
 * Runs `fn`: its result (checked by `accept`), or the CmkError it threw, whose code must be in `codes`. Anything else
 * — another exception type, another code, an unacceptable result — is a violation.
 */
export function expectStable<T>(fn: () => T, codes: readonly ErrorCode[], accept: (value: T) => void = () => undefined): { value: T } | { error: CmkError } {
  let value: T;
  try {
    value = fn();
  } catch (err) {
    if (!(err instanceof CmkError)) return violated(`threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} instead of a CmkError`);
    if (!codes.includes(err.code)) return violated(`answered ${err.code}, not one of ${codes.join(', ')}`);
    if (!/^[A-Z].*\.$/s.test(err.message)) violated(`refusal message is not a sentence: ${JSON.stringify(err.message.slice(0, 200))}`);
    return { error: err };
  }
  accept(value);
  return { value };
}

// =============================================================================================== DER helpers

function lengthBytes(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One DER element with a definite length. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

const oidBytes = (oid: string): Buffer => Buffer.from(forge.asn1.oidToDer(oid).getBytes(), 'binary');

/** Every OID the parser knows, plus a few it meets in keys and certificates. */
const KNOWN_OIDS = [...Object.values(OID), '1.2.840.113549.1.1.1', '1.2.840.10045.2.1', '1.2.840.113549.1.1.11', '1.3.101.112', '1.2.840.113549.1.7.2'];

export interface DerHeader {
  offset: number;
  tag: number;
  /** Offset of the length octets, their count, and where the content starts. */
  lengthOffset: number;
  contentOffset: number;
  /** undefined: indefinite. */
  length: number | undefined;
}

/**
 * The TLV headers of a file, found by a tolerant iterative walk: into constructed values and into OCTET STRINGs that
 * hold DER (PKCS#12 nests DER in octet strings four levels deep). For aiming mutations at length fields and tags.
 */
export function derHeaders(bytes: Uint8Array, limit = 8192): DerHeader[] {
  const found: DerHeader[] = [];
  const ranges: Array<[number, number]> = [[0, bytes.length]];
  while (ranges.length > 0 && found.length < limit) {
    const [start, end] = ranges.pop()!;
    let pos = start;
    while (pos + 2 <= end && found.length < limit) {
      const tag = bytes[pos]!;
      const first = bytes[pos + 1]!;
      let length: number | undefined;
      let lengthSize = 1;
      if (first === 0x80) length = undefined;
      else if (first < 0x80) length = first;
      else {
        const count = first & 0x7f;
        if (count > 4 || pos + 2 + count > end) break;
        length = 0;
        for (let i = 0; i < count; i++) length = length * 256 + bytes[pos + 2 + i]!;
        lengthSize = 1 + count;
      }
      const contentOffset = pos + 1 + lengthSize;
      const header: DerHeader = { offset: pos, tag, lengthOffset: pos + 1, contentOffset, length };
      if (length === undefined) {
        if (!(tag & 0x20)) break;
        found.push(header);
        ranges.push([contentOffset, end]);
        break;
      }
      if (contentOffset + length > end) break;
      found.push(header);
      if (tag & 0x20 || (tag === 0x04 && bytes[contentOffset] === 0x30)) ranges.push([contentOffset, contentOffset + length]);
      pos = contentOffset + length;
    }
  }
  return found;
}

// ------------------------------------------------------------------------------------ structure-aware editing

/** A decoded DER element: constructed (children), an OCTET STRING or `[0]` holding DER (inner), or raw content. */
interface DerNode {
  tag: number;
  indefinite: boolean;
  children?: DerNode[];
  inner?: DerNode;
  content?: Buffer;
}

/** Strict decoding of files we made ourselves (bounded depth); undefined when the bytes are not one DER element. */
function decodeTree(bytes: Buffer, depth = 0): DerNode | undefined {
  if (depth > 48) return undefined;
  const element = (pos: number, end: number): { node: DerNode; next: number } | undefined => {
    if (pos + 2 > end) return undefined;
    const tag = bytes[pos]!;
    const first = bytes[pos + 1]!;
    if ((tag & 0x1f) === 0x1f || first === 0x80 || first === 0xff) return undefined;
    let length = first;
    let at = pos + 2;
    if (first > 0x80) {
      const count = first & 0x7f;
      if (count > 3 || at + count > end) return undefined;
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + bytes[at + i]!;
      at += count;
    }
    if (at + length > end) return undefined;
    const content = bytes.subarray(at, at + length);
    const node: DerNode = { tag, indefinite: false };
    if (tag & 0x20) {
      node.children = [];
      let p = 0;
      while (p < content.length) {
        const child = decodeIn(content, p, depth + 1);
        if (!child) return undefined;
        node.children.push(child.node);
        p = child.next;
      }
    } else {
      const inner = (tag === 0x04 || tag === 0x80) && content[0] === 0x30 ? decodeTree(content, depth + 1) : undefined;
      if (inner) node.inner = inner;
      else node.content = Buffer.from(content);
    }
    return { node, next: at + length };
  };
  const whole = element(0, bytes.length);
  return whole && whole.next === bytes.length ? whole.node : undefined;
}

function decodeIn(bytes: Buffer, pos: number, depth: number): { node: DerNode; next: number } | undefined {
  // Children are decoded as whole elements of the slice that starts at pos.
  const headerEnd = (): number | undefined => {
    const first = bytes[pos + 1];
    if (first === undefined) return undefined;
    if (first < 0x80) return pos + 2 + first;
    const count = first & 0x7f;
    if (count === 0 || count > 3 || pos + 2 + count > bytes.length) return undefined;
    let length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[pos + 2 + i]!;
    return pos + 2 + count + length;
  };
  const end = headerEnd();
  if (end === undefined || end > bytes.length) return undefined;
  const node = decodeTree(bytes.subarray(pos, end), depth);
  return node && { node, next: end };
}

function encodeTree(node: DerNode): Buffer {
  let body: Buffer;
  if (node.children) body = Buffer.concat(node.children.map(encodeTree));
  else if (node.inner) body = encodeTree(node.inner);
  else body = node.content ?? Buffer.alloc(0);
  if (node.indefinite && node.tag & 0x20) return Buffer.concat([Buffer.from([node.tag, 0x80]), body, Buffer.alloc(2)]);
  return tlv(node.tag, body);
}

interface Located {
  node: DerNode;
  parent: DerNode | undefined;
}

function flatten(root: DerNode): Located[] {
  const out: Located[] = [];
  const stack: Located[] = [{ node: root, parent: undefined }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    out.push(item);
    for (const child of [...(item.node.children ?? [])].reverse()) stack.push({ node: child, parent: item.node });
    if (item.node.inner) stack.push({ node: item.node.inner, parent: item.node });
  }
  return out;
}

const cloneTree = (node: DerNode): DerNode => ({
  tag: node.tag,
  indefinite: node.indefinite,
  ...(node.children ? { children: node.children.map(cloneTree) } : {}),
  ...(node.inner ? { inner: cloneTree(node.inner) } : {}),
  ...(node.content ? { content: Buffer.from(node.content) } : {}),
});

function replaceInPlace(target: DerNode, source: DerNode): void {
  delete target.children;
  delete target.inner;
  delete target.content;
  Object.assign(target, source);
}

/** An edit of one element (chosen by index, modulo the element count) that keeps every enclosing length consistent. */
export type TreeEdit =
  | { kind: 'content'; node: number; bytes: Uint8Array }
  | { kind: 'integer'; node: number; bytes: Uint8Array }
  | { kind: 'oid'; node: number; bytes: Uint8Array }
  | { kind: 'tag'; node: number; tag: number }
  | { kind: 'drop'; node: number }
  | { kind: 'duplicate'; node: number; times: number }
  | { kind: 'swap'; node: number; other: number }
  | { kind: 'wrap'; node: number; depth: number; tag: number }
  | { kind: 'indefinite'; node: number }
  | { kind: 'chunk'; node: number; size: number };

function applyTreeEdit(root: DerNode, edit: TreeEdit): void {
  const all = flatten(root);
  const at = all[edit.node % all.length]!;
  const { node, parent } = at;
  switch (edit.kind) {
    case 'content':
    case 'integer':
      replaceInPlace(node, { tag: edit.kind === 'integer' ? 0x02 : node.tag & ~0x20, indefinite: false, content: Buffer.from(edit.bytes) });
      break;
    case 'oid':
      replaceInPlace(node, { tag: 0x06, indefinite: false, content: Buffer.from(edit.bytes) });
      break;
    case 'tag':
      // Keep the constructed bit consistent with what the node holds, so the edit stays well-formed DER.
      node.tag = node.children ? edit.tag | 0x20 : edit.tag & ~0x20;
      break;
    case 'drop':
      if (parent?.children) parent.children.splice(parent.children.indexOf(node), 1);
      else if (parent) replaceInPlace(parent, { tag: parent.tag, indefinite: false, content: Buffer.alloc(0) });
      break;
    case 'duplicate':
      if (parent?.children) parent.children.splice(parent.children.indexOf(node), 0, ...Array.from({ length: edit.times }, () => cloneTree(node)));
      break;
    case 'swap': {
      const other = all[edit.other % all.length]!.node;
      const [a, b] = [cloneTree(node), cloneTree(other)];
      replaceInPlace(node, b);
      replaceInPlace(other, a);
      break;
    }
    case 'wrap': {
      let wrapped = cloneTree(node);
      for (let i = 0; i < edit.depth; i++) wrapped = { tag: edit.tag | 0x20, indefinite: i % 2 === 1, children: [wrapped] };
      replaceInPlace(node, wrapped);
      break;
    }
    case 'indefinite':
      if (node.children) node.indefinite = !node.indefinite;
      break;
    case 'chunk': {
      // Windows writes OCTET STRINGs as constructed chunks (BER): a valid file must stay valid.
      const bytes = node.inner ? encodeTree(node.inner) : node.content;
      if (!bytes || node.tag & 0x20) break;
      const size = Math.max(1, edit.size);
      const chunks: DerNode[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push({ tag: 0x04, indefinite: false, content: bytes.subarray(i, i + size) });
      replaceInPlace(node, { tag: node.tag | 0x20, indefinite: edit.size % 2 === 0, children: chunks });
      break;
    }
  }
}

export function applyTreeEdits(bytes: Buffer, edits: readonly TreeEdit[]): Buffer {
  const root = decodeTree(bytes);
  if (!root) return bytes;
  for (const edit of edits) applyTreeEdit(root, edit);
  return encodeTree(root);
}

// ------------------------------------------------------------------------------------------ byte-level editing

export type LengthEdit =
  | { form: 'indefinite' }
  | { form: 'short'; value: number }
  | { form: 'long'; bytes: Uint8Array }
  | { form: 'delta'; delta: number }
  | { form: 'padded'; zeros: number };

export type ByteEdit =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'splice'; at: number; from: number; count: number }
  | { kind: 'length'; header: number; edit: LengthEdit }
  | { kind: 'tag'; header: number; tag: number };

function newLength(header: DerHeader, edit: LengthEdit): Buffer {
  switch (edit.form) {
    case 'indefinite':
      return Buffer.from([0x80]);
    case 'short':
      return Buffer.from([edit.value & 0x7f]);
    case 'long':
      return Buffer.from([0x80 | edit.bytes.length, ...edit.bytes]);
    case 'delta':
      return lengthBytes(Math.max(0, (header.length ?? 0) + edit.delta));
    case 'padded': {
      // Non-minimal but honest (BER allows it): leading zero octets before the real length.
      const minimal = lengthBytes(header.length ?? 0);
      const digits = minimal[0]! < 0x80 ? minimal : minimal.subarray(1);
      return Buffer.from([0x80 | (digits.length + edit.zeros), ...Buffer.alloc(edit.zeros), ...digits]);
    }
  }
}

function applyByteEdit(file: Buffer, edit: ByteEdit): Buffer {
  const size = file.length;
  const pos = (n: number) => (size === 0 ? 0 : n % (size + 1));
  switch (edit.kind) {
    case 'flip': {
      if (size === 0) return file;
      const out = Buffer.from(file);
      out[edit.at % size]! ^= 1 << edit.bit;
      return out;
    }
    case 'set': {
      if (size === 0) return file;
      const out = Buffer.from(file);
      out[edit.at % size] = edit.value;
      return out;
    }
    case 'truncate':
      return file.subarray(0, pos(edit.at));
    case 'insert':
      return Buffer.concat([file.subarray(0, pos(edit.at)), Buffer.from(edit.bytes), file.subarray(pos(edit.at))]);
    case 'delete':
      return Buffer.concat([file.subarray(0, pos(edit.at)), file.subarray(pos(edit.at) + edit.count)]);
    case 'splice': {
      const from = pos(edit.from);
      return Buffer.concat([file.subarray(0, pos(edit.at)), file.subarray(from, from + edit.count), file.subarray(pos(edit.at))]);
    }
    case 'length':
    case 'tag': {
      const headers = derHeaders(file);
      const header = headers[edit.header % Math.max(1, headers.length)];
      if (!header) return file;
      if (edit.kind === 'tag') return Buffer.concat([file.subarray(0, header.offset), Buffer.from([edit.tag]), file.subarray(header.offset + 1)]);
      return Buffer.concat([file.subarray(0, header.lengthOffset), newLength(header, edit.edit), file.subarray(header.contentOffset)]);
    }
  }
}

export const applyByteEdits = (file: Buffer, edits: readonly ByteEdit[]): Buffer => edits.reduce(applyByteEdit, file);

// ================================================================================================ generators

const position = fc.nat({ max: 1 << 20 });
const byte = fc.integer({ min: 0, max: 255 });

/** INTEGER contents: mostly small, sometimes iteration-count bombs, zero, negative, or long. */
const integerContent: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 300_000 }).map((n) => Buffer.from(forge.asn1.integerToDer(n).getBytes(), 'binary')) },
  { weight: 2, arbitrary: fc.constantFrom(0, 1, 3, 255, 2048, 1_000_000, 1_000_001, 0x7fffffff).map((n) => Buffer.from(forge.asn1.integerToDer(n).getBytes(), 'binary')) },
  { weight: 1, arbitrary: fc.constantFrom('', '00', 'ff', '80', '0000000000000001', 'ffffffffffffffffff', '7fffffffffffffff').map((hex) => Buffer.from(hex, 'hex')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }) },
);

/**
 * OBJECT IDENTIFIER contents: a known OID, or one that is not DER — an arc over 2^53, a truncated last arc, a
 * non-minimal arc, nothing at all, random base-128 digits.
 */
const oidContent: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN_OIDS).map(oidBytes) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...KNOWN_OIDS).map(oidBytes), fc.constantFrom('huge', 'truncated', 'padded', 'empty'), fc.integer({ min: 7, max: 40 }))
      .map(([known, how, n]) => {
        if (how === 'huge') return Buffer.concat([Buffer.alloc(n, 0xff), Buffer.from([0x7f])]);
        if (how === 'truncated') return Buffer.concat([known, Buffer.from([0x81])]);
        if (how === 'padded') return Buffer.concat([Buffer.from([known[0]!, 0x80]), known.subarray(1)]);
        return Buffer.alloc(0);
      }),
  },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0x80, max: 0xff }), { maxLength: 16 }).map((high) => Buffer.from([0x2a, ...high, 0x01])) },
);

const lengthEdit: fc.Arbitrary<LengthEdit> = fc.oneof(
  fc.constant<LengthEdit>({ form: 'indefinite' }),
  fc.integer({ min: 0, max: 127 }).map((value): LengthEdit => ({ form: 'short', value })),
  fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 8 }),
    fc.constantFrom('ffffffff', '7fffffff', '0100000000', '00', '0000ffff', 'ff'.repeat(127), '00'.repeat(126) + '05').map((hex) => Buffer.from(hex, 'hex') as Uint8Array),
  ).map((bytes): LengthEdit => ({ form: 'long', bytes })),
  fc.integer({ min: -300, max: 300 }).map((delta): LengthEdit => ({ form: 'delta', delta })),
  fc.integer({ min: 1, max: 4 }).map((zeros): LengthEdit => ({ form: 'padded', zeros })),
);

export const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: byte }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 256 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: position, from: position, count: fc.integer({ min: 1, max: 512 }) }),
  fc.record({ kind: fc.constant('length' as const), header: position, edit: lengthEdit }),
  fc.record({ kind: fc.constant('tag' as const), header: position, tag: byte }),
);

export const treeEdit: fc.Arbitrary<TreeEdit> = fc.oneof(
  fc.record({ kind: fc.constant('content' as const), node: position, bytes: fc.uint8Array({ maxLength: 80 }) }),
  fc.record({ kind: fc.constant('integer' as const), node: position, bytes: integerContent }),
  fc.record({ kind: fc.constant('oid' as const), node: position, bytes: oidContent }),
  fc.record({ kind: fc.constant('tag' as const), node: position, tag: byte }),
  fc.record({ kind: fc.constant('drop' as const), node: position }),
  fc.record({ kind: fc.constant('duplicate' as const), node: position, times: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('swap' as const), node: position, other: position }),
  fc.record({ kind: fc.constant('wrap' as const), node: position, depth: fc.integer({ min: 1, max: 40 }), tag: fc.constantFrom(0x30, 0x31, 0xa0, 0x24) }),
  fc.record({ kind: fc.constant('indefinite' as const), node: position }),
  fc.record({ kind: fc.constant('chunk' as const), node: position, size: fc.integer({ min: 1, max: 700 }) }),
);

/** Random DER-ish trees: random tags, known OIDs and small INTEGERs, definite and indefinite lengths. */
export const derTree: fc.Arbitrary<Buffer> = fc.letrec<{ node: Buffer; primitive: Buffer; constructed: Buffer }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('primitive'), tie('constructed')),
  primitive: fc.oneof(
    fc.record({ tag: byte, content: fc.uint8Array({ maxLength: 48 }) }).map(({ tag, content }) => tlv(tag & ~0x20, Buffer.from(content))),
    oidContent.map((content) => tlv(0x06, Buffer.from(content))),
    integerContent.map((content) => tlv(0x02, Buffer.from(content))),
  ),
  constructed: fc
    .record({ tag: fc.oneof(fc.constantFrom(0x30, 0x31, 0xa0, 0x24), byte), children: fc.array(tie('node'), { maxLength: 5 }), indefinite: fc.boolean() })
    .map(({ tag, children, indefinite }) =>
      indefinite ? Buffer.concat([Buffer.from([tag | 0x20, 0x80]), ...children, Buffer.alloc(2)]) : tlv(tag | 0x20, ...children),
    ),
})).node;

export interface Nesting {
  depth: number;
  form: 'definite' | 'indefinite' | 'mixed' | 'unterminated';
  tag: number;
  /** Where the nest sits: the whole file, the AuthenticatedSafe, a SafeContents, or a bag's value. */
  where: 'file' | 'authSafe' | 'safeContents' | 'bagValue';
}

/** `depth` nested constructed headers around NULL, built in linear time (100,000 levels are a few hundred KiB). */
export function nestedDer({ depth, form, tag }: Pick<Nesting, 'depth' | 'form' | 'tag'>): Buffer {
  // Laid out inside-out, so that each definite length counts what it holds (end-of-contents octets included).
  const prefix: Buffer[] = [];
  const suffix: Buffer[] = [];
  let size = 2;
  for (let level = 0; level < depth; level++) {
    const open = form === 'indefinite' || form === 'unterminated' || (form === 'mixed' && level % 3 === 0);
    if (open) {
      prefix.push(Buffer.from([tag | 0x20, 0x80]));
      if (form !== 'unterminated') suffix.push(Buffer.alloc(2));
      size += form === 'unterminated' ? 2 : 4;
    } else {
      const head = Buffer.concat([Buffer.from([tag | 0x20]), lengthBytes(size)]);
      prefix.push(head);
      size += head.length;
    }
  }
  return Buffer.concat([...prefix.reverse(), Buffer.from([0x05, 0x00]), ...suffix]);
}

/** A nest placed where `where` says, inside an otherwise well-formed PFX with no MAC. */
export function nestedFile(nesting: Nesting): Buffer {
  const nest = nestedDer(nesting);
  const data = (content: Buffer) => tlv(0x30, tlv(0x06, oidBytes(OID.data)), tlv(0xa0, tlv(0x04, content)));
  const pfx = (authSafe: Buffer) => tlv(0x30, tlv(0x02, Buffer.from([3])), data(authSafe));
  switch (nesting.where) {
    case 'file':
      return nest;
    case 'authSafe':
      return pfx(nest);
    case 'safeContents':
      return pfx(tlv(0x30, data(nest)));
    case 'bagValue':
      return pfx(tlv(0x30, data(tlv(0x30, tlv(0x30, tlv(0x06, oidBytes(OID.keyBag)), tlv(0xa0, nest))))));
  }
}

export const nesting: fc.Arbitrary<Nesting> = fc.record({
  depth: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 20, max: 16_000 }), fc.integer({ min: 16_000, max: 100_000 }), fc.constant(100_000)),
  form: fc.constantFrom('definite', 'indefinite', 'mixed', 'unterminated'),
  tag: fc.constantFrom(0x30, 0x31, 0xa0, 0x24, 0x3f, 0xe0),
  where: fc.constantFrom('file', 'authSafe', 'safeContents', 'bagValue'),
});

/** A header whose length field is absurd: up to 127 length octets, all-ones, past the end, or indefinite on a primitive. */
export const hugeLength: fc.Arbitrary<Buffer> = fc
  .record({
    prefix: fc.constantFrom('', '3082ffff', '308400010000', '3080'),
    tag: fc.oneof(fc.constantFrom(0x30, 0x04, 0x02, 0xa0), byte),
    octets: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 127 }), fc.constantFrom('ffffffff', 'ffffffffffffffff', '0100000000', '80000000').map((hex) => Buffer.from(hex, 'hex') as Uint8Array)),
    tail: fc.uint8Array({ maxLength: 256 }),
  })
  .map(({ prefix, tag, octets, tail }) => Buffer.concat([Buffer.from(prefix, 'hex'), Buffer.from([tag, 0x80 | octets.length]), Buffer.from(octets), Buffer.from(tail)]));

/** Passwords: none, empty, ASCII, any Unicode (lone surrogates too), very long. */
export const password: fc.Arbitrary<string | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.constant(''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer({ min: 1000, max: 40_000 }).map((n) => 'p'.repeat(n)),
);

// ================================================================================================ key files

export interface SampleFile {
  label: string;
  bytes: Buffer;
  /** The password it was made with ('' for none). */
  password: string;
}

export interface KeyFileCorpus {
  pfx: SampleFile[];
  byok: SampleFile[];
  /** The key-exchange key the .byok samples were wrapped for. */
  kek: { privateKey: KeyObject; publicKeyPem: string; kid: string };
  /** Raw BYOK ciphertexts (RSA-OAEP + AES key wrap) for that KEK. */
  ciphertexts: Buffer[];
  /** The private keys inside the samples, as PKCS#8 DER: a valid one, a 1024-bit one, an EC one, and junk. */
  keys: Array<{ label: string; pkcs8: Buffer }>;
}

function byokSamples(keys: KeyFileCorpus['keys'], publicKeyPem: string, kid: string): SampleFile[] {
  return keys.map(({ label, pkcs8 }) => ({ label: `byok ${label}`, bytes: wrapForByok(publicKeyPem, kid, pkcs8), password: '' }));
}

/** The corpus with its .byok samples wrapped for another key-exchange key (the one a running vault holds). */
export function withKek(corpus: KeyFileCorpus, publicKeyPem: string, kid: string): KeyFileCorpus {
  return { ...corpus, byok: byokSamples(corpus.keys, publicKeyPem, kid), kek: { ...corpus.kek, publicKeyPem, kid } };
}

const newKeyPair = promisify(generateKeyPair);
export const SAMPLE_PASSWORD = 'Fuzz-Sample-Password-3x9';

/** Valid files (and a few well-formed refusals: 1024-bit, EC, unprotected) to mutate, made by every tool we have. */
export async function buildKeyFileCorpus(): Promise<KeyFileCorpus> {
  const rsa = (bits: number) => newKeyPair('rsa', { modulusLength: bits }).then((pair) => pair.privateKey);
  const [rsa2048, rsa1024, ec, kekKey] = await Promise.all([rsa(2048), rsa(1024), newKeyPair('ec', { namedCurve: 'P-256' }).then((p) => p.privateKey), rsa(2048)]);
  const pw = SAMPLE_PASSWORD;
  const pfx: SampleFile[] = [
    { label: 'forge 3des', bytes: makePfx(rsa2048, pw), password: pw },
    { label: 'forge aes256', bytes: makePfx(rsa2048, pw, { algorithm: 'aes256' }), password: pw },
    { label: 'forge no certificate', bytes: makePfx(rsa2048, pw, { withCertificate: false }), password: pw },
    { label: 'sealed bags, no MAC', bytes: assemblePfx({ password: pw, shroudedKeys: [rsa2048], certificates: [certificateDer(rsa2048)], sealBags: true, mac: false }), password: pw },
    { label: 'shrouded key, no MAC', bytes: assemblePfx({ password: pw, shroudedKeys: [rsa2048], mac: false }), password: pw },
    { label: 'unprotected key bag', bytes: assemblePfx({ password: pw, plainKeys: [rsa2048] }), password: pw },
    { label: 'RSA-1024 with certificate', bytes: makePfx(rsa1024, pw), password: pw },
    { label: 'EC P-256, sealed', bytes: assemblePfx({ password: pw, shroudedKeys: [ec], sealBags: true, mac: false }), password: pw },
    { label: 'generateKeyPfx', bytes: (await generateKeyPfx({ name: 'fuzz', password: pw })).pfx, password: pw },
  ];
  if (hasOpenssl()) {
    try {
      pfx.push({ label: 'openssl 3 default', bytes: makeOpensslPfx(rsa2048, pw), password: pw });
      if (opensslSupportsLegacy(rsa2048)) pfx.push({ label: 'openssl -legacy (RC2, 3DES)', bytes: makeOpensslPfx(rsa2048, pw, ['-legacy']), password: pw });
    } catch {
      // An OpenSSL that cannot make these files only narrows the corpus.
    }
  }
  const kekPublicPem = createPublicKey(kekKey).export({ type: 'spki', format: 'pem' }).toString();
  const kid = 'local-vault:/keys/kek-fuzz-default';
  const kek = { privateKey: kekKey, publicKeyPem: kekPublicPem, kid };
  const pkcs8 = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'der' });
  const keys = [
    { label: 'RSA-2048', pkcs8: pkcs8(rsa2048) },
    { label: 'RSA-1024', pkcs8: pkcs8(rsa1024) },
    { label: 'EC', pkcs8: pkcs8(ec) },
    { label: 'not a key', pkcs8: Buffer.from('30030201', 'hex') },
  ];
  const byok = byokSamples(keys, kekPublicPem, kid);
  const ciphertexts = byok.map((file) => parseByok(file.bytes).ciphertext);
  return { pfx, byok, kek, ciphertexts, keys };
}

export interface KeyFileInput {
  /** Where the bytes came from (a sample's label and how it was changed), for reading a counterexample. */
  origin: string;
  bytes: Buffer;
  password: string | undefined;
}

/** Files for parsePfx: random, DER trees, mutated samples (bytes and structure), nests, huge lengths. */
export function pfxInput(corpus: KeyFileCorpus): fc.Arbitrary<KeyFileInput> {
  const sample = fc.constantFrom(...corpus.pfx);
  const sampleOrPassword = (label: string, bytes: Buffer, samplePassword: string) =>
    fc.oneof({ weight: 3, arbitrary: fc.constant(samplePassword) }, { weight: 2, arbitrary: password }).map((pw): KeyFileInput => ({ origin: label, bytes, password: pw }));
  // The generated sample derives 210,000 iterations twice per parse with a password: keep it to the structure-only runs.
  const cheap = corpus.pfx.filter((s) => s.label !== 'generateKeyPfx');
  const files: fc.Arbitrary<KeyFileInput> = fc.oneof(
    { weight: 1, arbitrary: fc.tuple(fc.uint8Array({ maxLength: 4096 }), password).map(([bytes, pw]) => ({ origin: 'random bytes', bytes: Buffer.from(bytes), password: pw })) },
    { weight: 2, arbitrary: fc.tuple(derTree, password).map(([bytes, pw]) => ({ origin: 'random DER tree', bytes, password: pw })) },
    {
      weight: 5,
      arbitrary: fc
        .record({ s: sample, edits: fc.array(byteEdit, { minLength: 1, maxLength: 4 }) })
        .chain(({ s, edits }) => sampleOrPassword(`${s.label}, byte edits`, applyByteEdits(s.bytes, edits), s.label === 'generateKeyPfx' ? '' : s.password)),
    },
    {
      weight: 5,
      arbitrary: fc
        .record({ s: fc.constantFrom(...cheap), edits: fc.array(treeEdit, { minLength: 1, maxLength: 3 }) })
        .chain(({ s, edits }) => sampleOrPassword(`${s.label}, structure edits`, applyTreeEdits(s.bytes, edits), s.password)),
    },
    { weight: 2, arbitrary: fc.tuple(nesting, password).map(([n, pw]) => ({ origin: `nested ${JSON.stringify(n)}`, bytes: nestedFile(n), password: pw })) },
    { weight: 1, arbitrary: fc.tuple(hugeLength, password).map(([bytes, pw]) => ({ origin: 'huge length field', bytes, password: pw })) },
    { weight: 1, arbitrary: fc.tuple(sample, password).map(([s, pw]) => ({ origin: `${s.label}, intact`, bytes: s.bytes, password: s.label === 'generateKeyPfx' ? undefined : pw })) },
  );
  return files;
}

/** What a successful parsePfx must look like: a loadable RSA-2048 key whose thumbprint and public key agree. */
export function checkOpenedPfx(opened: ReturnType<typeof parsePfx>): void {
  const key = createPrivateKey({ key: opened.pkcs8Der, format: 'der', type: 'pkcs8' });
  if (key.asymmetricKeyType !== 'rsa' || key.asymmetricKeyDetails?.modulusLength !== 2048) violated('accepted a key that is not RSA-2048');
  if (!/^[0-9a-f]{64}$/.test(opened.thumbprint)) violated('thumbprint is not 64 hex digits');
  if (!opened.publicKeyPem.startsWith('-----BEGIN PUBLIC KEY-----')) violated('public key is not SPKI PEM');
}

// ------------------------------------------------------------------------------------------------------- BYOK

const hostileJsonText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => JSON.stringify('x'.repeat(n))) },
  { weight: 1, arbitrary: fc.constantFrom('null', 'true', '[]', '{}', '1e400', '-0', '""', '" "', '{"__proto__":{"polluted":true}}', '{"constructor":{"prototype":{"polluted":true}}}') },
);

/** JSON object text from entries whose values are already JSON text (so that `__proto__` keys survive as written). */
const objectText = (entries: ReadonlyArray<readonly [string, string | undefined]>): string =>
  `{${entries.filter((e): e is readonly [string, string] => e[1] !== undefined).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

const pollution = fc.array(fc.tuple(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'), hostileJsonText), { maxLength: 2 });

const base64ish: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('base64')),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('', '=', '==', 'A', 'AB=', 'AB==', 'ABC=', 'A===', '====', 'ab cd', 'ab\ncd', '%%%', 'AAAA'.repeat(3) + '=A', '\u0000'),
);

function byokInput(corpus: KeyFileCorpus): fc.Arbitrary<KeyFileInput> {
  const sample = fc.constantFrom(...corpus.byok);
  const valid = JSON.parse(corpus.byok[0]!.bytes.toString('utf8')) as { ciphertext: string };
  const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 4 });
  const header = fc.oneof(
    hostileJsonText,
    fc
      .record({
        kid: maybe(fc.oneof(fc.constant(JSON.stringify(corpus.kek.kid)), hostileJsonText, fc.integer({ min: 1000, max: 2000 }).map((n) => JSON.stringify('k'.repeat(n))))),
        alg: maybe(fc.oneof(fc.constant('"dir"'), hostileJsonText)),
        enc: maybe(fc.oneof(fc.constant('"CKM_RSA_AES_KEY_WRAP"'), hostileJsonText)),
        extra: pollution,
      })
      .map(({ kid, alg, enc, extra }) => objectText([['kid', kid], ['alg', alg], ['enc', enc], ...extra])),
  );
  const shaped = fc
    .record({
      schema_version: maybe(fc.oneof(fc.constant('"1.0.0"'), hostileJsonText)),
      header: maybe(header),
      ciphertext: maybe(fc.oneof(fc.constant(JSON.stringify(valid.ciphertext)), base64ish.map((s) => JSON.stringify(s)), hostileJsonText)),
      generator: maybe(hostileJsonText),
      extra: pollution,
    })
    .map(({ extra, ...fields }) => objectText([...Object.entries(fields), ...extra]));
  const text = (origin: string, arb: fc.Arbitrary<string>) => arb.map((t): KeyFileInput => ({ origin, bytes: Buffer.from(t, 'utf8'), password: undefined }));
  return fc.oneof(
    { weight: 2, arbitrary: text('random JSON', fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null')) },
    { weight: 6, arbitrary: text('byok-shaped JSON', shaped) },
    { weight: 4, arbitrary: fc.record({ s: sample, edits: fc.array(byteEdit, { minLength: 1, maxLength: 4 }) }).map(({ s, edits }) => ({ origin: `${s.label}, byte edits`, bytes: applyByteEdits(s.bytes, edits), password: undefined })) },
    {
      weight: 1,
      arbitrary: text(
        'deep JSON',
        fc
          .record({ depth: fc.oneof(fc.integer({ min: 1, max: 6_000 }), fc.integer({ min: 1, max: 100_000 })), open: fc.constantFrom('[', '{"a":', '{"header":') })
          .map(({ depth, open }) => open.repeat(depth) + '1' + (open === '[' ? ']' : '}').repeat(depth)),
      ),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => ({ origin: 'random bytes', bytes: Buffer.from(b), password: undefined })) },
    { weight: 1, arbitrary: sample.map((s) => ({ origin: `${s.label} with a BOM`, bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), s.bytes]), password: undefined })) },
    { weight: 1, arbitrary: fc.tuple(sample, fc.integer({ min: 1, max: 4096 })).map(([s, extra]) => ({ origin: `${s.label}, padded past 64 KiB`, bytes: Buffer.concat([s.bytes, Buffer.alloc(MAX_KEY_FILE_BYTES - s.bytes.length + extra, 0x20)]), password: undefined })) },
  );
}

// ================================================================================================ targets

export interface FuzzParams {
  numRuns?: number;
  seed?: number;
  /** A counterexample path from an earlier failure: replays it. */
  path?: string;
  /** Stop generating after this long (the run counts as passed unless a run failed). */
  timeLimitMs?: number;
}

/** Watches a check: called before each run, and with each run's outcome ('accepted' or the refusal's code). */
export interface Observer {
  beforeRun?: () => void;
  outcome?: (what: string) => void;
}

function checkParameters(params: FuzzParams): fc.Parameters<unknown> {
  return {
    // The violation's message belongs in the report (what failed), not only in its cause.
    includeErrorInReport: true,
    ...(params.numRuns !== undefined ? { numRuns: params.numRuns } : {}),
    ...(params.seed !== undefined ? { seed: params.seed } : {}),
    ...(params.path !== undefined ? { path: params.path } : {}),
    ...(params.timeLimitMs !== undefined ? { plugins: [fc.interruptAfterTimeLimit(params.timeLimitMs)] } : {}),
  };
}

/** One property over one generator: checked by jest (a few hundred runs) and by the fuzz script (many more). */
export interface SyncTarget {
  name: string;
  check: (params: FuzzParams, observer?: Observer) => fc.RunDetails<unknown>;
}

function syncTarget<T>(name: string, arbitrary: fc.Arbitrary<T>, predicate: (input: T) => string): SyncTarget {
  return {
    name,
    check: (params, observer) =>
      fc.check(
        fc.property(arbitrary, (input) => {
          observer?.beforeRun?.();
          observer?.outcome?.(predicate(input));
        }),
        checkParameters(params) as fc.Parameters<[T]>,
      ) as fc.RunDetails<unknown>,
  };
}

const outcomeOf = (result: { value: unknown } | { error: CmkError }): string => ('error' in result ? result.error.code : 'accepted');

/** The vault's side of a .byok: unwrap with the KEK, load the PKCS#8, judge the key (vault/local.ts importByok). */
function openByok(corpus: KeyFileCorpus, ciphertext: Buffer): KeyObject {
  const key = privateKeyFromPkcs8(unwrapByokCiphertext(corpus.kek.privateKey, ciphertext));
  assertSupportedKey(key);
  return key;
}

const fileName: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc
    .tuple(fc.string({ maxLength: 12 }), fc.constantFrom('.pfx', '.PFX', '.p12', '.P12', '.byok', '.BYOK', '.ByOk', '.pem', '.pfx.', '.pfx ', '.pfx\u0000', '.pf\u0445', '.pfx.byok', '.byok.pfx', ''))
    .map(([base, ext]) => base + ext),
);

/** Every key-file parser over its generators (DESIGN.md §6, Hostile input). */
export function keyFileTargets(corpus: KeyFileCorpus): SyncTarget[] {
  return [
    syncTarget('parsePfx', pfxInput(corpus), ({ bytes, password: pw }) => outcomeOf(expectStable(() => parsePfx(bytes, pw), KEY_FILE_CODES, checkOpenedPfx))),
    syncTarget('parseByok', byokInput(corpus), ({ bytes }) => {
      const parsed = expectStable(() => parseByok(bytes), KEY_FILE_CODES, (transfer) => {
        if (typeof transfer.kid !== 'string' || transfer.kid.trim() === '' || transfer.kid.length > 1024) violated('accepted a bad kid');
        if (!Buffer.isBuffer(transfer.ciphertext) || transfer.ciphertext.length === 0) violated('accepted an empty ciphertext');
      });
      // What parses goes on to the vault: the whole pipeline must refuse with a stable code too.
      return outcomeOf('value' in parsed ? expectStable(() => openByok(corpus, parsed.value.ciphertext), KEY_FILE_CODES) : parsed);
    }),
    syncTarget(
      'unwrapByokCiphertext',
      fc.oneof(
        fc.record({ c: fc.constantFrom(...corpus.ciphertexts), edits: fc.array(byteEdit, { minLength: 1, maxLength: 3 }) }).map(({ c, edits }) => applyByteEdits(c, edits)),
        fc.integer({ min: 0, max: 80 }).chain((blocks) => fc.uint8Array({ minLength: 256 + blocks * 8, maxLength: 256 + blocks * 8 })).map((b) => Buffer.from(b)),
        fc.uint8Array({ maxLength: 1200 }).map((b) => Buffer.from(b)),
      ),
      (ciphertext) => outcomeOf(expectStable(() => openByok(corpus, ciphertext), KEY_FILE_CODES)),
    ),
    syncTarget('detectKeyFileKind', fileName, (name) => {
      const extension = extname(name).toLowerCase();
      const expected = extension === '.pfx' || extension === '.p12' ? 'pfx' : extension === '.byok' ? 'byok' : undefined;
      const result = expectStable(() => detectKeyFileKind(name), ['INVALID_KEY_FILE']);
      if ('value' in result && result.value !== expected) violated(`${JSON.stringify(name)} taken for a .${result.value}`);
      if ('error' in result && expected) violated(`${JSON.stringify(name)} refused`);
      return outcomeOf(result);
    }),
  ];
}

// ================================================================================================ API

export interface ApiRoute {
  method: 'POST';
  /** OpenAPI template: `/v1/tenants/{tenant}/keys/upload`. */
  path: string;
  fields: string[];
}

/** The POST routes of the running API, from its own OpenAPI document (built from its route table). */
export function postRoutesOf(openapi: { paths?: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> } }>> }): ApiRoute[] {
  return Object.entries(openapi.paths ?? {}).flatMap(([path, methods]) => {
    const post = methods.post;
    if (!post) return [];
    return [{ method: 'POST' as const, path, fields: Object.keys(post.requestBody?.content?.['application/json']?.schema?.properties ?? {}) }];
  });
}

/** What the API fuzz needs to know of the tenant it made first. */
export interface ApiWorld {
  tenant: string;
  displayName: string;
  env: string;
  /** A global administrator, the environment's system administrator, a second (service) administrator. */
  admin: string;
  sysadmin: string;
  second: string;
  corpus: KeyFileCorpus;
  request: (method: string, path: string, options: { body?: unknown; as?: string }) => Promise<ApiResult>;
}

/**
 * Whether the password's text also went in another field or the path (generators, and shrinking, can make them equal):
 * a refusal quoting that other field (e.g. an invalid region) is not an echo of the password.
 */
function sentElsewhere(request: ApiRequest, secret: string): boolean {
  if (Object.values(request.params).some((v) => v?.includes(secret))) return true;
  try {
    const body = JSON.parse(request.body ?? '{}') as Record<string, unknown>;
    return Object.entries(body).some(([field, value]) => field !== 'password' && JSON.stringify(value).includes(secret));
  } catch {
    return false;
  }
}

export interface ApiRequest {
  route: string;
  method: string;
  /** As sent (percent-encoded). */
  path: string;
  /** The decoded path parameters, when they decode. */
  params: Record<string, string | undefined>;
  body: string | undefined;
  as: string | undefined;
  /** A password sent in the body, which no answer may echo. */
  secret?: string;
}

const STRANGER = 'eve@evil.example';
export const BODY_LIMITS = [16 * 1024, 96 * 1024, 8 * 1024 * 1024] as const;

/** A path segment: the real one, another valid ID, an ID outside the grammar, or percent-encoded junk. */
function segment(real: string): fc.Arbitrary<string> {
  const invalidId = fc.oneof(
    fc.constantFrom('Upper', '-lead', 'a'.repeat(64), 'a_b', 'a.b', ' ', 'é', 'a b', 'x'.repeat(300), '0'.repeat(63) + '-'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }),
  );
  const junk = fc.oneof(
    fc.constantFrom('%', '%z', '%zz', '%C0%80', '%ED%A0%80', '%FF', '%00', '%2F', '%2e%2e', '..', '.', '%2e', '%25', '%u0041', '%E2%82', 'a%'),
    fc.array(fc.oneof(fc.constantFrom('%', '%2', '%C3', '%A9', '%00', '%FF', '%0A'), fc.stringMatching(/^[a-z0-9-]{1,4}$/)), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('')),
  );
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant(real) },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/) },
    { weight: 2, arbitrary: invalidId.map((s) => encodeURIComponent(s)) },
    { weight: 2, arbitrary: junk },
  );
}

const decodeSegment = (raw: string): string | undefined => {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
};

/**
 * Values for a field, by name, as JSON text: mostly plausible (so that hostile bodies get past the first check and reach
 * the deeper ones), sometimes junk of the right type, sometimes any JSON at all.
 */
function fieldValue(world: ApiWorld, field: string): fc.Arbitrary<string> {
  const str = (a: fc.Arbitrary<string>) => a.map((s) => JSON.stringify(s));
  const id = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
  const email = fc.oneof(fc.constantFrom(world.second, world.sysadmin, STRANGER), fc.emailAddress());
  const badEmail = fc.constantFrom('not-an-email', '@', 'a@b', 'a@-b.example', `${'x'.repeat(70)}@a.example`, 'a@b.example:global', ' a@b.example');
  const metadata = fc
    .array(fc.tuple(fc.oneof(fc.constantFrom('encoding', '__proto__', 'constructor'), fc.string({ maxLength: 8 })), base64ish), { maxLength: 3 })
    .map((entries) => objectText(entries.map(([k, v]) => [k, JSON.stringify(v)] as const)));
  const payload = fc.oneof(
    fc.tuple(fc.option(metadata, { nil: undefined }), fc.option(base64ish, { nil: undefined })).map(([m, d]) => objectText([['metadata', m], ['data', d === undefined ? undefined : JSON.stringify(d)]])),
    fc.tuple(fc.constantFrom('__proto__', 'metadata', 'data'), hostileJsonText).map(([k, v]) => objectText([[k, v]])),
    hostileJsonText,
  );
  const values: Record<string, { good: fc.Arbitrary<string>; junk: fc.Arbitrary<string> }> = {
    tenant: { good: str(fc.oneof(fc.constant(world.tenant), id)), junk: str(fc.string({ maxLength: 70 })) },
    env: { good: str(fc.oneof(fc.constant(world.env), id)), junk: str(fc.string({ maxLength: 70 })) },
    region: { good: str(fc.constantFrom('default', 'emea')), junk: str(fc.oneof(fc.constantFrom('Default', '', 'a'.repeat(64)), fc.string({ maxLength: 70 }))) },
    name: { good: str(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,30}$/)), junk: str(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 120 }), fc.constant('k'.repeat(101)))) },
    confirm: { good: str(fc.constant(world.displayName)), junk: str(fc.string({ maxLength: 40 })) },
    admins: {
      good: fc.array(fc.record({ email, role: fc.constantFrom('global', 'service') }).map((a) => JSON.stringify(a)), { minLength: 1, maxLength: 3 }).map((list) => `[${list.join(',')}]`),
      junk: fc
        .array(fc.oneof(fc.record({ email: fc.oneof(email, badEmail), role: fc.constantFrom('global', 'service', 'root', '') }).map((a) => JSON.stringify(a)), hostileJsonText), { maxLength: 4 })
        .map((list) => `[${list.join(',')}]`),
    },
    change: { good: str(fc.constantFrom('add', 'remove')), junk: str(fc.constantFrom('Add', 'replace', '', 'add ')) },
    email: { good: str(email), junk: str(badEmail) },
    admin: { good: str(email), junk: str(badEmail) },
    role: { good: str(fc.constantFrom('global', 'service')), junk: str(fc.constantFrom('operator', '', 'GLOBAL')) },
    text: { good: str(fc.string({ minLength: 1, maxLength: 50 })), junk: str(fc.constantFrom('', 'x'.repeat(10_001))) },
    password: {
      good: str(fc.oneof(fc.constant(SAMPLE_PASSWORD), fc.string({ minLength: 12, maxLength: 40 }))),
      junk: str(fc.oneof(fc.string({ maxLength: 11 }), fc.string({ unit: 'binary', minLength: 12, maxLength: 20 }))),
    },
    fileName: { good: str(fc.constantFrom('key.pfx', 'key.byok', 'KEY.P12')), junk: str(fileName) },
    file: { good: fc.oneof(pfxInput(world.corpus), byokInput(world.corpus)).map((f) => JSON.stringify(f.bytes.toString('base64'))), junk: str(base64ish) },
    action: { good: str(fc.constantFrom(...ACTIONS)), junk: str(fc.string({ maxLength: 200 })) },
    operation: { good: str(fc.constant('lock')), junk: str(fc.constantFrom('unlock', 'LOCK', '')) },
    challenge: { good: str(fc.constant('eyJhbGciOiJub25lIn0.e30.')), junk: str(fc.oneof(fc.string({ maxLength: 80 }), base64ish)) },
    signature: { good: str(fc.uint8Array({ minLength: 256, maxLength: 256 }).map((b) => Buffer.from(b).toString('base64'))), junk: str(base64ish) },
    backupId: { good: str(id), junk: str(fc.oneof(fc.string({ maxLength: 40 }), fc.constant('../../etc/passwd'))) },
    payloads: {
      good: fc.array(payload, { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
      junk: fc.oneof(fc.constant(`[${'{},'.repeat(1000)}{}]`), hostileJsonText),
    },
  };
  const known = values[field];
  if (!known) return hostileJsonText;
  return fc.oneof({ weight: 8, arbitrary: known.good }, { weight: 1, arbitrary: known.junk }, { weight: 1, arbitrary: hostileJsonText });
}

/** A key file with the name and password that go with it, so that uploads reach the parsers (as JSON text values). */
function keyFileFields(world: ApiWorld): fc.Arbitrary<Record<string, string | undefined>> {
  const text = (value: string | undefined) => (value === undefined ? undefined : JSON.stringify(value));
  return fc.oneof(
    pfxInput(world.corpus).map((f) => ({ fileName: text('key.pfx'), file: text(f.bytes.toString('base64')), password: text(f.password) })),
    byokInput(world.corpus).map((f) => ({ fileName: text('key.byok'), file: text(f.bytes.toString('base64')), password: undefined })),
  );
}

/** Bodies for a route: random JSON, the route's fields with hostile values and pollution keys, text, huge, empty. */
function bodyFor(world: ApiWorld, route: ApiRoute): fc.Arbitrary<string | undefined> {
  const fields = route.fields.length > 0 ? route.fields : ['region'];
  const carriesKeyFile = fields.includes('file') && fields.includes('fileName');
  const shaped = fc
    .record({
      // Mostly every field (the deeper checks need them all), sometimes some of them.
      present: fc.oneof({ weight: 3, arbitrary: fc.constant(fields) }, { weight: 1, arbitrary: fc.subarray(fields) }),
      values: fc.tuple(...fields.map((f) => fieldValue(world, f))),
      keyFile: carriesKeyFile ? fc.option(keyFileFields(world), { nil: undefined, freq: 3 }) : fc.constant(undefined),
      extra: pollution,
    })
    .map(({ present, values, keyFile, extra }) =>
      objectText([...fields.map((f, i) => [f, !present.includes(f) ? undefined : keyFile && f in keyFile ? keyFile[f] : values[i]] as const), ...extra]),
    );
  return fc.oneof(
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 10, arbitrary: shaped },
    { weight: 1, arbitrary: fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.constantFrom('{', '{"a":', '[1,]', 'nul', '{"a":1}{', '\u0000', '{"a":"\\ud800"}')) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...BODY_LIMITS.slice(0, 2)), fc.integer({ min: -16, max: 512 }), fc.boolean())
        .map(([limit, delta, json]) => (json ? JSON.stringify({ [fields[0]!]: 'x'.repeat(limit + delta) }) : 'x'.repeat(limit + delta))),
    },
    { weight: 1, arbitrary: fc.constantFrom('', undefined, '{}', '[]', 'null') },
  );
}

/** Who may use a route: the operator creates tenants and runs the codec; the tenant's administrator does the rest. */
const usualCaller = (world: ApiWorld, route: ApiRoute): string | undefined => (route.path === '/v1/tenants' || route.path.startsWith('/codec/') ? undefined : world.admin);

/** A request to `route` as some caller (mostly the tenant's administrator), with hostile path segments and body. */
export function requestFor(world: ApiWorld, route: ApiRoute): fc.Arbitrary<ApiRequest> {
  const names = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  const real = (name: string) => (name === 'tenant' ? world.tenant : name === 'env' ? world.env : 'x');
  return fc
    .record({
      segments: fc.tuple(...names.map((name) => segment(real(name)))),
      body: bodyFor(world, route),
      as: fc.oneof({ weight: 6, arbitrary: fc.constant(usualCaller(world, route)) }, { weight: 1, arbitrary: fc.constantFrom(undefined, world.admin, world.sysadmin, STRANGER) }),
    })
    .map(({ segments, body, as }) => {
      let path = route.path;
      const params: Record<string, string | undefined> = {};
      names.forEach((name, i) => {
        path = path.replace(`{${name}}`, segments[i]!);
        params[name] = decodeSegment(segments[i]!);
      });
      const secret = body && /"password":("(?:[^"\\]|\\.){12,}")/.exec(body)?.[1];
      return { route: route.path, method: route.method, path, params, body, as, ...(secret ? { secret: JSON.parse(secret) as string } : {}) };
    });
}

/** Paths that match no route, or match one with junk: extra, missing and encoded segments. */
export function strayPath(world: ApiWorld, routes: ApiRoute[]): fc.Arbitrary<ApiRequest> {
  const junkSegment = fc.oneof(segment('v1'), fc.constantFrom('v1', 'tenants', world.tenant, 'environments', world.env, 'keys', 'codec', ''));
  return fc
    .record({
      base: fc.constantFrom(...routes.map((r) => r.path)),
      cut: fc.integer({ min: 0, max: 6 }),
      extra: fc.array(junkSegment, { maxLength: 3 }),
      method: fc.constantFrom('POST', 'GET', 'PUT', 'DELETE', 'PATCH'),
      body: fc.option(hostileJsonText, { nil: undefined }),
    })
    .map(({ base, cut, extra, method, body }) => {
      const parts = base.replace('{tenant}', world.tenant).replace('{env}', world.env).split('/').filter(Boolean);
      const path = `/${[...parts.slice(0, Math.max(1, parts.length - cut)), ...extra].join('/')}`;
      return { route: 'stray', method, path, params: {}, body: method === 'GET' ? undefined : body, as: world.admin };
    });
}

/** How long one request may take before it counts as a hang (a key generation takes about a second). */
export const REQUEST_TIMEOUT_MS = 60_000;

/** Checks one answer: < 500; 200 with a JSON object, or `{error:{code,message}}` with a stable code and its status. */
export function checkApiAnswer(request: ApiRequest, res: ApiResult): 'accepted' | 'refused' {
  const where = `${request.method} ${request.path.slice(0, 200)}`;
  if (res.status >= 500) violated(`${where} answered ${res.status}: ${res.text.slice(0, 300)}`);
  if (res.status === 200) {
    if (typeof res.body !== 'object' || res.body === null || res.text.trim() === '') violated(`${where} answered 200 without a JSON body`);
    return 'accepted';
  }
  const error = (res.body as { error?: { code?: unknown; message?: unknown } }).error;
  if (!error || Object.keys(res.body).join() !== 'error' || Object.keys(error).sort().join() !== 'code,message') violated(`${where} answered ${res.status} ${res.text.slice(0, 300)}: not {error:{code,message}}`);
  const { code, message } = error as { code: unknown; message: unknown };
  if (!(ERROR_CODES as readonly unknown[]).includes(code)) violated(`${where} answered code ${String(code)}, not a stable code`);
  if (typeof message !== 'string' || message.trim() === '') violated(`${where} answered ${String(code)} without a message`);
  const expected = httpStatusOf(code as ErrorCode);
  if (res.status !== expected && !(res.status === 405 && code === 'NOT_FOUND')) violated(`${where} answered ${String(code)} with HTTP ${res.status}, not ${expected}`);
  if (request.secret && (message as string).includes(request.secret) && !sentElsewhere(request, request.secret)) violated(`${where}: the refusal echoes the password`);
  return 'refused';
}

/** Sends one request; no answer within REQUEST_TIMEOUT_MS is a violation (a hang), and so is a dropped connection. */
export async function send(world: ApiWorld, request: ApiRequest): Promise<ApiResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PropertyViolation(`${request.method} ${request.path.slice(0, 200)}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)), REQUEST_TIMEOUT_MS);
  });
  const answer = world.request(request.method, request.path, { body: request.body, as: request.as });
  // Once timed out, the request's own late failure must not surface as an unhandled rejection.
  answer.catch(() => undefined);
  try {
    return await Promise.race([answer, timeout]);
  } catch (err) {
    if (err instanceof PropertyViolation) throw err;
    throw new PropertyViolation(`${request.method} ${request.path.slice(0, 200)}: no HTTP answer (${err instanceof Error ? `${err.message} ${String((err as { cause?: unknown }).cause ?? '')}` : String(err)})`);
  } finally {
    clearTimeout(timer);
  }
}

export interface AsyncTarget {
  name: string;
  check: (params: FuzzParams, observer?: Observer) => Promise<fc.RunDetails<unknown>>;
}

/** Requests accepted during a fuzz (200): the only ones allowed to have changed anything. */
export type AcceptedLog = Array<{ route: string; params: Record<string, string | undefined>; as: string | undefined; body: Record<string, unknown> }>;

/** One target per POST route, plus stray paths. Accepted requests are appended to `accepted`. */
export function apiTargets(world: ApiWorld, routes: ApiRoute[], accepted: AcceptedLog): AsyncTarget[] {
  const target = (name: string, arbitrary: fc.Arbitrary<ApiRequest>): AsyncTarget => ({
    name,
    check: (params, observer) =>
      fc.check(
        fc.asyncProperty(arbitrary, async (request) => {
          observer?.beforeRun?.();
          const res = await send(world, request);
          const verdict = checkApiAnswer(request, res);
          if (verdict === 'accepted') accepted.push({ route: request.route, params: request.params, as: request.as, body: res.body });
          observer?.outcome?.(verdict === 'accepted' ? 'accepted' : String((res.body.error as { code?: unknown }).code));
        }),
        checkParameters(params) as fc.Parameters<[ApiRequest]>,
      ) as Promise<fc.RunDetails<unknown>>,
  });
  return [...routes.map((route) => target(`POST ${route.path}`, requestFor(world, route))), target('stray paths', strayPath(world, routes))];
}

/** Routes whose acceptance may change `key show`, and environment routes whose acceptance may change `env list`. */
const KEY_CHANGING = /\/(keys\/(generate|upload|rollback|reactivate|activate)|lock)$/;
const ENV_CHANGING = /\/environments\/\{env\}\/(apply|revert|rekey|unlock|delete|backup|restore)$/;

/**
 * What accepted requests may have changed for the world's tenant: its key, environments they named, environments they
 * created. Everything else must read the same after the fuzz as before.
 */
export function explainedChanges(world: ApiWorld, accepted: AcceptedLog): { keyMayChange: boolean; envs: Set<string>; created: Set<string> } {
  const mine = accepted.filter((a) => a.params.tenant === world.tenant);
  const keyMayChange = mine.some((a) => KEY_CHANGING.test(a.route));
  const envs = new Set(mine.filter((a) => ENV_CHANGING.test(a.route)).map((a) => a.params.env ?? ''));
  const created = new Set([
    ...mine.filter((a) => a.route === '/v1/tenants/{tenant}/environments').map((a) => String((a.body.environment as { id?: unknown } | undefined)?.id ?? '')),
    // `env create --from-file`: every ID its answer lists.
    ...mine.filter((a) => a.route === '/v1/tenants/{tenant}/environments/bulk').flatMap((a) => (Array.isArray(a.body.environments) ? a.body.environments.map(String) : [])),
  ]);
  return { keyMayChange, envs, created };
}

/** `env list` entries that accepted requests cannot explain having changed (an empty list is the property). */
export function unexplainedEnvChanges(
  before: Array<Record<string, unknown>>,
  after: Array<Record<string, unknown>>,
  changes: ReturnType<typeof explainedChanges>,
): string[] {
  const problems: string[] = [];
  const byId = new Map(after.map((e) => [String(e.id), e]));
  for (const env of before) {
    const id = String(env.id);
    if (changes.envs.has(id) || changes.keyMayChange) continue;
    if (JSON.stringify(byId.get(id)) !== JSON.stringify(env)) problems.push(`environment ${id} changed: ${JSON.stringify(env)} → ${JSON.stringify(byId.get(id))}`);
  }
  for (const env of after) {
    const id = String(env.id);
    if (!before.some((e) => String(e.id) === id) && !changes.created.has(id)) problems.push(`environment ${id} appeared though no accepted request created it`);
  }
  return problems;
}

