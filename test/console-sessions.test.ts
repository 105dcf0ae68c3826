/**
 * The console's sign-in links and sessions (api/console-sessions.ts) against a clock the test moves: a link works
 * once and for 5 minutes; a session ends after 30 idle minutes or 8 hours; a POST needs the session's CSRF token and
 * no foreign Origin; the cookie's attributes. The browser side of the same is in test/console.test.ts.
 */
import type { IncomingMessage } from 'node:http';
import { ConsoleSessions, cookieValue, CSRF_HEADER, SESSION_COOKIE } from '../api/console-sessions';
import { isCmkError } from '../common/errors';

const ALICE = { kind: 'user' as const, email: 'alice@contoso.example' };

function setup(secureCookie = false) {
  let now = Date.parse('2026-12-05T12:00:00Z');
  const sessions = new ConsoleSessions({ secureCookie, now: () => now });
  return { sessions, advance: (ms: number) => (now += ms) };
}

/** A request as the server sees it: the cookie the browser sent, and for a POST its headers. */
const request = (cookie: string, method = 'GET', headers: Record<string, string> = {}) =>
  ({ method, headers: { cookie: `${SESSION_COOKIE}=${cookieValue(cookie.split(';')[0], SESSION_COOKIE) ?? ''}`, host: '127.0.0.1:8787', ...headers } }) as unknown as IncomingMessage;

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    if (isCmkError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'accepted';
};

test('a sign-in link works once, and not after 5 minutes', () => {
  const { sessions, advance } = setup();
  const { ticket } = sessions.issueLink(ALICE);
  const first = sessions.redeem(ticket);
  expect(first.session.user).toBe(ALICE.email);
  expect(codeOf(() => sessions.redeem(ticket))).toMatch(/^UNAUTHENTICATED: .*already used/);
  const late = sessions.issueLink(ALICE).ticket;
  advance(5 * 60_000);
  expect(codeOf(() => sessions.redeem(late))).toMatch(/^UNAUTHENTICATED: .*expired/);
  expect(codeOf(() => sessions.redeem('A'.repeat(43)))).toMatch(/^UNAUTHENTICATED: .*not known/);
  expect(codeOf(() => sessions.redeem('../../etc'))).toMatch(/^UNAUTHENTICATED: .*not a sign-in link/);
});

test('the cookie: HttpOnly, SameSite=Strict, Secure off loopback; cleared at sign-out', () => {
  const plain = setup().sessions.open(ALICE).cookie;
  expect(plain).toMatch(/^cmk_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800$/);
  const { sessions } = setup(true);
  const { cookie } = sessions.open(ALICE);
  expect(cookie).toMatch(/; Secure$/);
  expect(sessions.actorOf(request(cookie))).toEqual(ALICE);
  expect(sessions.close(request(cookie))).toMatch(/^cmk_session=; .*Max-Age=0/);
  expect(codeOf(() => sessions.actorOf(request(cookie)))).toMatch(/^UNAUTHENTICATED/);
});

test('a session ends after 30 idle minutes, and after 8 hours however busy', () => {
  const { sessions, advance } = setup();
  const idle = sessions.open(ALICE).cookie;
  advance(29 * 60_000);
  expect(sessions.actorOf(request(idle))).toEqual(ALICE);
  advance(30 * 60_000);
  expect(codeOf(() => sessions.actorOf(request(idle)))).toMatch(/^UNAUTHENTICATED: Your console session has ended/);
  const busy = sessions.open(ALICE).cookie;
  for (let i = 0; i < 19; i++) {
    advance(25 * 60_000);
    expect(sessions.actorOf(request(busy))).toEqual(ALICE);
  }
  advance(25 * 60_000);
  expect(codeOf(() => sessions.actorOf(request(busy)))).toMatch(/^UNAUTHENTICATED/);
});

test('a POST needs the session\'s CSRF token, and no other site\'s Origin', () => {
  const { sessions } = setup();
  const { cookie, session } = sessions.open(ALICE);
  expect(codeOf(() => sessions.actorOf(request(cookie, 'POST')))).toMatch(/^FORBIDDEN: .*CSRF/);
  expect(codeOf(() => sessions.actorOf(request(cookie, 'POST', { [CSRF_HEADER]: 'x'.repeat(43) })))).toMatch(/^FORBIDDEN: .*CSRF/);
  expect(codeOf(() => sessions.actorOf(request(cookie, 'POST', { [CSRF_HEADER]: session.csrf, origin: 'https://evil.example' })))).toMatch(/^FORBIDDEN: .*another site/);
  expect(sessions.actorOf(request(cookie, 'POST', { [CSRF_HEADER]: session.csrf, origin: 'http://127.0.0.1:8787' }))).toEqual(ALICE);
  expect(sessions.actorOf(request(cookie, 'POST', { [CSRF_HEADER]: session.csrf }))).toEqual(ALICE);
  // Another session's token does not do.
  const other = sessions.open(ALICE).session.csrf;
  expect(codeOf(() => sessions.actorOf(request(cookie, 'POST', { [CSRF_HEADER]: other })))).toMatch(/^FORBIDDEN/);
});

test('no cookie: not a console request (the bearer token decides); a malformed Cookie header names no session', () => {
  const { sessions } = setup();
  expect(sessions.actorOf({ method: 'GET', headers: {} } as IncomingMessage)).toBeUndefined();
  expect(cookieValue('a=b; cmk_session=; c=d', SESSION_COOKIE)).toBeUndefined();
  expect(cookieValue(`cmk_session=${'x'.repeat(9000)}`, SESSION_COOKIE)).toBeUndefined();
  expect(cookieValue('other=1;cmk_session=abc', SESSION_COOKIE)).toBe('abc');
});
