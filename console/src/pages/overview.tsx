/** The tenant at a glance: the region's key, the dates that govern what may happen next, locked environments, R13. */
import { COVERAGE } from '../../../domain/rules';
import { isPast, relative, when } from '../format';
import { Section } from '../ui';
import type { TenantContext } from '../tenant-context';

const STORE_NAMES: Record<string, string> = {
  database: 'Database (tables, rows and backups)',
  'search-index': 'Search index',
  'mobile-offline-cache': 'Mobile offline cache',
  'file-and-image-blobs': 'Files and images',
  'activity-log': 'Activity log',
  'mail-sync': 'Mail synchronisation',
};

export function Overview({ ctx }: { ctx: TenantContext }) {
  const { key, environments, tenant } = ctx;
  const active = key.activeKey;
  const locked = environments.filter((e) => e.lock);
  const progress = key.reprotection;
  return (
    <>
      <h1>Overview</h1>
      <Section title={`Key in ${key.region}`}>
        {active ? (
          <dl class="facts">
            <dt>Active key</dt>
            <dd>{active.name}</dd>
            <dt>Thumbprint</dt>
            <dd>
              <code>{active.thumbprint}</code>
            </dd>
            <dt>State</dt>
            <dd>{active.state}</dd>
            <dt>Since</dt>
            <dd>
              {when(active.activatedAt)}
              {active.activatedBy ? ` by ${active.activatedBy}` : ''}
            </dd>
          </dl>
        ) : (
          <p>No tenant key: every environment is protected by the provider's key. Generate or upload one under Keys.</p>
        )}
        {progress && progress.remaining > 0 ? (
          <p>
            Re-protecting environments: {progress.done} of {progress.total} done{progress.refused?.length ? `, ${progress.refused.length} refused` : ''}.
          </p>
        ) : null}
      </Section>
      <Section title="What may happen next">
        <dl class="facts">
          <dt>Next key change</dt>
          <dd>{isPast(key.nextKeyChangeAllowedAt) ? 'Allowed now (R5)' : `Allowed from ${when(key.nextKeyChangeAllowedAt)} (${relative(key.nextKeyChangeAllowedAt)}, R5)`}</dd>
          <dt>Lock</dt>
          <dd>
            {active?.state === 'Locked'
              ? 'The region is locked; re-activate the key to unlock environments.'
              : isPast(key.lockAllowedAt)
                ? active
                  ? 'Allowed now (R6)'
                  : 'Needs an active tenant key'
                : `Allowed from ${when(key.lockAllowedAt)} (${relative(key.lockAllowedAt)}, the embargo of R6)`}
          </dd>
          <dt>Roll back</dt>
          <dd>{key.rollbackAvailableUntil && !isPast(key.rollbackAvailableUntil) ? `Possible until ${when(key.rollbackAvailableUntil)} (${relative(key.rollbackAvailableUntil)})` : 'Nothing to roll back'}</dd>
        </dl>
      </Section>
      {locked.length ? (
        <Section title="Locked environments">
          <table>
            <caption>Deleted on the date shown unless unlocked (R9)</caption>
            <thead>
              <tr>
                <th scope="col">Environment</th>
                <th scope="col">Locked</th>
                <th scope="col">Deletion</th>
              </tr>
            </thead>
            <tbody>
              {locked.map((e) => (
                <tr key={e.id}>
                  <th scope="row">{e.id}</th>
                  <td>{when(e.lock!.lockedAt)}</td>
                  <td>
                    {when(e.lock!.deleteAt)} <strong>({relative(e.lock!.deleteAt)})</strong>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
      ) : null}
      {tenant.admins.length ? (
        <Section title="Regions">
          <table>
            <thead>
              <tr>
                <th scope="col">Region</th>
                <th scope="col">Environments</th>
                <th scope="col">On the tenant key</th>
                <th scope="col">Deleted</th>
              </tr>
            </thead>
            <tbody>
              {tenant.regions.map((r) => (
                <tr key={r.region}>
                  <th scope="row">{r.region}</th>
                  <td>{r.environments}</td>
                  <td>{r.onTenantKey}</td>
                  <td>{r.deleted}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
      ) : null}
      <Section title="What a tenant key covers (R13)">
        <p>Covered: {COVERAGE.covered.map((s) => STORE_NAMES[s] ?? s).join(', ')}.</p>
        <p>Not covered — these stay under the provider's keys whatever key you bring: {COVERAGE.notCovered.map((s) => STORE_NAMES[s] ?? s).join(', ')}.</p>
      </Section>
    </>
  );
}
