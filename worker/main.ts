/** The worker process: runs the tenant workflows and their activities on the configured task queue. */
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { loadConfig } from '../config';
import { createActivities } from '../activities';
import { buildParts } from './parts';
import { stopWhenStackEnds } from '../stack/parent';

export async function runWorker(): Promise<void> {
  const config = loadConfig();
  // Warnings and errors only: the foreground stack prints one ready line, not the bundler's report.
  Runtime.install({ logger: new DefaultLogger((process.env.CMK_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN') });
  const parts = buildParts(config);
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(parts),
  });
  stopWhenStackEnds(() => worker.shutdown());
  // Worker.run ends on SIGINT/SIGTERM (the SDK's default shutdown signals) once in-flight tasks are done.
  await worker.run();
  await connection.close();
}

if (require.main === module) {
  runWorker().catch((err: unknown) => {
    console.error(`cmk worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
