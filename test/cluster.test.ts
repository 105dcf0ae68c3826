/**
 * Smoke test of `npm run cluster` (stack/cluster.ts): the Temporal server built from go.temporal.io/server on
 * PostgreSQL 15, its four services and cmk's processes, each a process of its own, set up from nothing in a fresh
 * data dir; then a tenant's first key applied through the CLI, and every process gone after SIGTERM. It needs the
 * binaries already built (a 12-minute build is no part of a test run): CMK_CLUSTER_BIN_DIR, or ./var/cluster/bin as
 * `npm run cluster` leaves them; without them it is skipped, and says why.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterBinariesCached, clusterPaths, clusterPorts } from '../stack/cluster';
import { freePort, runCmk } from '../harness/stack';

const root = join(__dirname, '..');
const binDir = process.env.CMK_CLUSTER_BIN_DIR || clusterPaths(join(root, 'var'), {}).bin;
const cached = clusterBinariesCached('/nonexistent', { CMK_CLUSTER_BIN_DIR: binDir }) && existsSync('/usr/lib/postgresql/15/bin/postgres');
const smoke = cached ? test : test.skip;
const title = cached
  ? 'npm run cluster sets itself up in a fresh data dir, serves the CLI, and stops every process on SIGTERM'
  : `npm run cluster smoke test — skipped: no Temporal server binaries cached in ${binDir} (run \`npm run cluster\` once, about 12 minutes) or no PostgreSQL 15`;

// The reporter lists no skipped titles: the reason is said here too.
if (!cached) process.stderr.write(`${title}\n`);

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/** A frontend port whose derived ports (services, membership, metrics, PostgreSQL) are all free. */
async function clusterFrontendPort(): Promise<number> {
  for (;;) {
    // Below 32000: Temporal keeps the membership ports (frontend − 300 …) in a PostgreSQL smallint (at most 32767).
    const frontend = 22000 + Math.floor(Math.random() * 10000);
    const p = clusterPorts(frontend, {});
    const all = [...Object.values(p.grpc), ...Object.values(p.membership), ...Object.values(p.metrics), p.http, p.postgres];
    if ((await Promise.all(all.map(portIsFree))).every(Boolean)) return frontend;
  }
}

/** PIDs of processes whose command line names `dir`: what the cluster started there. */
function processesIn(dir: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

smoke(
  title,
  async () => {
    const base = mkdtempSync(join(tmpdir(), 'cmk-cluster-'));
    // PostgreSQL runs as its own user: it must reach its data directory below this one.
    chmodSync(base, 0o755);
    const dataDir = join(base, 'var');
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      CMK_DATA_DIR: dataDir,
      CMK_SECRETS_DIR: join(base, 'secrets'),
      CMK_CLUSTER_BIN_DIR: binDir,
      CMK_API_PORT: String(await freePort()),
      TEMPORAL_ADDRESS: `127.0.0.1:${await clusterFrontendPort()}`,
    };
    delete env.CMK_USER;
    delete env.CMK_API_URL;
    delete env.CMK_REGIONS;
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'stack', 'cluster.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const ready = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`cluster not ready in 5 minutes:\n${output}`)), 300_000);
        child.stdout.on('data', () => {
          const line = output.split('\n').find((l) => l.startsWith('cmk cluster ready'));
          if (!line) return;
          clearTimeout(timer);
          resolve(line);
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`cluster exited (${code}) before it was ready:\n${output}`));
        });
      });
      expect(ready).toMatch(/frontend, history, matching, worker: separate processes/);
      // The four Temporal services, PostgreSQL as its own user, the workflows worker, the region's worker, the API.
      const cmdlines = processesIn(dataDir).map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
      for (const service of ['frontend', 'history', 'matching', 'worker']) expect(cmdlines.filter((c) => c.includes(`--service=${service}`))).toHaveLength(1);
      expect(cmdlines.filter((c) => c.includes('/postgres -D '))).toHaveLength(1);

      const alice = 'alice@contoso.example';
      const as = { ...env, CMK_USER: alice };
      const status = await runCmk(['status'], env);
      expect(status).toMatchObject({ code: 0 });
      expect(status.stdout).toMatch(/Workers polling cmk-region-default \(region default\): 1/);
      expect((await runCmk(['tenant', 'create', '--tenant', 'contoso', '--name', 'Contoso', '--admin', `${alice}:global`], env)).code).toBe(0);
      expect((await runCmk(['env', 'create', '--tenant', 'contoso', '--env', 'prod'], env)).code).toBe(0);
      const pw = join(base, 'pw.txt');
      writeFileSync(pw, 'a long and secret password\n');
      const generated = await runCmk(['key', 'generate', '--tenant', 'contoso', '--name', 'k1', '--password-file', pw, '--out', join(base, 'k1.pfx'), '--wait', '--json'], as);
      expect(generated.code).toBe(0);
      const applied = await runCmk(['env', 'apply', '--accept-risk', '--tenant', 'contoso', '--env', 'prod', '--json'], as);
      expect(applied.code).toBe(0);
      const list = await runCmk(['env', 'list', '--tenant', 'contoso', '--json'], as);
      expect(list.json().environments).toEqual([expect.objectContaining({ id: 'prod', protection: 'tenant', keyThumbprint: generated.json().activeKey.thumbprint })]);
      // The password of Temporal's role is in no file the cluster wrote.
      const configs = readdirSync(join(dataDir, 'cluster', 'config')).filter((f) => f.endsWith('.yaml'));
      expect(configs.sort()).toEqual(['frontend.yaml', 'history.yaml', 'matching.yaml', 'worker.yaml']);
      for (const f of configs) expect(readFileSync(join(dataDir, 'cluster', 'config', f), 'utf8')).toMatch(/password: \{\{ env "CMK_CLUSTER_PG_PASSWORD" \| quote \}\}/);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    expect(processesIn(dataDir)).toEqual([]);
  },
  420_000,
);
