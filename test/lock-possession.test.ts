/**
 * R8's proof of possession checked again by an activity, against the vault, before the lock's first side effect
 * (DESIGN.md §6): whatever a request claims it verified, only the API service's challenge for this tenant, region,
 * user and lock, signed with the private key of the vault's active key, passes. The activity alone, over a real local
 * vault; the workflow path is in test/lock-workflow.test.ts.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { ChallengeIssuer, type ChallengeClaims } from '../api/challenges';
import { createActivities } from '../activities';
import type { LockPossessionCheck } from '../activities/lock';
import { localParts } from './support/parts';
import { signChallenge, testRequestTrust } from './support/codec';

const parts = localParts();
const issuer = new ChallengeIssuer(Buffer.alloc(32, 5));
const activities = createActivities({ ...parts, ...testRequestTrust(), challenges: issuer });
const privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const ACCEPTED_AT = '2026-12-04T12:00:00.000Z';
const claims: ChallengeClaims = { id: randomUUID(), tenant: 'contoso', region: 'emea', user: 'alice@example.com', operation: 'lock', expiresAt: '2026-12-04T12:05:00.000Z' };
let vaultKey: LockPossessionCheck['vaultKey'];

beforeAll(async () => {
  const key = await parts.vault.importKey('tenant-contoso-emea', privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: true });
  vaultKey = { name: key.name, version: key.version };
});

async function check(overrides: Partial<LockPossessionCheck> = {}, sealed?: Promise<string>, key = privateKey): Promise<LockPossessionCheck> {
  const challenge = await (sealed ?? issuer.seal(claims));
  return {
    tenant: claims.tenant,
    region: claims.region,
    user: claims.user,
    challengeId: claims.id,
    expiresAt: claims.expiresAt,
    acceptedAt: ACCEPTED_AT,
    possession: { challenge, signature: signChallenge(challenge, key) },
    vaultKey,
    ...overrides,
  };
}

test('the challenge the API service issued, signed with the active key: the lock may go on', async () => {
  await expect(activities.verifyLockPossession(await check())).resolves.toBeUndefined();
});

test.each<[string, () => Promise<LockPossessionCheck>, RegExp]>([
  ['no challenge and signature (a request that only says it verified)', () => check({ possession: null }), /carries no challenge/],
  ['a challenge made with another HMAC key (forged)', () => check({}, new ChallengeIssuer(Buffer.alloc(32, 6)).seal(claims)), /not issued by the cmk API service/],
  ['a signature by another key', () => check({}, undefined, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey), /does not verify/],
  ['a signature over another challenge', async () => ({ ...(await check()), possession: { challenge: await issuer.seal(claims), signature: signChallenge(await issuer.seal({ ...claims, id: randomUUID() }), privateKey) } }), /does not verify/],
  ['another challenge ID than the one the workflow spent', () => check({ challengeId: randomUUID() }), /not the one the request names/],
  ['another expiry than the request says', () => check({ expiresAt: '2027-01-01T00:00:00.000Z' }), /not the one the request names/],
  ['another tenant', () => check({ tenant: 'fabrikam' }), /another tenant, region, user or operation/],
  ['another region', () => check({ region: 'apac' }), /another tenant, region, user or operation/],
  ['another user', () => check({ user: 'mallory@evil.test' }), /another tenant, region, user or operation/],
  ['expired when the workflow accepted the lock', () => check({ acceptedAt: claims.expiresAt }), /expired/],
])('refused with KEY_MISMATCH: %s', async (_what, make, why) => {
  await expect(activities.verifyLockPossession(await make())).rejects.toMatchObject({ type: 'KEY_MISMATCH', message: expect.stringMatching(why) });
});

test('a worker without the challenge key locks nothing', async () => {
  const without = createActivities({ ...parts, ...testRequestTrust() });
  await expect(without.verifyLockPossession(await check())).rejects.toMatchObject({ type: 'KEY_MISMATCH', message: expect.stringMatching(/cannot check challenges/) });
});
