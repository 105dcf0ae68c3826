/**
 * Single-use challenges for proof of possession (R8, DESIGN.md §6): the service issues a short-lived challenge bound
 * to tenant, region, user and operation; the CLI signs it with the private key of its .pfx (which never leaves the
 * caller's machine); the service verifies the signature against the vault's public key of the active key. A
 * challenge is stateless here (its fields are authenticated with an HMAC key kept in CMK_SECRETS_DIR, so any API
 * replica can check it); the tenant workflow spends it, so it works once.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

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

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export class ChallengeIssuer {
  constructor(
    private readonly key: Buffer,
    private readonly ttlMs = CHALLENGE_TTL_MS,
  ) {}

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(`${CHALLENGE_PREFIX}.${payload}`).digest();
  }

  issue(claims: Omit<ChallengeClaims, 'id' | 'expiresAt'>, now = Date.now()): { challenge: string; claims: ChallengeClaims } {
    const full: ChallengeClaims = { id: randomUUID(), ...claims, expiresAt: new Date(now + this.ttlMs).toISOString() };
    return { challenge: this.seal(full), claims: full };
  }

  /** The challenge text of exactly these claims (`issue` makes fresh ones; tests replay given ones). */
  seal(claims: ChallengeClaims): string {
    const payload = b64url(JSON.stringify(claims));
    return `${CHALLENGE_PREFIX}.${payload}.${b64url(this.mac(payload))}`;
  }

  /** The claims of a challenge this service issued, or undefined for anything else (forged, altered, malformed). */
  open(challenge: string): ChallengeClaims | undefined {
    if (typeof challenge !== 'string' || challenge.length > 2048 || !challenge.startsWith(`${CHALLENGE_PREFIX}.`)) return undefined;
    const [payload, mac, ...rest] = challenge.slice(CHALLENGE_PREFIX.length + 1).split('.');
    if (!payload || !mac || rest.length) return undefined;
    const expected = this.mac(payload);
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as ChallengeClaims;
      return typeof claims.id === 'string' && typeof claims.expiresAt === 'string' ? claims : undefined;
    } catch {
      return undefined;
    }
  }
}
