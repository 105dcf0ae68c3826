/**
 * Opening a .pfx costs up to a few seconds of key derivation by design (the KDF bounds in pfx.ts), and generating a
 * key costs an RSA key generation and two 210,000-iteration derivations. The API service does both in a small pool of
 * worker threads, so that a burst of worst-case files cannot stall every other request. Each job has its own time
 * budget, counted from when a thread takes it: a file that outlives it is refused and its thread replaced, and the
 * other jobs, in other threads or waiting for one, go on.
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { isErrorCode } from '../domain/codes';
import type { GeneratedKey, GenerateKeyOptions } from './generate';
import type { OpenedPfx } from './pfx';
import type { JobMessage } from './parse-worker';

interface Reply {
  threadId?: number;
  opened?: OpenedPfx;
  generated?: GeneratedKey;
  refusal?: { code: string; message: string } | null;
}

interface Job {
  message: JobMessage;
  deadlineMs: number;
  tooLong: () => Error;
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
}

interface Thread {
  worker: Worker;
  ready: boolean;
  job: Job | null;
  timer: NodeJS.Timeout | null;
}

export interface IsolatedKeyFileOptions {
  /** Threads at most (default 2); more jobs wait for one, without their budget running. */
  threads?: number;
  /** The budget of one key generation (default 60 s). */
  generateDeadlineMs?: number;
}

const damaged = () => new CmkError('INVALID_KEY_FILE', 'The .pfx file could not be opened; try again.');

export class IsolatedPfxParser {
  private readonly threads = new Set<Thread>();
  private readonly queue: Job[] = [];
  private readonly size: number;
  private readonly generateDeadlineMs: number;

  /** `deadlineMs`: the budget of one .pfx. */
  constructor(
    private readonly deadlineMs = 15_000,
    options: IsolatedKeyFileOptions = {},
  ) {
    this.size = Math.max(1, options.threads ?? 2);
    this.generateDeadlineMs = options.generateDeadlineMs ?? 60_000;
  }

  async parsePfx(bytes: Buffer, password: string | undefined): Promise<OpenedPfx & { threadId?: number }> {
    const reply = await this.run({ kind: 'parse', bytes, password }, this.deadlineMs, () => new CmkError('INVALID_KEY_FILE', 'The .pfx file took too long to open; real key files open in well under a second.'));
    if (!reply.opened) throw refusalOf(reply);
    return { ...reply.opened, pkcs8Der: Buffer.from(reply.opened.pkcs8Der), threadId: reply.threadId };
  }

  /** keyfiles/generate.ts's generateKeyPfx, in a thread of the pool (`threadId` says which). */
  async generateKeyPfx(options: GenerateKeyOptions): Promise<GeneratedKey & { threadId?: number }> {
    const reply = await this.run({ kind: 'generate', name: options.name, password: options.password }, this.generateDeadlineMs, () => new Error('Key generation took too long; try again.'));
    if (!reply.generated) throw reply.refusal ? refusalOf(reply) : new Error('Key generation failed in its worker thread.');
    const { generated } = reply;
    return { ...generated, pfx: Buffer.from(generated.pfx), pkcs8Der: Buffer.from(generated.pkcs8Der), threadId: reply.threadId };
  }

  async close(): Promise<void> {
    for (const job of this.queue.splice(0)) job.reject(damaged());
    await Promise.all([...this.threads].map((thread) => this.retire(thread, damaged())));
  }

  private run(message: JobMessage, deadlineMs: number, tooLong: () => Error): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      this.queue.push({ message, deadlineMs, tooLong, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let thread = [...this.threads].find((t) => t.job === null);
      if (!thread) {
        if (this.threads.size >= this.size) return;
        thread = this.spawn();
      }
      thread.job = this.queue.shift()!;
      if (thread.ready) this.start(thread);
    }
  }

  /** The budget runs from here: the thread is up and takes the job now. */
  private start(thread: Thread): void {
    const job = thread.job!;
    thread.timer = setTimeout(() => void this.retire(thread, job.tooLong()), job.deadlineMs);
    thread.timer.unref();
    thread.worker.postMessage(job.message);
  }

  private spawn(): Thread {
    // The thread runs the TypeScript source through tsx's require hook, as bin/cmk.js does (no build step).
    const worker = new Worker(`require('tsx/cjs'); require(${JSON.stringify(join(__dirname, 'parse-worker.ts'))});`, { eval: true });
    worker.unref();
    const thread: Thread = { worker, ready: false, job: null, timer: null };
    worker.on('message', (message: Reply & { ready?: boolean }) => {
      if (message.ready) {
        thread.ready = true;
        if (thread.job) this.start(thread);
        return;
      }
      const job = thread.job;
      if (!job) return;
      if (thread.timer) clearTimeout(thread.timer);
      thread.timer = null;
      thread.job = null;
      job.resolve(message);
      this.dispatch();
    });
    worker.on('error', () => void this.retire(thread, damaged()));
    worker.on('exit', () => void this.retire(thread, damaged()));
    this.threads.add(thread);
    return thread;
  }

  /** Ends a thread (stuck, failed or closing): its own job, if any, is refused; the others are not touched. */
  private async retire(thread: Thread, err: Error): Promise<void> {
    if (!this.threads.delete(thread)) return;
    if (thread.timer) clearTimeout(thread.timer);
    const job = thread.job;
    thread.job = null;
    job?.reject(err);
    this.dispatch();
    await thread.worker.terminate();
  }
}

function refusalOf(reply: Reply): CmkError {
  if (reply.refusal && isErrorCode(reply.refusal.code)) return new CmkError(reply.refusal.code, reply.refusal.message);
  return new CmkError('INVALID_KEY_FILE', 'The file is not a usable .pfx (PKCS#12) file.');
}
