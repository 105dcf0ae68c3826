/**
 * The API service opens .pfx files in a worker thread (keyfiles/isolated.ts): the same answers as parsePfx — the key,
 * or the refusal with its code — and the caller's event loop stays free meanwhile.
 */
import { generateKeyPairSync } from 'node:crypto';
import { IsolatedPfxParser } from '../keyfiles/isolated';
import { parsePfx } from '../keyfiles';
import { makePfx } from './support/keyfiles';

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
