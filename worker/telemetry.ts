/**
 * The worker's SDK Runtime: its logger (CMK_LOG_FORMAT, CMK_LOG_LEVEL) and its Prometheus endpoint (CMK_METRICS_PORT,
 * CMK_METRICS_HOST). Everything the SDK logs — its own lifecycle lines, `log` from @temporalio/workflow and
 * @temporalio/activity with their execution's IDs, and in json the Rust core's lines — goes through this logger.
 */
import { DefaultLogger, Runtime, type LogEntry, type Logger, type RuntimeOptions } from '@temporalio/worker';
import type { LogLevel, MetricCounter, MetricGauge, MetricMeter } from '@temporalio/common';
import type { DriftMetrics } from '../activities/drift';
import { formatJsonLine, isAtLeast } from '../common/logging';
import { metricsBindAddress, type TelemetryConfig } from '../config/telemetry';

/**
 * text: the SDK's DefaultLogger, the human output the stack always had. json: the same level filter, each entry
 * written as one flat JSON line on stderr (common/logging.ts).
 */
export function createLogger(telemetry: TelemetryConfig, component = 'worker', write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  if (telemetry.logFormat === 'text') return withoutExpectedNotices(new DefaultLogger(telemetry.logLevel));
  return withoutExpectedNotices(new DefaultLogger(telemetry.logLevel, (entry: LogEntry) => write(formatJsonLine(entry, component))));
}

/**
 * A region's workers run activities only (R1, CMK_WORKER_REGIONS), by design; the SDK warns about each of them at
 * start, which would read as a fault to whoever starts the stack.
 */
const EXPECTED_NOTICES = ['No workflows registered, not polling for workflow tasks'];

function withoutExpectedNotices(inner: Logger): Logger {
  const expected = (message: string) => EXPECTED_NOTICES.includes(message);
  return {
    log: (level, message, meta) => (expected(message) ? undefined : inner.log(level, message, meta)),
    trace: (message, meta) => inner.trace(message, meta),
    debug: (message, meta) => inner.debug(message, meta),
    info: (message, meta) => inner.info(message, meta),
    warn: (message, meta) => (expected(message) ? undefined : inner.warn(message, meta)),
    error: (message, meta) => inner.error(message, meta),
  };
}

/** The Runtime options `installWorkerRuntime` installs; separate so that a test can read them without a Runtime. */
export function workerRuntimeOptions(telemetry: TelemetryConfig, logger: Logger = createLogger(telemetry)): RuntimeOptions {
  // Core's own DEBUG and TRACE describe activations and commands in detail; INFO is as far down as we forward it.
  const coreLevel: LogLevel = isAtLeast(telemetry.logLevel, 'INFO') ? telemetry.logLevel : 'INFO';
  return {
    logger,
    telemetryOptions: {
      // In json, core's lines come through our logger too, so stderr holds nothing but JSON. In text, core keeps
      // printing its own (WARN and up) as it always did.
      ...(telemetry.logFormat === 'json' ? { logging: { filter: { core: coreLevel, other: 'WARN' }, forward: {} } } : {}),
      ...(telemetry.metrics ? { metrics: { prometheus: { bindAddress: metricsBindAddress(telemetry.metrics) } } } : {}),
    },
  };
}

/** Installs the Runtime once, before any NativeConnection or Worker exists (they would install a default one). */
export function installWorkerRuntime(config: { telemetry: TelemetryConfig; taskQueue: string }): Runtime {
  const runtime = Runtime.install(workerRuntimeOptions(config.telemetry));
  if (config.telemetry.metrics) {
    runtime.logger.info(`Prometheus metrics on http://${metricsBindAddress(config.telemetry.metrics)}/metrics`, { sdkComponent: 'worker', taskQueue: config.taskQueue });
  }
  return runtime;
}

/**
 * The drift check's series, on the worker's Prometheus endpoint beside the SDK's: environments drifting now, per
 * tenant (set by each check of that tenant), and drifts found for the first time (what was mailed).
 */
export function driftMetrics(meterOf: () => MetricMeter): DriftMetrics {
  // Made at the first check, from the Runtime the worker installed by then (building the dependencies installs none).
  let series: { drifting: MetricGauge; detected: MetricCounter } | undefined;
  return {
    recorded(result) {
      if (!series) {
        const meter = meterOf();
        series = {
          drifting: meter.createGauge('cmk_drift_environments', 'int', 'environments', 'Environments whose database or vault differs from what cmk believes, per tenant, at its last drift check.'),
          detected: meter.createCounter('cmk_drift_detected_total', 'drifts', 'Drifts found for the first time (each one mailed and audited once).'),
        };
      }
      series.drifting.set(result.drifting.length, { tenant: result.tenant });
      if (result.newlyFound.length) series.detected.add(result.newlyFound.length, { tenant: result.tenant });
    },
  };
}
