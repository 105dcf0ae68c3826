/** The worker thread of keyfiles/isolated.ts: opens one .pfx per message, off the API service's event loop. */
import { parentPort } from 'node:worker_threads';
import { isCmkError } from '../common/errors';
import { parsePfx } from './pfx';

parentPort?.on('message', (message: { id: number; bytes: Uint8Array; password: string | undefined }) => {
  try {
    const opened = parsePfx(Buffer.from(message.bytes), message.password);
    parentPort?.postMessage({ id: message.id, opened });
  } catch (err) {
    // Only a refusal's code and sentence cross back; anything else is reported as a damaged file by the caller.
    parentPort?.postMessage({ id: message.id, refusal: isCmkError(err) ? { code: err.code, message: err.message } : null });
  }
});
