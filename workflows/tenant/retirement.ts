/**
 * Replaced keys leave the vault once nothing depends on them: no environment's key record, no rollback window (R6).
 * Called after a key change, a rollback, a re-protection, an environment operation and at the end of a rollback window.
 */
import { log } from '@temporalio/workflow';
import { backgroundFailureMail } from '../../domain/notifications';
import type { RegionKeys, TenantKey } from '../../domain/model';
import { iso, type TenantContext } from './context';
import { failureOf } from './proxies';

/**
 * Replaced keys that no environment depends on and that are outside the rollback window leave the vault; an Available
 * key (uploaded with --no-activate, waiting for `key activate`) was never in use and stays.
 */
export async function retireUnused(ctx: TenantContext, region: RegionKeys): Promise<void> {
  for (const key of region.keys) {
    if (key.state !== 'Available' && key.thumbprint !== region.activeThumbprint && key.thumbprint !== region.rollbackThumbprint) await retire(ctx, region, key);
  }
}

/** Takes a replaced key out of the vault once nothing depends on it (its rollback window is over). */
export async function retire(ctx: TenantContext, region: RegionKeys, key: TenantKey): Promise<void> {
  const { tenant } = ctx;
  const inUse = tenant.environments.some((e) => e.region === region.region && e.protection === 'tenant' && e.keyThumbprint === key.thumbprint);
  if (inUse || !key.inVault) return;
  try {
    await ctx.inRegion(region.region).deleteTenantKey.executeWithOptions({ summary: `retire replaced key "${key.name}" of ${region.region} from the vault` }, [{ vaultKey: key.vaultKey }]);
  } catch (err) {
    // The vault refused (its faults are retried by the activity's policy): the key stays there, unused and marked,
    // and the next retirement of unused keys (after any environment operation, e.g. `env rekey`) tries again.
    const first = !key.retireFailure;
    key.retireFailure = failureOf(err, iso(Date.now()));
    log.warn('A replaced key could not be removed from the vault; it is tried again later.', { region: region.region, thumbprint: key.thumbprint, ...key.retireFailure });
    if (first) {
      await ctx.notify(
        backgroundFailureMail({
          tenantName: tenant.displayName,
          tenant: tenant.tenant,
          what: `the replaced key "${key.name}" (thumbprint ${key.thumbprint}) could not be removed from the vault of region ${region.region}`,
          reason: `${key.retireFailure.code}: ${key.retireFailure.message}`,
          repair: 'It stays in the vault, protecting nothing. cmk removes it at the next operation on an environment of this region (for example `cmk env rekey`); the provider operator can check the vault.',
          at: key.retireFailure.at,
        }),
      );
    }
    return;
  }
  key.inVault = false;
  delete key.retireFailure;
}
