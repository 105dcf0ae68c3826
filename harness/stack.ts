/**
 * Starts the embedded stack exactly as `npm start` does (stack/start.ts), on free ports with its own data and
 * secrets dirs, and drives the real `cmk` bin as a user would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config';
import { issueToken, loadTokenSigningKey } from '../common/tokens';

const root = join(__dirname, '..');

/**
 * A free port below the kernel's ephemeral range. A port the OS hands out for `listen(0)` lies inside that range, so
 * once the stack that held it stops, any outgoing connection (the dev server's own services, the worker's gRPC) may take
 * it as its source port, and the restarted stack's API then fails with EADDRINUSE: a port that must survive a
 * restart is picked where the kernel never picks.
 */
export async function freePort(): Promise<number> {
  return freePorts(0);
}

/** A frontend port whose UI port (+1000) is free too. */
async function temporalPort(): Promise<number> {
  return freePorts(1000);
}

async function freePorts(uiOffset: number): Promise<number> {
  const low = 10_000;
  const high = ephemeralRangeStart() - 1 - uiOffset;
  for (;;) {
    const port = low + Math.floor(Math.random() * (high - low));
    const ok = await Promise.all((uiOffset ? [port, port + uiOffset] : [port]).map(portIsFree));
    if (ok.every(Boolean)) return port;
  }
}

function ephemeralRangeStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (first > 12_000) return first;
  } catch {
    // Not Linux: the IANA dynamic range starts at 49152; below 32768 is outside every common default.
  }
  return 32_768;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: () => Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON shapes
}

export interface ApiResult {
  status: number;
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON shapes
  text: string;
}

export interface Stack {
  env: Record<string, string>;
  dataDir: string;
  secretsDir: string;
  readyLine: string;
  cmk: (args: string[], options?: { as?: string; env?: Record<string, string> }) => Promise<CliResult>;
  /** One raw HTTP request to the API service as `as` (default: the operator); the body is sent as given when a string. */
  api: (method: string, path: string, options?: { body?: unknown; as?: string; headers?: Record<string, string> }) => Promise<ApiResult>;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
  process: ChildProcess;
  output: () => string;
}

export async function startStack(extraEnv: Record<string, string> = {}, dirs?: { dataDir: string; secretsDir: string }): Promise<Stack> {
  const base = mkdtempSync(join(tmpdir(), 'cmk-stack-'));
  const dataDir = dirs?.dataDir ?? join(base, 'var');
  const secretsDir = dirs?.secretsDir ?? join(base, 'secrets');
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    CMK_DATA_DIR: dataDir,
    CMK_SECRETS_DIR: secretsDir,
    CMK_API_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: `127.0.0.1:${await temporalPort()}`,
    // The suites (and the fuzzer) send far more than 10 requests a second as one user; test/rate-limit.test.ts covers the limits.
    CMK_RATE_LIMIT: '0',
    CMK_RATE_LIMIT_TENANT: '0',
    ...extraEnv,
  };
  delete env.CMK_USER;
  delete env.CMK_API_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'stack', 'start.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack not ready in 90 s:\n${output}`)), 90_000);
    const onData = () => {
      const line = output.split('\n').find((l) => l.startsWith('cmk ready:'));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`stack exited (${code}) before it was ready:\n${output}`));
    });
  });
  const stack: Stack = {
    env,
    dataDir,
    secretsDir,
    readyLine,
    process: child,
    output: () => output,
    cmk: (args, options = {}) => runCmk(args, { ...env, ...(options.as ? { CMK_USER: options.as } : {}), ...(options.env ?? {}) }),
    api: async (method, path, options = {}) => {
      const headers: Record<string, string> = { ...(await identityHeaders(env, options.as)), ...(options.headers ?? {}) };
      let body: string | undefined;
      if (options.body !== undefined) {
        body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(`http://127.0.0.1:${env.CMK_API_PORT}${path}`, { method, headers, body });
      const text = await response.text();
      let parsed: Record<string, any> = {}; // eslint-disable-line @typescript-eslint/no-explicit-any -- see ApiResult
      try {
        parsed = text ? (JSON.parse(text) as Record<string, any>) : {}; // eslint-disable-line @typescript-eslint/no-explicit-any -- see ApiResult
      } catch {
        parsed = {};
      }
      return { status: response.status, body: parsed, text };
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
  return stack;
}

/** The headers that say who calls: a bearer token signed with the stack's local key, as the CLI signs it for --as. */
export async function identityHeaders(env: Record<string, string>, as: string | undefined): Promise<Record<string, string>> {
  const config = loadConfig(env);
  const token = await issueToken(loadTokenSigningKey(config.secretsDir), { email: as ?? null, issuer: config.auth.issuer, audience: config.auth.audience, ttlSeconds: 300 });
  return { authorization: `Bearer ${token}` };
}

export function runCmk(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin', 'cmk.js'), ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) =>
      resolve({
        code: code ?? -1,
        stdout,
        stderr,
        json: () => JSON.parse(stdout) as Record<string, any>, // eslint-disable-line @typescript-eslint/no-explicit-any -- see CliResult
      }),
    );
  });
}

/** The pid of the worker a stack started (its supervisor writes every child's pid to `run/stack.json`). */
export function stackWorkerPid(dataDir: string): number {
  return stackChildPid(dataDir, 'worker', (cmdline) => cmdline.includes('worker/main.ts'));
}

/** The pid of the Temporal dev server a stack started (`temporal server start-dev`, one Go process). */
export function stackTemporalPid(dataDir: string): number {
  return stackChildPid(dataDir, 'Temporal dev server', (cmdline) => cmdline.split('\0').includes('start-dev'));
}

function stackChildPid(dataDir: string, what: string, matches: (cmdline: string) => boolean): number {
  const { pids } = JSON.parse(readFileSync(join(dataDir, 'run', 'stack.json'), 'utf8')) as { pids: number[] };
  const pid = pids.find((p) => {
    try {
      return matches(readFileSync(`/proc/${p}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
  if (!pid) throw new Error(`no ${what} process`);
  return pid;
}
