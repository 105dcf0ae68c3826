/**
 * What `npm start` and `npm run cluster` share: children in our process group, each started again when it dies (at
 * most 5 times a minute, as compose's `restart: unless-stopped`), and stopped in order on SIGINT or SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { ConfigError } from '../config';
import { recordStack } from './pids';

interface Part {
  name: string;
  child: ChildProcess;
  stopSignal: NodeJS.Signals;
  /** Parts of a later stage stop once every part of the earlier ones is gone (PostgreSQL after Temporal). */
  stage: number;
}

export interface LaunchOptions {
  /** Where its output goes; the supervisor's own stdout and stderr when unset. */
  log?: string;
  cwd?: string;
  env?: Record<string, string>;
  restart?: boolean;
  stopSignal?: NodeJS.Signals;
  stage?: number;
}

export class Supervisor {
  private readonly parts: Part[] = [];
  private stopping = false;

  constructor(
    private readonly options: {
      /** The children's working directory unless a launch names another. */
      root: string;
      /** Where the process IDs are recorded, for the next start to reap (stack/pids.ts). */
      runDir: string;
      say: (line: string) => void;
      /** "the stack", "the cluster": what a fatal death stops. */
      what: string;
      /** How long the first stage has to stop before SIGKILL; later stages have 30 s. */
      graceMs: number;
    },
  ) {
    process.once('SIGINT', () => void this.stop(0));
    process.once('SIGTERM', () => void this.stop(0));
  }

  /** Starts a child; with `restart`, one that dies is started again, and a sixth death within a minute stops everything. */
  launch(name: string, command: string, args: string[], options: LaunchOptions = {}): void {
    const deaths: number[] = [];
    const start = (): void => {
      const out = options.log ? openSync(options.log, 'a') : 'inherit';
      const child = spawn(command, args, { cwd: options.cwd ?? this.options.root, stdio: ['ignore', out, out], env: { ...process.env, ...options.env, CMK_STACK_PID: String(process.pid) } });
      const part: Part = { name, child, stopSignal: options.stopSignal ?? 'SIGTERM', stage: options.stage ?? 0 };
      this.parts.push(part);
      recordStack(this.options.runDir, [process.pid, ...this.parts.map((p) => p.child.pid ?? 0)]);
      child.once('exit', (code, signal) => {
        if (this.stopping) return;
        this.parts.splice(this.parts.indexOf(part), 1);
        const now = Date.now();
        deaths.push(now);
        const how = signal ?? `exit ${code}`;
        if (options.restart && deaths.filter((t) => now - t < 60_000).length <= 5) {
          this.options.say(`${name} stopped unexpectedly (${how}); starting it again.`);
          setTimeout(() => !this.stopping && start(), 1000);
          return;
        }
        this.options.say(`${name} stopped unexpectedly (${how}${options.log ? `; log ${options.log}` : ''}); stopping ${this.options.what}.`);
        void this.stop(1);
      });
    };
    start();
  }

  /** Stops every child, stage by stage (each in reverse launch order), then exits with `code`. */
  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const stages = [...new Set(this.parts.map((p) => p.stage))].sort((a, b) => a - b);
    for (const [i, stage] of stages.entries()) {
      const group = this.parts.filter((p) => p.stage === stage);
      [...group].reverse().forEach((p) => p.child.kill(p.stopSignal));
      const deadline = setTimeout(() => group.forEach((p) => p.child.kill('SIGKILL')), i === 0 ? this.options.graceMs : 30_000);
      await Promise.all(group.map((p) => (p.child.exitCode === null && p.child.signalCode === null ? new Promise((r) => p.child.once('exit', r)) : null)));
      clearTimeout(deadline);
    }
    process.exit(code);
  }
}

/** `HOST:PORT` of TEMPORAL_ADDRESS. */
export function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf(':');
  if (at <= 0 || !/^\d+$/.test(address.slice(at + 1))) throw new ConfigError(`TEMPORAL_ADDRESS="${address}" must be HOST:PORT.`);
  return [address.slice(0, at), address.slice(at + 1)];
}

/** Polls `probe` until it gives a value (a throw counts as not yet). */
export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, intervalMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not become ready within ${timeoutMs / 1000} s.`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
