/**
 * Property tests over the key-file parsers (DESIGN.md §6, Hostile input): whatever the bytes — random, mutated valid
 * files, deeply nested DER, huge length fields, random JSON — parsePfx, parseByok, the BYOK unwrap and
 * detectKeyFileKind return a valid result or throw a CmkError with an input code, and never hang.
 * The generators are shared with `npm run fuzz` (harness/hostile.ts), which runs them far longer.
 */
import fc from 'fast-check';
import forge from 'node-forge';
import { CmkError } from '../common/errors';
import { parseByok, parsePfx } from '../keyfiles';
import { OID } from '../keyfiles/pfx';
import {
  applyByteEdits,
  applyTreeEdits,
  buildKeyFileCorpus,
  expectStable,
  KEY_FILE_CODES,
  keyFileTargets,
  nestedDer,
  nestedFile,
  SAMPLE_PASSWORD,
  type KeyFileCorpus,
  type Nesting,
} from '../harness/hostile';

/** Runs per target: enough to meet every generator arm many times, small enough for a 2-core CI machine. */
const RUNS: Record<string, number> = { parsePfx: 400, parseByok: 300, unwrapByokCiphertext: 150, detectKeyFileKind: 300 };

let corpus: KeyFileCorpus;

beforeAll(async () => {
  corpus = await buildKeyFileCorpus();
}, 60_000);

function refusalCode(fn: () => unknown): string {
  const outcome = expectStable(fn, KEY_FILE_CODES);
  return 'error' in outcome ? outcome.error.code : 'accepted';
}

test('the corpus opens as its makers meant (so that mutations start from valid files)', () => {
  const expected: Record<string, string> = {
    'unprotected key bag': 'PASSWORD_REQUIRED',
    'RSA-1024 with certificate': 'UNSUPPORTED_KEY',
    'EC P-256, sealed': 'UNSUPPORTED_KEY',
  };
  for (const sample of corpus.pfx) expect([sample.label, refusalCode(() => parsePfx(sample.bytes, sample.password))]).toEqual([sample.label, expected[sample.label] ?? 'accepted']);
  for (const sample of corpus.byok) expect(refusalCode(() => parseByok(sample.bytes))).toBe('accepted');
});

test('structure edits keep lengths consistent: chunking OCTET STRINGs as Windows does (BER) still opens', () => {
  const sample = corpus.pfx.find((s) => s.label === 'shrouded key, no MAC')!;
  // Every OCTET STRING and [0] that holds DER, cut into 7-byte constructed chunks, definite and indefinite.
  for (let node = 0; node < 40; node++) {
    const chunked = applyTreeEdits(sample.bytes, [{ kind: 'chunk', node, size: 7 + (node % 2) }]);
    expect(refusalCode(() => parsePfx(chunked, SAMPLE_PASSWORD))).toMatch(/^(accepted|INVALID_KEY_FILE)$/);
  }
  expect(applyTreeEdits(sample.bytes, [])).toEqual(sample.bytes);
});

describe('every parser, over its generators: a valid result or a stable input code', () => {
  test.each(Object.keys(RUNS))('%s', (name) => {
    const target = keyFileTargets(corpus).find((t) => t.name === name)!;
    // The same inputs on every CI run (CMK_PROPERTY_SEED to explore others); `npm run fuzz` draws fresh ones.
    const details = target.check({ numRuns: RUNS[name], seed: Number(process.env.CMK_PROPERTY_SEED ?? 20261129) });
    if (details.failed) throw new Error(fc.defaultReportMessage(details));
    expect(details.numRuns).toBe(RUNS[name]);
  });
});

describe('regressions: hostile shapes refused before any recursive parser goes deep', () => {
  const forms: Array<Nesting['form']> = ['definite', 'indefinite', 'mixed', 'unterminated'];
  const places: Array<Nesting['where']> = ['file', 'authSafe', 'safeContents', 'bagValue'];

  test.each(forms)('100,000 nested %s headers, at every depth of the file', (form) => {
    const fromDer = jest.spyOn(forge.asn1, 'fromDer');
    try {
      for (const where of places) {
        for (const depth of [25, 1_000, 15_000, 100_000]) {
          const file = nestedFile({ depth, form, tag: 0x30, where });
          fromDer.mockClear();
          expect(refusalCode(() => parsePfx(file, SAMPLE_PASSWORD))).toBe('INVALID_KEY_FILE');
          // Bounded work: at most one decode per DER layer of a PKCS#12 (file, content list, bag list), never one per level.
          expect(fromDer.mock.calls.length).toBeLessThanOrEqual(3);
        }
      }
    } finally {
      fromDer.mockRestore();
    }
  });

  test('a nest inside a valid file (an element wrapped 30 levels deep) is refused, not followed', () => {
    for (const sample of corpus.pfx.filter((s) => s.label !== 'generateKeyPfx')) {
      for (let node = 0; node < 12; node++) {
        const file = applyTreeEdits(sample.bytes, [{ kind: 'wrap', node, depth: 30, tag: 0x30 }]);
        expect(refusalCode(() => parsePfx(file, sample.password))).toMatch(/^(INVALID_KEY_FILE|WRONG_PASSWORD|PASSWORD_REQUIRED|UNSUPPORTED_KEY)$/);
      }
    }
  });

  test('huge and inconsistent length fields', () => {
    const pfx = corpus.pfx[0]!.bytes;
    const hostile = [
      '3084ffffffff',
      '3088ffffffffffffffff0201',
      `30ff${'ff'.repeat(127)}`,
      `30ff${'00'.repeat(126)}05${'05'.repeat(5)}`,
      '3085010000000502010305',
      '0480',
      '30800480',
      nestedDer({ depth: 100_000, form: 'definite', tag: 0x30 }).subarray(0, 64 * 1024).toString('hex'),
    ].map((hex): Buffer => Buffer.from(hex, 'hex'));
    // The valid file with each of its length fields made to claim 4 GiB, or indefinite.
    for (let header = 0; header < 30; header++) {
      hostile.push(applyByteEdits(pfx, [{ kind: 'length', header, edit: { form: 'long', bytes: Buffer.from('ffffffff', 'hex') } }]));
      hostile.push(applyByteEdits(pfx, [{ kind: 'length', header, edit: { form: 'long', bytes: Buffer.from('0100000000', 'hex') } }]));
    }
    for (const file of hostile) expect(refusalCode(() => parsePfx(file, SAMPLE_PASSWORD))).toBe('INVALID_KEY_FILE');
  });

  test('OIDs that are not DER: an arc over 2^53, a truncated, padded or empty one (found by the fuzz: a plain Error escaped)', () => {
    // The fuzz's counterexample: PFX { version 3, ContentInfo { OID 1.2.<arc over 2^53>, INTEGER } } — forge's derToOid
    // threw "OID value too large", which reached the API as a 500 rather than INVALID_KEY_FILE.
    expect(refusalCode(() => parsePfx(Buffer.from('3011020103300c06089080808080808000' + '0200', 'hex'), ''))).toBe('INVALID_KEY_FILE');
    const sample = corpus.pfx.find((s) => s.label === 'shrouded key, no MAC')!;
    const data = Buffer.from(forge.asn1.oidToDer(OID.data).getBytes(), 'binary');
    // Element 3 (pre-order) is the file's content type: the exact OID still opens, so the edit aims where we think.
    const withContentType = (bytes: Buffer) => applyTreeEdits(sample.bytes, [{ kind: 'oid', node: 3, bytes }]);
    expect(refusalCode(() => parsePfx(withContentType(data), SAMPLE_PASSWORD))).toBe('accepted');
    const variants = {
      huge: Buffer.from('ffffffffffffffffffff7f', 'hex'),
      truncated: Buffer.concat([data, Buffer.from([0x81])]),
      // 1.2.840… with a leading 0x80 octet in 840: the same number, but not DER (forge decoded it as data and went on).
      padded: Buffer.concat([data.subarray(0, 1), Buffer.from([0x80]), data.subarray(1)]),
      empty: Buffer.alloc(0),
    };
    for (const bytes of Object.values(variants)) expect(refusalCode(() => parsePfx(withContentType(bytes), SAMPLE_PASSWORD))).toBe('INVALID_KEY_FILE');
    // And anywhere else: each element of the file in turn made a huge OID answers a stable code (or, where the
    // parser ignores that element, such as an algorithm's NULL parameters, still opens).
    for (let node = 0; node < 60; node++) {
      expect(refusalCode(() => parsePfx(applyTreeEdits(sample.bytes, [{ kind: 'oid', node, bytes: variants.huge }]), SAMPLE_PASSWORD))).toMatch(/^(accepted|[A-Z_]+)$/);
    }
  });

  test('deeply nested and oversized JSON in a .byok', () => {
    for (const depth of [1_000, 20_000, 100_000]) {
      expect(refusalCode(() => parseByok(Buffer.from('['.repeat(depth) + ']'.repeat(depth))))).toBe('INVALID_KEY_FILE');
      expect(refusalCode(() => parseByok(Buffer.from('{"header":'.repeat(depth) + '1' + '}'.repeat(depth))))).toBe('INVALID_KEY_FILE');
    }
    const polluted = Buffer.from('{"__proto__":{"kid":"x","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"schema_version":"1.0.0","ciphertext":"AAAA"}');
    expect(refusalCode(() => parseByok(polluted))).toBe('INVALID_KEY_FILE');
    expect(({} as Record<string, unknown>).kid).toBeUndefined();
  });

  test('only CmkError escapes: the refusals are CmkError instances with a sentence', () => {
    const outcome = expectStable(() => parsePfx(Buffer.from('3080', 'hex'), undefined), KEY_FILE_CODES);
    expect('error' in outcome && outcome.error).toBeInstanceOf(CmkError);
  });
});
