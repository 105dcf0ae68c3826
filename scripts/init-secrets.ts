/**
 * Makes every secret the worker and the API service load from CMK_SECRETS_DIR, once, so that they can mount that
 * directory read-only (docker-compose.yml's cmk-init job). Idempotent: existing secrets are kept. A secret given in
 * the environment (`CMK_SECRET_<NAME>`, `CMK_CODEC_KEYS`) is not written to disk.
 *
 * A new secret loaded with loadOrCreateSecret must be added to SERVICE_SECRETS: test/compose.test.ts fails otherwise.
 */
import { loadConfig } from '../config';
import { loadOrCreateSecret } from '../common/secrets';
import { TOKEN_SIGNING_KEY } from '../common/tokens';
import { loadCodecKeyRing } from '../codec';
import { REQUEST_SIGNING_SECRET } from '../common/request-signing';

/** The 32-byte secrets of common/secrets.ts the services load by name (the codec keys are a ring of their own). */
export const SERVICE_SECRETS = ['vault-master-key', 'challenge-key', 'audit-key', TOKEN_SIGNING_KEY, REQUEST_SIGNING_SECRET] as const;

export function initSecrets(secretsDir: string, env: Record<string, string | undefined> = process.env): void {
  for (const name of SERVICE_SECRETS) loadOrCreateSecret(secretsDir, name, 32, env);
  loadCodecKeyRing(secretsDir, env);
}

if (require.main === module) {
  const { secretsDir } = loadConfig();
  initSecrets(secretsDir);
  console.error(`cmk: secrets ready in ${secretsDir}`);
}
