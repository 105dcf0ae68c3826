import { CmkError } from '../common/errors';
import type { KeyRef, Vault } from '../vault/types';

export interface StagedKeyInput {
  vaultKey: KeyRef;
  thumbprint: string;
}

export function createKeyActivities({ vault }: { vault: Vault }) {
  return {
    /** Enables the key the API staged: from here it may wrap DEKs. Idempotent. */
    async activateStagedKey({ vaultKey, thumbprint }: StagedKeyInput): Promise<void> {
      const key = await vault.getKey(vaultKey);
      if (!key || key.thumbprint !== thumbprint) {
        throw new CmkError('NOT_FOUND', 'The staged key is no longer in the vault; upload or generate it again.');
      }
      if (!key.enabled) await vault.setEnabled(vaultKey, true);
    },

    /** Deletes a tenant key version that no key record depends on any more (after the rollback window). Idempotent. */
    async deleteTenantKey({ vaultKey }: { vaultKey: KeyRef }): Promise<void> {
      await vault.deleteKey(vaultKey);
    },
  };
}
