/**
 * The composition root for the real parts (vault, environment databases, mail), built from the configuration.
 * The worker and the API service both build theirs here, so both talk to the same vault and databases.
 */
import { mkdirSync } from 'node:fs';
import type { Config } from '../config';
import { assertOutside, loadOrCreateSecret } from '../common/secrets';
import { LocalVault } from '../vault/local';
import { SqliteEnvironmentDatabases } from '../database/sqlite';
import { Outbox } from '../mail/outbox';

export function buildParts(config: Config) {
  assertOutside(config.dataDir, config.secretsDir);
  mkdirSync(config.dataDir, { recursive: true });
  const masterKey = loadOrCreateSecret(config.secretsDir, 'vault-master-key');
  const vault = new LocalVault({ dataDir: config.dataDir, masterKey });
  const databases = new SqliteEnvironmentDatabases({ dataDir: config.dataDir, vault });
  const outbox = new Outbox({ dataDir: config.dataDir });
  return { vault, databases, mailer: outbox, outbox };
}
