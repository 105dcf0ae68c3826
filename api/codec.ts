/**
 * The remote codec endpoint for the Temporal UI and CLI (`/codec/encode`, `/codec/decode`, the Temporal codec
 * protocol: `{payloads:[{metadata:{k:base64},data:base64}]}`). Operators only: a tenant administrator never decrypts
 * any history. CORS admits exactly the configured UI origin. Every decode is in the audit trail before its answer
 * leaves, and no decode answers if it cannot be recorded.
 *
 * The embedded default's UI (`temporal server start-dev --ui-codec-endpoint`) sends no token, so the stack gives it
 * a capability path instead, `/codec/<capability>/encode|decode`: 32 random bytes made at first start and kept in the
 * secrets dir (`ui-codec-capability`), known to the stack and its UI only, accepted from loopback callers with no
 * Origin or the UI's own. Production sets no capability and keeps operator tokens (`TEMPORAL_CODEC_PASS_ACCESS_TOKEN`).
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Payload } from '@temporalio/common';
import { CmkError } from '../common/errors';
import type { EncryptionCodec } from '../codec';
import type { AuditEntry } from '../audit/trail';
import { redactAuditEntry } from '../domain/audit-redaction';
import type { Actor } from '../domain/access';
import type { Config } from '../config';
import { loadOrCreateSecret } from '../common/secrets';

export interface CodecEndpoint {
  maxBodyBytes: number;
  /** Answers a preflight or a foreign origin itself (true); otherwise adds the CORS headers and returns false. */
  handleCors: (req: IncomingMessage, res: ServerResponse) => boolean;
  encode: (actor: Actor, body: Record<string, unknown>, req: IncomingMessage) => Promise<unknown>;
  decode: (actor: Actor, body: Record<string, unknown>, req: IncomingMessage) => Promise<unknown>;
  /**
   * The operator, for a request on the capability path with the right capability; undefined for any other path
   * (the caller's token decides). A wrong capability, a foreign Origin or a remote caller is refused.
   */
  capabilityActor?: (pathname: string, req: IncomingMessage) => Actor | undefined;
}

/** A UI page of history holds many payloads; each is at most Temporal's 2 MB. */
const MAX_CODEC_BODY = 8 * 1024 * 1024;
const MAX_PAYLOADS = 1000;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

interface CodecDependencies {
  codec: EncryptionCodec;
  allowedOrigin: string | null;
  audit: (entries: AuditEntry[]) => Promise<void>;
  /** The embedded UI's capability (base64url); null: only operator tokens open the endpoint (production). */
  uiCapability?: string | null;
}

/**
 * The embedded UI's capability in the secrets dir. Only `npm start` makes it (an external issuer turns it off), so it
 * is not one of the compose stack's secrets (scripts/init-secrets.ts).
 */
export const UI_CODEC_CAPABILITY = 'ui-codec-capability';

/** The embedded UI's capability, made at first start; null with an external issuer (production keeps tokens). */
export function uiCodecCapability(config: Pick<Config, 'secretsDir' | 'auth'>): string | null {
  if (config.auth.mode !== 'local') return null;
  return loadOrCreateSecret(config.secretsDir, UI_CODEC_CAPABILITY, 32).toString('base64url');
}

const CAPABILITY_PATH = /^\/codec\/([^/]+)\/(?:encode|decode)$/;

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1' || (address?.startsWith('127.') ?? false);
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function bytes(value: unknown, what: string): Uint8Array {
  if (typeof value !== 'string' || !BASE64.test(value)) throw new CmkError('INVALID_ARGUMENT', `${what} must be base64.`);
  return Buffer.from(value, 'base64');
}

export function payloadsOf(body: Record<string, unknown>): Payload[] {
  const list = body.payloads;
  if (!Array.isArray(list) || list.length > MAX_PAYLOADS) throw new CmkError('INVALID_ARGUMENT', `"payloads" must be a list of at most ${MAX_PAYLOADS} payloads.`);
  return list.map((item: unknown, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new CmkError('INVALID_ARGUMENT', `Payload ${i} must be an object.`);
    const { metadata, data } = item as { metadata?: unknown; data?: unknown };
    if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))) {
      throw new CmkError('INVALID_ARGUMENT', `Payload ${i}: "metadata" must be an object.`);
    }
    const meta: Record<string, Uint8Array> = {};
    for (const [key, value] of Object.entries((metadata ?? {}) as Record<string, unknown>)) meta[key] = bytes(value, `Payload ${i}: metadata "${key.slice(0, 40)}"`);
    return { metadata: meta, data: data === undefined ? new Uint8Array() : bytes(data, `Payload ${i}: "data"`) };
  });
}

const jsonOf = (payloads: Payload[]) => ({
  payloads: payloads.map((p) => ({
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  })),
});

function requireOperator(actor: Actor): void {
  if (actor.kind !== 'operator') throw new CmkError('FORBIDDEN', 'Only the provider operator may use the codec endpoint; tenant administrators never decrypt workflow histories.');
}

export function createCodecEndpoint({ codec, allowedOrigin, audit, uiCapability = null }: CodecDependencies): CodecEndpoint {
  return {
    maxBodyBytes: MAX_CODEC_BODY,
    capabilityActor(pathname, req) {
      const match = CAPABILITY_PATH.exec(pathname);
      if (!match) return undefined;
      const origin = req.headers.origin;
      const fromUi = origin === undefined || (allowedOrigin !== null && origin === allowedOrigin);
      if (uiCapability === null || !sameSecret(match[1]!, uiCapability) || !isLoopback(req.socket.remoteAddress) || !fromUi) {
        throw new CmkError('FORBIDDEN', 'Only the provider operator may use the codec endpoint: this path is not the embedded Temporal UI\'s.');
      }
      return { kind: 'operator' };
    },
    handleCors(req, res) {
      const origin = req.headers.origin;
      if (origin === undefined) return false;
      if (origin !== allowedOrigin) {
        res.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: { code: 'FORBIDDEN', message: `The codec endpoint does not answer pages from ${origin.slice(0, 200)}.` } }));
        return true;
      }
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
      res.setHeader('access-control-allow-credentials', 'true');
      if (req.method !== 'OPTIONS') return false;
      res.writeHead(204, {
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': 'authorization, content-type, x-namespace',
        'access-control-max-age': '600',
      });
      res.end();
      return true;
    },
    async encode(actor, body) {
      requireOperator(actor);
      return jsonOf(await codec.encode(payloadsOf(body)));
    },
    async decode(actor, body, req) {
      requireOperator(actor);
      const payloads = payloadsOf(body);
      let decoded: Payload[];
      try {
        decoded = await codec.decode(payloads);
      } catch (err) {
        throw new CmkError('INVALID_ARGUMENT', `The payloads could not be decrypted: ${err instanceof Error ? err.message : String(err)}`);
      }
      const namespace = req.headers['x-namespace'];
      await audit([
        redactAuditEntry({
          id: `codec-decode/${randomUUID()}`,
          at: new Date().toISOString(),
          actor: 'operator',
          action: 'codec.decode',
          outcome: 'completed',
          tenant: null,
          details: {
            payloads: payloads.length,
            namespace: typeof namespace === 'string' ? namespace.slice(0, 200) : null,
            origin: req.headers.origin?.slice(0, 200) ?? null,
            // Which credential opened it: the embedded UI's capability, or an operator's token.
            via: CAPABILITY_PATH.test(new URL(req.url ?? '/', 'http://localhost').pathname) ? 'ui-capability' : 'operator-token',
          },
        }),
      ]);
      return jsonOf(decoded);
    },
  };
}
