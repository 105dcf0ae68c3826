/** Every vault key name cmk makes, in one place: what each key is called in the local vault and in Azure Key Vault. */
import { createHash } from 'node:crypto';

/** The provider's own key for a region: one vault key, created the first time the region is used. */
export const providerKeyName = (region: string): string => `provider-${region}`;

/**
 * The vault key under which a (tenant, region)'s keys are versions, as Azure Key Vault keeps them:
 * `tenant--<length of the tenant ID>-<tenant>-<region>`, so that tenant `a-b` in region `c` and tenant `a` in region
 * `b-c` get different names (IDs may hold dashes; vault names allow nothing else). The earlier `tenant-<t>-<r>` names
 * could not start with `tenant--`; keys stored under them keep working, as each key's name is kept in the workflow
 * state. Past the vault's 127 characters, a hash of the pair stands in.
 */
export const tenantVaultKeyName = (tenant: string, region: string): string => scopedVaultKeyName('tenant', tenant, region);
export const kekVaultKeyName = (tenant: string, region: string): string => scopedVaultKeyName('kek', tenant, region);
/** Before names were unambiguous; only read, for key-exchange keys made then (see kekNameInVault). */
export const legacyKekVaultKeyName = (tenant: string, region: string): string => `kek-${tenant}-${region}`;

function scopedVaultKeyName(kind: 'tenant' | 'kek', tenant: string, region: string): string {
  const name = `${kind}--${tenant.length}-${tenant}-${region}`;
  return name.length <= 127 ? name : `${kind}--h-${createHash('sha256').update(`${tenant}/${region}`).digest('hex').slice(0, 40)}`;
}
