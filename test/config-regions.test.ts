/** The worker's configuration: R1's CMK_REGIONS, the worker's share of them, per-region vaults only for regions that exist, its workflow cache. */
import { ConfigError, loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = { CMK_DATA_DIR: '/tmp/cmk-config-regions/var', CMK_SECRETS_DIR: '/tmp/cmk-config-regions/secrets' };
const azure = { CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'https://cmk.vault.azure.net' };

test('without CMK_REGIONS any region is accepted and nothing is routed', () => {
  const config = loadConfig(base);
  expect(config.policy.regions).toBeUndefined();
  expect(config.workerRegions).toEqual([]);
  expect(config.workerWorkflows).toBe(true);
  // The SDK sizes the workflow cache unless told.
  expect(config.workerMaxCachedWorkflows).toBeUndefined();
  expect(loadConfig({ ...base, CMK_WORKER_MAX_CACHED_WORKFLOWS: '500' }).workerMaxCachedWorkflows).toBe(500);
  // The launchers give the worker a heap limit (issue 20): 256 MB unless told.
  expect(config.workerHeapMb).toBe(256);
  expect(loadConfig({ ...base, CMK_WORKER_HEAP_MB: '1024' }).workerHeapMb).toBe(1024);
});

test('CMK_REGIONS names the regions; a worker serves all of them unless told otherwise', () => {
  expect(loadConfig({ ...base, CMK_REGIONS: 'eu, us' })).toMatchObject({ policy: { regions: ['eu', 'us'] }, workerRegions: ['eu', 'us'], workerWorkflows: true });
  expect(loadConfig({ ...base, CMK_REGIONS: 'eu,us', CMK_WORKER_REGIONS: 'us', CMK_WORKER_WORKFLOWS: 'false' })).toMatchObject({ workerRegions: ['us'], workerWorkflows: false });
  expect(loadConfig({ ...base, CMK_REGIONS: 'eu,us', CMK_WORKER_REGIONS: 'none' }).workerRegions).toEqual([]);
  expect(loadConfig({ ...base, CMK_REGIONS: 'eu-west,us', ...azure, CMK_AZURE_VAULT_URL_EU_WEST: 'https://cmk-eu.vault.azure.net' }).vault.azure?.regionVaultUrls).toEqual({ EU_WEST: 'https://cmk-eu.vault.azure.net' });
});

test.each([
  [{ CMK_REGIONS: 'EU' }, /CMK_REGIONS names "EU", which is not a region ID/],
  [{ CMK_REGIONS: 'eu,,us' }, /CMK_REGIONS names "", which is not a region ID/],
  [{ CMK_REGIONS: 'eu,us,eu' }, /names a region twice/],
  [{ CMK_WORKER_REGIONS: 'eu' }, /CMK_WORKER_REGIONS needs CMK_REGIONS/],
  [{ CMK_WORKER_MAX_CACHED_WORKFLOWS: '1' }, /CMK_WORKER_MAX_CACHED_WORKFLOWS="1" is not a whole number of at least 2/],
  [{ CMK_WORKER_MAX_CACHED_WORKFLOWS: '0' }, /CMK_WORKER_MAX_CACHED_WORKFLOWS="0" is not a whole number/],
  [{ CMK_WORKER_MAX_CACHED_WORKFLOWS: '2.5' }, /CMK_WORKER_MAX_CACHED_WORKFLOWS="2.5" is not a whole number/],
  [{ CMK_WORKER_MAX_CACHED_WORKFLOWS: 'many' }, /CMK_WORKER_MAX_CACHED_WORKFLOWS="many" is not a whole number/],
  [{ CMK_WORKER_HEAP_MB: '64' }, /CMK_WORKER_HEAP_MB="64" is not a whole number of at least 128/],
  [{ CMK_WORKER_HEAP_MB: '256MB' }, /CMK_WORKER_HEAP_MB="256MB" is not a whole number/],
  [{ CMK_REGIONS: 'eu,us', CMK_WORKER_REGIONS: 'apac' }, /CMK_WORKER_REGIONS names apac, not in CMK_REGIONS \(eu, us\)/],
  [{ CMK_REGIONS: 'eu', CMK_WORKER_WORKFLOWS: 'no' }, /CMK_WORKER_WORKFLOWS="no" is not true or false/],
  [{ ...azure, CMK_AZURE_VAULT_URL_EU: 'https://cmk-eu.vault.azure.net' }, /CMK_AZURE_VAULT_URL_EU names a region that CMK_REGIONS \(unset\) does not list/],
  [{ ...azure, CMK_REGIONS: 'us', CMK_AZURE_VAULT_URL_EU: 'https://cmk-eu.vault.azure.net' }, /CMK_AZURE_VAULT_URL_EU names a region that CMK_REGIONS \(us\) does not list/],
])('%o is refused with a sentence naming the variable', (env, message) => {
  expect(() => loadConfig({ ...base, ...env })).toThrow(ConfigError);
  expect(() => loadConfig({ ...base, ...env })).toThrow(message);
});

test('a region routes to its own Azure vault; without CMK_REGIONS every region uses the one set of parts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cmk-config-regions-'));
  const dirs = { CMK_DATA_DIR: join(dir, 'var'), CMK_SECRETS_DIR: join(dir, 'secrets') };
  const routed = buildParts(loadConfig({ ...dirs, ...azure, CMK_REGIONS: 'eu,us', CMK_AZURE_VAULT_URL_EU: 'https://cmk-eu.vault.azure.net' }));
  const vaultUrl = (v: unknown) => (v as { vaultUrl?: string }).vaultUrl;
  expect(routed.inRegion('eu').vault).toBe(routed.inRegion('eu').vault);
  expect(routed.inRegion('eu').vault).not.toBe(routed.vault);
  expect(routed.inRegion('us').vault).not.toBe(routed.inRegion('eu').vault);
  expect([vaultUrl(routed.inRegion('eu').vault), vaultUrl(routed.inRegion('us').vault)]).toEqual(['https://cmk-eu.vault.azure.net', 'https://cmk.vault.azure.net']);
  const single = buildParts(loadConfig(dirs));
  expect(single.inRegion('eu')).toEqual({ vault: single.vault, databases: single.databases });
});

test('the Azure SDK’s key client is loaded only for CMK_VAULT=azure', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cmk-config-lazy-'));
  const probe = (env: Record<string, string>) =>
    execFileSync(process.execPath, ['--import', 'tsx', '-e', "const { buildParts } = require('./worker/parts'); const { loadConfig } = require('./config'); buildParts(loadConfig()); require('./activities'); require('./api/service'); process.stdout.write(String(Object.keys(require.cache).some((k) => k.includes('@azure/keyvault-keys'))));"], {
      cwd: join(__dirname, '..'),
      env: { ...process.env, CMK_DATA_DIR: join(dir, 'var'), CMK_SECRETS_DIR: join(dir, 'secrets'), ...env },
      encoding: 'utf8',
    });
  expect(probe({})).toBe('false');
  expect(probe({ CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'https://cmk.vault.azure.net' })).toBe('true');
});
