/**
 * Crash-safe files: a SIGKILL at any moment leaves either the old content or the new one, never a torn file,
 * so nothing a command reported done is lost (DESIGN.md §4).
 */
import { closeSync, fsyncSync, linkSync, openSync, promises as fs, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** fsync of a file or directory: what was written or renamed there survives a power loss. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A new, fsynced temporary file beside `path` (same directory, so a rename or link onto `path` is atomic). */
function writeTempBeside(path: string, data: Buffer | string, mode: number): string {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    // A full disk or an I/O error: no half-written temporary file is left behind.
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  return temp;
}

/** Writes to a temporary file in the same directory, fsyncs it, renames it over `path`, fsyncs the directory. */
export async function writeFileAtomic(path: string, data: Buffer | string, mode = 0o600): Promise<void> {
  writeFileAtomicSync(path, data, mode);
}

export function writeFileAtomicSync(path: string, data: Buffer | string, mode = 0o600): void {
  const temp = writeTempBeside(path, data, mode);
  try {
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncPath(dirname(path));
}

/**
 * Creates `path` with `data` only if it does not exist yet — atomically, so concurrent or repeated callers with
 * the same name agree on one winner and nobody ever sees a partial file. Returns false when it was already there.
 */
export function createFileExclusiveSync(path: string, data: Buffer | string, mode = 0o600): boolean {
  const temp = writeTempBeside(path, data, mode);
  try {
    // link() fails if the target exists: the first caller wins and the file appears whole.
    linkSync(temp, path);
    fsyncPath(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(temp, { force: true });
  }
}

export async function createFileExclusive(path: string, data: Buffer | string, mode = 0o600): Promise<boolean> {
  return createFileExclusiveSync(path, data, mode);
}

export async function readJsonIfExists<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
