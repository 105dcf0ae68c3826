/**
 * Sign-in with a one-time link (`npx cmk console --as you@example.com` prints it). Opened, the link signs in by
 * itself; a link can also be pasted here, which keeps the page (and what was typed on it) when a session ended.
 */
import { CmkError } from '../../../common/errors';
import { useEffect, useState } from 'preact/hooks';
import { call, type SessionView } from '../api';
import { Field, Refusal } from '../ui';

export function SignIn(props: { ticket: string | null; tenant: string | null; reason?: string; titleId?: string; onSignedIn: (s: SessionView, tenant: string | null) => void }) {
  const [link, setLink] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

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

  const submit = (e: Event) => {
    e.preventDefault();
    const match = /#\/sign-in\/([A-Za-z0-9_-]+)(?:\/([a-z0-9-]+))?/.exec(link.trim()) ?? /^([A-Za-z0-9_-]{20,100})$/.exec(link.trim());
    if (!match) {
      setError(new CmkError('INVALID_ARGUMENT', 'Paste the whole link `cmk console` printed (it starts with http and contains #/sign-in/).'));
      return;
    }
    void redeem(match[1]!, match[2] ?? null);
  };

  return (
    <main class={props.titleId ? '' : 'narrow'}>
      <h1 id={props.titleId}>{props.reason ? 'Sign in again' : 'Sign in to cmk'}</h1>
      {props.reason ? <p>{props.reason} Nothing on the page was lost: sign in again, then repeat what you were doing.</p> : null}
      <p>
        In a terminal on this machine, run <code>npx cmk console --as you@example.com</code> and open the link it prints (it works once, within 5
        minutes), or paste it here.
      </p>
      <form onSubmit={submit}>
        <Field label="Sign-in link">{(id) => <input id={id} type="url" autocomplete="off" value={link} onInput={(e) => setLink(e.currentTarget.value)} required />}</Field>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <Refusal error={error} />
    </main>
  );
}
