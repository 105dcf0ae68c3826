/**
 * CMK_LOG_FORMAT=json: one flat JSON object per line, for log shippers (docs/OPERATIONS.md). The worker's Runtime
 * logger (worker/telemetry.ts) writes through `formatJsonLine`; the API service logs through pino, configured to
 * write the same fields. This module loads nothing native, so the API service can use it without the worker SDK.
 */
import { types } from 'node:util';
import type { LogLevel, LogMetadata } from '@temporalio/common';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { TelemetryConfig } from '../config/telemetry';

export interface LogRecord {
  level: LogLevel;
  message: string;
  /** Nanoseconds since the epoch, as the SDK's log entries carry it; now when absent. */
  timestampNanos?: bigint;
  meta?: LogMetadata;
}

export type JsonValue = string | number | boolean | null;

/** Our own keys; a metadata entry with one of these names is kept as `meta.<name>` rather than overwriting it. */
const RESERVED = new Set(['time', 'level', 'component', 'message']);
/**
 * Left out whatever their value. `taskToken`: the SDK puts the activity's task token on every activity log; it lets
 * whoever holds it complete or fail that activity, and tells a reader nothing the activity ID does not.
 */
const DROPPED = new Set(['taskToken']);
// Built from a string: a control character in a regex literal trips linters and readers alike.
const ANSI = new RegExp('\\u001b\\[[0-9;?]*[ -/]*[@-~]', 'g');
const SEVERITY: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };

export function isAtLeast(level: LogLevel, threshold: LogLevel): boolean {
  return SEVERITY[level] >= SEVERITY[threshold];
}

/**
 * Errors raised inside a workflow come from the workflow's own V8 context, where `instanceof Error` is false; the
 * native-error check sees across contexts, and the shape check catches plain `{ name, message }` failures.
 */
function errorLike(value: object): value is { name: string; message: string; stack?: unknown } {
  const v = value as Record<string, unknown>;
  return types.isNativeError(value) || (typeof v.message === 'string' && typeof v.name === 'string');
}

const clean = (text: string): string => text.replace(ANSI, '');

/**
 * Flattens metadata to JSON scalars. An error becomes `<key>.name`, `<key>.message` and `<key>.stack` — never its
 * `details` or `cause`, which may hold (encoded) payloads. Any other object, array or function is left out: the SDK
 * passes whole option objects and span lists at DEBUG, which are neither flat nor safe to print.
 */
export function flattenMeta(meta: LogMetadata | undefined): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  if (!meta) return out;
  // Object.entries skips symbol keys: the SDK's timestamp symbol never reaches the line.
  for (const [key, value] of Object.entries(meta) as Array<[string, unknown]>) {
    if (DROPPED.has(key) || value === undefined) continue;
    const name = RESERVED.has(key) ? `meta.${key}` : key;
    if (typeof value === 'string') out[name] = clean(value);
    else if (typeof value === 'number') out[name] = Number.isFinite(value) ? value : String(value);
    else if (typeof value === 'boolean' || value === null) out[name] = value;
    else if (typeof value === 'bigint') out[name] = value.toString();
    else if (value instanceof Date) out[name] = Number.isNaN(value.getTime()) ? null : value.toISOString();
    else if (typeof value === 'object' && errorLike(value)) {
      out[`${name}.name`] = clean(value.name);
      out[`${name}.message`] = clean(value.message);
      if (typeof value.stack === 'string') out[`${name}.stack`] = clean(value.stack);
    }
  }
  return out;
}

/** One line (with its newline): time (ISO), level, component, message, then the flattened metadata. */
export function formatJsonLine(record: LogRecord, component: string): string {
  const ms = record.timestampNanos === undefined ? Date.now() : Number(record.timestampNanos / 1_000_000n);
  const line: Record<string, JsonValue> = { time: new Date(ms).toISOString(), level: record.level, component, message: clean(record.message) };
  return `${JSON.stringify({ ...line, ...flattenMeta(record.meta) })}\n`;
}

/**
 * What pino blanks out in any field of an API log line (`[redacted]`), whatever a future caller passes: bearer tokens
 * and authorization headers, passwords, .pfx bytes, private keys and DEKs (DESIGN.md §6). Messages are the callers'
 * own text and never carry these.
 */
export const REDACTED_LOG_FIELDS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'password',
  'pfx',
  'file',
  'token',
  'accessToken',
  'privateKey',
  'dek',
  '*.authorization',
  '*.password',
  '*.pfx',
  '*.file',
  '*.token',
  '*.privateKey',
  '*.dek',
];

/**
 * A pino logger writing the json format's lines: `time` (ISO), `level` (upper case, as the worker's), `component`,
 * `message`, then the fields given (keep them flat: scalars only). Below CMK_LOG_LEVEL nothing is written.
 */
export function createJsonLogger(telemetry: TelemetryConfig, component: string, destination: DestinationStream = process.stderr): Logger {
  return pino(
    {
      level: telemetry.logLevel.toLowerCase(),
      base: { component },
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label.toUpperCase() }) },
      redact: { paths: REDACTED_LOG_FIELDS, censor: '[redacted]' },
    },
    destination,
  );
}

type PinoMethod = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/**
 * A `(line) => void` logger for a process that is not an SDK worker (the API service): in text, `cmk <component>:
 * line` as before; in json, a pino line at `level`, dropped when below CMK_LOG_LEVEL.
 */
export function createLineLogger(telemetry: TelemetryConfig, component: string, level: LogLevel = 'ERROR'): (line: string) => void {
  if (telemetry.logFormat === 'text') return (line) => console.error(`cmk ${component}: ${line}`);
  const logger = createJsonLogger(telemetry, component);
  const method = level.toLowerCase() as PinoMethod;
  return (line) => logger[method](clean(line));
}
