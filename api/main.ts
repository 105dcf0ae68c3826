/** The API service process: loopback HTTP on CMK_API_PORT, built on the client library. */
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { ControlPlane } from '../client/library';
import { buildParts } from '../worker/parts';
import { ApiService } from './service';
import { ChallengeIssuer } from './challenges';
import { loadOrCreateSecret } from '../common/secrets';
import { createApiServer } from './server';
import { stopWhenStackEnds } from '../stack/parent';

export async function runApi(): Promise<void> {
  const config = loadConfig();
  const parts = buildParts(config);
  const connection = await Connection.connect({ address: config.temporalAddress });
  const temporal = new Client({ connection, namespace: config.temporalNamespace });
  const challenges = new ChallengeIssuer(loadOrCreateSecret(config.secretsDir, 'challenge-key'));
  const service = new ApiService({ config, controlPlane: new ControlPlane(temporal, config.taskQueue), challenges, ...parts });
  const log = (line: string) => console.error(`cmk api: ${line}`);
  const server = createApiServer({ service, temporal, taskQueue: config.taskQueue, log });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.apiPort, config.apiHost, resolve);
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void connection.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  stopWhenStackEnds(stop);
}

if (require.main === module) {
  runApi().catch((err: unknown) => {
    console.error(`cmk api: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
