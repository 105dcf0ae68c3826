/**
 * The stack's process IDs, so that a stack killed with SIGKILL (whose children outlive it) is cleaned up by the
 * next `npm start` on the same data dir instead of failing on busy ports.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Only processes whose command line is still ours are touched (a PID may have been reused). */
const ours = (pid: number, dataDir: string): boolean => {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(dataDir) || /stack[/\\]start|worker[/\\]main|api[/\\]main/.test(cmdline);
  } catch {
    return false;
  }
};

export function recordStack(runDir: string, pids: number[]): void {
  writeFileSync(join(runDir, 'stack.json'), JSON.stringify({ pids }));
}

export async function reapPreviousStack(runDir: string, say: (line: string) => void): Promise<void> {
  let pids: number[] = [];
  try {
    pids = (JSON.parse(readFileSync(join(runDir, 'stack.json'), 'utf8')) as { pids: number[] }).pids;
  } catch {
    return;
  }
  const dataDir = join(runDir, '..');
  const leftovers = pids.filter((pid) => pid !== process.pid && pid > 0 && alive(pid) && ours(pid, dataDir));
  if (leftovers.length === 0) return;
  say(`stopping ${leftovers.length} process(es) left by a previous stack on this data dir…`);
  leftovers.forEach((pid) => process.kill(pid, 'SIGTERM'));
  const deadline = Date.now() + 10_000;
  while (leftovers.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  leftovers.filter(alive).forEach((pid) => process.kill(pid, 'SIGKILL'));
}
