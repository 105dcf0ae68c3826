/**
 * A real OpenID Connect issuer for the console's sign-in tests: `oidc-provider` from npm, in its own process (it is
 * ES-module only and brings Koa; Jest need not load either). Started by test/console-oidc.test.ts as
 *   node --import tsx test/support/oidc-issuer.ts PORT CLIENT_ID REDIRECT_URI JWKS_FILE
 * where JWKS_FILE holds the private JWKS it signs with (the test signs the CLI's bearer tokens with the same key, as one
 * organisation's issuer would). Any login name is an account whose e-mail is that name; names starting `unverified`
 * have `email_verified: false`. Its development login form takes any password; consent is granted without asking.
 * It prints `issuer ready` once it listens.
 */
import { readFileSync } from 'node:fs';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

const [port, clientId, redirectUri, jwksFile] = process.argv.slice(2);
if (!port || !clientId || !redirectUri || !jwksFile) throw new Error('usage: oidc-issuer.ts PORT CLIENT_ID REDIRECT_URI JWKS_FILE');
const issuer = `http://127.0.0.1:${port}`;

const configuration: Configuration = {
  clients: [{ client_id: clientId, token_endpoint_auth_method: 'none', redirect_uris: [redirectUri], grant_types: ['authorization_code'], response_types: ['code'] }],
  jwks: JSON.parse(readFileSync(jwksFile, 'utf8')) as Configuration['jwks'],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  findAccount: async (_ctx: KoaContextWithOIDC, id: string) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: !id.startsWith('unverified') }),
  }),
  // The test's client is first-party: its grant is made at once instead of a consent page.
  loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
    const session = ctx.oidc.session;
    const client = ctx.oidc.client;
    if (!session?.accountId || !client) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid email');
    await grant.save();
    return grant;
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['cmk-test-issuer-cookie-key'] },
};

const provider = new Provider(issuer, configuration);
provider.listen(Number(port), () => process.stdout.write('issuer ready\n'));
