/**
 * The console's sign-in through the organisation's issuer: OpenID Connect authorization code with PKCE (S256), state
 * and nonce, done by `openid-client`. It ends in the same session a sign-in link opens (api/console-sessions.ts): the
 * browser never holds a token, only the HttpOnly session cookie.
 *
 * Both steps are browser navigations, so both answer with a redirect, never JSON: a refusal sends the browser to the
 * console's sign-in page with one of a fixed set of reasons (`#/sign-in-refused/REASON`; a link can put nothing else
 * on our page). A flow is bound to the browser that started it by a short-lived cookie (SameSite=Lax: it must come back
 * on the issuer's redirect), so a callback URL sent to someone else signs nobody in (login CSRF). Flows live in memory,
 * one use, 10 minutes, like the links.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import * as oidc from 'openid-client';
import type { ConsoleOidcConfig } from '../config';
import { actorOf } from './auth';
import { cookieValue, type ConsoleSessions } from './console-sessions';

/** A sign-in must come back from the issuer within this time. */
export const OIDC_FLOW_TTL_MS = 10 * 60_000;
const MAX_FLOWS = 10_000;
export const FLOW_COOKIE = 'cmk_oidc';
const FLOW_COOKIE_PATH = '/v1/console/oidc/';

/** Why a sign-in through the issuer did not open a session: the console says each in its own words. */
export const OIDC_REFUSALS = ['denied', 'expired', 'browser', 'email', 'issuer'] as const;
export type OidcRefusal = (typeof OIDC_REFUSALS)[number];

interface Flow {
  codeVerifier: string;
  nonce: string;
  state: string;
  binding: string;
  tenant: string | null;
  popup: boolean;
  expiresAt: number;
}

/** Where the browser goes next, and the cookies that go with it. */
export interface Redirect {
  location: string;
  cookies: string[];
}

const digest = (text: string) => createHash('sha256').update(text).digest('base64url');

export class ConsoleOidc {
  private configuration: Promise<oidc.Configuration> | undefined;
  private readonly flows = new Map<string, Flow>();

  constructor(
    private readonly config: ConsoleOidcConfig,
    private readonly options: { sessions: ConsoleSessions; secureCookie: boolean; requireEmailVerified: boolean; log: (line: string) => void; now?: () => number },
  ) {}

  /** How the console names the issuer on its button: its host. */
  get issuerName(): string {
    return new URL(this.config.issuer).host;
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** Discovery once; a failure is forgotten so that the next sign-in tries again. */
  private discover(): Promise<oidc.Configuration> {
    const loopbackHttp = this.config.issuer.startsWith('http://');
    this.configuration ??= oidc
      .discovery(
        new URL(this.config.issuer),
        this.config.clientId,
        undefined,
        this.config.clientSecret !== undefined ? oidc.ClientSecretPost(this.config.clientSecret) : oidc.None(),
        // Plain http is accepted by config/index.ts for a loopback issuer only (development and tests).
        loopbackHttp ? { execute: [oidc.allowInsecureRequests] } : undefined,
      )
      .catch((err: unknown) => {
        this.configuration = undefined;
        throw err;
      });
    return this.configuration;
  }

  /** `GET /v1/console/oidc/start`: to the issuer's sign-in, with a new flow bound to this browser. */
  async start(p: { tenant: string | null; popup: boolean }): Promise<Redirect> {
    let configuration: oidc.Configuration;
    try {
      configuration = await this.discover();
    } catch (err) {
      this.options.log(`console sign-in: the issuer's discovery failed: ${describe(err)}`);
      return this.refused('issuer', p.popup);
    }
    const now = this.now();
    this.sweep(now);
    const flow: Flow = {
      codeVerifier: oidc.randomPKCECodeVerifier(),
      nonce: oidc.randomNonce(),
      state: oidc.randomState(),
      binding: randomBytes(32).toString('base64url'),
      tenant: p.tenant,
      popup: p.popup,
      expiresAt: now + OIDC_FLOW_TTL_MS,
    };
    this.flows.set(digest(flow.state), flow);
    const location = oidc.buildAuthorizationUrl(configuration, {
      redirect_uri: this.config.redirectUri,
      scope: this.config.scopes,
      response_type: 'code',
      code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    return { location: location.href, cookies: [this.flowCookie(flow.binding, OIDC_FLOW_TTL_MS)] };
  }

  /** `GET /v1/console/oidc/callback`: the code for tokens, the ID token's e-mail for a console session. */
  async finish(req: IncomingMessage, query: URLSearchParams): Promise<Redirect> {
    const state = query.get('state');
    const flow = state ? this.flows.get(digest(state)) : undefined;
    // One use, whatever happens next.
    if (state) this.flows.delete(digest(state));
    if (!flow || this.now() >= flow.expiresAt) return this.refused('expired', false);
    const binding = cookieValue(req.headers.cookie, FLOW_COOKIE);
    if (binding === undefined || digest(binding) !== digest(flow.binding)) return this.refused('browser', flow.popup);
    if (query.has('error')) {
      this.options.log(`console sign-in: the issuer answered ${JSON.stringify((query.get('error') ?? '').slice(0, 64))}`);
      return this.refused('denied', flow.popup);
    }
    let claims: Record<string, unknown> | undefined;
    try {
      const configuration = await this.discover();
      // The URL the issuer redirected to, rebuilt from the configured one: behind a proxy, the request's own host differs.
      const callback = new URL(this.config.redirectUri);
      callback.search = query.toString();
      const tokens = await oidc.authorizationCodeGrant(configuration, callback, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
      const idToken = tokens.claims();
      claims = idToken;
      // Many issuers put `email` in the UserInfo answer only (OpenID Connect Core 5.4, scope claims), not in the ID token.
      if (idToken && typeof idToken.email !== 'string') {
        const info = await oidc.fetchUserInfo(configuration, tokens.access_token, idToken.sub);
        // The ID token's claims stand; UserInfo (whose `sub` must match) adds the address and whether it is verified.
        claims = { ...idToken, email: info.email, email_verified: info.email_verified };
      }
    } catch (err) {
      this.options.log(`console sign-in: the code exchange failed: ${describe(err)}`);
      return this.refused('issuer', flow.popup);
    }
    let actor;
    try {
      actor = actorOf(claims ?? {}, { requireEmailVerified: this.options.requireEmailVerified });
    } catch {
      return this.refused('email', flow.popup);
    }
    const { cookie } = this.options.sessions.open(actor);
    const location = flow.popup ? '/#/signed-in' : flow.tenant ? `/#/t/${encodeURIComponent(flow.tenant)}` : '/#/';
    return { location, cookies: [cookie, this.flowCookie('', 0)] };
  }

  private refused(reason: OidcRefusal, popup: boolean): Redirect {
    return { location: `/#/sign-in-refused/${reason}${popup ? '/popup' : ''}`, cookies: [this.flowCookie('', 0)] };
  }

  private flowCookie(value: string, maxAgeMs: number): string {
    return `${FLOW_COOKIE}=${value}; Path=${FLOW_COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age=${Math.floor(maxAgeMs / 1000)}${this.options.secureCookie ? '; Secure' : ''}`;
  }

  private sweep(now: number): void {
    for (const [key, flow] of this.flows) if (now >= flow.expiresAt) this.flows.delete(key);
    while (this.flows.size >= MAX_FLOWS) this.flows.delete(this.flows.keys().next().value as string);
  }
}

/** An error's kind and message: never a token or code (openid-client's messages name neither). */
function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 300) : String(err).slice(0, 300);
}
