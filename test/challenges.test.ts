/** Proof-of-possession challenges (R8): only this service's, unaltered, bound to what they were issued for. */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { ChallengeIssuer, CHALLENGE_PREFIX } from '../api/challenges';
import { localParts } from './support/parts';

const claims = { tenant: 'contoso', region: 'emea', user: 'alice@example.com', operation: 'lock' as const };

test('a challenge opens to the claims it was issued with, expiring after the TTL', async () => {
  const issuer = new ChallengeIssuer(randomBytes(32), 60_000);
  const { challenge, claims: issued } = await issuer.issue(claims, Date.parse('2026-11-29T00:00:00Z'));
  expect(challenge.startsWith(`${CHALLENGE_PREFIX}.`)).toBe(true);
  expect(await issuer.open(challenge)).toEqual({ ...claims, id: issued.id, expiresAt: '2026-11-29T00:01:00.000Z' });
  expect((await issuer.issue(claims)).claims.id).not.toBe(issued.id);
});

test('forged, altered, truncated or foreign challenges do not open', async () => {
  const issuer = new ChallengeIssuer(randomBytes(32));
  const { challenge } = await issuer.issue(claims);
  const [prefixA, prefixB, payload, mac] = challenge.split('.');
  const altered = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), user: 'mallory@example.com' })).toString('base64url');
  for (const bad of [
    `${prefixA}.${prefixB}.${altered}.${mac}`,
    `${prefixA}.${prefixB}.${payload}`,
    `${prefixA}.${prefixB}.${payload}.${mac}.extra`,
    challenge.slice(0, -2),
    (await new ChallengeIssuer(randomBytes(32)).issue(claims)).challenge,
    'x'.repeat(5000),
    '',
  ]) {
    expect(await issuer.open(bad)).toBeUndefined();
  }
});

test('the signature the CLI makes over a challenge verifies with the vault key of the same key pair only', async () => {
  const { vault } = localParts();
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const stored = await vault.importKey('tenant-contoso-emea', privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: true });
  const { challenge } = await new ChallengeIssuer(randomBytes(32)).issue(claims);
  const data = Buffer.from(challenge, 'utf8');
  expect(await vault.verify(stored, data, sign('sha256', data, privateKey))).toBe(true);
  expect(await vault.verify(stored, data, sign('sha256', data, other))).toBe(false);
  expect(await vault.verify(stored, Buffer.from(`${challenge}x`), sign('sha256', data, privateKey))).toBe(false);
});
