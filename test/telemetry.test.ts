/**
 * Operators' telemetry: CMK_LOG_FORMAT=json lines (one flat object per SDK log entry, with the execution's IDs, no
 * payloads) and the worker's Prometheus endpoint on CMK_METRICS_PORT — first the formatter and the config alone,
 * then `npm start`'s stack with both turned on.
 */
import { ApplicationFailure } from '@temporalio/common';
import { LogTimestamp, activityLogAttributes, workflowLogAttributes } from '@temporalio/worker';
import type { Info as ActivityInfo } from '@temporalio/activity';
import type { WorkflowInfo } from '@temporalio/workflow';
import { ConfigError, loadConfig } from '../config';
import { metricsBindAddress, telemetryConfig, type TelemetryConfig } from '../config/telemetry';
import { createJsonLogger, createLineLogger, formatJsonLine } from '../common/logging';
import { createLogger, workerRuntimeOptions } from '../worker/telemetry';
import { freePort, startStack, type Stack } from '../harness/stack';

type Line = Record<string, unknown>;

const JSON_DEBUG: TelemetryConfig = { logFormat: 'json', logLevel: 'DEBUG', metrics: null, apiMetrics: null };

/** What the SDK attaches to a workflow's `log` (workflowLogAttributes is the SDK's own function). */
const workflowMeta = {
  sdkComponent: 'workflow',
  ...workflowLogAttributes({ namespace: 'default', taskQueue: 'cmk', workflowId: 'tenant:contoso', runId: 'run-1', workflowType: 'tenantWorkflow' } as WorkflowInfo),
};
/** What the SDK attaches to activity lifecycle lines and the activity's `log`. */
const activityMeta = activityLogAttributes({
  isLocal: false,
  attempt: 2,
  namespace: 'default',
  base64TaskToken: 'c2VjcmV0LXRhc2stdG9rZW4=',
  activityId: '7',
  activityType: 'createDatabase',
  taskQueue: 'cmk',
  inWorkflow: true,
  workflowExecution: { workflowId: 'tenant:contoso', runId: 'run-1' },
  workflowType: 'tenantWorkflow',
} as unknown as ActivityInfo);

function capture(telemetry: TelemetryConfig) {
  const lines: string[] = [];
  return { lines, logger: createLogger(telemetry, 'worker', (line) => lines.push(line)), parsed: () => lines.map((l) => JSON.parse(l) as Line) };
}

describe('json lines', () => {
  test('a workflow log entry: time, level, component, message and the execution IDs, one line', () => {
    const line = formatJsonLine({ level: 'INFO', message: 'Key applied', timestampNanos: 1_700_000_000_123_456_789n, meta: { ...workflowMeta, environment: 'prod' } }, 'worker');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(JSON.parse(line)).toEqual({
      time: '2023-11-14T22:13:20.123Z',
      level: 'INFO',
      component: 'worker',
      message: 'Key applied',
      sdkComponent: 'workflow',
      namespace: 'default',
      taskQueue: 'cmk',
      workflowId: 'tenant:contoso',
      runId: 'run-1',
      workflowType: 'tenantWorkflow',
      environment: 'prod',
    });
  });

  test('an activity entry through the Runtime logger: the activity IDs, its attempt, no task token; the level filter holds', () => {
    const { logger, parsed, lines } = capture({ ...JSON_DEBUG, logLevel: 'INFO' });
    logger.debug('Activity started', { sdkComponent: 'worker', ...activityMeta });
    logger.warn('Activity failed', { sdkComponent: 'worker', ...activityMeta, durationMs: 12, [LogTimestamp]: 1_700_000_000_000_000_000n });
    expect(lines).toHaveLength(1);
    const [line] = parsed();
    expect(line).toMatchObject({
      time: '2023-11-14T22:13:20.000Z',
      level: 'WARN',
      message: 'Activity failed',
      activityId: '7',
      activityType: 'createDatabase',
      attempt: 2,
      isLocal: false,
      workflowId: 'tenant:contoso',
      workflowRunId: 'run-1',
      workflowType: 'tenantWorkflow',
      taskQueue: 'cmk',
      durationMs: 12,
    });
    expect(line).not.toHaveProperty('taskToken');
    expect(lines[0]).not.toContain('c2VjcmV0');
  });

  test('errors keep name, message and stack only; objects, arrays, functions and ANSI colours stay out', () => {
    const failure = ApplicationFailure.create({ message: 'The vault refused the key', type: 'VAULT_REFUSED', nonRetryable: true, details: [{ pfx: 'PAYLOAD-CANARY-91c2' }] });
    const cause = new Error('CAUSE-CANARY-5d1e');
    Object.assign(failure, { cause });
    const { logger, parsed, lines } = capture(JSON_DEBUG);
    logger.error('\u001b[31mWorkflow failed\u001b[39m', {
      ...workflowMeta,
      error: failure,
      options: { activities: { createDatabase: () => undefined }, secret: 'OPTIONS-CANARY-0b7a' },
      spanContexts: ['a', 'b'],
      message: 'a metadata field named like ours',
      count: 3n,
    });
    const [line] = parsed();
    expect(line).toMatchObject({
      message: 'Workflow failed',
      'error.name': 'ApplicationFailure',
      'error.message': 'The vault refused the key',
      'meta.message': 'a metadata field named like ours',
      count: '3',
    });
    expect(line?.['error.stack']).toEqual(expect.stringContaining('The vault refused the key'));
    for (const value of Object.values(line ?? {})) expect(['string', 'number', 'boolean']).toContain(typeof value);
    expect(lines[0]).not.toMatch(/PAYLOAD-CANARY|CAUSE-CANARY|OPTIONS-CANARY|\\u001b/);
    expect(line).not.toHaveProperty('options');
    expect(line).not.toHaveProperty('spanContexts');
  });

  test("the SDK's warning for an activity-only region worker is dropped; every other warning stays", () => {
    const { logger, parsed } = capture(JSON_DEBUG);
    logger.warn('No workflows registered, not polling for workflow tasks', { sdkComponent: 'worker', taskQueue: 'cmk-region-eu' });
    logger.log('WARN', 'No workflows registered, not polling for workflow tasks', { sdkComponent: 'worker', taskQueue: 'cmk-region-us' });
    logger.warn('Activity failed', { activityType: 'applyTenantKey' });
    expect(parsed().map((l) => l.message)).toEqual(['Activity failed']);
  });

  test("the API's pino logger: the json format's fields, tokens, passwords and .pfx bytes redacted, the level filter holds", () => {
    const lines: string[] = [];
    const logger = createJsonLogger({ ...JSON_DEBUG, logLevel: 'INFO' }, 'api', { write: (line: string) => lines.push(line) });
    logger.warn(
      { route: '/v1/tenants/{tenant}/keys', password: 'PW-CANARY', pfx: 'PFX-CANARY', token: 'TOKEN-CANARY', headers: { authorization: 'Bearer AUTH-CANARY' }, body: { password: 'NESTED-CANARY', file: 'FILE-CANARY' } },
      'request refused',
    );
    logger.debug('dropped below the level');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Line;
    expect(line).toMatchObject({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/), level: 'WARN', component: 'api', message: 'request refused', route: '/v1/tenants/{tenant}/keys', password: '[redacted]' });
    expect(lines[0]).not.toMatch(/CANARY/);
  });

  test("the API's line logger: `cmk api: …` in text, a JSON line in json", () => {
    const text = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const raw = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      createLineLogger({ ...JSON_DEBUG, logFormat: 'text' }, 'api')('internal error: TypeError: x');
      createLineLogger(JSON_DEBUG, 'api')('internal error: TypeError: x');
      createLineLogger({ ...JSON_DEBUG, logLevel: 'ERROR' }, 'api', 'WARN')('dropped below the level');
      expect(text).toHaveBeenCalledWith('cmk api: internal error: TypeError: x');
      expect(raw).toHaveBeenCalledTimes(1);
      expect(JSON.parse(String(raw.mock.calls[0]?.[0]))).toMatchObject({ level: 'ERROR', component: 'api', message: 'internal error: TypeError: x' });
    } finally {
      text.mockRestore();
      raw.mockRestore();
    }
  });
});

describe('configuration', () => {
  test('defaults: text at WARN, no metrics endpoint', () => {
    expect(loadConfig({}).telemetry).toEqual({ logFormat: 'text', logLevel: 'WARN', metrics: null, apiMetrics: null });
    expect(workerRuntimeOptions(loadConfig({}).telemetry).telemetryOptions).toEqual({});
  });

  test('json and a metrics port: core logs forwarded (never below INFO), Prometheus on host:port', () => {
    const { telemetry } = telemetryConfig({ CMK_LOG_FORMAT: 'json', CMK_LOG_LEVEL: 'debug', CMK_METRICS_PORT: '9464' });
    expect(telemetry).toEqual({ logFormat: 'json', logLevel: 'DEBUG', metrics: { host: '127.0.0.1', port: 9464 }, apiMetrics: null });
    expect(workerRuntimeOptions(telemetry).telemetryOptions).toEqual({
      logging: { filter: { core: 'INFO', other: 'WARN' }, forward: {} },
      metrics: { prometheus: { bindAddress: '127.0.0.1:9464' } },
    });
    expect(metricsBindAddress({ host: '::1', port: 9464 })).toBe('[::1]:9464');
    expect(telemetryConfig({ CMK_METRICS_HOST: '0.0.0.0', CMK_METRICS_PORT: '1' }).telemetry.metrics).toEqual({ host: '0.0.0.0', port: 1 });
  });

  test.each([
    [{ CMK_METRICS_PORT: '0' }, /^CMK_METRICS_PORT="0" is not a TCP port from 1 to 65535\.$/],
    [{ CMK_METRICS_PORT: '65536' }, /^CMK_METRICS_PORT="65536"/],
    [{ CMK_METRICS_PORT: '94a' }, /^CMK_METRICS_PORT="94a"/],
    [{ CMK_METRICS_PORT: '-1' }, /^CMK_METRICS_PORT="-1"/],
    [{ CMK_METRICS_HOST: 'localhost', CMK_METRICS_PORT: '9464' }, /^CMK_METRICS_HOST="localhost" is not an IP address/],
    [{ CMK_API_METRICS_PORT: '70000' }, /^CMK_API_METRICS_PORT="70000" is not a TCP port from 1 to 65535\.$/],
    [{ CMK_METRICS_PORT: '9464', CMK_API_METRICS_PORT: '9464' }, /^CMK_METRICS_PORT and CMK_API_METRICS_PORT are both 9464/],
    [{ CMK_LOG_FORMAT: 'xml' }, /^CMK_LOG_FORMAT="xml" is not a log format; use text or json\.$/],
    [{ CMK_LOG_LEVEL: 'verbose' }, /^CMK_LOG_LEVEL="verbose" is not a log level; use TRACE, DEBUG, INFO, WARN, ERROR\.$/],
  ])('refuses %j', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('the stack with CMK_LOG_FORMAT=json, CMK_LOG_LEVEL=DEBUG and CMK_METRICS_PORT', () => {
  let stack: Stack;
  let metricsPort: number;
  let apiMetricsPort: number;
  const ADMIN = 'telemetry-admin@fabrikam.example';
  const CANARY = 'ROW-CANARY-3e9f41';

  beforeAll(async () => {
    metricsPort = await freePort();
    apiMetricsPort = await freePort();
    stack = await startStack({ CMK_METRICS_PORT: String(metricsPort), CMK_API_METRICS_PORT: String(apiMetricsPort), CMK_LOG_FORMAT: 'json', CMK_LOG_LEVEL: 'DEBUG' });
    expect((await stack.cmk(['tenant', 'create', '--tenant', 'fabrikam', '--name', 'Fabrikam', '--admin', `${ADMIN}:global`, '--json'])).code).toBe(0);
    expect((await stack.cmk(['env', 'create', '--tenant', 'fabrikam', '--env', 'prod', '--json'])).code).toBe(0);
    expect((await stack.cmk(['env', 'data', '--tenant', 'fabrikam', '--env', 'prod', '--write', CANARY], { as: ADMIN })).code).toBe(0);
    // The Runtime logger buffers entries for 100 ms to order them; give it a moment to flush.
    await new Promise((r) => setTimeout(r, 1000));
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  test('/metrics serves Prometheus text with the worker’s counters and latencies for the cmk task queue', async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    // Names as SDK 1.24's core emits them (counters without `_total`, durations in milliseconds); a counter or a
    // histogram appears once it has a sample, so only those this traffic is sure to produce are checked.
    const sample = (name: string, labels: Record<string, string>) =>
      new RegExp(`^${name}\\{${Object.entries(labels).map(([k, v]) => `(?=[^}]*${k}="${v}")`).join('')}[^}]*\\} ([0-9.e+]+)$`, 'm');
    expect(text).toMatch(/^# TYPE temporal_activity_task_received counter$/m);
    expect(Number(sample('temporal_activity_task_received', { activity_type: 'provisionEnvironmentDatabase', task_queue: 'cmk' }).exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^# TYPE temporal_activity_execution_latency histogram$/m);
    expect(text).toMatch(sample('temporal_activity_execution_latency_count', { activity_type: 'provisionEnvironmentDatabase', workflow_type: 'tenantWorkflow', task_queue: 'cmk' }));
    expect(text).toMatch(sample('temporal_activity_schedule_to_start_latency_count', { task_queue: 'cmk' }));
    expect(text).toMatch(sample('temporal_workflow_task_schedule_to_start_latency_count', { task_queue: 'cmk' }));
    expect(text).toMatch(sample('temporal_worker_task_slots_available', { worker_type: 'ActivityWorker', task_queue: 'cmk' }));
    expect(text).toMatch(sample('temporal_num_pollers', { poller_type: 'workflow_task', task_queue: 'cmk' }));
    // Every sample line is `name{labels} value`: parseable by a scraper.
    for (const row of text.split('\n').filter((l) => l && !l.startsWith('#'))) expect(row).toMatch(/^[a-z_:][a-z0-9_:]*(\{.*\})? \S+$/);
  });

  test("the API service's /metrics counts requests by route template and status, never by tenant or environment ID", async () => {
    expect((await stack.cmk(['env', 'list', '--tenant', 'no-such-tenant'])).code).toBe(3);
    const response = await fetch(`http://127.0.0.1:${apiMetricsPort}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    const count = (labels: string) => Number(new RegExp(`^cmk_api_requests_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    expect(count('method="POST",route="/v1/tenants",status="201"') + count('method="POST",route="/v1/tenants",status="200"')).toBeGreaterThanOrEqual(1);
    expect(count('method="POST",route="/v1/tenants/\\{tenant\\}/environments/\\{env\\}/data",status="200"')).toBeGreaterThanOrEqual(1);
    expect(count('method="GET",route="/v1/tenants/\\{tenant\\}/environments",status="404"')).toBe(1);
    // prom-client writes `le` first; label order is not part of the exposition format.
    expect(text).toMatch(/^cmk_api_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="\/v1\/status",status="200"\} \d+$/m);
    expect(text).toMatch(/^cmk_api_requests_in_flight \d+$/m);
    for (const id of ['fabrikam', 'no-such-tenant', 'prod', ADMIN]) expect(text).not.toContain(id);
    expect((await fetch(`http://127.0.0.1:${apiMetricsPort}/v1/status`)).status).toBe(404);
  });

  test("the worker's stderr is JSON lines with the activities' and workflows' IDs, and no payload", () => {
    const output = stack.output();
    const json = output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
    const others = output.split('\n').filter((l) => l && !l.startsWith('{'));
    // Besides JSON, only the stack's own lines (`cmk: …`, `cmk ready: …`).
    for (const line of others) expect(line).toMatch(/^cmk( ready)?:/);
    expect(json.length).toBeGreaterThan(0);
    for (const line of json) {
      expect(line).toMatchObject({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/), level: expect.stringMatching(/^(DEBUG|INFO|WARN|ERROR)$/), message: expect.any(String) });
      for (const value of Object.values(line)) expect(['string', 'number', 'boolean']).toContain(typeof value);
    }
    const activities = json.filter((l) => l.message === 'Activity completed');
    expect(activities.length).toBeGreaterThan(0);
    for (const line of activities) {
      expect(line).toMatchObject({ component: 'worker', sdkComponent: 'worker', activityType: expect.any(String), activityId: expect.any(String), workflowId: expect.any(String), attempt: expect.any(Number), taskQueue: 'cmk', durationMs: expect.any(Number) });
    }
    expect(json.some((l) => l.message === 'Workflow started' && typeof l.workflowId === 'string' && typeof l.runId === 'string' && typeof l.workflowType === 'string' && l.taskQueue === 'cmk' && typeof l.namespace === 'string')).toBe(true);
    expect(json.some((l) => l.sdkComponent === 'core')).toBe(true);
    expect(json.some((l) => typeof l.message === 'string' && /Prometheus metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(l.message))).toBe(true);
    expect(output).not.toContain(CANARY);
    expect(output).not.toContain(ADMIN);
    expect(output).not.toMatch(/\u001b\[/);
  });
});
