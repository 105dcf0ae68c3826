/**
 * Builds the configured key vault (config/vault.ts): the embedded local vault, or Azure Key Vault with
 * DefaultAzureCredential (managed identity in Azure; workload identity, environment or CLI credentials elsewhere).
 */
import type { Config } from '../config';
import { azureVaultUrlFor } from '../config/vault';
import { loadOrCreateSecret } from '../common/secrets';
import { LocalVault } from './local';
import { chaosSettings, chaosVault } from './chaos';
import type { Vault } from './types';
// Types only: the modules themselves are required when the Azure vault is built.
import type * as AzureModule from './azure';
import type * as IdentityModule from '@azure/identity';

/** What the vault reads of the configuration: where the local vault lives and its master key, or Azure's settings. */
export type VaultSettings = Pick<Config, 'dataDir' | 'secretsDir' | 'vault'>;

/** The vault for `region` (its own Azure vault when CMK_AZURE_VAULT_URL_<REGION> is set; the default one otherwise). */
export function buildVault(config: VaultSettings, region?: string): Vault {
  // Test-only (the fault suite): CMK_CHAOS=1 counts vault calls, CMK_CHAOS_VAULT_FAULTS answers some with faults.
  const chaos = chaosSettings();
  const vault = buildRealVault(config, region);
  return chaos ? chaosVault(vault, config.dataDir, chaos) : vault;
}

function buildRealVault(config: VaultSettings, region?: string): Vault {
  const azure = config.vault.azure;
  if (config.vault.kind === 'azure' && azure) {
    // Loaded only for Azure: the SDK's modules are about 22 MB of every process that loads them (docs/PERFORMANCE.md).
    const { AzureKeyVault } = require('./azure') as typeof AzureModule;
    const { DefaultAzureCredential } = require('@azure/identity') as typeof IdentityModule;
    return new AzureKeyVault({
      vaultUrl: azureVaultUrlFor(azure, region),
      credential: new DefaultAzureCredential(),
      disableChallengeResourceVerification: azure.disableChallengeResourceVerification,
    });
  }
  return new LocalVault({ dataDir: config.dataDir, masterKey: loadOrCreateSecret(config.secretsDir, 'vault-master-key') });
}
