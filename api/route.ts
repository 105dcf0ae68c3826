/** One route of the API service: what fastify serves (api/server.ts) and /openapi.json describes (api/openapi.ts). */
import type { IncomingMessage } from 'node:http';
import type { Static, TObject, TSchema } from '@sinclair/typebox';
import type { Actor } from '../domain/access';

export interface RequestContext {
  actor: Actor;
  params: Record<string, string>;
  query: URLSearchParams;
  body: () => Promise<Record<string, unknown>>;
  req: IncomingMessage;
  /** A header of the answer (the console's session cookie). */
  setHeader: (name: string, value: string) => void;
}

export interface Route<R extends TSchema = TSchema> {
  method: 'GET' | 'POST';
  /** OpenAPI-style template: `/v1/tenants/{tenant}/environments/{env}`. */
  path: string;
  summary: string;
  /** The audit trail's name for what a refused request wanted; set on every state-changing route. */
  audited?: string;
  /**
   * The request body's fields (api/schemas.ts `body`), for the document only: the handler's own field checks are the
   * validation, so that every refusal keeps its sentence.
   */
  body?: TObject;
  /** Query parameters, for the document. */
  query?: TObject;
  /** The answer on success (HTTP 200); a refusal is always the ErrorDocument. */
  response: R;
  /** Largest body accepted; key files (≤ 64 KiB) travel as base64. */
  maxBodyBytes?: number;
  /** The code a too-large body answers (INVALID_KEY_FILE where the body carries a key file). */
  tooLarge?: 'INVALID_KEY_FILE' | 'INVALID_ARGUMENT';
  public?: boolean;
  /** A browser navigation: the handler's `location` is answered as HTTP 303 See Other, never as JSON. */
  redirect?: boolean;
  handle: (ctx: RequestContext) => Promise<Static<R>>;
}

/** A route whose handler must answer what its response schema says (checked by tsc). */
export const route = <R extends TSchema>(r: Route<R>): Route => r;
