/**
 * Which key vault the deployment uses (docs/AZURE.md): the embedded local vault (default) or Azure Key Vault /
 * Managed HSM through vault/azure.ts, with one vault URL and optional per-region ones.
 */
import { z } from 'zod';
import { oneOf, parsed, readSection, Refused, refuse, section, type Env } from './schema';

export interface AzureVaultConfig {
  /** https://<name>.vault.azure.net (or a Managed HSM / emulator URL), no trailing slash. */
  vaultUrl: string;
  /** Per-region vault URLs, keyed by the region as its variable spells it: upper case, `-` as `_` (EU_WEST). */
  regionVaultUrls: Record<string, string>;
  /** Emulators and test doubles answer the challenge with resource https://vault.azure.net from another host. */
  disableChallengeResourceVerification: boolean;
}

export interface VaultConfig {
  kind: 'local' | 'azure';
  /** Set exactly when kind is 'azure'. */
  azure?: AzureVaultConfig;
}

const REGION_URL_PREFIX = 'CMK_AZURE_VAULT_URL_';

/** The vault's bare https URL, as its origin (no trailing slash). */
function httpsUrl(text: string, name: string): string | Refused {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return new Refused(`${name}="${text}" is not a URL; use the vault's https URL such as https://contoso-cmk.vault.azure.net.`);
  }
  if (url.protocol !== 'https:' || url.search || url.hash || url.username || url.password || !/^\/?$/.test(url.pathname)) {
    return new Refused(`${name}="${text}" must be the vault's bare https URL, such as https://contoso-cmk.vault.azure.net (no path, query or credentials).`);
  }
  return url.origin;
}

/** The environment variable suffix that names a region's vault: `eu-west` → `EU_WEST`. */
export const regionVariableSuffix = (region: string): string => region.toUpperCase().replace(/-/g, '_');

const VAULT = section({ CMK_VAULT: oneOf(['local', 'azure'] as const, 'local', 'a key vault') });

/** Read only with CMK_VAULT=azure: the local vault ignores these. */
const AZURE = section({
  CMK_AZURE_VAULT_URL: parsed(undefined, httpsUrl),
  CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: parsed(false, (value, name) =>
    value === 'true' ? true : value === 'false' ? false : new Refused(`${name}="${value}" is not true or false.`),
  ),
}).transform((v, ctx) =>
  v.CMK_AZURE_VAULT_URL === undefined
    ? refuse(ctx, 'CMK_AZURE_VAULT_URL is required when CMK_VAULT=azure: the https URL of the key vault, such as https://contoso-cmk.vault.azure.net.')
    : { vaultUrl: v.CMK_AZURE_VAULT_URL, disableChallengeResourceVerification: v.CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION },
);

/** CMK_AZURE_VAULT_URL_<REGION>: as many variables as regions, so found by their prefix; keyed by the suffix. */
const REGION_VAULT_URLS = z.record(z.string(), z.string().optional()).transform((env, ctx) => {
  const urls: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(REGION_URL_PREFIX) || value === undefined || value === '') continue;
    const suffix = name.slice(REGION_URL_PREFIX.length);
    if (!/^[A-Z0-9][A-Z0-9_]*$/.test(suffix)) return refuse(ctx, `${name} does not name a region: use CMK_AZURE_VAULT_URL_<REGION>, the region upper-cased with - as _.`);
    const url = httpsUrl(value, name);
    if (url instanceof Refused) return refuse(ctx, url.message);
    urls[suffix] = url;
  }
  return urls;
});

export function vaultConfig(env: Env): VaultConfig {
  if (readSection(VAULT, env).CMK_VAULT === 'local') return { kind: 'local' };
  const azure = readSection(AZURE, env);
  return { kind: 'azure', azure: { vaultUrl: azure.vaultUrl, regionVaultUrls: readSection(REGION_VAULT_URLS, env), disableChallengeResourceVerification: azure.disableChallengeResourceVerification } };
}

/** The vault URL for a region: its own when CMK_AZURE_VAULT_URL_<REGION> is set, else CMK_AZURE_VAULT_URL. */
export function azureVaultUrlFor(config: AzureVaultConfig, region?: string): string {
  return (region !== undefined && config.regionVaultUrls[regionVariableSuffix(region)]) || config.vaultUrl;
}
