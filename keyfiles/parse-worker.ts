/**
 * A worker thread of keyfiles/isolated.ts: opens a .pfx, or generates a key and its .pfx, one job per message, off the
 * API service's event loop. It says when it is ready, so that a job's time budget counts the job and not the start.
 */
import { parentPort, threadId } from 'node:worker_threads';
import { isCmkError } from '../common/errors';
import { generateKeyPfx } from './generate';
import { parsePfx } from './pfx';

export type JobMessage = { kind: 'parse'; bytes: Uint8Array; password: string | undefined } | { kind: 'generate'; name: string; password: string };

parentPort?.on('message', (message: JobMessage) => {
  void run(message).then(
    (result) => parentPort?.postMessage({ threadId, ...result }),
    // Only a refusal's code and sentence cross back; anything else is reported as a damaged file by the caller.
    (err: unknown) => parentPort?.postMessage({ threadId, refusal: isCmkError(err) ? { code: err.code, message: err.message } : null }),
  );
});
parentPort?.postMessage({ ready: true });

async function run(message: JobMessage) {
  if (message.kind === 'generate') return { generated: await generateKeyPfx({ name: message.name, password: message.password }) };
  return { opened: parsePfx(Buffer.from(message.bytes), message.password) };
}
