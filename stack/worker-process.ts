/**
 * How the launchers (`npm start`, `npm run cluster`) start a cmk worker process so that its memory stays bounded
 * (issue 20, docs/PERFORMANCE.md "Worker memory"). Measured: the worker's JavaScript holds about 50 MB live after
 * setting up 1,000 environments, yet its resident memory reached 470 MB — V8 on a machine with plenty of memory grows
 * its heaps long before it collects, and glibc keeps freed memory in one arena per thread. The image and
 * docker-compose.yml give the same flags in their commands.
 */
import type { Config } from '../config';

/** Young-generation semi-space in MB: V8's default (16) kept about 30 MB more per isolate for no measurable speed. */
const SEMI_SPACE_MB = 8;

/** The worker's Node flags, before its script. */
export function workerNodeFlags(config: Pick<Config, 'workerHeapMb'>): string[] {
  return [`--max-old-space-size=${config.workerHeapMb}`, `--max-semi-space-size=${SEMI_SPACE_MB}`];
}

/** The worker's environment beyond the stack's: at most two malloc arenas, unless the operator chose a number. */
export function workerProcessEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return { MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '2' };
}
