/**
 * Sign-in for the tenant administrators' console (console/, DESIGN.md §6): one-time sign-in links and the sessions
 * they open. A browser never holds a bearer token: it holds an HttpOnly, SameSite=Strict session cookie, and every
 * state-changing request also carries the session's CSRF token in a header, which a page of another origin cannot read.
 *
 * Links and sessions live in this API process's memory: a restart signs every console user out (they sign in again),
 * and nothing about them reaches the data dir or a log. Only SHA-256 digests of tickets and session IDs are kept, so
 * a heap dump does not hand out sessions. Several API replicas behind one address need sticky sessions
 * (docs/CONSOLE.md).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { CmkError } from '../common/errors';
import { describeActor, type Actor } from '../domain/access';

/** A sign-in link works once, within this time (issue 17). */
export const SIGN_IN_LINK_TTL_MS = 5 * 60_000;
/** A session ends this long after sign-in, whatever happens. */
export const SESSION_LIFETIME_MS = 8 * 3600_000;
/** …or this long after its last request. */
export const SESSION_IDLE_MS = 30 * 60_000;
/** Far above any real use; past it the oldest entries go first (memory stays bounded whatever callers do). */
const MAX_ENTRIES = 10_000;

export const SESSION_COOKIE = 'cmk_session';
export const CSRF_HEADER = 'x-cmk-csrf';

export interface ConsoleSession {
  actor: Actor;
  csrf: string;
  createdAt: number;
  expiresAt: number;
  lastSeenAt: number;
}

export interface SessionView {
  user: string;
  csrf: string;
  expiresAt: string;
  idleTimeoutSeconds: number;
}

const digest = (secret: string) => createHash('sha256').update(secret).digest('base64url');
const secret = () => randomBytes(32).toString('base64url');
const unauthenticated = (message: string) => new CmkError('UNAUTHENTICATED', message);

export class ConsoleSessions {
  /** Tickets by digest: who they sign in, until when, and whether one was already used. */
  private readonly links = new Map<string, { actor: Actor; expiresAt: number; usedAt: number | null }>();
  private readonly sessions = new Map<string, ConsoleSession>();

  constructor(
    private readonly options: { secureCookie: boolean; now?: () => number; linkTtlMs?: number; lifetimeMs?: number; idleMs?: number } = { secureCookie: false },
  ) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** A one-time sign-in ticket for `actor` (who is already authenticated by their bearer token). */
  issueLink(actor: Actor): { ticket: string; expiresAt: string } {
    const now = this.now();
    this.sweep(now);
    const ticket = secret();
    const expiresAt = now + (this.options.linkTtlMs ?? SIGN_IN_LINK_TTL_MS);
    this.links.set(digest(ticket), { actor, expiresAt, usedAt: null });
    return { ticket, expiresAt: new Date(expiresAt).toISOString() };
  }

  /** Spends a ticket: a session for its holder, or UNAUTHENTICATED saying why (used, expired, unknown). */
  redeem(ticket: string): { cookie: string; session: SessionView } {
    if (typeof ticket !== 'string' || !/^[A-Za-z0-9_-]{20,100}$/.test(ticket)) throw unauthenticated('That is not a sign-in link of this console.');
    const now = this.now();
    const link = this.links.get(digest(ticket));
    if (!link) throw unauthenticated('This sign-in link is not known here (or the service restarted since it was made); run `cmk console` again for a new one.');
    if (link.usedAt !== null) throw unauthenticated('This sign-in link was already used; each link signs in once. Run `cmk console` again for a new one.');
    if (now >= link.expiresAt) throw unauthenticated('This sign-in link has expired (links last 5 minutes); run `cmk console` again for a new one.');
    link.usedAt = now;
    return this.open(link.actor);
  }

  /** A new session for `actor` (after a sign-in link or the issuer's sign-in): its cookie and what the page learns. */
  open(actor: Actor): { cookie: string; session: SessionView } {
    const now = this.now();
    this.sweep(now);
    const id = secret();
    const session: ConsoleSession = { actor, csrf: secret(), createdAt: now, lastSeenAt: now, expiresAt: now + (this.options.lifetimeMs ?? SESSION_LIFETIME_MS) };
    this.sessions.set(digest(id), session);
    return { cookie: this.cookie(id, session.expiresAt - now), session: this.view(session) };
  }

  /**
   * The caller of a request that carries a session cookie (and no bearer token). A state-changing request must also
   * carry the session's CSRF token; a request whose Origin is not this service's is refused whatever it carries.
   */
  actorOf(req: IncomingMessage): Actor | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const session = this.live(id);
    if (!session) throw unauthenticated('Your console session has ended (signed out, expired or idle too long); sign in again.');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.refuseForeignOrigin(req);
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !sameText(sent, session.csrf)) throw new CmkError('FORBIDDEN', 'The request lacks this console session\'s CSRF token; reload the page.');
    }
    session.lastSeenAt = this.now();
    return session.actor;
  }

  /** A browser request sent by a page of another origin (its Origin header says so) is refused whatever it carries. */
  refuseForeignOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `${this.options.secureCookie ? 'https' : 'http'}://${req.headers.host ?? ''}`) {
      throw new CmkError('FORBIDDEN', 'A request from another site may not act through your console session.');
    }
  }

  /** The session a request's cookie names, as the page may see it (its CSRF token included), or undefined. */
  viewOf(req: IncomingMessage): SessionView | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    const session = id === undefined ? undefined : this.live(id);
    return session && this.view(session);
  }

  /** Ends the session a request's cookie names; the cookie that clears it in the browser. */
  close(req: IncomingMessage): string {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id !== undefined) this.sessions.delete(digest(id));
    return this.cookie('', 0);
  }

  private live(id: string): ConsoleSession | undefined {
    const key = digest(id);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    const now = this.now();
    if (now >= session.expiresAt || now - session.lastSeenAt >= (this.options.idleMs ?? SESSION_IDLE_MS)) {
      this.sessions.delete(key);
      return undefined;
    }
    return session;
  }

  private view(session: ConsoleSession): SessionView {
    return { user: describeActor(session.actor), csrf: session.csrf, expiresAt: new Date(session.expiresAt).toISOString(), idleTimeoutSeconds: Math.round((this.options.idleMs ?? SESSION_IDLE_MS) / 1000) };
  }

  private cookie(value: string, maxAgeMs: number): string {
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}${this.options.secureCookie ? '; Secure' : ''}`;
  }

  /** Drops what has expired; past MAX_ENTRIES, the oldest too (Maps iterate in insertion order). */
  private sweep(now: number): void {
    for (const [key, link] of this.links) if (now >= link.expiresAt) this.links.delete(key);
    for (const [key, session] of this.sessions) if (now >= session.expiresAt) this.sessions.delete(key);
    for (const map of [this.links, this.sessions] as Array<Map<string, unknown>>) {
      while (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
    }
  }
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** One cookie's value from a Cookie header (RFC 6265 `name=value; name=value`); undefined when absent or empty. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value === '' ? undefined : value;
    }
  }
  return undefined;
}
