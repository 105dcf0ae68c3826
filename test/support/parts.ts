/** The real local parts (vault, databases, outbox) in a fresh temporary data dir, as the worker builds them. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../config';
import { buildParts } from '../../worker/parts';

export function localParts() {
  const base = mkdtempSync(join(tmpdir(), 'cmk-parts-'));
  const config = loadConfig({ CMK_DATA_DIR: join(base, 'var'), CMK_SECRETS_DIR: join(base, 'secrets') });
  return { config, ...buildParts(config) };
}
