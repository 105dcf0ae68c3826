/** Crash-safe files (common/atomic.ts): a write that fails leaves no temporary file behind in the data dir. */
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileExclusiveSync, writeFileAtomic, writeFileAtomicSync } from '../common/atomic';

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
