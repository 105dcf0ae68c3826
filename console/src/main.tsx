/**
 * The tenant administrators' console: sign-in, then one tenant's keys, environments, lock, mail and audit trail.
 * Routes live in the URL's fragment (`#/t/acme/keys`), so the service serves one page and no path of ours is guessed
 * at. A session that ends mid-work opens the sign-in over the page, which stays as it was (typed input included).
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { type ApiError, call, useSession, type SessionView } from './api';
import { SignIn, SignInWindowDone } from './pages/sign-in';
import { TenantPicker } from './pages/tenant-picker';
import { TenantLayout, type TenantPage } from './pages/tenant';
import './styles.css';

type Route =
  | { page: 'sign-in'; ticket: string | null; tenant: string | null; refused: string | null }
  | { page: 'sign-in-window'; refused: string | null }
  | { page: 'pick' }
  | { page: 'tenant'; tenant: string; view: TenantPage };

const PAGES: readonly TenantPage[] = ['overview', 'keys', 'environments', 'lock', 'mail', 'audit'];

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'sign-in') return { page: 'sign-in', ticket: parts[1] ?? null, tenant: parts[2] ?? null, refused: null };
  // The issuer's sign-in came back (api/console-oidc.ts): in a window of its own, or refused.
  if (parts[0] === 'signed-in') return { page: 'sign-in-window', refused: null };
  if (parts[0] === 'sign-in-refused') {
    const refused = parts[1] ?? 'expired';
    return parts[2] === 'popup' ? { page: 'sign-in-window', refused } : { page: 'sign-in', ticket: null, tenant: null, refused };
  }
  if (parts[0] === 't' && parts[1]) {
    const view = (PAGES as readonly string[]).includes(parts[2] ?? '') ? (parts[2] as TenantPage) : 'overview';
    return { page: 'tenant', tenant: parts[1], view };
  }
  return { page: 'pick' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

function App() {
  const route = useRoute();
  const [session, setSession] = useState<SessionView | null | undefined>(undefined);
  const [lost, setLost] = useState<ApiError | null>(null);
  useSession(session ?? null, (err) => setLost(err));

  useEffect(() => {
    // A sign-in that finished first wins over this older answer.
    call<SessionView>('GET', '/v1/console/session').then(
      (s) => setSession((prev) => (prev === undefined ? s : prev)),
      () => setSession((prev) => (prev === undefined ? null : prev)),
    );
  }, []);

  const signedIn = (s: SessionView, tenant: string | null) => {
    setSession(s);
    setLost(null);
    // The ticket leaves the address bar (and the history) once spent.
    if (route.page === 'sign-in') history.replaceState(null, '', tenant ? `#/t/${encodeURIComponent(tenant)}` : '#/');
    dispatchEvent(new HashChangeEvent('hashchange'));
  };

  if (route.page === 'sign-in-window') return <SignInWindowDone refused={route.refused} />;
  if (session === undefined && route.page !== 'sign-in') return <p class="loading">Loading…</p>;
  if (route.page === 'sign-in' || !session) {
    const tenant = route.page === 'sign-in' ? route.tenant : route.page === 'tenant' ? route.tenant : null;
    return <SignIn ticket={route.page === 'sign-in' ? route.ticket : null} tenant={tenant} refused={route.page === 'sign-in' ? route.refused : null} onSignedIn={signedIn} />;
  }
  const signOut = async () => {
    await call('POST', '/v1/console/sign-out').catch(() => undefined);
    setSession(null);
    history.replaceState(null, '', '#/');
  };
  return (
    <>
      {route.page === 'tenant' ? <TenantLayout tenant={route.tenant} view={route.view} user={session.user} onSignOut={signOut} /> : <TenantPicker user={session.user} onSignOut={signOut} />}
      {lost ? (
        <div class="overlay">
          <div role="dialog" aria-modal="true" aria-labelledby="lost-title" class="card dialog">
            <SignIn ticket={null} tenant={null} reason={lost.message} titleId="lost-title" onSignedIn={(s) => { setSession(s); setLost(null); }} />
          </div>
        </div>
      ) : null}
    </>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
