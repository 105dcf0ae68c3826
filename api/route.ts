/** One route of the API service: what the router (api/server.ts) serves and the OpenAPI document (api/openapi.ts) describes. */
import type { IncomingMessage } from 'node:http';
import type { Actor } from '../domain/access';

export interface RequestContext {
  actor: Actor;
  params: Record<string, string>;
  query: URLSearchParams;
  body: () => Promise<Record<string, unknown>>;
  req: IncomingMessage;
}

export interface Route {
  method: 'GET' | 'POST';
  /** OpenAPI-style template: `/v1/tenants/{tenant}/environments/{env}`. */
  path: string;
  summary: string;
  /** The audit trail's name for what a refused request wanted; set on every state-changing route. */
  audited?: string;
  /** Request body fields for the OpenAPI document: name → description ("?" suffix on the name: optional). */
  body?: Record<string, string>;
  /** Largest body accepted; key files (≤ 64 KiB) travel as base64. */
  maxBodyBytes?: number;
  /** The code a too-large body answers (INVALID_KEY_FILE where the body carries a key file). */
  tooLarge?: 'INVALID_KEY_FILE' | 'INVALID_ARGUMENT';
  public?: boolean;
  handle: (ctx: RequestContext) => Promise<unknown>;
}
