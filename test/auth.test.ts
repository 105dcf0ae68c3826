/**
 * Authentication (api/auth.ts): only verified tokens name a caller. Real keys, real jose signatures; every bad token
 * is refused with UNAUTHENTICATED and a sentence saying why.
 */
import { generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, UnsecuredJWT } from 'jose';
import { createAuthenticator, actorOf } from '../api/auth';
import { issueToken, loadOrCreateTokenSigningKey, loadTokenSigningKey, publicKeyOf } from '../common/tokens';
import { loadConfig, LOCAL_TOKEN_ISSUER, DEFAULT_TOKEN_AUDIENCE } from '../config';
import { isCmkError } from '../common/errors';
import { isValidEmail } from '../domain/ids';
import type { TenantSnapshot } from '../domain/model';
import { checkAdminChange } from '../domain/rules';

const secretsDir = mkdtempSync(join(tmpdir(), 'cmk-auth-'));
const signingKey = loadOrCreateTokenSigningKey(secretsDir);
const local = loadConfig({ CMK_SECRETS_DIR: secretsDir }).auth;
const authenticate = createAuthenticator(local, publicKeyOf(signingKey));

async function refusal(header: string | undefined): Promise<string> {
  try {
    await authenticate(header);
  } catch (err) {
    if (isCmkError(err) && err.code === 'UNAUTHENTICATED') return err.message;
    throw err;
  }
  throw new Error('the header was accepted');
}

const sign = (claims: Record<string, unknown>, options: { iss?: string; aud?: string; exp?: string | number; iat?: number } = {}) => {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuer(options.iss ?? LOCAL_TOKEN_ISSUER).setAudience(options.aud ?? DEFAULT_TOKEN_AUDIENCE);
  jwt = options.iat !== undefined ? jwt.setIssuedAt(options.iat) : jwt.setIssuedAt();
  if (options.exp !== undefined) jwt = jwt.setExpirationTime(options.exp);
  return jwt.sign(signingKey);
};

test('a local token names the user or the operator', async () => {
  const alice = await issueToken(signingKey, { email: 'Alice@Contoso.example', issuer: local.issuer, audience: local.audience, ttlSeconds: 60 });
  await expect(authenticate(`Bearer ${alice}`)).resolves.toEqual({ kind: 'user', email: 'alice@contoso.example' });
  const operator = await issueToken(signingKey, { email: null, issuer: local.issuer, audience: local.audience, ttlSeconds: 60 });
  await expect(authenticate(`Bearer ${operator}`)).resolves.toEqual({ kind: 'operator' });
  // The CLI reads the same key the services created; it never creates one of its own.
  expect(loadTokenSigningKey(secretsDir).export({ format: 'der', type: 'pkcs8' })).toEqual(signingKey.export({ format: 'der', type: 'pkcs8' }));
  expect(() => loadTokenSigningKey(mkdtempSync(join(tmpdir(), 'cmk-empty-')))).toThrow(/no local token signing key/);
});

test('no token, a malformed header or a token of another kind is refused', async () => {
  expect(await refusal(undefined)).toMatch(/Sign in first/);
  expect(await refusal('Basic YWxpY2U6c2VjcmV0')).toMatch(/Bearer/);
  expect(await refusal(`Bearer ${'a'.repeat(9000)}.b.c`)).toMatch(/malformed/);
  const unsecured = new UnsecuredJWT({ email: 'alice@contoso.example' }).setIssuer(LOCAL_TOKEN_ISSUER).setAudience(DEFAULT_TOKEN_AUDIENCE).setExpirationTime('5m').encode();
  expect(await refusal(`Bearer ${unsecured}`)).toMatch(/Bearer <JWT>|not valid|algorithm/);
});

test('expired, foreign-issuer, foreign-audience and unsigned-by-us tokens are refused', async () => {
  expect(await refusal(`Bearer ${await sign({ email: 'a@b.example' }, { exp: Math.floor(Date.now() / 1000) - 120 })}`)).toMatch(/expired/);
  expect(await refusal(`Bearer ${await sign({ email: 'a@b.example' }, { exp: '5m', iss: 'https://evil.example' })}`)).toMatch(/"iss"/);
  expect(await refusal(`Bearer ${await sign({ email: 'a@b.example' }, { exp: '5m', aud: 'another-service' })}`)).toMatch(/"aud"/);
  expect(await refusal(`Bearer ${await sign({ email: 'a@b.example' })}`)).toMatch(/"exp"/);
  // A token that claims to be older than a local token may be is refused (max age 24 h).
  expect(await refusal(`Bearer ${await sign({ email: 'a@b.example' }, { exp: '5m', iat: Math.floor(Date.now() / 1000) - 3 * 24 * 3600 })}`)).toMatch(/expired/);
  const stranger = generateKeyPairSync('ed25519').privateKey;
  const forged = await new SignJWT({ [`cmk_role`]: 'operator' }).setProtectedHeader({ alg: 'EdDSA' }).setIssuer(LOCAL_TOKEN_ISSUER).setAudience(DEFAULT_TOKEN_AUDIENCE).setIssuedAt().setExpirationTime('5m').sign(stranger);
  expect(await refusal(`Bearer ${forged}`)).toMatch(/signature/);
  // A shared-secret token (HS256) is not on the allow-list, whatever its secret.
  const hs = await new SignJWT({ email: 'a@b.example' }).setProtectedHeader({ alg: 'HS256' }).setIssuer(LOCAL_TOKEN_ISSUER).setAudience(DEFAULT_TOKEN_AUDIENCE).setIssuedAt().setExpirationTime('5m').sign(Buffer.alloc(32, 1));
  expect(await refusal(`Bearer ${hs}`)).toMatch(/algorithm/);
});

test('identity comes from the verified claims only', () => {
  expect(actorOf({ email: 'Bob@Contoso.example' })).toEqual({ kind: 'user', email: 'bob@contoso.example' });
  expect(actorOf({ sub: 'bob@contoso.example' })).toEqual({ kind: 'user', email: 'bob@contoso.example' });
  expect(actorOf({ cmk_role: 'operator' })).toEqual({ kind: 'operator' });
  expect(() => actorOf({ sub: '1234-opaque' })).toThrow(/no e-mail/);
  expect(() => actorOf({ cmk_role: 'admin', email: 'not an email' })).toThrow(/no e-mail/);
});

test('an external issuer: a configured public key verifies its RS256 tokens; local tokens and bad settings are refused', async () => {
  const issuerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = issuerKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const external = loadConfig({ CMK_AUTH_PUBLIC_KEY: pem, CMK_AUTH_ISSUER: 'https://login.provider.example', CMK_AUTH_AUDIENCE: 'cmk' }).auth;
  expect(external.mode).toBe('external');
  const verify = createAuthenticator(external, null);
  const token = await new SignJWT({ email: 'carol@contoso.example', email_verified: true }).setProtectedHeader({ alg: 'RS256' }).setIssuer('https://login.provider.example').setAudience('cmk').setIssuedAt().setExpirationTime('5m').sign(createPrivateKey(issuerKeys.privateKey.export({ type: 'pkcs8', format: 'pem' })));
  await expect(verify(`Bearer ${token}`)).resolves.toEqual({ kind: 'user', email: 'carol@contoso.example' });
  const localToken = await issueToken(signingKey, { email: 'carol@contoso.example', issuer: LOCAL_TOKEN_ISSUER, audience: 'cmk', ttlSeconds: 60 });
  await expect(verify(`Bearer ${localToken}`)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  expect(() => loadConfig({ CMK_AUTH_PUBLIC_KEY: pem })).toThrow(/CMK_AUTH_ISSUER is required/);
  expect(() => loadConfig({ CMK_AUTH_ALGORITHMS: 'HS256' })).toThrow(/asymmetric/);
  expect(() => loadConfig({ CMK_AUTH_JWKS_URL: 'http://idp.example/jwks', CMK_AUTH_ISSUER: 'x' })).toThrow(/https/);
});

describe('external identities (issue 16)', () => {
  const issuerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = issuerKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const issuerKey = createPrivateKey(issuerKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const ISSUER = 'https://login.provider.example';
  const externalEnv = { CMK_AUTH_PUBLIC_KEY: pem, CMK_AUTH_ISSUER: ISSUER, CMK_AUTH_AUDIENCE: 'cmk' };
  const verifier = (env: Record<string, string> = {}) => createAuthenticator(loadConfig({ ...externalEnv, ...env }).auth, null);
  const now = () => Math.floor(Date.now() / 1000);
  const external = (claims: Record<string, unknown>, lifetime: { iat?: number | null; exp?: number } = {}) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setIssuer(ISSUER).setAudience('cmk').setExpirationTime(lifetime.exp ?? now() + 300);
    if (lifetime.iat !== null) jwt = jwt.setIssuedAt(lifetime.iat ?? now());
    return jwt.sign(issuerKey).then((t) => `Bearer ${t}`);
  };

  test('an e-mail identity needs email_verified: true; CMK_AUTH_REQUIRE_EMAIL_VERIFIED=false turns that off', async () => {
    const verify = verifier();
    await expect(verify(await external({ email: 'carol@contoso.example' }))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/not verified/) });
    await expect(verify(await external({ email: 'carol@contoso.example', email_verified: 'true' }))).rejects.toMatchObject({ message: expect.stringMatching(/email_verified/) });
    await expect(verify(await external({ sub: 'carol@contoso.example' }))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(verify(await external({ email: 'carol@contoso.example', email_verified: true }))).resolves.toEqual({ kind: 'user', email: 'carol@contoso.example' });
    // The operator is a role the issuer grants, not an address.
    await expect(verify(await external({ cmk_role: 'operator' }))).resolves.toEqual({ kind: 'operator' });
    const lax = verifier({ CMK_AUTH_REQUIRE_EMAIL_VERIFIED: 'false' });
    await expect(lax(await external({ email: 'carol@contoso.example' }))).resolves.toEqual({ kind: 'user', email: 'carol@contoso.example' });
    expect(() => loadConfig({ ...externalEnv, CMK_AUTH_REQUIRE_EMAIL_VERIFIED: 'no' })).toThrow(/true or false/);
  });

  test("a token's lifetime (exp - iat) is capped: 24 h by default, CMK_AUTH_MAX_TOKEN_LIFETIME to change it; no iat, no entry", async () => {
    const verify = verifier();
    const claims = { email: 'carol@contoso.example', email_verified: true };
    const twoDays = { iat: now() - 60, exp: now() + 2 * 24 * 3600 };
    await expect(verify(await external(claims, twoDays))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/longer than this service accepts/) });
    await expect(verify(await external(claims, { iat: null }))).rejects.toMatchObject({ message: expect.stringMatching(/"iat"/) });
    await expect(verify(await external(claims, { iat: now() - 60, exp: now() + 23 * 3600 }))).resolves.toMatchObject({ kind: 'user' });
    await expect(verifier({ CMK_AUTH_MAX_TOKEN_LIFETIME: '72h' })(await external(claims, twoDays))).resolves.toMatchObject({ kind: 'user' });
  });

  test('addresses are ASCII: the Kelvin sign does not fold into "k", in tokens or among administrators', async () => {
    const kelvin = '\u212Aalice@contoso.example';
    expect(kelvin.toLowerCase()).toBe('kalice@contoso.example');
    // A local token, as `--as` signs it, and an external one with a verified address.
    const local = await issueToken(signingKey, { email: kelvin, issuer: LOCAL_TOKEN_ISSUER, audience: DEFAULT_TOKEN_AUDIENCE, ttlSeconds: 60 });
    expect(await refusal(`Bearer ${local}`)).toMatch(/ASCII/);
    await expect(verifier()(await external({ email: kelvin, email_verified: true }))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(() => actorOf({ email: 'ｂob@contoso.example' })).toThrow(/ASCII/);
    expect([isValidEmail(kelvin), isValidEmail('kalice@contoso.example'), isValidEmail("o'brien+cmk@contoso.example")]).toEqual([false, true, true]);
    const tenant: TenantSnapshot = {
      tenant: 'contoso',
      displayName: 'Contoso',
      homeRegion: 'default',
      createdAt: new Date(0).toISOString(),
      admins: [{ email: 'alice@contoso.example', role: 'global' }],
      environments: [],
      regions: {},
      operations: {},
    } as unknown as TenantSnapshot;
    const actor = { kind: 'user' as const, email: 'alice@contoso.example' };
    expect(checkAdminChange(tenant, { actor, change: 'add', email: kelvin, role: 'global' })).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(checkAdminChange(tenant, { actor, change: 'add', email: 'kalice@contoso.example', role: 'global' })).toBeNull();
  });
});
