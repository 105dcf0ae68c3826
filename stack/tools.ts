/** Where the Temporal binaries are: an operator's choice first, then PATH, then the project's .venv (scripts/setup.js). */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const root = join(__dirname, '..');

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function required(path: string | undefined, what: string): string {
  if (path && executable(path)) return path;
  throw new Error(`${what} not found; run \`node scripts/setup.js\` (npm start and npm test do) or set its path.`);
}

/** The Temporal CLI: TEMPORAL_CLI, else `temporal` on PATH, else .venv/bin/temporal. */
export function temporalCliPath(): string {
  return required(process.env.TEMPORAL_CLI || onPath('temporal') || join(root, '.venv', 'bin', 'temporal'), 'The Temporal CLI');
}

/** The time-skipping test server: TEMPORAL_TEST_SERVER, else .venv/bin/temporal-test-server. */
export function temporalTestServerPath(): string {
  return required(process.env.TEMPORAL_TEST_SERVER || join(root, '.venv', 'bin', 'temporal-test-server'), 'The Temporal time-skipping test server');
}
