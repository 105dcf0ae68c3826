/**
 * What operators read from the worker and the API service: the log format and level, and where the worker serves
 * Prometheus metrics (docs/OPERATIONS.md). loadConfig (config/index.ts) spreads this into the Config.
 */
import { isIP } from 'node:net';
import type { LogLevel } from '@temporalio/common';
import { oneOf, parsed, readSection, Refused, refuse, section, type Env } from './schema';

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];
export const LOG_LEVELS: readonly LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

export interface TelemetryConfig {
  /** text: the SDK's human lines (the default); json: one JSON object per line on stderr (worker/telemetry.ts). */
  logFormat: LogFormat;
  /** The least severe level written; WARN by default, so a healthy stack stays quiet. */
  logLevel: LogLevel;
  /** Where the worker's Runtime serves `/metrics`; null (the default) serves nothing. */
  metrics: { host: string; port: number } | null;
  /** Where the API service serves its own `/metrics` (CMK_API_METRICS_PORT, same host); null: nowhere. */
  apiMetrics: { host: string; port: number } | null;
}

/** A port the worker or the API service serves metrics on; unset: nowhere. Port 0 would bind a random port that no scraper could be told about. */
const metricsPort = parsed(undefined, (value, name) => {
  const port = Number(value);
  return /^\d+$/.test(value) && port >= 1 && port <= 65535 ? port : new Refused(`${name}="${value}" is not a TCP port from 1 to 65535.`);
});

const TELEMETRY = section({
  CMK_LOG_FORMAT: oneOf(LOG_FORMATS, 'text', 'a log format'),
  // Case-insensitive: `debug` is what people type, and the SDK's logger would silently treat it as "everything".
  CMK_LOG_LEVEL: parsed<LogLevel>('WARN', (value, name) => {
    const level = LOG_LEVELS.find((l) => l === value.toUpperCase());
    return level ?? new Refused(`${name}="${value}" is not a log level; use ${LOG_LEVELS.join(', ')}.`);
  }),
  // The Runtime's exporter binds a socket address, not a name: an IP literal is what it can parse.
  CMK_METRICS_HOST: parsed('127.0.0.1', (value, name) => (isIP(value) === 0 ? new Refused(`${name}="${value}" is not an IP address such as 127.0.0.1 or 0.0.0.0.`) : value)),
  CMK_METRICS_PORT: metricsPort,
  CMK_API_METRICS_PORT: metricsPort,
}).transform((v, ctx): TelemetryConfig => {
  const endpoint = (port: number | undefined) => (port === undefined ? null : { host: v.CMK_METRICS_HOST, port });
  if (v.CMK_METRICS_PORT !== undefined && v.CMK_METRICS_PORT === v.CMK_API_METRICS_PORT) {
    return refuse(ctx, `CMK_METRICS_PORT and CMK_API_METRICS_PORT are both ${v.CMK_METRICS_PORT}: the worker and the API service each need a port of their own.`);
  }
  return { logFormat: v.CMK_LOG_FORMAT, logLevel: v.CMK_LOG_LEVEL, metrics: endpoint(v.CMK_METRICS_PORT), apiMetrics: endpoint(v.CMK_API_METRICS_PORT) };
});

export function telemetryConfig(env: Env): { telemetry: TelemetryConfig } {
  return { telemetry: readSection(TELEMETRY, env) };
}

/** `host:port` as the Prometheus exporter parses it: IPv6 addresses in brackets. */
export function metricsBindAddress(metrics: { host: string; port: number }): string {
  return isIP(metrics.host) === 6 ? `[${metrics.host}]:${metrics.port}` : `${metrics.host}:${metrics.port}`;
}
