/**
 * What operators read from the worker and the API service: the log format and level, and where the worker serves
 * Prometheus metrics (docs/OPERATIONS.md). loadConfig (config/index.ts) spreads this into the Config.
 */
import { isIP } from 'node:net';
import type { LogLevel } from '@temporalio/common';
// A cycle (index.ts imports this file), harmless: ConfigError is only reached when a function here runs.
import { ConfigError } from './error';

type Env = Record<string, string | undefined>;

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

export function telemetryConfig(env: Env): { telemetry: TelemetryConfig } {
  const formatText = env.CMK_LOG_FORMAT || 'text';
  if (!(LOG_FORMATS as readonly string[]).includes(formatText)) {
    throw new ConfigError(`CMK_LOG_FORMAT="${formatText}" is not a log format; use ${LOG_FORMATS.join(' or ')}.`);
  }
  // Case-insensitive: `debug` is what people type, and the SDK's logger would silently treat it as "everything".
  const levelText = (env.CMK_LOG_LEVEL || 'WARN').toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(levelText)) {
    throw new ConfigError(`CMK_LOG_LEVEL="${env.CMK_LOG_LEVEL}" is not a log level; use ${LOG_LEVELS.join(', ')}.`);
  }
  // The Runtime's exporter binds a socket address, not a name: an IP literal is what it can parse.
  const host = env.CMK_METRICS_HOST || '127.0.0.1';
  if (isIP(host) === 0) throw new ConfigError(`CMK_METRICS_HOST="${host}" is not an IP address such as 127.0.0.1 or 0.0.0.0.`);
  const endpoint = (name: string): TelemetryConfig['metrics'] => {
    const portText = env[name];
    if (portText === undefined || portText === '') return null;
    const port = Number(portText);
    // Port 0 would bind a random port that no scraper could be told about.
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new ConfigError(`${name}="${portText}" is not a TCP port from 1 to 65535.`);
    return { host, port };
  };
  const metrics = endpoint('CMK_METRICS_PORT');
  const apiMetrics = endpoint('CMK_API_METRICS_PORT');
  if (metrics && apiMetrics && metrics.port === apiMetrics.port) {
    throw new ConfigError(`CMK_METRICS_PORT and CMK_API_METRICS_PORT are both ${metrics.port}: the worker and the API service each need a port of their own.`);
  }
  return { telemetry: { logFormat: formatText as LogFormat, logLevel: levelText as LogLevel, metrics, apiMetrics } };
}

/** `host:port` as the Prometheus exporter parses it: IPv6 addresses in brackets. */
export function metricsBindAddress(metrics: { host: string; port: number }): string {
  return isIP(metrics.host) === 6 ? `[${metrics.host}]:${metrics.port}` : `${metrics.host}:${metrics.port}`;
}
