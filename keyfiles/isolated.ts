/**
 * Opening a .pfx costs up to a few seconds of key derivation by design (the KDF bounds in pfx.ts). The API service
 * opens them in a worker thread so that a burst of worst-case files cannot stall every other request, and gives up
 * on one that takes longer than a deadline (the thread is replaced).
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { isErrorCode } from '../workflows/codes';
import type { OpenedPfx } from './pfx';

interface Pending {
  resolve: (opened: OpenedPfx) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class IsolatedPfxParser {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private next = 1;

  constructor(private readonly deadlineMs = 15_000) {}

  parsePfx(bytes: Buffer, password: string | undefined): Promise<OpenedPfx> {
    const worker = this.ensureWorker();
    const id = this.next++;
    return new Promise<OpenedPfx>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CmkError('INVALID_KEY_FILE', 'The .pfx file took too long to open; real key files open in well under a second.'));
        // The thread may be stuck in this file: start afresh (other requests in it are refused the same way).
        this.restart();
      }, this.deadlineMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      worker.postMessage({ id, bytes, password });
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    // The thread runs the TypeScript source through tsx's require hook, as bin/cmk.js does (no build step).
    const worker = new Worker(`require('tsx/cjs'); require(${JSON.stringify(join(__dirname, 'parse-worker.ts'))});`, { eval: true });
    worker.unref();
    worker.on('message', (message: { id: number; opened?: OpenedPfx; refusal?: { code: string; message: string } | null }) => {
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.opened) {
        const { opened } = message;
        waiting.resolve({ ...opened, pkcs8Der: Buffer.from(opened.pkcs8Der) });
      } else if (message.refusal && isErrorCode(message.refusal.code)) {
        waiting.reject(new CmkError(message.refusal.code, message.refusal.message));
      } else {
        waiting.reject(new CmkError('INVALID_KEY_FILE', 'The file is not a usable .pfx (PKCS#12) file.'));
      }
    });
    worker.on('error', () => this.restart());
    this.worker = worker;
    return worker;
  }

  private restart(): void {
    const old = this.worker;
    this.worker = null;
    void old?.terminate();
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new CmkError('INVALID_KEY_FILE', 'The .pfx file could not be opened; try again.'));
      this.pending.delete(id);
    }
  }
}
