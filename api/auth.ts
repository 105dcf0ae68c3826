/**
 * Authentication of the API service: every caller but the health check and the OpenAPI document presents a bearer
 * JWT, verified with `jose` against an algorithm allow-list, the configured issuer and audience, and its expiry.
 * Keys come from the issuer's JWKS URL or public key, or, in the embedded default, the local signing key
 * (common/tokens.ts). Identity comes only from the verified token.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { CmkError } from '../common/errors';
import { OPERATOR_ROLE, OPERATOR_ROLE_CLAIM } from '../common/tokens';
import type { AuthConfig } from '../config';
import { OPERATOR, type Actor } from '../domain/access';
import { isValidEmail, normaliseEmail } from '../domain/ids';

export type Authenticator = (authorization: string | string[] | undefined) => Promise<Actor>;

/** Far above any real JWT; a bigger header is refused before any parsing. */
const MAX_TOKEN_CHARS = 8192;
/** Clock skew tolerated between the issuer and this service. */
const CLOCK_TOLERANCE_SECONDS = 30;
/** A local token lives at most this long (`cmk token issue --ttl`); external issuers set their own lifetimes. */
export const MAX_LOCAL_TOKEN_SECONDS = 24 * 3600;

const unauthenticated = (message: string) => new CmkError('UNAUTHENTICATED', message);

export function createAuthenticator(auth: AuthConfig, localPublicKey: KeyObject | null): Authenticator {
  let key: KeyObject | JWTVerifyGetKey;
  if (auth.mode === 'local') {
    if (!localPublicKey) throw new Error('The embedded default needs the local token signing key.');
    key = localPublicKey;
  } else if (auth.jwksUrl) {
    key = createRemoteJWKSet(new URL(auth.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  } else {
    key = createPublicKey(auth.publicKeyPem ?? '');
  }
  const options = {
    issuer: auth.issuer,
    audience: auth.audience,
    algorithms: auth.algorithms,
    requiredClaims: ['exp', 'iss', 'aud'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    ...(auth.mode === 'local' ? { maxTokenAge: MAX_LOCAL_TOKEN_SECONDS + CLOCK_TOLERANCE_SECONDS } : {}),
  };
  // External issuers set their own lifetimes; a token good for longer than the cap is one stolen copy away from a
  // long-lived identity, so it is refused whatever its signature (its `iat` is then required).
  const maxLifetimeSeconds = Math.floor(auth.maxTokenLifetimeMs / 1000);

  return async (authorization) => {
    if (authorization === undefined || authorization === '') {
      throw unauthenticated('Sign in first: send "Authorization: Bearer <token>" (cmk --token or CMK_TOKEN; in the embedded default, --as or CMK_USER).');
    }
    if (typeof authorization !== 'string' || authorization.length > MAX_TOKEN_CHARS + 7) throw unauthenticated('The Authorization header is malformed.');
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(authorization);
    if (!match) throw unauthenticated('The Authorization header must be "Bearer <JWT>".');
    let payload: JWTPayload;
    try {
      // jose's overloads take a key and a JWKS resolver separately.
      payload = typeof key === 'function' ? (await jwtVerify(match[1]!, key, options)).payload : (await jwtVerify(match[1]!, key, options)).payload;
    } catch (err) {
      throw unauthenticated(describeVerificationFailure(err));
    }
    if (auth.mode === 'external') {
      if (typeof payload.iat !== 'number' || typeof payload.exp !== 'number') throw unauthenticated('The token has no "iat" (issued at) claim; this service needs it to bound the token\'s lifetime.');
      if (payload.exp - payload.iat > maxLifetimeSeconds) throw unauthenticated(`The token is valid for longer than this service accepts (${maxLifetimeSeconds} s); ask your issuer for a shorter-lived one.`);
    }
    return actorOf(payload, { requireEmailVerified: auth.mode === 'external' && auth.requireEmailVerified });
  };
}

/**
 * The operator carries `cmk_role: operator`; anyone else is the e-mail address in `email` (or an e-mail `sub`). An
 * external issuer must also vouch that the address is its holder's (`email_verified: true`): many let users type any
 * address. Addresses are ASCII (domain/rules.ts), so that no case or compatibility fold makes two of one.
 */
export function actorOf(payload: JWTPayload, options: { requireEmailVerified?: boolean } = {}): Actor {
  if (payload[OPERATOR_ROLE_CLAIM] === OPERATOR_ROLE) return OPERATOR;
  const email = typeof payload.email === 'string' ? payload.email : payload.sub;
  if (typeof email !== 'string' || !isValidEmail(email)) throw unauthenticated('The token names no e-mail address (claim "email", or an e-mail "sub"), or names one outside plain ASCII.');
  if (options.requireEmailVerified && payload.email_verified !== true) {
    throw unauthenticated('The token\'s e-mail address is not verified by its issuer (claim "email_verified" is not true).');
  }
  return { kind: 'user', email: normaliseEmail(email) };
}

function describeVerificationFailure(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'The token has expired; get a new one.';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `The token was not issued for this service (claim "${err.claim}" ${err.reason === 'check_failed' ? 'does not match' : 'is missing'}).`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'The token is signed with an algorithm this service does not accept.';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'The token signature does not verify.';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "No key of the issuer's JWKS matches the token.";
  if (err instanceof joseErrors.JWKSTimeout || !(err instanceof joseErrors.JOSEError)) return 'The token could not be verified right now.';
  return 'The token is not valid.';
}
