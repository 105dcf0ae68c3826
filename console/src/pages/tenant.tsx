/**
 * One tenant: the navigation, the region, who the user is here, and the page. What a control offers follows R12
 * (domain/access.ts, the same function the service decides with); the service has the last word and its refusal is
 * shown next to the control.
 */
import { useState } from 'preact/hooks';
import { isAllowed } from '../../../domain/access';
import type { TenantContext } from '../tenant-context';
import { ApiError, call, enc, withRegion, type EnvView, type KeyReport, type TenantView } from '../api';
import { Announcer, Refusal, useLoad } from '../ui';
import { Overview } from './overview';
import { Keys } from './keys';
import { Environments } from './environments';
import { Lock } from './lock';
import { Mail } from './mail';
import { Audit } from './audit';

export type TenantPage = 'overview' | 'keys' | 'environments' | 'lock' | 'mail' | 'audit';

const NAV: Array<[TenantPage, string]> = [
  ['overview', 'Overview'],
  ['keys', 'Keys'],
  ['environments', 'Environments'],
  ['lock', 'Lock'],
  ['mail', 'Notifications'],
  ['audit', 'Audit trail'],
];


/**
 * The tenant as its global and service administrators see it. A system administrator may not read it (R12: they see
 * their own environments only), so for them it is what the key report says: the tenant's home region.
 */
async function loadTenant(base: string, id: string): Promise<TenantView> {
  try {
    return (await call<{ tenant: TenantView }>('GET', base)).tenant;
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== 'FORBIDDEN') throw err;
    const key = await call<KeyReport>('GET', `${base}/key`);
    // Whether the risk was accepted is not theirs to read: the Environments page offers the opt-in, the service decides.
    return { id, name: id, homeRegion: key.region, createdAt: '', admins: [], riskAcceptance: { accepted: false, by: null, at: null }, regions: [{ region: key.region, environments: 0, byState: {}, onTenantKey: 0, deleted: 0 }], lockApproval: 1, pendingLock: null };
  }
}

export function TenantLayout(props: { tenant: string; view: TenantPage; user: string; onSignOut: () => void }) {
  const [region, setRegion] = useState<string | null>(null);
  const base = `/v1/tenants/${enc(props.tenant)}`;
  const tenant = useLoad(() => loadTenant(base, props.tenant), [props.tenant]);
  const current = region ?? tenant.data?.homeRegion;
  // The key report is cheap: polled every 2 s while a re-protection runs, so progress moves without a reload.
  const key = useLoad(() => (current ? call<KeyReport>('GET', withRegion(`${base}/key`, current)) : Promise.resolve(null)), [current, tenant.data], {
    every: 2000,
    keepGoing: (k) => (k?.reprotection?.remaining ?? 0) > 0 || (k?.activeKey?.state === 'Installing'),
  });
  const envs = useLoad(
    () => (current ? call<{ environments: EnvView[] }>('GET', withRegion(`${base}/environments`, current)).then((r) => r.environments) : Promise.resolve([])),
    [current, tenant.data, key.data?.reprotection?.done, key.data?.activeKey?.thumbprint, key.data?.activeKey?.state],
  );

  const refresh = () => {
    tenant.reload();
    key.reload();
    envs.reload();
  };
  const error = tenant.error ?? key.error ?? envs.error;
  let body;
  if (error) body = <Refusal error={error} />;
  else if (!tenant.data || !key.data || !envs.data || !current) body = <p class="loading">Loading…</p>;
  else {
    const t = tenant.data;
    const environments = envs.data;
    const actor = { kind: 'user' as const, email: props.user };
    const ctx: TenantContext = {
      tenant: t,
      region: current,
      user: props.user,
      environments,
      key: key.data,
      can: (action, env) => isAllowed({ admins: t.admins.map((a) => ({ email: a.email, role: a.role === 'service' ? 'service' : 'global' })), environments }, actor, action, env),
      refresh,
    };
    const Page = { overview: Overview, keys: Keys, environments: Environments, lock: Lock, mail: Mail, audit: Audit }[props.view];
    body = <Page ctx={ctx} />;
  }
  const regions = tenant.data?.regions.map((r) => r.region) ?? [];
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href="#/">
          cmk
        </a>
        <span class="tenant-name">{tenant.data ? `${tenant.data.name} (${tenant.data.id})` : props.tenant}</span>
        <span class="who">{props.user}</span>
        <button type="button" class="link" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <nav aria-label="Tenant">
        <ul>
          {NAV.map(([page, label]) => (
            <li key={page}>
              <a href={`#/t/${enc(props.tenant)}/${page}`} aria-current={page === props.view ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
        {regions.length > 1 ? (
          <label class="region">
            Region{' '}
            <select value={current} onChange={(e) => setRegion(e.currentTarget.value)}>
              {regions.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
        ) : current ? (
          <p class="region">Region {current}</p>
        ) : null}
      </nav>
      <main id="main">{body}</main>
      <Announcer />
    </div>
  );
}
