/**
 * `node --import tsx bench/reprotect-profile.ts [--n 500] [--concurrency 1,2,4,8] [--json]`: where the time of one
 * environment's re-protection goes, in-process, with no Temporal. Sets up N environments on the real local vault and
 * SQLite files (provider key, then a tenant key applied), then re-protects them all onto a new tenant key one after
 * another, timing each step of `SqliteEnvironmentDatabases.reprotect` by wrapping the engine's and the vault's own
 * methods (and the file calls of the record's atomic write) at run time. Then, uninstrumented, re-protects them all
 * again onto further keys with 1, 2, 4… environments in flight (the batch activity's pattern), for throughput.
 * Not a test: it prints figures; the machine is shared and noisy, so compare ratios between runs, not durations.
 */
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import type { Protector } from '../database/types';
import type { Vault } from '../vault/types';
import { arg, percentile } from './support';

const STEPS = [
  'recordRead',
  'assertOnline',
  'unwrap.keyRecord',
  'unwrap.keyOpen',
  'unwrap.rsa',
  'unwrap',
  'wrap.keyRecord',
  'wrap.rsa',
  'wrap',
  'write.file',
  'write.fsyncFile',
  'write.rename',
  'write.fsyncDir',
  'write',
  'total',
] as const;
type Step = (typeof STEPS)[number];
type Sample = Record<Step, number> & { recordReads: number };

const newSample = (): Sample => Object.assign(Object.fromEntries(STEPS.map((s) => [s, 0])) as Record<Step, number>, { recordReads: 0 });

/** The sample being measured (environments run one after another while profiling) and which outer step is running. */
let current: Sample | undefined;
let phase: 'unwrap' | 'wrap' | 'write' | undefined;

type AnyFn = (...args: unknown[]) => unknown;

/** Replaces `target[method]` by a wrapper adding its duration to `step` of the current sample. */
function timed(target: object, method: string, step: (() => Step | undefined) | Step, around?: { enter?: () => void; leave?: () => void }): void {
  const holder = target as Record<string, AnyFn>;
  const original = holder[method];
  if (typeof original !== 'function') throw new Error(`no method ${method} to time`);
  holder[method] = function (this: unknown, ...args: unknown[]) {
    const sample = current;
    const which = typeof step === 'function' ? step() : step;
    if (!sample || !which) return original.apply(this, args);
    around?.enter?.();
    const started = performance.now();
    const done = () => {
      sample[which] += performance.now() - started;
      around?.leave?.();
    };
    let result: unknown;
    try {
      result = original.apply(this, args);
    } catch (err) {
      done();
      throw err;
    }
    if (result instanceof Promise) return result.finally(done);
    done();
    return result;
  };
}

async function instrument(databases: object, vault: Vault, probeDir: string): Promise<void> {
  timed(databases, 'record', 'recordRead', { enter: () => current && (current.recordReads += 1) });
  timed(databases, 'assertOnline', 'assertOnline');
  timed(databases, 'writeRecord', 'write', { enter: () => (phase = 'write'), leave: () => (phase = undefined) });
  // The local vault's own steps: its key record read and MAC check (`load`), the private key's AES-GCM opening and
  // PKCS#8 parse (`privateKey`); the RSA operation is the rest of the call.
  timed(vault, 'load', () => (phase === 'unwrap' ? 'unwrap.keyRecord' : phase === 'wrap' ? 'wrap.keyRecord' : undefined));
  timed(vault, 'privateKey', () => (phase === 'unwrap' ? 'unwrap.keyOpen' : undefined));
  timed(vault, 'unwrapKey', 'unwrap', { enter: () => (phase = 'unwrap'), leave: () => (phase = undefined) });
  timed(vault, 'wrapKey', 'wrap', { enter: () => (phase = 'wrap'), leave: () => (phase = undefined) });
  // The record's atomic write (common/atomic.ts): temporary file written, fsynced, renamed, directory fsynced.
  const directories = new WeakSet<object>();
  const open = fs.open.bind(fs);
  (fs as { open: typeof fs.open }).open = async (...args: Parameters<typeof fs.open>) => {
    const handle = await open(...args);
    // fsyncPath opens what it syncs read-only (the directory, in a record's write); the temporary file is opened 'wx'.
    if (args[1] === 'r') directories.add(handle);
    return handle;
  };
  const probe = await open(probeDir, 'r');
  const handles = Object.getPrototypeOf(probe) as object;
  await probe.close();
  timed(handles, 'writeFile', () => (phase === 'write' ? 'write.file' : undefined));
  const sync = (handles as Record<string, AnyFn>).sync!;
  (handles as Record<string, AnyFn>).sync = function (this: object) {
    const sample = current;
    if (!sample || phase !== 'write') return sync.call(this);
    const started = performance.now();
    const step: Step = directories.has(this) ? 'write.fsyncDir' : 'write.fsyncFile';
    return (sync.call(this) as Promise<void>).finally(() => (sample[step] += performance.now() - started));
  };
  timed(fs, 'rename', () => (phase === 'write' ? 'write.rename' : undefined));
}

const tenantKey = async (vault: Vault, name: string): Promise<Protector> => {
  const der = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'der' });
  const key = await vault.importKey(name, der, { purpose: 'tenant', enabled: true });
  return { kind: 'tenant', name: key.name, version: key.version, thumbprint: key.thumbprint };
};

async function inFlight<T>(items: T[], concurrency: number, work: (item: T) => Promise<unknown>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
}

/** The bare RSA work of one re-protection with parsed keys: one OAEP-256 private decrypt and one public encrypt. */
function rsaFloor(iterations: number): number {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const oaep = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' } as const;
  const wrapped = publicEncrypt({ key: publicKey, ...oaep }, randomBytes(32));
  const started = performance.now();
  for (let i = 0; i < iterations; i++) {
    privateDecrypt({ key: privateKey, ...oaep }, wrapped);
    publicEncrypt({ key: publicKey, ...oaep }, randomBytes(32));
  }
  return (performance.now() - started) / iterations;
}

async function main(): Promise<void> {
  const n = arg('n', 500);
  const json = process.argv.includes('--json');
  const ci = process.argv.indexOf('--concurrency');
  const concurrencies = (ci > 0 ? process.argv[ci + 1]! : '1,2,4,8').split(',').map(Number);
  // The real local parts in a fresh temporary data dir, as the worker builds them.
  const base = mkdtempSync(join(tmpdir(), 'cmk-profile-'));
  const config = loadConfig({ CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') });
  const { vault, databases } = buildParts(config);
  const tenant = 'bench';
  const envs = Array.from({ length: n }, (_, i) => `env-${i}`);
  const say = (line: string) => !json && console.error(line);

  // Set-up (not timed): N databases under the provider key, then the tenant's first key applied (a rekey).
  const setupStarted = performance.now();
  const { providerProtector } = await import('../activities/environments');
  const provider = await providerProtector(vault, 'default');
  const first = await tenantKey(vault, 'tenant--5-bench-default');
  await inFlight(envs, 8, async (env) => {
    await databases.create(tenant, env, provider);
    await databases.rekey(tenant, env, first);
  });
  say(`set-up: ${n} environments in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s (${config.dataDir})`);

  // Profiled: one environment after another, every step timed.
  await instrument(databases, vault, config.dataDir);
  const second = await tenantKey(vault, 'tenant--5-bench-default');
  const samples: Sample[] = [];
  const profileStarted = performance.now();
  for (const env of envs) {
    const sample = (current = newSample());
    const started = performance.now();
    await databases.reprotect(tenant, env, second);
    sample.total = performance.now() - started;
    current = undefined;
    sample['unwrap.rsa'] = sample.unwrap - sample['unwrap.keyRecord'] - sample['unwrap.keyOpen'];
    sample['wrap.rsa'] = sample.wrap - sample['wrap.keyRecord'];
    samples.push(sample);
  }
  const profileSeconds = (performance.now() - profileStarted) / 1000;

  const stats = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { mean: values.reduce((a, b) => a + b, 0) / values.length, p50: percentile(sorted, 50), p95: percentile(sorted, 95) };
  };
  const steps = Object.fromEntries(STEPS.map((s) => [s, stats(samples.map((x) => x[s]))])) as Record<Step, ReturnType<typeof stats>>;
  const vaultMs = steps.unwrap.mean + steps.wrap.mean;
  const bareRsaMs = rsaFloor(200);

  // Throughput, uninstrumented: the same N environments onto a further key each time, `c` in flight.
  const throughput: Array<{ concurrency: number; seconds: number; environmentsPerSecond: number }> = [];
  for (const concurrency of concurrencies) {
    const next = await tenantKey(vault, 'tenant--5-bench-default');
    const started = performance.now();
    await inFlight(envs, concurrency, (env) => databases.reprotect(tenant, env, next));
    const seconds = (performance.now() - started) / 1000;
    throughput.push({ concurrency, seconds, environmentsPerSecond: n / seconds });
  }

  const figures = {
    environments: n,
    cores: availableParallelism(),
    recordReadsPerEnvironment: stats(samples.map((x) => x.recordReads)).mean,
    stepsMs: steps,
    sequential: { seconds: profileSeconds, environmentsPerSecond: n / profileSeconds },
    // What the vault calls alone would allow, one after another, and what the bare RSA operations allow.
    vaultFloor: { msPerEnvironment: vaultMs, environmentsPerSecond: 1000 / vaultMs },
    rsaFloor: { msPerEnvironment: bareRsaMs, environmentsPerSecond: 1000 / bareRsaMs },
    throughput,
  };
  if (json) {
    console.log(JSON.stringify(figures, null, 2));
    return;
  }
  const f = (x: number) => x.toFixed(3).padStart(8);
  console.log(`\n${n} environments, ${figures.cores} cores, ${figures.recordReadsPerEnvironment} record read(s) per environment; ms per environment`);
  console.log(`${'step'.padEnd(18)} ${'mean'.padStart(8)} ${'p50'.padStart(8)} ${'p95'.padStart(8)}`);
  for (const s of STEPS) console.log(`${s.padEnd(18)} ${f(steps[s].mean)} ${f(steps[s].p50)} ${f(steps[s].p95)}`);
  console.log(`\nsequential (instrumented): ${figures.sequential.environmentsPerSecond.toFixed(0)} env/s`);
  console.log(`vault floor (unwrap + wrap calls only): ${figures.vaultFloor.environmentsPerSecond.toFixed(0)} env/s`);
  console.log(`RSA floor (bare OAEP decrypt + encrypt, parsed keys): ${bareRsaMs.toFixed(3)} ms, ${figures.rsaFloor.environmentsPerSecond.toFixed(0)} env/s`);
  for (const t of throughput) console.log(`in flight ${t.concurrency}: ${t.seconds.toFixed(2)} s, ${t.environmentsPerSecond.toFixed(0)} env/s`);
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
