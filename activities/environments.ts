import type { EnvironmentDatabases, Protector } from '../database/types';
import type { Vault } from '../vault/types';

/** The provider's own key for a region: one vault key, created the first time the region is used. */
export const providerKeyName = (region: string): string => `provider-${region}`;

export async function providerProtector(vault: Vault, region: string): Promise<Protector> {
  const name = providerKeyName(region);
  let versions = await vault.listVersions(name);
  if (versions.length === 0) {
    await vault.createKey(name, { purpose: 'provider', enabled: true, tags: { region } });
    versions = await vault.listVersions(name);
  }
  // Should two workers race to create it, every one of them settles on the oldest version.
  const key = versions[0];
  if (!key) throw new Error(`The provider key for region ${region} could not be created.`);
  return { kind: 'provider', name: key.name, version: key.version, thumbprint: key.thumbprint };
}

export function createEnvironmentActivities({ vault, databases }: { vault: Vault; databases: EnvironmentDatabases }) {
  // One provider-key creation at a time in this process, so concurrent first uses of a region make one key.
  let providerKeyChain: Promise<unknown> = Promise.resolve();
  const serialisedProviderProtector = (region: string): Promise<Protector> => {
    const next = providerKeyChain.then(() => providerProtector(vault, region));
    providerKeyChain = next.catch(() => undefined);
    return next;
  };

  return {
    /** A new environment database under the region's provider key. Idempotent: a retry returns the same record. */
    async provisionEnvironmentDatabase({ tenant, env, region }: { tenant: string; env: string; region: string }) {
      const existing = await databases.describe(tenant, env);
      const record = existing ?? (await databases.create(tenant, env, await serialisedProviderProtector(region)));
      return { protection: record.protector.kind, keyThumbprint: record.protector.thumbprint };
    },
  };
}
