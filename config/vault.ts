/**
 * Which key vault the deployment uses (docs/AZURE.md): the embedded local vault (default) or Azure Key Vault /
 * Managed HSM through vault/azure.ts, with one vault URL and optional per-region ones.
 */
// A cycle with config/index.ts, harmless: ConfigError is only read when a value is refused, long after both loaded.
import { ConfigError } from './error';

type Env = Record<string, string | undefined>;

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

function httpsUrl(name: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${name}="${text}" is not a URL; use the vault's https URL such as https://contoso-cmk.vault.azure.net.`);
  }
  if (url.protocol !== 'https:' || url.search || url.hash || url.username || url.password || !/^\/?$/.test(url.pathname)) {
    throw new ConfigError(`${name}="${text}" must be the vault's bare https URL, such as https://contoso-cmk.vault.azure.net (no path, query or credentials).`);
  }
  return url.origin;
}

function flag(env: Env, name: string): boolean {
  const text = env[name];
  if (text === undefined || text === '' || text === 'false') return false;
  if (text === 'true') return true;
  throw new ConfigError(`${name}="${text}" is not true or false.`);
}

/** The environment variable suffix that names a region's vault: `eu-west` → `EU_WEST`. */
export const regionVariableSuffix = (region: string): string => region.toUpperCase().replace(/-/g, '_');

export function vaultConfig(env: Env): VaultConfig {
  const kind = env.CMK_VAULT || 'local';
  if (kind !== 'local' && kind !== 'azure') throw new ConfigError(`CMK_VAULT="${kind}" is not a key vault; use local or azure.`);
  if (kind === 'local') return { kind };
  const base = env.CMK_AZURE_VAULT_URL;
  if (!base) throw new ConfigError('CMK_AZURE_VAULT_URL is required when CMK_VAULT=azure: the https URL of the key vault, such as https://contoso-cmk.vault.azure.net.');
  const regionVaultUrls: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(REGION_URL_PREFIX) || value === undefined || value === '') continue;
    const suffix = name.slice(REGION_URL_PREFIX.length);
    if (!/^[A-Z0-9][A-Z0-9_]*$/.test(suffix)) throw new ConfigError(`${name} does not name a region: use CMK_AZURE_VAULT_URL_<REGION>, the region upper-cased with - as _.`);
    regionVaultUrls[suffix] = httpsUrl(name, value);
  }
  return {
    kind,
    azure: {
      vaultUrl: httpsUrl('CMK_AZURE_VAULT_URL', base),
      regionVaultUrls,
      disableChallengeResourceVerification: flag(env, 'CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION'),
    },
  };
}

/** The vault URL for a region: its own when CMK_AZURE_VAULT_URL_<REGION> is set, else CMK_AZURE_VAULT_URL. */
export function azureVaultUrlFor(config: AzureVaultConfig, region?: string): string {
  return (region !== undefined && config.regionVaultUrls[regionVariableSuffix(region)]) || config.vaultUrl;
}
