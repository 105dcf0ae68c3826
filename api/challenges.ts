/**
 * Single-use challenges for proof of possession (R8, DESIGN.md §6): the service issues a short-lived challenge bound
 * to tenant, region, user and operation; the CLI signs it with the private key of its .pfx (which never leaves the
 * caller's machine); the service verifies the signature against the vault's public key of the active key. A
 * challenge is stateless here (its claims are a JWS, HS256 with a key kept in CMK_SECRETS_DIR, so any API replica
 * and any worker can check it); the tenant workflow spends it, so it works once.
 */
import { randomUUID } from 'node:crypto';
import { base64url, CompactSign, compactVerify } from 'jose';

export const CHALLENGE_PREFIX = 'cmk-possession-challenge.v1';
/** Long enough to type a password, short enough that a captured signature is soon worthless. */
export const CHALLENGE_TTL_MS = 5 * 60_000;

export interface ChallengeClaims {
  id: string;
  tenant: string;
  region: string;
  user: string;
  operation: 'lock';
  expiresAt: string;
}

/**
 * The JWS protected header is always this one, so the challenge leaves it out (`<prefix>.<payload>.<signature>`) and
 * it is put back to verify. `typ` binds the signature to this use: a JWS made with the same key for anything else
 * does not open as a challenge.
 */
const HEADER = { alg: 'HS256', typ: CHALLENGE_PREFIX } as const;
const ENCODED_HEADER = base64url.encode(JSON.stringify(HEADER));

export class ChallengeIssuer {
  private readonly key: Uint8Array;

  constructor(
    key: Buffer,
    private readonly ttlMs = CHALLENGE_TTL_MS,
  ) {
    this.key = new Uint8Array(key);
  }

  async issue(claims: Omit<ChallengeClaims, 'id' | 'expiresAt'>, now = Date.now()): Promise<{ challenge: string; claims: ChallengeClaims }> {
    const full: ChallengeClaims = { id: randomUUID(), ...claims, expiresAt: new Date(now + this.ttlMs).toISOString() };
    return { challenge: await this.seal(full), claims: full };
  }

  /** The challenge text of exactly these claims (`issue` makes fresh ones; tests replay given ones). */
  async seal(claims: ChallengeClaims): Promise<string> {
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(HEADER).sign(this.key);
    const [header, payload, signature] = jws.split('.');
    // Our own header went in; anything else would mean the JWS is not what `open` rebuilds.
    if (header !== ENCODED_HEADER) throw new Error('unexpected JWS header');
    return `${CHALLENGE_PREFIX}.${payload}.${signature}`;
  }

  /** The claims of a challenge this service issued, or undefined for anything else (forged, altered, malformed). */
  async open(challenge: string): Promise<ChallengeClaims | undefined> {
    if (typeof challenge !== 'string' || challenge.length > 2048 || !challenge.startsWith(`${CHALLENGE_PREFIX}.`)) return undefined;
    const [payload, signature, ...rest] = challenge.slice(CHALLENGE_PREFIX.length + 1).split('.');
    if (!payload || !signature || rest.length) return undefined;
    try {
      const { payload: bytes } = await compactVerify(`${ENCODED_HEADER}.${payload}.${signature}`, this.key, { algorithms: ['HS256'] });
      const claims = JSON.parse(new TextDecoder().decode(bytes)) as ChallengeClaims;
      return typeof claims.id === 'string' && typeof claims.expiresAt === 'string' ? claims : undefined;
    } catch {
      // A signature that does not verify, or a payload that is not JSON: not ours.
      return undefined;
    }
  }
}
