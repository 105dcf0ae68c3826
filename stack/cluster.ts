/**
 * `npm run cluster`: cmk on Temporal as production runs it, without Docker (issue 15, "Production topology"). A
 * Temporal server built from `go.temporal.io/server` through the Go module proxy, on the machine's PostgreSQL 15 run as
 * its own user, its frontend, history, matching and worker services as separate processes; then cmk's workflows
 * worker, one worker per region and the API service, each a process of its own — the topology of docker-compose.yml.
 *
 * Everything it makes lies under `<CMK_DATA_DIR>/cluster` and is made once: the binaries (`bin/`, a 12-minute build on
 * two cores, run at the lowest priority), the PostgreSQL cluster (`postgres/`), the schemas, the services' configs.
 * It runs in the foreground, prints one line when ready, and stops every child on SIGINT or SIGTERM. The password of
 * Temporal's PostgreSQL role is made anew at every start and passed in the environment only (the configs read it with
 * the server's `# enable-template`): it is never written to a file.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { ConfigError, loadConfig, type Config } from '../config';
import { registerSearchAttributes } from './search-attributes';
import { reapPreviousStack } from './pids';
import { Supervisor, splitAddress, until } from './supervisor';
import { workerNodeFlags, workerProcessEnv } from './worker-process';

const root = join(__dirname, '..');
const say = (line: string) => process.stderr.write(`cmk cluster: ${line}\n`);

export const TEMPORAL_SERVER_MODULE = 'go.temporal.io/server';
export const TEMPORAL_SERVER_VERSION = 'v1.32.2';
/** The Go toolchain the module's go.mod asks for; `go` fetches it through the module proxy. */
const GO_TOOLCHAIN = 'go1.27.3';
const PG_BIN = process.env.CMK_CLUSTER_PG_BIN || '/usr/lib/postgresql/15/bin';
/** PostgreSQL refuses to run as root: as root, it runs as this user. */
const PG_USER = process.env.CMK_CLUSTER_PG_USER || 'postgres';
const SERVICES = ['history', 'matching', 'frontend', 'worker'] as const;
type Service = (typeof SERVICES)[number];

/** Where the cluster keeps what it made, under the data dir. */
export function clusterPaths(dataDir: string, env: Record<string, string | undefined> = process.env) {
  const dir = join(dataDir, 'cluster');
  // CMK_CLUSTER_BIN_DIR: binaries built once and shared by several data dirs (the smoke test uses it).
  const bin = env.CMK_CLUSTER_BIN_DIR || join(dir, 'bin');
  return {
    dir,
    bin,
    server: join(bin, 'temporal-server'),
    sqlTool: join(bin, 'temporal-sql-tool'),
    postgres: join(dir, 'postgres'),
    config: join(dir, 'config'),
    logs: join(dir, 'logs'),
    run: join(dir, 'run'),
  };
}
type Paths = ReturnType<typeof clusterPaths>;

/** The ports, all derived from the frontend's (TEMPORAL_ADDRESS) unless set: 7233 gives the module's own layout. */
export function clusterPorts(frontend: number, env: Record<string, string | undefined> = process.env) {
  const grpc: Record<Service, number> = { frontend, history: frontend + 1, matching: frontend + 2, worker: frontend + 6 };
  const membership: Record<Service, number> = { frontend: frontend - 300, history: frontend - 299, matching: frontend - 298, worker: frontend - 294 };
  const metrics: Record<Service, number> = { frontend: frontend + 800, history: frontend + 801, matching: frontend + 802, worker: frontend + 806 };
  const postgres = Number(env.CMK_CLUSTER_PG_PORT || frontend - 1800);
  if (!Number.isInteger(postgres) || postgres < 1 || postgres > 65535) throw new ConfigError(`CMK_CLUSTER_PG_PORT="${env.CMK_CLUSTER_PG_PORT}" is not a port.`);
  return { grpc, http: frontend + 10, membership, metrics, postgres };
}
type Ports = ReturnType<typeof clusterPorts>;

function run(command: string, args: string[], options: SpawnSyncOptions & { what: string; log?: string }): string {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  const output = `${String(result.stdout ?? '')}${String(result.stderr ?? '')}`;
  if (options.log) writeFileSync(options.log, output, { flag: 'a' });
  if (result.error) throw new Error(`${options.what}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${options.what} failed (exit ${result.status ?? result.signal}): ${output.trim().split('\n').slice(-5).join(' | ')}`);
  return String(result.stdout ?? '');
}

// ------------------------------------------------------------------------------------------------- binaries

/** The module's files (schemas, config): the module cache's copy, fetched through the proxy if missing. */
function moduleDir(): string {
  const out = run('go', ['mod', 'download', '-json', `${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`], {
    what: `go mod download ${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`,
    env: { ...process.env, GOTOOLCHAIN: GO_TOOLCHAIN },
    cwd: '/',
  });
  const dir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!dir || !existsSync(dir)) throw new Error(`The Go module cache has no copy of ${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}.`);
  return dir;
}

/** The server and its SQL tool, built once at the lowest CPU priority (the machine is shared) and kept in bin/. */
function ensureBinaries(paths: Paths): void {
  if (existsSync(paths.server) && existsSync(paths.sqlTool)) return;
  mkdirSync(paths.bin, { recursive: true });
  const scratch = join(paths.bin, `.build-${process.pid}`);
  mkdirSync(scratch, { recursive: true });
  say(`building the Temporal server ${TEMPORAL_SERVER_VERSION} and its SQL tool (once; about 12 minutes on 2 cores; log ${join(paths.logs, 'go-build.log')})…`);
  const started = Date.now();
  run('nice', ['-n', '19', 'go', 'install', `${TEMPORAL_SERVER_MODULE}/cmd/server@${TEMPORAL_SERVER_VERSION}`, `${TEMPORAL_SERVER_MODULE}/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`], {
    what: 'go install of the Temporal server',
    env: { ...process.env, GOTOOLCHAIN: GO_TOOLCHAIN, GOBIN: scratch },
    cwd: '/',
    log: join(paths.logs, 'go-build.log'),
  });
  renameSync(join(scratch, 'sql'), paths.sqlTool);
  // The server last: its presence says the cache is complete.
  renameSync(join(scratch, 'server'), paths.server);
  say(`built in ${Math.round((Date.now() - started) / 1000)} s.`);
}

// ----------------------------------------------------------------------------------------------- PostgreSQL

interface PgUser {
  uid: number;
  gid: number;
}

/** PostgreSQL's user: `postgres` when we are root (it refuses root), else ourselves. */
function pgUser(): PgUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(run('id', [flag, PG_USER], { what: `The user ${PG_USER} (PostgreSQL refuses to run as root)` }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** A command as PostgreSQL's user: setpriv execs it, so the PID is the command's own and signals reach it. */
function asPg(user: PgUser | undefined, command: string, args: string[]): [string, string[]] {
  return user ? ['setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', command, ...args]] : [command, args];
}

function initPostgres(paths: Paths, user: PgUser | undefined): void {
  if (user) {
    chmodSync(paths.dir, 0o755);
    const [command, args] = asPg(user, 'test', ['-x', paths.dir]);
    if (spawnSync(command, args, { cwd: '/' }).status !== 0) {
      throw new Error(`The user ${PG_USER} cannot reach ${paths.dir}: every directory above it must be searchable by others (chmod o+x), or set CMK_DATA_DIR elsewhere.`);
    }
  }
  if (existsSync(join(paths.postgres, 'PG_VERSION'))) return;
  mkdirSync(paths.postgres, { recursive: true, mode: 0o700 });
  if (user) chownSync(paths.postgres, user.uid, user.gid);
  chmodSync(paths.postgres, 0o700);
  // Local connections (a socket inside the 0700 data directory: only its user reaches it) are trusted; TCP needs a password.
  const [command, args] = asPg(user, join(PG_BIN, 'initdb'), ['-D', paths.postgres, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-locale']);
  run(command, args, { what: `initdb (as ${user ? PG_USER : 'this user'}) in ${paths.postgres}`, cwd: '/', log: join(paths.logs, 'initdb.log') });
}

function psql(paths: Paths, user: PgUser | undefined, ports: Ports, database: string, input: string): string {
  const [command, args] = asPg(user, join(PG_BIN, 'psql'), ['-h', paths.postgres, '-p', String(ports.postgres), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-qAt', '-f', '-']);
  return run(command, args, { what: `psql in ${database}`, cwd: '/', input });
}

async function waitForPostgres(paths: Paths, user: PgUser | undefined, ports: Ports): Promise<void> {
  const [command, args] = asPg(user, join(PG_BIN, 'pg_isready'), ['-h', paths.postgres, '-p', String(ports.postgres), '-U', 'postgres']);
  await until(`PostgreSQL (log: ${join(paths.logs, 'postgres.log')})`, 60_000, () => Promise.resolve(spawnSync(command, args, { cwd: '/' }).status === 0 ? true : undefined));
}

/** Temporal's role and its two databases with their schemas, each step only when missing; update-schema always. */
function setUpSchemas(paths: Paths, user: PgUser | undefined, ports: Ports, password: string, module: string): void {
  psql(paths, user, ports, 'postgres', [
    "SELECT 'CREATE ROLE temporal' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'temporal')\\gexec",
    `ALTER ROLE temporal LOGIN CREATEDB PASSWORD '${password}';`,
    '',
  ].join('\n'));
  const tool = (database: string, ...args: string[]) =>
    run(paths.sqlTool, ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(ports.postgres), '-u', 'temporal', '--db', database, ...args], {
      what: `temporal-sql-tool ${args[0] ?? ''} (${database})`,
      env: { ...process.env, SQL_PASSWORD: password },
      log: join(paths.logs, 'schema.log'),
    });
  for (const [database, schema] of [['temporal', 'temporal'], ['temporal_visibility', 'visibility']] as const) {
    const exists = psql(paths, user, ports, 'postgres', `SELECT 1 FROM pg_database WHERE datname = '${database}';\n`).trim() === '1';
    if (!exists) tool(database, 'create-database');
    const versioned = psql(paths, user, ports, database, "SELECT to_regclass('public.schema_version') IS NOT NULL;\n").trim() === 't';
    if (!versioned) tool(database, 'setup-schema', '-v', '0.0');
    tool(database, 'update-schema', '-d', join(module, 'schema', 'postgresql', 'v12', schema, 'versioned'));
  }
}

// ------------------------------------------------------------------------------------------ Temporal server

/**
 * One config per service from the module's `config/development-postgres12.yaml`: our PostgreSQL port, the password
 * from the environment, ports derived from the frontend's, and a metrics port per process (they would all take 8000).
 */
function writeServiceConfigs(paths: Paths, ports: Ports, module: string, host: string): void {
  mkdirSync(paths.config, { recursive: true });
  // The dynamic config path in the module's config is relative to the config root: the services run from paths.dir.
  cpSync(join(module, 'config', 'dynamicconfig'), join(paths.config, 'dynamicconfig'), { recursive: true });
  chmodSync(join(paths.config, 'dynamicconfig'), 0o755);
  const base = readFileSync(join(module, 'config', 'development-postgres12.yaml'), 'utf8');
  for (const service of SERVICES) {
    let text = base;
    const replace = (pattern: RegExp, by: string, count = 1) => {
      const found = text.match(new RegExp(pattern.source, 'g'))?.length ?? 0;
      if (found !== count) throw new Error(`The module's development-postgres12.yaml no longer has ${count} × ${pattern.source}; update stack/cluster.ts.`);
      text = text.replace(new RegExp(pattern.source, 'g'), by);
    };
    replace(/connectAddr: "127\.0\.0\.1:5432"/, `connectAddr: "127.0.0.1:${ports.postgres}"`, 2);
    replace(/password: "temporal"/, 'password: {{ env "CMK_CLUSTER_PG_PASSWORD" | quote }}', 2);
    replace(/pprof:\n {4}port: 7936/, 'pprof:\n    port: 0');
    replace(/listenAddress: "127\.0\.0\.1:8000"/, `listenAddress: "127.0.0.1:${ports.metrics[service]}"`);
    replace(/rpcAddress: "localhost:7233"/, `rpcAddress: "${host}:${ports.grpc.frontend}"`);
    replace(/httpPort: 7243/, `httpPort: ${ports.http}`);
    const defaults: Record<Service, [number, number]> = { frontend: [7233, 6933], history: [7234, 6934], matching: [7235, 6935], worker: [7239, 6939] };
    for (const s of SERVICES) {
      replace(new RegExp(`grpcPort: ${defaults[s][0]}\\n`), `grpcPort: ${ports.grpc[s]}\n`);
      replace(new RegExp(`membershipPort: ${defaults[s][1]}\\n`), `membershipPort: ${ports.membership[s]}\n`);
    }
    replace(/level: info/, 'level: warn');
    writeFileSync(join(paths.config, `${service}.yaml`), `# enable-template\n# Written by stack/cluster.ts from ${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION} config/development-postgres12.yaml.\n${text}`);
  }
}

async function withConnection<T>(address: string, use: (connection: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 2000 });
  try {
    return await use(connection);
  } finally {
    await connection.close();
  }
}

/** The namespace (retention 3 days, as the dev server's) and cmk's search attributes; both harmless when present. */
async function setUpNamespace(config: Config): Promise<void> {
  await until('The Temporal frontend (logs in cluster/logs)', 180_000, () =>
    withConnection(config.temporalAddress, async (c) => {
      await c.workflowService.getSystemInfo({});
      return true;
    }),
  );
  await withConnection(config.temporalAddress, async (c) => {
    try {
      await c.workflowService.registerNamespace({ namespace: config.temporalNamespace, workflowExecutionRetentionPeriod: msToTs('3 days') });
    } catch (err) {
      // 6: ALREADY_EXISTS, from an earlier start.
      if ((err as { code?: number }).code !== 6) throw err;
    }
  });
  await until(`The namespace ${config.temporalNamespace}`, 60_000, () =>
    withConnection(config.temporalAddress, async (c) => {
      await c.workflowService.describeNamespace({ namespace: config.temporalNamespace });
      await registerSearchAttributes(c, config.temporalNamespace);
      return true;
    }),
  );
}

// ----------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const config = loadConfig();
  const [host, portText] = splitAddress(config.temporalAddress);
  const ports = clusterPorts(Number(portText));
  const paths = clusterPaths(config.dataDir);
  for (const dir of [paths.dir, paths.logs, paths.run]) mkdirSync(dir, { recursive: true });
  await reapPreviousStack(paths.run, say);
  // One worker per region (R1): the deployment's regions, else the one default region.
  const regions = config.policy.regions ?? ['default'];

  // Every part is started again when it dies (5 a minute), as compose's `restart: unless-stopped` does: Temporal's
  // services recover from PostgreSQL, PostgreSQL from its WAL. cmk and Temporal stop first; PostgreSQL (stage 1) once
  // they are gone, so none of them sees its database go away.
  const supervisor = new Supervisor({ root, runDir: paths.run, say, what: 'the cluster', graceMs: 15_000 });
  const launch = supervisor.launch.bind(supervisor);

  const begun = Date.now();
  ensureBinaries(paths);
  const moduleRoot = moduleDir();
  const user = pgUser();
  initPostgres(paths, user);
  // A new password for Temporal's role at every start (set below): it lives only in this process tree's environment.
  const password = randomBytes(24).toString('base64url');
  const [pgCommand, pgArgs] = asPg(user, join(PG_BIN, 'postgres'), ['-D', paths.postgres, '-p', String(ports.postgres), '-k', paths.postgres, '-c', 'listen_addresses=127.0.0.1']);
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing is lost.
  launch('PostgreSQL', pgCommand, pgArgs, { log: join(paths.logs, 'postgres.log'), cwd: '/', stopSignal: 'SIGINT', restart: true, stage: 1 });
  await waitForPostgres(paths, user, ports);
  setUpSchemas(paths, user, ports, password, moduleRoot);
  writeServiceConfigs(paths, ports, moduleRoot, host);
  for (const service of SERVICES) {
    launch(`Temporal ${service}`, paths.server, ['--root', paths.dir, '--config', 'config', '--env', service, '--allow-no-auth', 'start', `--service=${service}`], {
      log: join(paths.logs, `temporal-${service}.log`),
      cwd: paths.dir,
      env: { CMK_CLUSTER_PG_PASSWORD: password },
      restart: true,
    });
  }
  await setUpNamespace(config);

  const cmkEnv = { CMK_REGIONS: regions.join(',') };
  const tsx = ['--import', 'tsx'];
  const bundle = join(paths.run, 'workflows.bundle.js');
  run(process.execPath, [...tsx, join(root, 'stack', 'bundle-workflows.ts'), bundle], { what: 'Bundling the workflows', cwd: root });
  const worker = [...workerNodeFlags(config), ...tsx, join(root, 'worker', 'main.ts')];
  launch('workflows worker', process.execPath, worker, {
    log: join(paths.logs, 'worker-workflows.log'),
    restart: true,
    env: { ...cmkEnv, ...workerProcessEnv(), CMK_WORKFLOW_BUNDLE: bundle, CMK_WORKER_WORKFLOWS: 'true', CMK_WORKER_REGIONS: 'none' },
  });
  for (const region of regions) {
    launch(`worker for region ${region}`, process.execPath, worker, {
      log: join(paths.logs, `worker-${region}.log`),
      restart: true,
      env: { ...cmkEnv, ...workerProcessEnv(), CMK_WORKER_WORKFLOWS: 'false', CMK_WORKER_REGIONS: region },
    });
  }
  launch('API service', process.execPath, [...tsx, join(root, 'api', 'main.ts')], { log: join(paths.logs, 'api.log'), restart: true, env: cmkEnv });
  await until(`The API service and workers (logs in ${paths.logs})`, 120_000, async () => {
    const status = (await (await fetch(`${config.apiUrl}/v1/status`)).json()) as { ready?: boolean };
    return status.ready ? true : undefined;
  });
  process.stdout.write(
    `cmk cluster ready in ${Math.round((Date.now() - begun) / 1000)} s: API ${config.apiUrl} · Temporal ${config.temporalAddress} (namespace ${config.temporalNamespace}; ` +
      `frontend, history, matching, worker: separate processes) · PostgreSQL 127.0.0.1:${ports.postgres} · regions ${regions.join(', ')} · logs ${paths.logs}\n`,
  );
}

/** Whether the binaries are cached (the smoke test runs only then). */
export function clusterBinariesCached(dataDir: string, env: Record<string, string | undefined> = process.env): boolean {
  const paths = clusterPaths(dataDir, env);
  return [paths.server, paths.sqlTool].every((p) => existsSync(p) && statSync(p).size > 0);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => process.exit(1), 20_000).unref();
  });
}
