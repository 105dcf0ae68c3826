/**
 * Signed requests (DESIGN.md §6 "Nothing a caller can forge is trusted"): the API service and the workers sign every
 * workflow start, update and signal they send with the request-signing key (Ed25519); workflows verify with the
 * public keys their worker hands them (`requestTrust`). A signature, not a MAC: a workflow runs in a sandbox whose
 * state is in its history, so it can hold only what may be public. Pure: the client and the workflows share it.
 */
import { ed25519 } from '@noble/curves/ed25519';
import { sha256 } from '@noble/hashes/sha2';
import type { Policy } from './policy';

/** Proof that the API service (or a worker) issued a request: when, and its signature, hex. */
export interface RequestAuth {
  signedAt: string;
  signature: string;
}

/** What a workflow trusts, from its worker's own configuration (never from a request). */
export interface RequestTrust {
  /** Ed25519 public keys, hex: the current request-signing key and any still accepted during a rotation. */
  publicKeys: string[];
  /** The deployment's durations (R5, R6, R9, R15) and regions. */
  policy: Policy;
}

/** How old (or how far ahead of the workflow's clock) a signed request may be. */
export const REQUEST_MAX_AGE_MS = 10 * 60_000;

export const FORGED_REQUEST_MESSAGE = 'This request was not issued by the cmk API service.';

/**
 * A run started before signed requests has no trust to check a signature with until it loads its worker's
 * (`refreshTrust`): until then it refuses every request, with this retryable refusal (OPERATION_IN_PROGRESS), which
 * the client library answers by sending `refreshTrust` and the request again.
 */
export const TRUST_NOT_LOADED_MESSAGE = 'The control plane is being upgraded; try again in a moment.';

const DOMAIN = 'cmk-request.v1';

/** JSON with object keys sorted and undefined members left out, as a JSON payload would carry them. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    return text === undefined ? 'null' : text;
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .flatMap((k) => {
      const v = (value as Record<string, unknown>)[k];
      return v === undefined || typeof v === 'function' ? [] : [`${JSON.stringify(k)}:${canonicalJson(v)}`];
    });
  return `{${entries.join(',')}}`;
}

/** The bytes signed: the workflow, the message (workflow type for a start), the time, and the request without `auth`. */
export function signedBytes(workflowId: string, name: string, signedAt: string, request: unknown): Uint8Array {
  const body = request !== null && typeof request === 'object' && !Array.isArray(request) ? withoutAuth(request as Record<string, unknown>) : request;
  return new TextEncoder().encode(`${DOMAIN}\n${canonicalJson({ workflowId, name, signedAt, request: body })}`);
}

function withoutAuth(request: Record<string, unknown>): Record<string, unknown> {
  const { auth: _auth, ...rest } = request;
  return rest;
}

const HEX = /^(?:[0-9a-f]{2})+$/;

function hexBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Signatures already found good, by a digest of key, signature and message: verifying is a pure function of the three,
 * so a workflow replayed on this worker (its cache full, a continue-as-new refused while records kept arriving) does
 * not pay the curve arithmetic again — about 4 ms a signature in the workflows' sandbox, where the audit writer
 * checks every record signal it replays. The workers share this module (worker/workflow-bundle.ts), so the memo is
 * one per worker; oldest first out, at most VERIFIED_MEMO_SIZE digests (about 1 MB).
 */
const verifiedMemo = new Map<string, true>();
const VERIFIED_MEMO_SIZE = 10_000;

function verifiesWith(key: Uint8Array, sig: Uint8Array, message: Uint8Array): boolean {
  const digest = toHex(sha256.create().update(key).update(sig).update(message).digest());
  if (verifiedMemo.has(digest)) return true;
  if (!ed25519.verify(sig, message, key)) return false;
  if (verifiedMemo.size >= VERIFIED_MEMO_SIZE) verifiedMemo.delete(verifiedMemo.keys().next().value!);
  verifiedMemo.set(digest, true);
  return true;
}

/**
 * Why a request must be refused, or null when one of the keys signed it within the window around `now` (ms).
 * `auth` is whatever arrived: a forged or plaintext request may carry anything, or nothing.
 */
export function checkSignature(keys: readonly string[], workflowId: string, name: string, request: unknown, auth: unknown, now: number | null): string | null {
  if (auth === null || typeof auth !== 'object') return 'it is not signed';
  const { signedAt, signature } = auth as Partial<Record<keyof RequestAuth, unknown>>;
  if (typeof signedAt !== 'string' || typeof signature !== 'string' || signature.length !== 128 || !HEX.test(signature)) return 'its signature is malformed';
  const at = Date.parse(signedAt);
  if (Number.isNaN(at)) return 'its signing time is malformed';
  if (now !== null && Math.abs(now - at) > REQUEST_MAX_AGE_MS) return 'its signature is too old (or from the future)';
  const message = signedBytes(workflowId, name, signedAt, request);
  const sig = hexBytes(signature);
  for (const key of keys) {
    if (key.length !== 64 || !HEX.test(key)) continue;
    try {
      if (verifiesWith(hexBytes(key), sig, message)) return null;
    } catch {
      // A malformed point is no signature: try the next key.
    }
  }
  return 'its signature does not verify';
}

/** A request object's `auth`, whatever the request is (the codec's refusal sentinel, a string, …). */
export function authOf(request: unknown): unknown {
  return request !== null && typeof request === 'object' ? (request as { auth?: unknown }).auth : undefined;
}
