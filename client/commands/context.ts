/**
 * What every command group of the CLI (client/commands/*.ts) is given by client/cli.ts: the API client, the printer
 * that honours --json, the order of checks for local input, and the helpers that read key and password files and
 * lay out columns. The refusals the program turns into exit statuses (UsageError: 2, CheckFailedError: 1) live here
 * too, so that a command can throw them without importing the program.
 */
import { constants, promises as fs } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { CmkError } from '../../common/errors';
import { MAX_KEY_FILE_BYTES } from '../../common/keys';
import type { Action } from '../../domain/access';
import type { ApiClient } from '../http';

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Record<string, string | undefined>;
}

export type Json = Record<string, unknown>;

/** A usage error found after commander parsed the line (exit 2). */
export class UsageError extends Error {}

/** A check whose report was printed found something wrong (exit 1, not a refusal): `audit verify`, `drift check`. */
export class CheckFailedError extends Error {}

/** `cmk audit verify` found the trail changed. */
export class AuditBrokenError extends CheckFailedError {
  constructor() {
    super('The audit trail does not verify.');
  }
}

/** A dry run whose real run would be refused (issue 19): its report is printed; the exit status is the refusal's (3). */
export class DryRunRefusedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** `cmk drift check` found environments that differ from what cmk believes. */
export class DriftFoundError extends CheckFailedError {
  constructor(environments: number) {
    super(`Drift found in ${environments} environment(s).`);
  }
}

export interface CliContext {
  program: Command;
  io: Io;
  /** A subcommand of `parent` that reports usage errors through the program (exit 2), never by exiting itself. */
  command: (parent: Command, name: string, description: string) => Command;
  /** The API service, with this invocation's bearer token. */
  api: () => ApiClient;
  /** Before a key file or password is read or sent: never over plain http to another host (a usage error). */
  secretsMayGo: () => void;
  /** With --json, `doc`; else the human text. */
  print: (doc: Json, human: () => string) => void;
  /** FORBIDDEN and NOT_FOUND come before any complaint about local input (DESIGN.md §4 order of checks). */
  localInput: <T>(tenant: string, action: Action, read: () => Promise<T>, env?: string) => Promise<T>;
}

export const enc = encodeURIComponent;
export const query = (params: Record<string, string | undefined>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
  return entries.length ? `?${new URLSearchParams(entries).toString()}` : '';
};

/** Rows as aligned columns, two spaces apart (a terminal reader scans a column; trailing blanks are trimmed). */
export function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** A background failure in a sentence: what did not happen, its code, and the repair (`env list`, `key show`). */
export function faultText(f: { operation: string; code: string; reason: string; repair: string }): string {
  return `${f.operation === 'delete' ? 'deletion refused' : 'left on an older key'} (${f.code}): ${f.reason} ${f.repair}`;
}

/** `--password-file F`: F's first line without CR/LF (DESIGN.md §4). */
export async function readPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `The password file ${file} cannot be read.`);
  }
  return (text.split('\n')[0] ?? '').replace(/\r$/, '');
}

/** Refused by size before a byte of it is read or sent (INVALID_KEY_FILE). */
export function readKeyFile(file: string): Promise<Buffer> {
  return readFileWithin(file, MAX_KEY_FILE_BYTES, 'key file', new CmkError('INVALID_KEY_FILE', `${file} is larger than 64 KiB; no key file is that large.`));
}

/** A local file the command sends, refused with `tooLarge` by its size before a byte of it is read. */
export async function readFileWithin(file: string, maxBytes: number, what: string, tooLarge: CmkError): Promise<Buffer> {
  let size: number;
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) throw new Error('not a file');
    size = stat.size;
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `The ${what} ${file} cannot be read.`);
  }
  if (size > maxBytes) throw tooLarge;
  return fs.readFile(file);
}

/** The key file is handed over once: never overwrite another file, and fail before the key is made. */
export async function checkOutPath(out: string): Promise<string> {
  const path = resolve(out);
  try {
    await fs.access(dirname(path), constants.W_OK);
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `Cannot write to ${dirname(path)}.`);
  }
  const exists = await fs.stat(path).then(() => true, () => false);
  if (exists) throw new CmkError('INVALID_ARGUMENT', `${out} already exists; choose another --out so that no key file is overwritten.`);
  return path;
}
