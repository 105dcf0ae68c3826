/**
 * Builds the configured key vault (config/vault.ts): the embedded local vault, or Azure Key Vault with
 * DefaultAzureCredential (managed identity in Azure; workload identity, environment or CLI credentials elsewhere).
 */
import { DefaultAzureCredential } from '@azure/identity';
import type { Config } from '../config';
import { azureVaultUrlFor } from '../config/vault';
import { loadOrCreateSecret } from '../common/secrets';
import { AzureKeyVault } from './azure';
import { LocalVault } from './local';
import type { Vault } from './types';

/** The vault for `region` (its own Azure vault when CMK_AZURE_VAULT_URL_<REGION> is set; the default one otherwise). */
export function buildVault(config: Config, region?: string): Vault {
  const azure = config.vault.azure;
  if (config.vault.kind === 'azure' && azure) {
    return new AzureKeyVault({
      vaultUrl: azureVaultUrlFor(azure, region),
      credential: new DefaultAzureCredential(),
      disableChallengeResourceVerification: azure.disableChallengeResourceVerification,
    });
  }
  return new LocalVault({ dataDir: config.dataDir, masterKey: loadOrCreateSecret(config.secretsDir, 'vault-master-key') });
}
