/**
 * Vault key names (api/service.ts): one name per (tenant, region), whatever dashes the IDs hold; key-exchange keys
 * made under the earlier names still open the .byok files wrapped with them.
 */
import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import { kekNameInVault } from '../api/service';
import { kekVaultKeyName, legacyKekVaultKeyName, tenantVaultKeyName } from '../vault/names';
import { wrapForByok } from '../keyfiles';
import { ID_PATTERN } from '../domain/ids';
import { localParts } from './support/parts';

const VAULT_NAME = /^[a-z0-9][a-z0-9-]{0,126}$/;
const id = fc.stringMatching(ID_PATTERN);

test('tenant a-b in region c and tenant a in region b-c get different keys', () => {
  expect(tenantVaultKeyName('a-b', 'c')).not.toBe(tenantVaultKeyName('a', 'b-c'));
  expect(kekVaultKeyName('a-b', 'c')).not.toBe(kekVaultKeyName('a', 'b-c'));
});

test('names are one-to-one over every pair of IDs, never an earlier name, and always a valid vault name', () => {
  fc.assert(
    fc.property(id, id, id, id, (t1, r1, t2, r2) => {
      for (const name of [tenantVaultKeyName, kekVaultKeyName]) {
        expect(name(t1, r1)).toMatch(VAULT_NAME);
        if (t1 !== t2 || r1 !== r2) expect(name(t1, r1)).not.toBe(name(t2, r2));
      }
      // An earlier name (tenant-<t>-<r>, kek-<t>-<r>) never starts with a double dash.
      expect(tenantVaultKeyName(t1, r1)).not.toBe(`tenant-${t2}-${r2}`);
      expect(kekVaultKeyName(t1, r1)).not.toBe(legacyKekVaultKeyName(t2, r2));
    }),
    { numRuns: 2000 },
  );
  const longest = 'a'.repeat(63);
  expect(tenantVaultKeyName(longest, longest)).toMatch(VAULT_NAME);
  expect(tenantVaultKeyName(longest, longest)).not.toBe(tenantVaultKeyName(longest, `${'a'.repeat(62)}b`));
});

test('a key-exchange key made under the earlier name still unwraps the .byok made with it', async () => {
  const { vault } = localParts();
  expect(await kekNameInVault(vault, 'contoso', 'emea')).toBe(kekVaultKeyName('contoso', 'emea'));
  const { key: kek, publicKeyPem } = await vault.createKek(legacyKekVaultKeyName('contoso', 'emea'));
  const kekName = await kekNameInVault(vault, 'contoso', 'emea');
  expect(kekName).toBe('kek-contoso-emea');
  const pkcs8 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'der' });
  const ciphertext = Buffer.from(JSON.parse(wrapForByok(publicKeyPem, kek.kid, pkcs8).toString()).ciphertext, 'base64url');
  const imported = await vault.importByok(tenantVaultKeyName('contoso', 'emea'), { kid: kek.kid, ciphertext }, { purpose: 'tenant', enabled: true }, kekName);
  expect(imported.name).toBe(tenantVaultKeyName('contoso', 'emea'));
  // Once a key-exchange key exists under today's name, it is the one.
  await vault.createKek(kekVaultKeyName('contoso', 'emea'));
  expect(await kekNameInVault(vault, 'contoso', 'emea')).toBe(kekVaultKeyName('contoso', 'emea'));
});
