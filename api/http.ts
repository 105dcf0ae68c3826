/** Small HTTP plumbing for the API service: JSON bodies with a size limit, refusals as `{error:{code,message}}`. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CmkError, isCmkError } from '../common/errors';
import { httpStatusOf } from '../workflows/codes';

/** Key files are at most 64 KiB; base64 and JSON framing stay well inside this. */
export const MAX_BODY_BYTES = 256 * 1024;

export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new CmkError('INVALID_ARGUMENT', `The request is larger than ${MAX_BODY_BYTES / 1024} KiB.`);
    chunks.push(chunk as Buffer);
  }
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

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown, log: (line: string) => void): void {
  if (isCmkError(err)) {
    sendJson(res, httpStatusOf(err.code), { error: { code: err.code, message: err.message } });
    return;
  }
  // Unexpected faults are logged by kind and message only: request bodies may hold key material.
  log(`internal error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  sendJson(res, 500, { error: { code: 'INTERNAL', message: 'The control plane could not complete the request; see the API service log.' } });
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
