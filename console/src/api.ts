/**
 * The console's one door to the control plane: the same API routes, checks and codes as the `cmk` CLI. The session
 * is an HttpOnly cookie the page never sees; every state-changing request carries the session's CSRF token. A refusal
 * arrives as an ApiError with its stable code (DESIGN.md §4) and the service's sentence.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type * as S from '../../api/schemas';

export type Answer<T extends TSchema> = Static<T>;
export type SessionView = Answer<typeof S.ConsoleSession>;
export type TenantView = Answer<typeof S.TenantView>;
export type EnvView = Answer<typeof S.EnvView>;
export type KeyReport = Answer<typeof S.KeyReport>;
export type MailView = Answer<typeof S.MailView>;
export type AuditRecordView = Answer<typeof S.AuditRecordView>;

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
let sessionLost: (err: ApiError) => void = () => undefined;

export function useSession(session: SessionView | null, onLost: (err: ApiError) => void): void {
  csrf = session?.csrf ?? null;
  sessionLost = onLost;
}

export const enc = encodeURIComponent;
export const withRegion = (path: string, region: string | undefined) => (region ? `${path}?region=${enc(region)}` : path);

export async function call<T>(method: 'GET' | 'POST', path: string, body?: Record<string, unknown>): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-cmk-csrf'] = csrf;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch {
    throw new ApiError('UNAVAILABLE', 'The control plane cannot be reached; check that it is running, then try again.', 0);
  }
  const doc = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  if (!res.ok) {
    const err = new ApiError(doc?.error?.code ?? 'INTERNAL', doc?.error?.message ?? `The control plane answered HTTP ${res.status}.`, res.status);
    // A session that ended mid-work: the page stays (with what was typed) and asks for a new sign-in.
    if (res.status === 401 && !path.startsWith('/v1/console/')) sessionLost(err);
    throw err;
  }
  return doc as T;
}

/** Bytes as base64 (key files travel so, as with the CLI). */
export function toBase64(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export function fromBase64(text: string): Uint8Array {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** Hands a file to the browser's downloads (a key file is shown once: R3). */
export function download(name: string, bytes: Uint8Array | string, type: string): void {
  const blob = new Blob([typeof bytes === 'string' ? bytes : bytes.slice().buffer], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
