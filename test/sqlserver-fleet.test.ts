/**
 * Several SQL Servers (database/sqlserver-fleet.ts), from CMK_MSSQL_SERVERS to the statements each server receives:
 * two regions × two servers, each a recording model of one SQL Server (test/support/recording-sql.ts — the double at
 * the SQL Server boundary, as no SQL Server runs here). Placement, routing, rebuilding the mapping after a restart,
 * conflicts, the EKM credential (with a canary secret that must never surface), and every configuration refusal.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CmkError } from '../common/errors';
import { ConfigError, loadConfig } from '../config';
import { SqlServerEnvironmentDatabases, type SqlConnection, type SqlParams } from '../database/sqlserver';
import { buildSqlServerDatabases } from '../database/sqlserver-build';
import { SqlServerFleet } from '../database/sqlserver-fleet';
import type { EnvironmentDatabases, Protector } from '../database/types';
import { RecordingSqlServer } from './support/recording-sql';
import { azureKeyName } from '../vault/azure';

/** The service principal's secret, with a quote in it: it must reach SQL Server intact and nowhere else. */
const CANARY = "canary-S3cr3t'~._-value";
const CLIENT_ID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const STORED_SECRET = `${CLIENT_ID.replace(/-/g, '')}${CANARY}`;

const provider = (region: string): Protector => ({ kind: 'provider', name: `provider-${region}`, version: '1'.repeat(32), thumbprint: (region === 'emea' ? 'a' : 'd').repeat(64) });
const tenantKey: Protector = { kind: 'tenant', name: 'tenant-contoso-emea', version: '2'.repeat(32), thumbprint: 'b'.repeat(64) };
const tenantKey2: Protector = { kind: 'tenant', name: 'tenant-contoso-emea-b', version: '3'.repeat(32), thumbprint: 'c'.repeat(64) };

const SERVERS = {
  servers: [
    { name: 'emea-1', region: 'emea', urlEnv: 'MSSQL_EMEA_1', maxEnvironments: 2, ekmCredential: { identity: 'cmk-eu.vault.azure.net', secretEnv: 'CMK_EKM_EU' } },
    { name: 'emea-2', region: 'emea', urlEnv: 'MSSQL_EMEA_2', ekmCredential: { identity: 'cmk-eu.vault.azure.net', secretEnv: 'CMK_EKM_EU' } },
    { name: 'us-1', regions: ['us'], urlEnv: 'MSSQL_US_1', maxEnvironments: 1, backupDir: '/var/opt/mssql/backup' },
    { name: 'us-2', region: 'us', url: 'mssql://sa:dev-only@us-2.internal:1433?trustServerCertificate=true', maxEnvironments: 1, controlDatabase: 'cmk_ctl' },
  ],
};

function baseEnv(servers: unknown = SERVERS): Record<string, string> {
  const base = mkdtempSync(join(tmpdir(), 'cmk-fleet-'));
  return {
    CMK_DATA_DIR: join(base, 'var'),
    CMK_SECRETS_DIR: join(base, 'secrets'),
    CMK_DB_ENGINE: 'sqlserver',
    CMK_REGIONS: 'emea,us',
    CMK_MSSQL_SERVERS: typeof servers === 'string' ? servers : JSON.stringify(servers),
    MSSQL_EMEA_1: 'Server=emea-1.internal,1433;User Id=cmk;Password=p1',
    MSSQL_EMEA_2: 'mssql://cmk:p2@emea-2.internal:1433',
    MSSQL_US_1: 'Server=us-1.internal;User Id=cmk;Password=p3',
    CMK_EKM_EU: `${CLIENT_ID}${CANARY}`,
  };
}

/** Four model servers (bare: no credential made by an administrator) and a way to build fleets over them. */
function rig() {
  const config = loadConfig(baseEnv());
  const models = new Map<string, RecordingSqlServer>();
  for (const name of ['emea-1', 'emea-2', 'us-1', 'us-2']) {
    const server = new RecordingSqlServer('AzureKeyVault_EKM', { adminMadeCredentials: false });
    server.vaultKeys.add('tenant-contoso-emea').add('tenant-contoso-emea-b');
    models.set(name, server);
  }
  const model = (name: string): RecordingSqlServer => {
    const found = models.get(name);
    if (!found) throw new Error(`no model ${name}`);
    return found;
  };
  const logs: string[] = [];
  const build = (region?: string, connect?: (name: string) => SqlConnection): EnvironmentDatabases =>
    buildSqlServerDatabases(config, region, {
      connect: (entry) => connect?.(entry.name) ?? model(entry.name),
      engine: { pollIntervalMs: 1, sleep: async () => undefined, now: () => new Date('2030-01-02T03:04:05.678Z') },
      now: () => new Date('2030-01-02T03:04:05.678Z'),
      log: (line) => logs.push(line),
    });
  const fleet = (region?: string): SqlServerFleet => {
    const built = build(region);
    if (!(built instanceof SqlServerFleet)) throw new Error('not a fleet');
    return built;
  };
  /** Which servers hold a database for the environment. */
  const holders = (tenant: string, env: string): string[] => [...models].filter(([, m]) => m.databases.has(`cmk_${tenant}_${env}`)).map(([n]) => n);
  const placements = (name: string, control = 'cmk_control') => [...(model(name).databases.get(control)?.control?.environments?.values() ?? [])];
  const clear = () => models.forEach((m) => m.take());
  return { config, models, model, logs, build, fleet, holders, placements, clear };
}

describe('configuration', () => {
  test('CMK_MSSQL_SERVERS is read into one entry per server; secrets come from the variables the file names', () => {
    const { config } = rig();
    expect(config.mssqlUrl).toBeUndefined();
    expect(config.mssqlServers?.map((s) => [s.name, s.regions, s.maxEnvironments ?? null])).toEqual([
      ['emea-1', ['emea'], 2],
      ['emea-2', ['emea'], null],
      ['us-1', ['us'], 1],
      ['us-2', ['us'], 1],
    ]);
    const [emea1, , us1, us2] = config.mssqlServers ?? [];
    expect(emea1).toMatchObject({ url: 'Server=emea-1.internal,1433;User Id=cmk;Password=p1', ekmProvider: 'AzureKeyVault_EKM', controlDatabase: 'cmk_control' });
    // The client ID loses its dashes and runs into the secret, as CREATE CREDENTIAL wants it.
    expect(emea1?.ekmCredential).toEqual({ name: 'cmk_ekm_tde_cred', identity: 'cmk-eu.vault.azure.net', secret: STORED_SECRET });
    expect(us1).toMatchObject({ backupDir: '/var/opt/mssql/backup' });
    expect(us1?.ekmCredential).toBeUndefined();
    expect(us2).toMatchObject({ controlDatabase: 'cmk_ctl', url: 'mssql://sa:dev-only@us-2.internal:1433?trustServerCertificate=true' });
  });

  test('a path to a JSON file works like inline JSON; "client id:secret" is accepted too', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'cmk-fleet-file-')), 'servers.json');
    writeFileSync(file, JSON.stringify(SERVERS));
    const config = loadConfig({ ...baseEnv(), CMK_MSSQL_SERVERS: file, CMK_EKM_EU: `${CLIENT_ID}:${CANARY}` });
    expect(config.mssqlServers?.[0]?.ekmCredential?.secret).toBe(STORED_SECRET);
  });

  test('the composition: a fleet per region, one of every server without a region, the engine itself for MSSQL_URL', async () => {
    const { build, config } = rig();
    expect(build('emea')).toBeInstanceOf(SqlServerFleet);
    expect(build()).toBeInstanceOf(SqlServerFleet);
    expect(() => build('apac')).toThrow(new ConfigError('CMK_MSSQL_SERVERS names no server for region apac.'));
    const { CMK_MSSQL_SERVERS: _unused, ...rest } = baseEnv();
    const one = loadConfig({ ...rest, MSSQL_URL: 'Server=127.0.0.1,1;User Id=sa;Password=x' });
    const engine = buildSqlServerDatabases(one);
    expect(engine).toBeInstanceOf(SqlServerEnvironmentDatabases);
    await (engine as SqlServerEnvironmentDatabases).close();
    expect(config.dbEngine).toBe('sqlserver');
  });

  describe('refusals: one sentence naming the source and the field, never a secret', () => {
    const server = { name: 'emea-1', region: 'emea', urlEnv: 'MSSQL_EMEA_1' };
    const us = { name: 'us-1', region: 'us', urlEnv: 'MSSQL_US_1' };
    const file = (servers: unknown[]) => ({ servers });
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['not JSON (with a secret inside)', { CMK_MSSQL_SERVERS: `{"servers": [{"name": "a", "url": "mssql://sa:${CANARY}@h" ]}` }, /^CMK_MSSQL_SERVERS \(inline JSON\): is not valid JSON( \(at character \d+\))?\.$/],
      ['an unreadable file', { CMK_MSSQL_SERVERS: '/nonexistent/servers.json' }, /^CMK_MSSQL_SERVERS \(\/nonexistent\/servers\.json\): cannot be read \(ENOENT\)/],
      ['no servers', { CMK_MSSQL_SERVERS: JSON.stringify(file([])) }, /"servers" must be a non-empty list\.$/],
      ['an unknown top-level key', { CMK_MSSQL_SERVERS: JSON.stringify({ ...file([server, us]), server: [] }) }, /: has unknown key "server"; allowed are servers\.$/],
      ['an unknown server key', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, pasword: 'x' }, us])) }, /servers\[0\] \("emea-1"\) has unknown key "pasword"; allowed are name, region, regions/],
      ['an unknown credential key', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, ekmCredential: { identity: 'cmk-eu.vault.azure.net', secretEnv: 'CMK_EKM_EU', secret: CANARY } }, us])) }, /servers\[0\] \("emea-1"\)\.ekmCredential has unknown key "secret"/],
      ['a duplicate name', { CMK_MSSQL_SERVERS: JSON.stringify(file([server, { ...us, name: 'emea-1' }])) }, /two servers are named "emea-1"/],
      ['a name outside the ID grammar', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, name: 'EMEA 1' }, us])) }, /servers\[0\]\.name must be an ID/],
      ['a region of CMK_REGIONS without a server', { CMK_REGIONS: 'emea,us,apac', CMK_MSSQL_SERVERS: JSON.stringify(file([server, us])) }, /no server serves region apac of CMK_REGIONS; each region needs at least one\.$/],
      ['a region CMK_REGIONS does not list', { CMK_MSSQL_SERVERS: JSON.stringify(file([server, us, { name: 'x-1', region: 'apac', urlEnv: 'MSSQL_EMEA_2' }])) }, /a server names region apac, which CMK_REGIONS does not list\.$/],
      ['no region', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ name: 'emea-1', urlEnv: 'MSSQL_EMEA_1' }, us])) }, /servers\[0\] \("emea-1"\) needs "region" \(or "regions"\)/],
      ['both region and regions', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, regions: ['emea'] }, us])) }, /has both "region" and "regions"/],
      ['both url and urlEnv', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, url: 'mssql://a@b' }, us])) }, /needs exactly one of "url" \(dev rigs\) and "urlEnv"/],
      ['a urlEnv that is not set', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, urlEnv: 'MSSQL_NOWHERE' }, us])) }, /servers\[0\] \("emea-1"\)\.urlEnv names MSSQL_NOWHERE, which is not set\.$/],
      ['a connection string without a host (holding a password)', { MSSQL_EMEA_1: `mssql://sa:${CANARY}@/db` }, /servers\[0\] \("emea-1"\)\.urlEnv names MSSQL_EMEA_1, whose value is neither an mssql:\/\/ URL with a host nor a connection string with Server=\.$/],
      ['a url that is no connection string', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ name: 'emea-1', region: 'emea', url: `password=${CANARY}` }, us])) }, /servers\[0\] \("emea-1"\)\.url is neither an mssql:\/\/ URL/],
      ['two entries with one connection string', { CMK_MSSQL_SERVERS: JSON.stringify(file([server, us, { name: 'emea-2', region: 'emea', urlEnv: 'MSSQL_EMEA_1' }])) }, /servers "emea-1" and "emea-2" have the same connection string/],
      ['a secretEnv that is not set', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, ekmCredential: { identity: 'cmk-eu.vault.azure.net', secretEnv: 'CMK_EKM_NOWHERE' } }, us])) }, /\.ekmCredential\.secretEnv names CMK_EKM_NOWHERE, which is not set\.$/],
      ['a secret without a client ID', { CMK_EKM_EU: CANARY, CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, ekmCredential: { identity: 'cmk-eu.vault.azure.net', secretEnv: 'CMK_EKM_EU' } }, us])) }, /\.ekmCredential\.secretEnv names CMK_EKM_EU, whose value is not a client ID \(a GUID\) followed by its client secret\.$/],
      ['an identity that is not a host name', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, ekmCredential: { identity: 'https://cmk-eu.vault.azure.net/', secretEnv: 'CMK_EKM_EU' } }, us])) }, /\.ekmCredential\.identity must be the key vault's host name/],
      ['a capacity of 0', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, maxEnvironments: 0 }, us])) }, /\.maxEnvironments must be a whole number of at least 1\.$/],
      ['master as control database', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, controlDatabase: 'master' }, us])) }, /\.controlDatabase is not a usable database name/],
      ['a provider name with a quote', { CMK_MSSQL_SERVERS: JSON.stringify(file([{ ...server, ekmProvider: "Akv'Ekm" }, us])) }, /\.ekmProvider is not a cryptographic provider name/],
      ['MSSQL_URL as well', { MSSQL_URL: `mssql://sa:${CANARY}@h` }, /^Set MSSQL_URL \(one server\) or CMK_MSSQL_SERVERS \(several\), not both\.$/],
    ];
    test.each(cases)('%s', (_what, overrides, expected) => {
      let thrown: unknown;
      try {
        loadConfig({ ...baseEnv(), ...overrides });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      const message = (thrown as Error).message;
      expect(message).toMatch(expected);
      expect(message).not.toContain(CANARY);
      expect(message).not.toContain('canary');
      // One sentence.
      expect(message.trim().split(/(?<=\.)\s+(?=[A-Z])/)).toHaveLength(1);
    });

    test('with SQLite (the default) CMK_MSSQL_SERVERS is not read, as MSSQL_URL is not', () => {
      expect(loadConfig({ ...baseEnv('{not json'), CMK_DB_ENGINE: 'sqlite' }).mssqlServers).toBeUndefined();
    });
  });
});

describe('placement (R1: a region only on its servers)', () => {
  test('fewest environments first, ties by name, full servers skipped; the other region is never touched', async () => {
    const { fleet, holders, placements, model } = rig();
    const emea = fleet('emea');
    for (const env of ['e1', 'e2', 'e3', 'e4', 'e5']) await emea.create('contoso', env, provider('emea'));
    // 0/0 → emea-1 (name); 1/0 → emea-2; 1/1 → emea-1 (now full at 2); then emea-2 only.
    expect(['e1', 'e2', 'e3', 'e4', 'e5'].map((e) => holders('contoso', e))).toEqual([['emea-1'], ['emea-2'], ['emea-1'], ['emea-2'], ['emea-2']]);
    expect(placements('emea-1').map((p) => [p.env, p.server_name, p.region])).toEqual([['e1', 'emea-1', 'emea'], ['e3', 'emea-1', 'emea']]);
    expect(placements('emea-2').map((p) => p.env)).toEqual(['e2', 'e4', 'e5']);
    expect(model('us-1').batches).toHaveLength(0);
    expect(model('us-2').batches).toHaveLength(0);
  });

  test('a region whose servers are all full refuses a new environment (INVALID_ARGUMENT) and makes nothing', async () => {
    const { fleet, holders, placements } = rig();
    const us = fleet('us');
    await us.create('fabrikam', 'u1', provider('us'));
    await us.create('fabrikam', 'u2', provider('us'));
    expect([holders('fabrikam', 'u1'), holders('fabrikam', 'u2')]).toEqual([['us-1'], ['us-2']]);
    const refusal = us.create('fabrikam', 'u3', provider('us'));
    await expect(refusal).rejects.toThrow(new CmkError('INVALID_ARGUMENT', 'Every SQL Server of region us is full (us-1, us-2): an operator must add a server or raise its maxEnvironments.'));
    await expect(refusal).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(holders('fabrikam', 'u3')).toEqual([]);
    expect([...placements('us-1'), ...placements('us-2', 'cmk_ctl')].map((p) => p.env)).toEqual(['u1', 'u2']);
  });

  test('create is idempotent: a retry finds the placement (even before the database was made) and uses that server', async () => {
    const { fleet, holders, model } = rig();
    const emea = fleet('emea');
    model('emea-1').failOnce(/^CREATE DATABASE \[cmk_contoso_e1\]$/);
    await expect(emea.create('contoso', 'e1', provider('emea'))).rejects.toThrow(/Injected fault/);
    await emea.create('contoso', 'e2', provider('emea')); // emea-2: emea-1 already counts e1
    // A new process: the claim on emea-1 is found by asking, so the retry does not go to the emptier server.
    await fleet('emea').create('contoso', 'e1', provider('emea'));
    expect([holders('contoso', 'e1'), holders('contoso', 'e2')]).toEqual([['emea-1'], ['emea-2']]);
  });

  test('a fleet of every region (the API, one worker for all) places by the region of the provider key it is given', async () => {
    const { fleet, holders } = rig();
    const all = fleet();
    await all.create('contoso', 'e1', provider('emea'));
    await all.create('fabrikam', 'u1', provider('us'));
    expect([holders('contoso', 'e1'), holders('fabrikam', 'u1')]).toEqual([['emea-1'], ['us-1']]);
    await expect(all.create('contoso', 'e9', tenantKey)).rejects.toThrow(/The region of new environment contoso\/e9 is unknown to this fleet of several regions/);
  });
});

describe('routing', () => {
  test('every later call goes to the server that holds the environment, and only there', async () => {
    const { fleet, model, clear, holders, placements } = rig();
    const emea = fleet('emea');
    await emea.create('contoso', 'e1', provider('emea'));
    await emea.create('contoso', 'e2', provider('emea'));
    clear();
    expect((await emea.writeRow('contoso', 'e2', 'hello')).text).toBe('hello');
    expect((await emea.readRows('contoso', 'e2')).map((r) => r.text)).toEqual(['hello']);
    expect((await emea.describe('contoso', 'e2'))?.protector.kind).toBe('provider');
    await emea.rekey('contoso', 'e2', tenantKey);
    await emea.reprotect('contoso', 'e2', tenantKey2);
    await emea.reprotect('contoso', 'e2', provider('emea'));
    const backup = await emea.backup('contoso', 'e2');
    expect((await emea.listBackups('contoso', 'e2')).map((b) => b.id)).toEqual([backup.id]);
    await emea.writeRow('contoso', 'e2', 'after the backup');
    await emea.restore('contoso', 'e2');
    expect((await emea.readRows('contoso', 'e2')).map((r) => r.text)).toEqual(['hello']);
    await emea.takeOffline('contoso', 'e2', { lockedAt: '2030-01-02T00:00:00.000Z', deleteAt: '2030-01-30T00:00:00.000Z' });
    expect(await emea.offlineMark('contoso', 'e2')).toEqual({ lockedAt: '2030-01-02T00:00:00.000Z', deleteAt: '2030-01-30T00:00:00.000Z' });
    await expect(emea.readRows('contoso', 'e2')).rejects.toMatchObject({ code: 'ENVIRONMENT_LOCKED' });
    await emea.bringOnline('contoso', 'e2');
    await emea.destroy('contoso', 'e2');
    // The holder received everything; the other server of the region only destroy's question (destroy and create ask
    // afresh rather than trust a remembered location), every other call was routed from memory.
    expect(model('emea-1').batches.map((b) => b.sql.slice(0, 22))).toEqual(['SELECT e.server_name, ']);
    expect(model('emea-2').batches.length).toBeGreaterThan(30);
    expect(holders('contoso', 'e2')).toEqual([]);
    expect(placements('emea-2')).toEqual([]);
    // Gone everywhere: reads answer as for any unknown environment, and destroy stays idempotent.
    expect(await emea.describe('contoso', 'e2')).toBeUndefined();
    await expect(emea.readRows('contoso', 'e2')).rejects.toThrow(new CmkError('NOT_FOUND', 'Environment e2 has no database.'));
    expect(await emea.listBackups('contoso', 'e2')).toEqual([]);
    await emea.destroy('contoso', 'e2');
  });

  test('IDs outside the grammar are refused before any server is asked', async () => {
    const { fleet, models } = rig();
    await expect(fleet('emea').readRows('contoso', "x'; DROP DATABASE y --")).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect([...models.values()].every((m) => m.batches.length === 0)).toBe(true);
  });

  test('listOffline gathers the marks of every server of the region, by deleteAt, and remembers where each is', async () => {
    const { fleet, model } = rig();
    const emea = fleet('emea');
    await emea.create('contoso', 'e1', provider('emea'));
    await emea.create('contoso', 'e2', provider('emea'));
    await emea.takeOffline('contoso', 'e1', { lockedAt: '2030-01-02T00:00:00.000Z', deleteAt: '2030-02-01T00:00:00.000Z' });
    await emea.takeOffline('contoso', 'e2', { lockedAt: '2030-01-01T00:00:00.000Z', deleteAt: '2030-01-29T00:00:00.000Z' });
    const restarted = fleet('emea');
    expect((await restarted.listOffline()).map((o) => o.env)).toEqual(['e2', 'e1']);
    model('emea-1').take();
    await restarted.destroy('contoso', 'e2');
    expect(model('emea-1').batches.filter((b) => b.sql.startsWith('SELECT e.server_name'))).toHaveLength(1); // destroy asks afresh
  });
});

describe('the mapping is durable and rebuilt by asking the servers', () => {
  test('a new fleet (a restart) finds each environment on its server, asking every server of the region once', async () => {
    const { fleet, model, clear } = rig();
    await fleet('emea').create('contoso', 'e1', provider('emea'));
    await fleet('emea').create('contoso', 'e2', provider('emea'));
    clear();
    const restarted = fleet('emea');
    await restarted.writeRow('contoso', 'e2', 'after the restart');
    const locates = (name: string) => model(name).batches.filter((b) => b.sql.startsWith('SELECT e.server_name')).length;
    expect([locates('emea-1'), locates('emea-2')]).toEqual([1, 1]);
    await restarted.readRows('contoso', 'e2');
    await restarted.describe('contoso', 'e2');
    expect([locates('emea-1'), locates('emea-2')]).toEqual([1, 1]);
    expect(await restarted.whereIs('contoso', 'e1')).toBe('emea-1');
    expect(model('us-1').batches).toHaveLength(0);
  });

  test('a database made before the fleet (e.g. under MSSQL_URL) is found, recorded ("adopted") and counted', async () => {
    const { fleet, model, placements, logs } = rig();
    const legacy = new SqlServerEnvironmentDatabases({ connection: model('emea-2'), pollIntervalMs: 1, sleep: async () => undefined });
    await legacy.create('contoso', 'old', provider('emea'));
    const emea = fleet('emea');
    expect((await emea.describe('contoso', 'old'))?.protector.name).toBe('provider-emea');
    expect(placements('emea-2').map((p) => [p.env, p.server_name, p.region])).toEqual([['old', 'emea-2', 'emea']]);
    expect(logs).toContain('recorded contoso/old on SQL Server emea-2, which held its database without a placement row');
    // emea-2 now holds one: the next environment goes to emea-1.
    await emea.create('contoso', 'new', provider('emea'));
    expect(await emea.whereIs('contoso', 'new')).toBe('emea-1');
  });

  test('a remembered location that went stale (destroyed and made again elsewhere by another process) is asked again', async () => {
    const { fleet, holders } = rig();
    const api = fleet('emea');
    const worker = fleet('emea');
    await worker.create('contoso', 'e1', provider('emea'));
    await worker.create('contoso', 'e2', provider('emea'));
    expect(await api.whereIs('contoso', 'e1')).toBe('emea-1');
    await worker.destroy('contoso', 'e1');
    await worker.create('contoso', 'e3', provider('emea')); // emea-1 (1/1, name)
    await worker.destroy('contoso', 'e2');
    await worker.create('contoso', 'e1', provider('emea')); // emea-2 now has fewer
    expect(holders('contoso', 'e1')).toEqual(['emea-2']);
    await worker.writeRow('contoso', 'e1', 'on emea-2');
    expect((await api.readRows('contoso', 'e1')).map((r) => r.text)).toEqual(['on emea-2']);
  });

  test('two servers claiming one environment is an error, logged and thrown, never a guess', async () => {
    const { fleet, model, logs } = rig();
    await fleet('emea').create('contoso', 'e1', provider('emea'));
    // A stale copy: the same environment's database on the other server too.
    await new SqlServerEnvironmentDatabases({ connection: model('emea-2'), pollIntervalMs: 1, sleep: async () => undefined }).create('contoso', 'e1', provider('emea'));
    const restarted = fleet('emea');
    const expected = /^Environment contoso\/e1 is claimed by SQL Servers emea-1 and emea-2 \(a placement row or its database on each\): cmk will not guess/;
    await expect(restarted.readRows('contoso', 'e1')).rejects.toThrow(expected);
    await expect(restarted.create('contoso', 'e1', provider('emea'))).rejects.toThrow(expected);
    await expect(restarted.destroy('contoso', 'e1')).rejects.toThrow(expected);
    expect(logs.filter((l) => expected.test(l))).toHaveLength(3);
    expect(model('emea-1').databases.has('cmk_contoso_e1') && model('emea-2').databases.has('cmk_contoso_e1')).toBe(true);
  });

  test('a placement row written for another server name (renamed, or two entries for one SQL Server) is an error', async () => {
    const { fleet, placements } = rig();
    await fleet('emea').create('contoso', 'e1', provider('emea'));
    const row = placements('emea-1')[0];
    if (row) row.server_name = 'emea-old';
    await expect(fleet('emea').describe('contoso', 'e1')).rejects.toThrow(/The control database of SQL Server emea-1 records contoso\/e1 as placed on "emea-old": was the server renamed/);
  });

  test('a server that does not answer fails the lookup (it might hold the environment) rather than answer "nowhere"', async () => {
    const { build, model, holders } = rig();
    await (build('emea') as SqlServerFleet).create('contoso', 'e1', provider('emea'));
    const down: SqlConnection = {
      query: async () => {
        throw new Error('Failed to connect to emea-2.internal:1433 in 15000ms');
      },
      close: async () => undefined,
    };
    const partial = build('emea', (name) => (name === 'emea-2' ? down : model(name)));
    await expect(partial.create('contoso', 'e2', provider('emea'))).rejects.toThrow(/^SQL Server emea-2 did not answer where contoso\/e2 lives: Failed to connect/);
    await expect(partial.describe('contoso', 'e1')).rejects.toThrow(/SQL Server emea-2 did not answer/);
    expect(holders('contoso', 'e2')).toEqual([]);
  });
});

describe('the EKM provider credential', () => {
  const credentialBatches = (server: RecordingSqlServer) => server.batches.filter((b) => b.sql.startsWith('DECLARE @literals'));

  test('made at first EKM use with identity and secret as parameters, mapped to the engine login and the TDE login', async () => {
    const { fleet, model, logs } = rig();
    const emea = fleet('emea');
    await emea.create('contoso', 'e1', provider('emea'));
    // The provider key is a certificate: no vault, no credential yet.
    expect(credentialBatches(model('emea-1'))).toHaveLength(0);
    await emea.rekey('contoso', 'e1', tenantKey);
    const [batch, ...more] = credentialBatches(model('emea-1'));
    expect(more).toHaveLength(0);
    expect(batch?.database).toBe('master');
    expect(batch?.params).toEqual({ credential: 'cmk_ekm_tde_cred', provider: 'AzureKeyVault_EKM', identity: 'cmk-eu.vault.azure.net', secret: STORED_SECRET });
    // What SQL Server stored, after building and parsing the statement: the secret intact, quote included.
    expect(model('emea-1').credentials.get('cmk_ekm_tde_cred')).toEqual({ identity: 'cmk-eu.vault.azure.net', secret: STORED_SECRET });
    expect(model('emea-1').engineLoginCredential).toBe('cmk_ekm_tde_cred');
    expect(model('emea-1').logins.get(`cmk_tenant_${'b'.repeat(64)}_login`)?.credentials).toEqual(new Set(['cmk_ekm_tde_cred']));
    // Once per process: the next key needs no second credential batch.
    await emea.reprotect('contoso', 'e1', tenantKey2);
    expect(credentialBatches(model('emea-1'))).toHaveLength(1);
    // A restart alters it (a changed secret takes effect); the engine login keeps its one credential.
    await fleet('emea').reprotect('contoso', 'e1', tenantKey);
    expect(credentialBatches(model('emea-1'))).toHaveLength(2);
    // The secret is never in a statement's text, nor in a log line.
    for (const server of ['emea-1', 'emea-2']) expect(model(server).batches.some((b) => b.sql.includes(CANARY) || b.sql.includes('canary'))).toBe(false);
    expect(logs.join('\n')).not.toContain(CANARY);
  });

  test('a failure to make it says so without the secret, even when SQL Server quotes it; the retry makes it', async () => {
    const { build, model } = rig();
    let leak = true;
    const leaky: SqlConnection = {
      async query<T extends object>(database: string, statement: string, params?: SqlParams): Promise<T[]> {
        if (leak && statement.includes('@literals')) {
          leak = false;
          throw new Error(`Incorrect syntax near '${String(params?.secret)}'.`);
        }
        return model('emea-1').query<T>(database, statement, params);
      },
      close: async () => undefined,
    };
    const emea = build('emea', (name) => (name === 'emea-1' ? leaky : model(name)));
    await emea.create('contoso', 'e1', provider('emea'));
    let thrown: unknown;
    try {
      await emea.rekey('contoso', 'e1', tenantKey);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as Error).message).toBe("The EKM credential cmk_ekm_tde_cred could not be made or altered: Incorrect syntax near '[secret]'.");
    expect(String((thrown as Error).stack)).not.toContain(CANARY);
    expect(model('emea-1').asymmetricKeys.size).toBe(0);
    await emea.rekey('contoso', 'e1', tenantKey);
    expect(model('emea-1').credentials.get('cmk_ekm_tde_cred')?.secret).toBe(STORED_SECRET);
  });

  test('without ekmCredential the administrator made it: the engine sends no credential statement (us servers)', async () => {
    const { fleet, model } = rig();
    model('us-1').credentials.set('cmk_ekm_tde_cred', { identity: 'cmk-us.vault.azure.net', secret: 'made-by-the-administrator' });
    model('us-1').engineLoginCredential = 'admin_cred';
    const us = fleet('us');
    await us.create('fabrikam', 'u1', provider('us'));
    await us.rekey('fabrikam', 'u1', tenantKey);
    expect(credentialBatches(model('us-1'))).toHaveLength(0);
    // The model enforces the prerequisite: on a bare server nothing opens an EKM key.
    const bare = fleet('us');
    await bare.create('fabrikam', 'u2', provider('us'));
    await expect(bare.rekey('fabrikam', 'u2', tenantKey)).rejects.toThrow(/The login has no credential for cryptographic provider AzureKeyVault_EKM/);
  });
});

describe('with Azure Key Vault', () => {
  test('EKM opens a tenant key by the name the Azure adapter gave its version, not the cmk key name', async () => {
    const config = loadConfig({ ...baseEnv(), CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'https://cmk-eu.vault.azure.net' });
    const server = new RecordingSqlServer('AzureKeyVault_EKM', { adminMadeCredentials: false });
    // Only the per-version name exists in the vault (vault/azure.ts): opening `tenant-contoso-emea` would fail.
    server.vaultKeys.add(azureKeyName(tenantKey));
    const emea = buildSqlServerDatabases(config, 'emea', { connect: () => server, engine: { pollIntervalMs: 1, sleep: async () => undefined } });
    await emea.create('contoso', 'e1', provider('emea'));
    await emea.rekey('contoso', 'e1', tenantKey);
    expect(await emea.describe('contoso', 'e1')).toMatchObject({ protector: tenantKey });
    expect([...server.providerKeyNames.values()]).toContain(azureKeyName(tenantKey));
  });
});
