/**
 * Sign-in: with a one-time link (`npx cmk console --as you@example.com` prints it), or, where the deployment has an
 * issuer (CMK_CONSOLE_OIDC_CLIENT_ID), at the organisation's own sign-in (api/console-oidc.ts). Opened, a link signs in
 * by itself; a link can also be pasted here. When a session ends mid-work this page opens as a dialog over the page,
 * and the issuer's sign-in runs in a window of its own, so the page (and what was typed on it) stays.
 */
import { CmkError } from '../../../common/errors';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, call, enc, type Answer, type SessionView } from '../api';
import type * as S from '../../../api/schemas';
import { Field, Refusal } from '../ui';

type SignInOptions = Answer<typeof S.SignInOptions>;

/** The window the issuer's sign-in ran in tells the page it opened from on this channel (same origin only). */
const SIGNED_IN_CHANNEL = 'cmk-console-sign-in';

/** What `#/sign-in-refused/REASON` means (api/console-oidc.ts OIDC_REFUSALS): only these, whatever a link says. */
const REFUSED: Record<string, string> = {
  denied: 'The sign-in was cancelled or refused at your organisation\'s sign-in page; nothing changed here. Try again, or use a link from `cmk console`.',
  expired: 'That sign-in was already used or took longer than 10 minutes; start it again.',
  browser: 'That sign-in was started in another browser or window profile (or its cookie was blocked); start it again here.',
  email: "Your organisation's sign-in gave no verified e-mail address, and cmk knows administrators by theirs. Ask your identity administrator to release a verified `email` claim to cmk.",
  issuer: "Your organisation's sign-in service could not be reached, or answered what cmk cannot accept; try again shortly, or use a link from `cmk console`. The API service's log says more.",
};

export function refusalOf(reason: string | null): ApiError | null {
  if (reason === null) return null;
  return new ApiError('UNAUTHENTICATED', REFUSED[reason] ?? REFUSED.expired!, 401);
}

export function SignIn(props: {
  ticket: string | null;
  tenant: string | null;
  /** Why the issuer's sign-in came back without a session (`#/sign-in-refused/…`). */
  refused?: string | null;
  reason?: string;
  titleId?: string;
  onSignedIn: (s: SessionView, tenant: string | null) => void;
}) {
  const [link, setLink] = useState('');
  const [error, setError] = useState<unknown>(() => refusalOf(props.refused ?? null));
  const [busy, setBusy] = useState(false);
  const [options, setOptions] = useState<SignInOptions | null>(null);
  const inDialog = Boolean(props.reason);

  const redeem = async (ticket: string, tenant: string | null) => {
    setBusy(true);
    setError(null);
    try {
      props.onSignedIn(await call<SessionView>('POST', '/v1/console/session', { ticket }), tenant);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    if (props.ticket) void redeem(props.ticket, props.tenant);
    // A ticket in the address works once: only on arrival.
  }, [props.ticket]);

  useEffect(() => {
    call<SignInOptions>('GET', '/v1/console/sign-in-options').then(setOptions, () => setOptions(null));
  }, []);

  // Over a page: the issuer's window says when it is done; the session it opened is this browser's cookie already.
  useEffect(() => {
    if (!inDialog || typeof BroadcastChannel === 'undefined') return undefined;
    const channel = new BroadcastChannel(SIGNED_IN_CHANNEL);
    channel.onmessage = (event: MessageEvent) => {
      if (event.data === 'signed-in') {
        call<SessionView>('GET', '/v1/console/session').then((s) => props.onSignedIn(s, null), setError);
      } else if (typeof event.data === 'string' && event.data.startsWith('refused:')) {
        setError(refusalOf(event.data.slice('refused:'.length)));
      }
    };
    return () => channel.close();
  }, [inDialog]);

  const submit = (e: Event) => {
    e.preventDefault();
    const match = /#\/sign-in\/([A-Za-z0-9_-]+)(?:\/([a-z0-9-]+))?/.exec(link.trim()) ?? /^([A-Za-z0-9_-]{20,100})$/.exec(link.trim());
    if (!match) {
      setError(new CmkError('INVALID_ARGUMENT', 'Paste the whole link `cmk console` printed (it starts with http and contains #/sign-in/).'));
      return;
    }
    void redeem(match[1]!, match[2] ?? null);
  };

  const issuer = options?.issuer ?? null;
  const start = issuer ? `${issuer.start}${props.tenant ? `?tenant=${enc(props.tenant)}` : ''}` : '';
  const openIssuerWindow = () => {
    setError(null);
    const opened = window.open(`${issuer!.start}?popup=1`, 'cmk-sign-in', 'popup,width=520,height=680');
    if (!opened) setError(new CmkError('INVALID_ARGUMENT', 'The browser blocked the sign-in window; allow pop-ups for this site, or paste a link from `cmk console`.'));
  };

  return (
    <main class={props.titleId ? '' : 'narrow'}>
      <h1 id={props.titleId}>{props.reason ? 'Sign in again' : 'Sign in to cmk'}</h1>
      {props.reason ? <p>{props.reason} Nothing on the page was lost: sign in again, then repeat what you were doing.</p> : null}
      {issuer ? (
        <section aria-labelledby="issuer-title">
          <h2 id="issuer-title">With your organisation's account</h2>
          {inDialog ? (
            <button type="button" onClick={openIssuerWindow}>
              Sign in with {issuer.name}
            </button>
          ) : (
            <a class="button" href={start}>
              Sign in with {issuer.name}
            </a>
          )}
        </section>
      ) : null}
      <section aria-labelledby={issuer ? 'link-title' : undefined}>
        {issuer ? <h2 id="link-title">With a link from cmk console</h2> : null}
        <p>
          In a terminal, run <code>npx cmk console --as you@example.com</code> and open the link it prints (it works once, within 5 minutes), or paste
          it here.
        </p>
        <form onSubmit={submit}>
          <Field label="Sign-in link">{(id) => <input id={id} type="url" autocomplete="off" value={link} onInput={(e) => setLink(e.currentTarget.value)} required />}</Field>
          <button type="submit" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      </section>
      <Refusal error={error} />
    </main>
  );
}

/**
 * The issuer's sign-in ran in a window of its own (`#/signed-in`, or `#/sign-in-refused/REASON/popup`): tell the page
 * that opened it, then close. Opened any other way, it says what happened and offers the console.
 */
export function SignInWindowDone(props: { refused: string | null }) {
  const [closed, setClosed] = useState(false);
  useEffect(() => {
    if (typeof BroadcastChannel !== 'undefined') {
      const channel = new BroadcastChannel(SIGNED_IN_CHANNEL);
      channel.postMessage(props.refused === null ? 'signed-in' : `refused:${props.refused}`);
      channel.close();
    }
    // The issuer's pages may cut the link to the opener (Cross-Origin-Opener-Policy), so try whatever `opener` says;
    // a browser that refuses leaves this page, which says so.
    if (props.refused === null) {
      window.close();
      setClosed(true);
    }
  }, []);
  return (
    <main class="narrow">
      <h1>{props.refused === null ? 'Signed in' : 'Not signed in'}</h1>
      {props.refused === null ? <p>{closed ? 'You are signed in: close this window to go back to the console.' : 'You are signed in.'}</p> : <Refusal error={refusalOf(props.refused)} />}
      <p>
        <a href="#/">Open the console</a>
      </p>
    </main>
  );
}
