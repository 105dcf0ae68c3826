/**
 * Signed requests (domain/signed.ts, common/request-signing.ts): the canonical JSON both sides sign, and what the
 * workflows' check accepts and refuses — table-driven, no server.
 */
import { RequestSigner, requestTrustFor } from '../common/request-signing';
import { canonicalJson, checkSignature, REQUEST_MAX_AGE_MS } from '../domain/signed';
import { DEFAULT_POLICY } from '../domain/policy';

test.each([
  ['keys sorted at every depth', { b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } }, '{"a":{"c":null,"d":[3,{"e":2,"f":1}]},"b":1}'],
  ['undefined members left out, as JSON drops them', { a: undefined, b: 'x' }, '{"b":"x"}'],
  ['undefined in a list is null, as JSON makes it', [1, undefined], '[1,null]'],
  ['strings escaped as JSON escapes them', { 'k"': 'line\nbreak é' }, '{"k\\"":"line\\nbreak é"}'],
  ['a bare value', 'text', '"text"'],
  ['nothing', undefined, 'null'],
])('canonical JSON: %s', (_what, value, expected) => {
  expect(canonicalJson(value)).toBe(expected);
});

test('canonical JSON is the same after a JSON round trip (what the workflow decodes is what the client signed)', () => {
  const request = { actor: { kind: 'user', email: 'alice@example.com' }, policy: DEFAULT_POLICY, change: 'add', role: null, extra: undefined, list: [{ z: 1, y: [true, false] }] };
  expect(canonicalJson(JSON.parse(JSON.stringify(request)))).toBe(canonicalJson(request));
});

const NOW = Date.parse('2026-12-04T12:00:00.000Z');
const signer = new RequestSigner(Buffer.alloc(32, 1), () => NOW);
const other = new RequestSigner(Buffer.alloc(32, 2), () => NOW);
const request = { actor: { kind: 'user', email: 'alice@example.com' }, policy: DEFAULT_POLICY, change: 'add', email: 'mallory@evil.test', role: 'global' };

test('a request signed by the API service verifies, after a JSON round trip, with its own key among others', async () => {
  const signed = JSON.parse(JSON.stringify(await signer.signed('cmk-tenant/contoso', 'changeAdmin', request))) as typeof request & { auth: unknown };
  expect(checkSignature([other.publicKey, signer.publicKey], 'cmk-tenant/contoso', 'changeAdmin', signed, signed.auth, NOW)).toBeNull();
  // A signal's freshness is not checked (null): records wait in Temporal while the writer's worker is down.
  expect(checkSignature([signer.publicKey], 'cmk-tenant/contoso', 'changeAdmin', signed, signed.auth, null)).toBeNull();
});

// The signatures below are the same bytes as the one found good above (ed25519 signs deterministically), so each
// refusal also shows that the memo of good signatures (domain/signed.ts) keys on the message and the key, not on the
// signature alone.

type Case = [string, (s: Record<string, unknown> & { auth: { signedAt: string; signature: string } }) => { keys?: string[]; workflowId?: string; name?: string; request?: unknown; auth?: unknown; now?: number }, RegExp];
test.each<Case>([
  ['no auth (a plaintext or forged request)', () => ({ auth: undefined }), /not signed/],
  ["the codec's refusal marker", () => ({ request: { cmkRefused: 'x' }, auth: undefined }), /not signed/],
  ['a malformed signature', (s) => ({ auth: { ...s.auth, signature: 'zz' } }), /malformed/],
  ['a malformed time', (s) => ({ auth: { ...s.auth, signedAt: 'yesterday' } }), /malformed/],
  ['a changed field', (s) => ({ request: { ...s, email: 'eve@evil.test' } }), /does not verify/],
  ['an added field (a forged policy)', (s) => ({ request: { ...s, policy: { ...DEFAULT_POLICY, lockEmbargoMs: 0 } } }), /does not verify/],
  ['another workflow', () => ({ workflowId: 'cmk-tenant/fabrikam' }), /does not verify/],
  ['another message', () => ({ name: 'lockTenant' }), /does not verify/],
  ['another key (not the API service’s)', () => ({ keys: [other.publicKey] }), /does not verify/],
  ['no key at all', () => ({ keys: [] }), /does not verify/],
  ['a key that is not a key', () => ({ keys: ['00'.repeat(32)] }), /does not verify/],
  ['too old', () => ({ now: NOW + REQUEST_MAX_AGE_MS + 1 }), /too old/],
  ['from the future', () => ({ now: NOW - REQUEST_MAX_AGE_MS - 1 }), /too old/],
  ['a moved signing time', (s) => ({ auth: { ...s.auth, signedAt: new Date(NOW + 1000).toISOString() } }), /does not verify/],
])('refused: %s', async (_what, change, reason) => {
  const signed = (await signer.signed('cmk-tenant/contoso', 'changeAdmin', request)) as unknown as Parameters<Case[1]>[0];
  const c = { keys: [signer.publicKey], workflowId: 'cmk-tenant/contoso', name: 'changeAdmin', request: signed as unknown, auth: signed.auth as unknown, now: NOW, ...change(signed) };
  expect(checkSignature(c.keys, c.workflowId, c.name, c.request, c.auth, c.now)).toMatch(reason);
});

test('the workers trust their own public key and the older ones CMK_REQUEST_VERIFY_KEYS names (rotation), and refuse anything else there', () => {
  expect(requestTrustFor(signer, DEFAULT_POLICY, { CMK_REQUEST_VERIFY_KEYS: ` ${other.publicKey.toUpperCase()} ` }).publicKeys).toEqual([signer.publicKey, other.publicKey]);
  expect(() => requestTrustFor(signer, DEFAULT_POLICY, { CMK_REQUEST_VERIFY_KEYS: 'not-a-key' })).toThrow(/CMK_REQUEST_VERIFY_KEYS/);
});
