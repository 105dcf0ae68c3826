/**
 * The spent-signature ledger a tenant's workflow carries across continue-as-new (domain/spent-signatures.ts): a request
 * accepted once is refused again for as long as its age lets it pass, and the ledger stays small enough at the API's
 * rate limit that the tenant's continue-as-new payload stays under Temporal's 2 MB (issue 20: 10,000 applies in a
 * quarter of an hour filled it with whole signatures, and the tenant stuck).
 */
import { randomBytes } from 'node:crypto';
import { REQUEST_MAX_AGE_MS } from '../domain/signed';
import { SpentLedger, SPENT_RETENTION_MS } from '../domain/spent-signatures';

const signature = () => randomBytes(64).toString('hex');
const at = (ms: number) => new Date(ms).toISOString();
const T0 = Date.parse('2026-12-06T00:00:00Z');

test('a spent signature is refused while the age check would let it pass, and forgotten only after', () => {
  const spent = new SpentLedger();
  const first = signature();
  spent.spend({ signature: first, signedAt: at(T0) }, T0 + 1_000);
  expect(spent.isSpent(first)).toBe(true);
  expect(spent.isSpent(signature())).toBe(false);
  // Still kept when the age check (|now − signedAt| ≤ REQUEST_MAX_AGE_MS) last lets it through …
  spent.spend({ signature: signature(), signedAt: at(T0 + REQUEST_MAX_AGE_MS) }, T0 + REQUEST_MAX_AGE_MS);
  expect(spent.isSpent(first)).toBe(true);
  // … and dropped once the age check refuses it by itself.
  spent.spend({ signature: signature(), signedAt: at(T0 + SPENT_RETENTION_MS + 1_000) }, T0 + SPENT_RETENTION_MS + 1_000);
  expect(spent.isSpent(first)).toBe(false);
  expect(spent.size).toBe(2);
});

test('at the rate limit (30 a second) for 20 minutes the ledger stays under 0.8 MB of JSON; whole signatures took 2.3 MB', () => {
  const spent = new SpentLedger();
  const legacy: Record<string, string> = {};
  for (let i = 0; i < 30 * 20 * 60; i++) {
    const now = T0 + Math.floor(i / 30) * 1000;
    const s = { signature: signature(), signedAt: at(now) };
    spent.spend(s, now);
    legacy[s.signature] = s.signedAt;
  }
  const bytes = Buffer.byteLength(JSON.stringify(spent.carried()));
  expect(bytes).toBeLessThan(800_000);
  expect(Buffer.byteLength(JSON.stringify(legacy))).toBeGreaterThan(2_000_000);
  // What is kept is exactly the window: 11 minutes at 30 a second, and a second's worth more at the edge.
  expect(spent.size).toBeGreaterThanOrEqual(30 * 11 * 60);
  expect(spent.size).toBeLessThanOrEqual(30 * (11 * 60 + 1));
  // Carried across continue-as-new and taken up again: the same signatures, the same order.
  const again = new SpentLedger(JSON.parse(JSON.stringify(spent.carried())));
  expect(again.carried()).toEqual(spent.carried());
  expect(Object.keys(again.carried())).toEqual(Object.keys(spent.carried()));
});

test('signed out of order: a slightly older signature accepted later is still refused, and pruned in its turn', () => {
  const spent = new SpentLedger();
  const late = signature();
  spent.spend({ signature: signature(), signedAt: at(T0 + 5_000) }, T0 + 5_000);
  spent.spend({ signature: late, signedAt: at(T0) }, T0 + 6_000);
  expect(spent.isSpent(late)).toBe(true);
  spent.spend({ signature: signature(), signedAt: at(T0 + SPENT_RETENTION_MS + 10_000) }, T0 + SPENT_RETENTION_MS + 10_000);
  expect(spent.isSpent(late)).toBe(false);
});

test("a run's legacy ledger (whole signatures, ISO times) is adopted: its signatures stay spent, oldest first", () => {
  const a = signature();
  const b = signature();
  const c = signature();
  const adopted = new SpentLedger({ [c.slice(0, 24)]: T0 / 1000 + 1 }, { [b]: at(T0 + 2_000), [a]: at(T0), broken: 'not a time' });
  for (const s of [a, b, c]) expect(adopted.isSpent(s)).toBe(true);
  expect(Object.values(adopted.carried())).toEqual([T0 / 1000, T0 / 1000 + 1, T0 / 1000 + 2]);
  // The oldest is forgotten first.
  adopted.spend({ signature: signature(), signedAt: at(T0 + SPENT_RETENTION_MS + 500) }, T0 + SPENT_RETENTION_MS + 500);
  expect([a, b, c].map((s) => adopted.isSpent(s))).toEqual([false, true, true]);
});
