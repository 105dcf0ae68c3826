/**
 * The product on Azure Key Vault, end to end: `npm start`'s stack configured with CMK_VAULT=azure, pointed at the
 * Key Vault REST double (test/support/keyvault-double.ts; Lowkey Vault cannot run here and has no BYOK), with
 * DefaultAzureCredential finding the double's managed-identity endpoint through IDENTITY_ENDPOINT / IDENTITY_HEADER
 * and TLS trusting the double's CA through NODE_EXTRA_CA_CERTS, as a deployment would. The real `cmk` bin drives it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../harness/stack';
import { tenantVaultKeyName } from '../vault/names';
import { startKeyVaultDouble, type KeyVaultDouble } from './support/keyvault-double';
import { azureKeyName } from '../vault/azure';

let stack: Stack;
let double: KeyVaultDouble;
const work = mkdtempSync(join(tmpdir(), 'cmk-azure-e2e-'));
const password = join(work, 'password.txt');
const pfx = join(work, 'acme.pfx');
writeFileSync(password, 'acme key password 1\n');
const ALICE = 'alice@acme.example';
const SAM = 'sam@acme.example';
const tenant = 'acme';
const CANARY = 'CANARY-AZURE-ROW-91c2';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const purposeOf = (k: { tags: Record<string, string> }) => k.tags['cmk-purpose'];

beforeAll(async () => {
  double = await startKeyVaultDouble();
  stack = await startStack({
    CMK_VAULT: 'azure',
    CMK_AZURE_VAULT_URL: double.url,
    CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
    ...double.identityEnv(),
    NODE_EXTRA_CA_CERTS: double.caFile,
    CMK_KEY_CHANGE_INTERVAL: '1s',
    CMK_LOCK_EMBARGO: '5s',
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await double?.close();
});

test('provider key, tenant key and a lock all live in Azure Key Vault: the lock deletes and purges the tenant key', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Acme Ltd', '--region', 'emea', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  // The region's provider key was made in the vault: one Azure key per cmk key version, tagged with what it is.
  const provider = double.liveKeys().filter((k) => k.tags['cmk-name'] === 'provider-emea');
  expect(provider).toEqual([expect.objectContaining({ name: azureKeyName({ name: 'provider-emea', version: provider[0]?.tags['cmk-version'] ?? '' }), kty: 'RSA', enabled: true })]);
  expect(purposeOf(provider[0]!)).toBe('provider');

  const generated = await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'acme-1', '--password-file', password, '--out', pfx, '--wait', '--json'], { as: ALICE });
  expect(generated.code).toBe(0);
  expect(generated.json().activeKey).toMatchObject({ name: 'acme-1', state: 'Active' });
  const tenantKeys = double.liveKeys().filter((k) => k.tags['cmk-name'] === tenantVaultKeyName(tenant, 'emea'));
  expect(tenantKeys).toEqual([expect.objectContaining({ enabled: true, tags: expect.objectContaining({ tenant, region: 'emea', 'cmk-purpose': 'tenant' }) })]);
  const tenantAzureName = tenantKeys[0]!.name;

  // prod moves onto the tenant key; its rows are read back through the vault's unwrap.
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', CANARY], { as: SAM })).code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().rows.map((r: { text: string }) => r.text)).toEqual([CANARY]);
  expect(double.requests.some((r) => r.method === 'POST' && r.path.startsWith(`/keys/${tenantAzureName}/`) && r.path.endsWith('/unwrapkey') && r.status === 200)).toBe(true);
  // Every call the worker and the API service made carried a token from the identity endpoint after the challenge.
  expect(double.requests.filter((r) => !r.authorized).every((r) => r.status === 401)).toBe(true);
  expect(double.tokenRequests()).toBeGreaterThan(0);

  // The lock, signed with the .pfx on the caller's side, withdraws the tenant key: deleted, then purged.
  const { lockAllowedAt } = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json();
  await sleep(Math.max(0, Date.parse(lockAllowedAt) + 500 - Date.now()));
  const locked = await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Acme Ltd', '--file', pfx, '--password-file', password, '--json'], { as: ALICE });
  expect(locked.code).toBe(0);
  expect(locked.json()).toMatchObject({ tenant, sealed: ['prod'], withdrawnKeys: [generated.json().activeKey.thumbprint] });
  expect(double.liveKeys().map((k) => k.name)).not.toContain(tenantAzureName);
  expect(double.deletedKeyNames()).not.toContain(tenantAzureName);
  expect(double.purgedKeyNames()).toContain(tenantAzureName);
  // The provider key stays; the sealed environment no longer serves data.
  expect(double.liveKeys().some((k) => k.name === provider[0]!.name)).toBe(true);
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error.code).toBe('ENVIRONMENT_LOCKED');
}, 180_000);
