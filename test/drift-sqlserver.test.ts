/**
 * The drift check's reading on SQL Server, against the recording model of one server (test/support/recording-sql.ts):
 * the DEK re-wrapped behind the engine's back (sys.dm_database_encryption_keys names another encryptor than the key
 * record) is reported as drift, not thrown; an outage is thrown (retried), never reported as drift. The tenant
 * workflows are a typed double here: the activity's own reading is what this file tests.
 */
import { createDriftActivities, type DriftDirectory } from '../activities/drift';
import { SqlServerEnvironmentDatabases } from '../database/sqlserver';
import type { Protector } from '../database/types';
import type { EnvironmentRecord, TenantSnapshot } from '../domain/model';
import type { DriftRecordRequest } from '../workflows/messages';
import { localParts } from './support/parts';
import { RecordingSqlServer } from './support/recording-sql';

async function rig(routed = false) {
  const { vault } = localParts();
  const key = await vault.createKey('provider-emea', { purpose: 'provider', enabled: true });
  const provider: Protector = { kind: 'provider', name: key.name, version: key.version, thumbprint: key.thumbprint };
  const server = new RecordingSqlServer();
  const databases = new SqlServerEnvironmentDatabases({ connection: server, pollIntervalMs: 1, sleep: async () => undefined });
  await databases.create('contoso', 'prod', provider);
  const env: EnvironmentRecord = { id: 'prod', region: 'emea', state: 'Online', protection: 'provider', keyThumbprint: key.thumbprint, systemAdmin: null, createdAt: '2030-01-01T00:00:00.000Z' };
  const snapshot = { tenant: 'contoso', environments: [env] } as unknown as TenantSnapshot; // only what the check reads
  const recorded: Array<Pick<DriftRecordRequest, 'findings'>> = [];
  const drift: DriftDirectory = {
    runningTenants: async () => ['contoso'],
    snapshot: async () => snapshot,
    recordDrift: async (_tenant, request) => {
      recorded.push(request);
      return { tenant: 'contoso', drifting: [], newlyFound: [] };
    },
  };
  // Routed: the worker's own parts are another region's server (empty); the environment's region has its own (R1).
  const activities = routed
    ? createDriftActivities({ databases: new SqlServerEnvironmentDatabases({ connection: new RecordingSqlServer() }), vault, drift, inRegion: (region) => (region === 'emea' ? { databases, vault } : { databases: new SqlServerEnvironmentDatabases({ connection: new RecordingSqlServer() }), vault }) })
    : createDriftActivities({ databases, vault, drift });
  return { server, activities, recorded };
}

test('SQL Server: the DEK re-wrapped by another encryptor than the key record names is drift', async () => {
  const { server, activities, recorded } = await rig();
  await activities.checkTenantDrift({ tenant: 'contoso', checkedAt: '2030-01-01T01:00:00.000Z' });
  expect(recorded[0]!.findings).toEqual([{ env: 'prod', believed: { state: 'Online', protection: 'provider', keyThumbprint: expect.any(String) }, differences: [] }]);

  server.certificates.set('dba_cert', 'D'.repeat(40));
  server.rewrapBehindTheEnginesBack('cmk_contoso_prod', 'CERTIFICATE', 'dba_cert');
  await activities.checkTenantDrift({ tenant: 'contoso', checkedAt: '2030-01-01T02:00:00.000Z' });
  expect(recorded[1]!.findings).toEqual([
    { env: 'prod', believed: expect.anything(), differences: [{ kind: 'key-record-unreadable', expected: 'a readable key record', found: expect.stringMatching(/wrapped by the encryptor with thumbprint DDDD/) }] },
  ]);
});

test('SQL Server: an outage is an error for Temporal to retry, never a drift', async () => {
  const { server, activities, recorded } = await rig();
  server.failOnce(/dm_database_encryption_keys/);
  await expect(activities.checkTenantDrift({ tenant: 'contoso', checkedAt: '2030-01-01T01:00:00.000Z' })).rejects.toThrow();
  expect(recorded).toEqual([]);
});

test('R1: each environment is read in its own region (its SQL Server), not on the worker’s default one', async () => {
  const { activities, recorded } = await rig(true);
  await activities.checkTenantDrift({ tenant: 'contoso', checkedAt: '2030-01-01T01:00:00.000Z' });
  expect(recorded[0]!.findings).toEqual([{ env: 'prod', believed: { state: 'Online', protection: 'provider', keyThumbprint: expect.any(String) }, differences: [] }]);
});
