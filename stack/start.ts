/**
 * `npm start`: the embedded stack in the foreground — a Temporal dev server (its SQLite file under the data dir),
 * the worker and the API service — with one line when it is ready. Its children stay in its process group; SIGINT
 * or SIGTERM stops them all. Nothing here reads stdin.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { loadConfig, type Config } from '../config';
import { SEARCH_ATTRIBUTE_REGISTRATION } from '../workflows/messages';
import { uiCodecCapability } from '../api/codec';
import { temporalCliPath } from './tools';
import { workerNodeFlags, workerProcessEnv } from './worker-process';
import { reapPreviousStack } from './pids';
import { Supervisor, splitAddress, until } from './supervisor';

const root = join(__dirname, '..');
const say = (line: string) => process.stderr.write(`cmk: ${line}\n`);

async function main(): Promise<void> {
  const config = loadConfig();
  const [host, portText] = splitAddress(config.temporalAddress);
  const uiPort = Number(portText) + 1000;
  const runDir = join(config.dataDir, 'run');
  const logDir = join(config.dataDir, 'logs');
  for (const dir of [config.dataDir, join(config.dataDir, 'temporal'), runDir, logDir]) mkdirSync(dir, { recursive: true });
  await reapPreviousStack(runDir, say);

  // A worker, API service or dev server that dies is started again (Temporal hands its work to the new worker; the
  // dev server reopens its SQLite file and the others reconnect); more than 5 deaths of one part in a minute stop the stack.
  const supervisor = new Supervisor({ root, runDir, say, what: 'the stack', graceMs: 10_000 });
  const launch = supervisor.launch.bind(supervisor);

  // The UI decodes through the API service from the operator's browser; it sends no token, so its endpoint carries
  // the stack's capability (api/codec.ts). Made here, before the API service reads it.
  const capability = uiCodecCapability(config);
  const codecEndpoint = `${config.apiUrl}/codec${capability ? `/${capability}` : ''}`;
  const temporalLog = join(logDir, 'temporal.log');
  launch(
    'Temporal dev server',
    temporalCliPath(),
    [
      'server', 'start-dev',
      '--ip', host, '--port', portText,
      '--ui-ip', host, '--ui-port', String(uiPort),
      '--ui-codec-endpoint', codecEndpoint,
      '--db-filename', join(config.dataDir, 'temporal', 'dev-server.sqlite'),
      '--namespace', config.temporalNamespace,
      '--log-level', 'warn',
      ...SEARCH_ATTRIBUTE_REGISTRATION.flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
    ],
    { log: temporalLog, restart: true },
  );
  await waitForTemporal(config, temporalLog);

  const tsx = ['--import', 'tsx'];
  const bundle = join(runDir, 'workflows.bundle.js');
  const bundled = spawnSync(process.execPath, [...tsx, join(root, 'stack', 'bundle-workflows.ts'), bundle], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (bundled.status !== 0) throw new Error('The workflow code could not be bundled (see above).');
  launch('worker', process.execPath, [...workerNodeFlags(config), ...tsx, join(root, 'worker', 'main.ts')], { restart: true, env: { ...workerProcessEnv(), CMK_WORKFLOW_BUNDLE: bundle } });
  launch('API service', process.execPath, [...tsx, join(root, 'api', 'main.ts')], { restart: true });
  await waitForApi(config);
  process.stdout.write(
    `cmk ready: API ${config.apiUrl} · console ${config.apiUrl}/ (sign in: npx cmk console --as EMAIL) · Temporal ${config.temporalAddress} (namespace ${config.temporalNamespace}) · ` +
      `UI http://${host}:${uiPort} · data ${config.dataDir} · secrets ${config.secretsDir}\n`,
  );
}

async function waitForTemporal(config: Config, log: string): Promise<void> {
  await until(`The Temporal dev server (log: ${log})`, 60_000, async () => {
    const connection = await Connection.connect({ address: config.temporalAddress, connectTimeout: 1000 });
    try {
      await connection.workflowService.describeNamespace({ namespace: config.temporalNamespace });
      return true;
    } finally {
      await connection.close();
    }
  }, 250);
}

async function waitForApi(config: Config): Promise<void> {
  await until('The API service and worker', 60_000, async () => {
    const response = await fetch(`${config.apiUrl}/v1/status`);
    const status = (await response.json()) as { ready?: boolean };
    return status.ready ? true : undefined;
  }, 250);
}

main().catch((err: unknown) => {
  say(err instanceof Error ? err.message : String(err));
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 12_000).unref();
});
