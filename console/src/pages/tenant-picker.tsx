/** After sign-in without a tenant: which tenant to open (the last one is remembered in this browser). */
import { useState } from 'preact/hooks';
import { Field } from '../ui';

const LAST_TENANT = 'cmk.lastTenant';

export function TenantPicker(props: { user: string; onSignOut: () => void }) {
  const [tenant, setTenant] = useState(() => localStorage.getItem(LAST_TENANT) ?? '');
  const open = (e: Event) => {
    e.preventDefault();
    const id = tenant.trim().toLowerCase();
    if (!id) return;
    localStorage.setItem(LAST_TENANT, id);
    location.hash = `#/t/${encodeURIComponent(id)}`;
  };
  return (
    <main class="narrow">
      <header class="bar">
        <span>
          Signed in as <strong>{props.user}</strong>
        </span>
        <button type="button" class="link" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <h1>Open a tenant</h1>
      <form onSubmit={open}>
        <Field label="Tenant ID" hint="As your provider gave it, e.g. contoso.">
          {(id) => <input id={id} value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} pattern="[a-z0-9][a-z0-9-]{0,62}" required aria-describedby={`${id}-hint`} />}
        </Field>
        <button type="submit">Open</button>
      </form>
    </main>
  );
}
