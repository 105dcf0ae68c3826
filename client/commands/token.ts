/** `cmk token` and the bearer token of every invocation (embedded default: signed with the local key). */
import { CmkError } from '../../common/errors';
import { issueToken, loadTokenSigningKey } from '../../common/tokens';
import { loadConfig } from '../../config';
import { isValidEmail } from '../../domain/ids';
import { parseDuration } from '../../domain/policy';
import { MAX_LOCAL_TOKEN_SECONDS } from '../../api/auth';
import { UsageError, type CliContext } from './context';

export function registerToken({ program, command, print, io }: CliContext): void {
  const tokens = command(program, 'token', 'bearer tokens (embedded default)');
  command(tokens, 'issue', 'print a token signed with the local key; its last line is the token')
    .option('--operator', "the provider operator's token instead of a user's")
    .option('--ttl <duration>', 'how long it is valid (at most 24h)', '1h')
    .action(async (o: { operator?: boolean; ttl: string }) => {
      const as = (program.opts() as { as?: string }).as;
      if (!as && !o.operator) throw new UsageError('token issue needs --as EMAIL (or --operator).');
      const ttlMs = parseDuration(o.ttl);
      if (ttlMs === undefined || ttlMs < 1000 || ttlMs > MAX_LOCAL_TOKEN_SECONDS * 1000) throw new CmkError('INVALID_ARGUMENT', '--ttl must be a duration from 1s to 24h.');
      const issued = await localToken(o.operator ? null : as!, io.env, Math.floor(ttlMs / 1000));
      print({ token: issued.token, subject: issued.subject, expiresAt: issued.expiresAt }, () => `Token for ${issued.subject}, valid until ${issued.expiresAt}:\n${issued.token}`);
    });
}

/**
 * The bearer token for this invocation: `--token` / CMK_TOKEN as given; in the embedded default (no issuer
 * configured), a 5-minute token signed with the local key for `--as` / CMK_USER, or for the operator.
 */
export async function callerToken(opts: { as?: string; token?: string }, env: Record<string, string | undefined>): Promise<string> {
  if (opts.token && opts.as) throw new UsageError('--as and --token exclude each other: the token says who you are.');
  // Flags before the environment: --token, then --as, then CMK_TOKEN, then CMK_USER (or the operator).
  if (opts.token) return opts.token;
  if (!opts.as && env.CMK_TOKEN) return env.CMK_TOKEN;
  return (await localToken(opts.as ?? (env.CMK_USER || null), env, 300)).token;
}

async function localToken(as: string | null, env: Record<string, string | undefined>, ttlSeconds: number) {
  const { auth, secretsDir } = loadConfig(env);
  if (auth.mode === 'external') {
    throw new CmkError('FORBIDDEN', `An external issuer (${auth.issuer}) vouches for callers here: sign in with it and pass its token (--token or CMK_TOKEN); local tokens and --as are for the embedded default only.`);
  }
  if (as !== null && !isValidEmail(as)) throw new CmkError('INVALID_ARGUMENT', 'The caller (--as) must be an e-mail address.');
  const email = as === null ? null : as.toLowerCase();
  const token = await issueToken(loadTokenSigningKey(secretsDir), { email, issuer: auth.issuer, audience: auth.audience, ttlSeconds });
  return { token, subject: email ?? 'operator', expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString() };
}
