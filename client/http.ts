/** The API service's HTTP client, as the CLI uses it. Refusals come back as CmkError with their stable code. */
import { CmkError } from '../common/errors';
import { isErrorCode } from '../domain/codes';
import type { Static, TSchema } from '@sinclair/typebox';
import type { ErrorDocument } from '../api/schemas';

/**
 * An answer as the API's schema describes it (api/schemas.ts, the same schema fastify serves in /openapi.json); the
 * API may add properties the schema does not list, and `--json` prints them.
 */
export type Answer<S extends TSchema> = Static<S> & Record<string, unknown>;

export class ApiUnreachableError extends Error {
  override name = 'ApiUnreachableError';
}

export class ApiClient {
  /** `token` gives the bearer token for each call (the CLI's `--token`, or one it signs for `--as`). */
  constructor(
    readonly baseUrl: string,
    private readonly token: () => Promise<string>,
  ) {}

  async call<T = Record<string, unknown>>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiUnreachableError(`Cannot reach the cmk API service at ${this.baseUrl}; is \`npm start\` running (or CMK_API_URL set)?`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      throw new Error(`The API service answered ${response.status} with something that is not JSON.`);
    }
    if (response.ok) return parsed as T;
    // A refusal is the ErrorDocument; anything else (a proxy's page) fails the checks below.
    const error = (parsed as { error?: Partial<Static<typeof ErrorDocument>['error']> }).error;
    if (error && isErrorCode(error.code)) throw new CmkError(error.code, String(error.message ?? ''));
    throw new Error(`The API service failed (${response.status}): ${String(error?.message ?? text)}`);
  }
}

/**
 * Whether a key file or its password may be sent to `baseUrl`: over https, or over plain http to this machine only
 * (the embedded default). Anything else would cross the network in the clear.
 */
export function secretsMayTravelTo(baseUrl: string): boolean {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return false;
  }
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])$/i.test(url.hostname);
}
