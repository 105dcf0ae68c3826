/**
 * Bearer tokens of the embedded default: JWTs signed with the local Ed25519 key in CMK_SECRETS_DIR (or
 * CMK_SECRET_TOKEN_SIGNING_KEY). The API service verifies them (api/auth.ts); the CLI signs short-lived ones for
 * `--as` and `cmk token issue`. With an external issuer configured, neither signs: identity comes from that issuer.
 */
import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { CmkError } from './errors';
import { loadExistingSecret, loadOrCreateSecret } from './secrets';

export const TOKEN_SIGNING_KEY = 'token-signing-key';
/** The claim that makes a token the provider operator's (DESIGN.md §4: no key operation, R12). */
export const OPERATOR_ROLE_CLAIM = 'cmk_role';
export const OPERATOR_ROLE = 'operator';
export const OPERATOR_SUBJECT = 'operator';

/** PKCS#8 DER of an Ed25519 private key is this fixed prefix followed by the 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function signingKeyFromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** The services' key (created at first start, 0600). */
export function loadOrCreateTokenSigningKey(secretsDir: string): KeyObject {
  return signingKeyFromSeed(loadOrCreateSecret(secretsDir, TOKEN_SIGNING_KEY));
}

/** The CLI's view: the key the services created, or a refusal that says to start them first. */
export function loadTokenSigningKey(secretsDir: string): KeyObject {
  const seed = loadExistingSecret(secretsDir, TOKEN_SIGNING_KEY);
  if (!seed) {
    throw new CmkError('UNAUTHENTICATED', `There is no local token signing key in ${secretsDir}; start the control plane (npm start) with the same CMK_SECRETS_DIR, or pass --token.`);
  }
  return signingKeyFromSeed(seed);
}

export const publicKeyOf = (signingKey: KeyObject): KeyObject => createPublicKey(signingKey);

export interface TokenRequest {
  /** An e-mail address, or null for the provider operator. */
  email: string | null;
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export async function issueToken(signingKey: KeyObject, request: TokenRequest): Promise<string> {
  const claims: Record<string, string> = request.email ? { email: request.email } : { [OPERATOR_ROLE_CLAIM]: OPERATOR_ROLE };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
    .setSubject(request.email ?? OPERATOR_SUBJECT)
    .setIssuer(request.issuer)
    .setAudience(request.audience)
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime(`${request.ttlSeconds}s`)
    .sign(signingKey);
}
