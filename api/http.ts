/** Small HTTP plumbing for the API service: JSON bodies with a size limit, and typed field readers. */
import type { IncomingMessage } from 'node:http';
import { CmkError } from '../common/errors';

/** A body over its route's limit: refused once the rest is drained (see DRAIN_LIMIT), and the connection closed. */
export class BodyTooLargeError extends CmkError {}

/**
 * How much of a too-large body is still read (and dropped) before the refusal is sent: answering while the client is
 * still sending makes many clients see a reset instead of the answer. Past this, the connection is cut.
 */
const DRAIN_LIMIT = 16 * 1024 * 1024;

export async function readJsonBody(req: IncomingMessage, maxBytes: number, tooLarge: 'INVALID_KEY_FILE' | 'INVALID_ARGUMENT' = 'INVALID_ARGUMENT'): Promise<Record<string, unknown>> {
  const refuseSize = () =>
    new BodyTooLargeError(tooLarge, tooLarge === 'INVALID_KEY_FILE' ? 'The key file is larger than 64 KiB; no key file is that large.' : `The request is larger than ${Math.round(maxBytes / 1024)} KiB.`);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > DRAIN_LIMIT) {
    req.destroy();
    throw refuseSize();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > DRAIN_LIMIT) {
      req.destroy();
      break;
    }
    // Past the limit the rest is read and dropped, never kept.
    if (size <= maxBytes) chunks.push(chunk as Buffer);
  }
  if (size > maxBytes) throw refuseSize();
  if (size === 0) return {};
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new CmkError('INVALID_ARGUMENT', 'The request body is not valid JSON.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new CmkError('INVALID_ARGUMENT', 'The request body must be a JSON object.');
  return body as Record<string, unknown>;
}

// ------------------------------------------------------------------------------------- typed field readers

export function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new CmkError('INVALID_ARGUMENT', `"${field}" must be a string.`);
  return value;
}

export function requiredString(body: Record<string, unknown>, field: string): string {
  const value = optionalString(body, field);
  if (value === undefined) throw new CmkError('INVALID_ARGUMENT', `"${field}" is required.`);
  return value;
}
