/**
 * The API service opens .pfx files, and generates keys, in worker threads (keyfiles/isolated.ts): the same answers as
 * parsePfx and generateKeyPfx — the key, or the refusal with its code — and the caller's event loop stays free
 * meanwhile. Each file has its own time budget: a hostile one that spins is refused without failing the others.
 */
import { generateKeyPairSync } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import forge from 'node-forge';
import { IsolatedPfxParser } from '../keyfiles/isolated';
import { parsePfx } from '../keyfiles';
import { makePfx } from '../harness/keyfiles';

/** A .pfx whose MAC asks for 1,000,000 iterations (the most parsePfx allows): seconds of work before its refusal. */
function slowPfx(): Buffer {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const asn1 = forge.asn1.fromDer(makePfx(privateKey, 'slow password').toString('binary'));
  const macData = (asn1.value as forge.asn1.Asn1[])[2]!;
  (macData.value as forge.asn1.Asn1[])[2] = forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.INTEGER, false, forge.asn1.integerToDer(1_000_000).getBytes());
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary');
}

const parser = new IsolatedPfxParser();
afterAll(() => parser.close());

test('a good .pfx opens to the same key as in-process; refusals keep their code and sentence', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pfx = makePfx(privateKey, 'isolated password');
  const opened = await parser.parsePfx(pfx, 'isolated password');
  expect(opened.thumbprint).toBe(parsePfx(pfx, 'isolated password').thumbprint);
  expect(Buffer.isBuffer(opened.pkcs8Der)).toBe(true);
  await expect(parser.parsePfx(pfx, 'wrong password')).rejects.toMatchObject({ code: 'WRONG_PASSWORD' });
  await expect(parser.parsePfx(pfx, undefined)).rejects.toMatchObject({ code: 'PASSWORD_REQUIRED' });
  await expect(parser.parsePfx(Buffer.from('not a pfx'), 'x')).rejects.toMatchObject({ code: 'INVALID_KEY_FILE' });
});

test('the event loop keeps turning while a .pfx is opened', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pfx = makePfx(privateKey, 'isolated password');
  let ticks = 0;
  const ticker = setInterval(() => (ticks += 1), 1);
  try {
    await Promise.all(Array.from({ length: 4 }, () => parser.parsePfx(pfx, 'isolated password')));
  } finally {
    clearInterval(ticker);
  }
  // In-process, four key derivations would run back to back with no timer firing in between.
  expect(ticks).toBeGreaterThan(0);
});

test('a parse that outlives its deadline is refused with INVALID_KEY_FILE (and its thread replaced)', async () => {
  const impatient = new IsolatedPfxParser(1);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pfx = makePfx(privateKey, 'isolated password');
  await expect(impatient.parsePfx(pfx, 'isolated password')).rejects.toMatchObject({ code: 'INVALID_KEY_FILE', message: expect.stringMatching(/too long/) });
  await impatient.close();
});

describe('each file has its own time budget', () => {
  // A good file opens in milliseconds; the slow one needs seconds of KDF work.
  const budgetMs = 600;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const good = makePfx(privateKey, 'isolated password');
  const slow = slowPfx();

  test.each([1, 2])('a hostile slow file next to a good upload (%i thread(s)): the slow one is refused, the good one opens', async (threads) => {
    const pool = new IsolatedPfxParser(budgetMs, { threads });
    try {
      const [slowResult, goodResult] = await Promise.allSettled([pool.parsePfx(slow, 'guess'), pool.parsePfx(good, 'isolated password')]);
      expect(slowResult).toMatchObject({ status: 'rejected', reason: { code: 'INVALID_KEY_FILE', message: expect.stringMatching(/too long/) } });
      expect(goodResult).toMatchObject({ status: 'fulfilled', value: { thumbprint: parsePfx(good, 'isolated password').thumbprint } });
      // The pool goes on after replacing the stuck thread.
      await expect(pool.parsePfx(good, 'isolated password')).resolves.toMatchObject({ thumbprint: expect.any(String) });
    } finally {
      await pool.close();
    }
  });
});

test('key generation runs in a worker thread: the .pfx opens to the key; refusals keep their code', async () => {
  let ticks = 0;
  const ticker = setInterval(() => (ticks += 1), 1);
  let made: Awaited<ReturnType<IsolatedPfxParser['generateKeyPfx']>>;
  try {
    made = await parser.generateKeyPfx({ name: 'isolated-key', password: 'isolated password 12' });
  } finally {
    clearInterval(ticker);
  }
  expect(made.threadId).toEqual(expect.any(Number));
  expect(made.threadId).not.toBe(threadId);
  expect(ticks).toBeGreaterThan(0);
  expect(Buffer.isBuffer(made.pfx) && Buffer.isBuffer(made.pkcs8Der)).toBe(true);
  const opened = parsePfx(made.pfx, 'isolated password 12');
  expect([opened.thumbprint, opened.publicKeyPem]).toEqual([made.thumbprint, made.publicKeyPem]);
  await expect(parser.generateKeyPfx({ name: 'k', password: '' })).rejects.toMatchObject({ code: 'WEAK_PASSWORD' });
});
