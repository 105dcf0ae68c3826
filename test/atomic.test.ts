/** Crash-safe files (common/atomic.ts): a write that fails leaves no temporary file behind in the data dir. */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileExclusive, createFileExclusiveSync, writeFileAtomic, writeFileAtomicSync } from '../common/atomic';

const scratch = () => mkdtempSync(join(tmpdir(), 'cmk-atomic-'));

test('a write whose rename fails (a directory in the way) throws and leaves no temporary file', async () => {
  const dir = scratch();
  mkdirSync(join(dir, 'record.json'));
  writeFileSync(join(dir, 'record.json', 'inside'), 'x');
  expect(() => writeFileAtomicSync(join(dir, 'record.json'), 'new content')).toThrow();
  await expect(writeFileAtomic(join(dir, 'record.json'), 'new content')).rejects.toThrow();
  expect(readdirSync(dir)).toEqual(['record.json']);
});

test('a successful write and an exclusive create leave only their file', () => {
  const dir = scratch();
  writeFileAtomicSync(join(dir, 'a.json'), '{}');
  expect(createFileExclusiveSync(join(dir, 'b.json'), '{}')).toBe(true);
  expect(createFileExclusiveSync(join(dir, 'b.json'), '{}')).toBe(false);
  expect(readdirSync(dir).sort()).toEqual(['a.json', 'b.json']);
});

test('the async write returns before touching the disk (nothing blocks the event loop), then leaves only its file', async () => {
  const dir = scratch();
  const path = join(dir, 'record.json');
  const writing = writeFileAtomic(path, '{"v":1}');
  // A synchronous write would have put the file there before the call returned; the async one needs the event loop
  // for each step (open, write, fsync, rename), so none past the first can have run yet.
  expect(existsSync(path)).toBe(false);
  await writing;
  await writeFileAtomic(path, '{"v":2}');
  expect(readFileSync(path, 'utf8')).toBe('{"v":2}');
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(['record.json']);
});

test('concurrent exclusive creates agree on one winner, whose content is whole', async () => {
  const dir = scratch();
  const path = join(dir, 'lease');
  const contents = Array.from({ length: 8 }, (_, i) => `writer-${i}-${'x'.repeat(10_000)}`);
  const won = await Promise.all(contents.map((c) => createFileExclusive(path, c)));
  expect(won.filter(Boolean)).toHaveLength(1);
  expect(readFileSync(path, 'utf8')).toBe(contents[won.indexOf(true)]);
  expect(readdirSync(dir)).toEqual(['lease']);
});
