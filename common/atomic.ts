/**
 * Crash-safe files: a SIGKILL at any moment leaves either the old content or the new one, never a torn file,
 * so nothing a command reported done is lost (DESIGN.md §4). The async functions use fs/promises, so a write to a
 * slow disk (or its fsync) never blocks the event loop; the `…Sync` ones are for callers that are synchronous
 * throughout (the audit trail's append, the secrets read at start).
 */
import { closeSync, fsyncSync, linkSync, openSync, promises as fs, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** fsync of a file or directory: what was written or renamed there survives a power loss. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await fs.open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncPathSync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A name for a temporary file beside `path` (same directory, so a rename or link onto `path` is atomic). */
const tempBeside = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
const bytesOf = (data: Buffer | string): Buffer => (typeof data === 'string' ? Buffer.from(data) : data);

/** A new, fsynced temporary file beside `path`. */
async function writeTempBeside(path: string, data: Buffer | string, mode: number): Promise<string> {
  const temp = tempBeside(path);
  const handle = await fs.open(temp, 'wx', mode);
  try {
    await handle.writeFile(bytesOf(data));
    await handle.sync();
  } catch (err) {
    // A full disk or an I/O error: no half-written temporary file is left behind.
    await handle.close();
    await fs.rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  return temp;
}

function writeTempBesideSync(path: string, data: Buffer | string, mode: number): string {
  const temp = tempBeside(path);
  const fd = openSync(temp, 'wx', mode);
  try {
    writeSync(fd, bytesOf(data));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  return temp;
}

/** Writes to a temporary file in the same directory, fsyncs it, renames it over `path`, fsyncs the directory. */
export async function writeFileAtomic(path: string, data: Buffer | string, mode = 0o600): Promise<void> {
  const temp = await writeTempBeside(path, data, mode);
  try {
    await fs.rename(temp, path);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await fsyncPath(dirname(path));
}

export function writeFileAtomicSync(path: string, data: Buffer | string, mode = 0o600): void {
  const temp = writeTempBesideSync(path, data, mode);
  try {
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncPathSync(dirname(path));
}

/**
 * Creates `path` with `data` only if it does not exist yet — atomically, so concurrent or repeated callers with
 * the same name agree on one winner and nobody ever sees a partial file. Returns false when it was already there.
 */
export async function createFileExclusive(path: string, data: Buffer | string, mode = 0o600): Promise<boolean> {
  const temp = await writeTempBeside(path, data, mode);
  try {
    // link() fails if the target exists: the first caller wins and the file appears whole.
    await fs.link(temp, path);
    await fsyncPath(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(temp, { force: true });
  }
}

export function createFileExclusiveSync(path: string, data: Buffer | string, mode = 0o600): boolean {
  const temp = writeTempBesideSync(path, data, mode);
  try {
    linkSync(temp, path);
    fsyncPathSync(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(temp, { force: true });
  }
}

export async function readJsonIfExists<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
