/**
 * Drift detection end to end on `npm start`'s stack and the real `cmk` bin: environments changed behind cmk's back
 * (a key record re-wrapped with another key, a tenant key deleted from the vault) are found by `cmk drift check`,
 * shown by `env list`, mailed once (not again for the same drift) to the administrators, the environment's system
 * administrator and the operators, and audited; a clean tenant reports nothing; refusals change nothing.
 */
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { loadDataConverter } from '../codec';
import { DRIFT_SCHEDULE_ID } from '../workflows/messages';
import { ControlPlane } from '../client/library';
import { loadRequestSigner } from '../common/request-signing';
import { OPERATOR } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { freePort, startStack, type Stack } from '../harness/stack';
import { scratchDir } from './support/scratch';
import { expectSchedule } from './support/schedules';

let stack: Stack;
let connection: Connection;
let temporal: Client;
let metricsPort: number;
const { dir: work, file } = scratchDir('cmk-drift-e2e-');
const ALICE = 'alice@contoso.example';
const SAM = 'sam@contoso.example';
const OPS = 'ops@provider.example';
const tenant = 'contoso';
const password = file('password.txt', 'contoso key password 1\n');

beforeAll(async () => {
  metricsPort = await freePort();
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_DRIFT_CHECK_INTERVAL: '2h', CMK_OPERATOR_EMAIL: OPS, CMK_METRICS_PORT: String(metricsPort) });
  connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS });
  temporal = new Client({ connection, dataConverter: loadDataConverter(stack.secretsDir) });
}, 120_000);

afterAll(async () => {
  await connection?.close();
  await stack?.stop();
});

const driftCheck = (as?: string, who = tenant) => stack.cmk(['drift', 'check', '--tenant', who, '--json'], as ? { as } : {});
const envList = async () => {
  const r = await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE });
  expect(r.code).toBe(0);
  return r.json().environments as Array<{ id: string; drift?: { foundAt: string; summary: string; differences: Array<{ kind: string }> } }>;
};
/** The drift series on the worker's Prometheus endpoint, for this tenant: `name` → value. */
const driftSeries = async () => {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const series: Record<string, number> = {};
  for (const m of text.matchAll(/^(cmk_drift_\w+)\{tenant="contoso"\} (\d+)$/gm)) series[m[1]!] = Number(m[2]);
  return series;
};
const driftMails = async () => {
  const r = await stack.cmk(['mail', 'list', '--tenant', tenant, '--json']);
  expect(r.code).toBe(0);
  return (r.json().mails as Array<{ event: string; to: string; subject: string }>).filter((m) => m.event === 'drift-detected');
};

test('the stack creates the drift Schedule with the configured interval', async () => {
  await expectSchedule(temporal, DRIFT_SCHEDULE_ID, { everyMs: 2 * 3_600_000, workflowType: 'driftCheckWorkflow' });
});

test('set-up: prod and stage on the tenant key, dev on the provider key; a clean tenant reports nothing (exit 0)', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Contoso', '--admin', `${ALICE}:global`])).code).toBe(0);
  for (const env of ['prod', 'stage', 'dev']) expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', env, ...(env === 'prod' ? ['--admin', SAM] : [])])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'c-1', '--password-file', password, '--out', join(work, 'c.pfx')], { as: ALICE })).code).toBe(0);
  for (const env of ['prod', 'stage']) expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', env, '--accept-risk'], { as: ALICE })).code).toBe(0);

  const clean = await driftCheck(ALICE);
  expect(clean.code).toBe(0);
  expect(clean.json()).toMatchObject({ tenant, clean: true, drifting: [], newlyFound: [] });
  const human = await stack.cmk(['drift', 'check', '--tenant', tenant]);
  expect(human.code).toBe(0);
  expect(human.stdout).toContain('No drift in contoso');
  expect((await envList()).filter((e) => e.drift)).toEqual([]);
  expect(await driftMails()).toEqual([]);
  expect(await driftSeries()).toMatchObject({ cmk_drift_environments: 0 });
}, 120_000);

test('changed behind cmk’s back: found, shown in env list, mailed once to administrators and operators, audited', async () => {
  const parts = buildParts(loadConfig({ CMK_DATA_DIR: stack.dataDir, CMK_SECRETS_DIR: stack.secretsDir }));
  const dev = await parts.databases.describe(tenant, 'dev');
  const stage = await parts.databases.describe(tenant, 'stage');
  // prod's key record re-wrapped with the provider key; then the tenant key (which stage needs) deleted from the vault.
  await parts.databases.reprotect(tenant, 'prod', dev!.protector);
  await parts.vault.deleteKey({ name: stage!.protector.name, version: stage!.protector.version });

  const found = await driftCheck(ALICE);
  expect(found.code).toBe(1);
  const report = found.json();
  expect(report).toMatchObject({ tenant, clean: false, newlyFound: ['prod', 'stage'] });
  const byEnv = Object.fromEntries((report.drifting as Array<{ env: string; differences: Array<{ kind: string }> }>).map((d) => [d.env, d.differences.map((x) => x.kind)]));
  expect(byEnv).toEqual({ prod: ['protection', 'thumbprint'], stage: ['vault-key-missing'] });

  const listed = await envList();
  expect(listed.find((e) => e.id === 'prod')?.drift).toMatchObject({ foundAt: report.checkedAt, summary: expect.stringContaining('protected by the provider key, not the tenant key') });
  expect(listed.find((e) => e.id === 'stage')?.drift?.summary).toContain('the vault no longer holds');
  expect(listed.find((e) => e.id === 'dev')?.drift).toBeUndefined();
  const human = await stack.cmk(['env', 'list', '--tenant', tenant], { as: ALICE });
  expect(human.stdout).toMatch(/prod .*DRIFT since /);

  const mails = await driftMails();
  expect(mails.map((m) => m.to).sort()).toEqual([ALICE, OPS, SAM]);
  expect(mails[0]!.subject).toContain('prod, stage');
  expect(await driftSeries()).toEqual({ cmk_drift_environments: 2, cmk_drift_detected_total: 2 });

  // The same drift an hour later (here: now) is not mailed again, and keeps when it was first found.
  const again = await driftCheck();
  expect(again.code).toBe(1);
  expect(again.json()).toMatchObject({ clean: false, newlyFound: [] });
  expect((await envList()).find((e) => e.id === 'prod')?.drift?.foundAt).toBe(report.checkedAt);
  expect(await driftMails()).toHaveLength(3);
  expect(await driftSeries()).toEqual({ cmk_drift_environments: 2, cmk_drift_detected_total: 2 });

  const audit = await stack.cmk(['audit', 'list', '--tenant', tenant, '--json'], { as: ALICE });
  const actions = (audit.json().records as Array<{ action: string; environment: string | null }>).filter((r) => r.action === 'env.drift').map((r) => r.environment);
  expect(actions.sort()).toEqual(['prod', 'stage']);
}, 120_000);

test('a finding about a belief that changed since the check read it (an operation meanwhile) is dropped, not mailed', async () => {
  const plane = new ControlPlane(temporal, stack.env.CMK_TASK_QUEUE ?? 'cmk', loadRequestSigner(stack.secretsDir));
  const stale = { state: 'Online' as const, protection: 'provider' as const, keyThumbprint: 'f'.repeat(64) };
  const result = await plane.recordDrift(tenant, {
    actor: OPERATOR,
    policy: DEFAULT_POLICY,
    checkedAt: new Date().toISOString(),
    findings: [{ env: 'dev', believed: stale, differences: [{ kind: 'thumbprint', expected: stale.keyThumbprint, found: 'e'.repeat(64) }] }],
    operators: [OPS],
  });
  expect(result?.newlyFound).toEqual([]);
  expect((await envList()).find((e) => e.id === 'dev')?.drift).toBeUndefined();
  expect(await driftMails()).toHaveLength(3);
});

test('refusals: a system administrator, an unknown tenant — nothing checked, nothing mailed', async () => {
  const before = await envList();
  const sam = await driftCheck(SAM);
  expect(sam.code).toBe(3);
  expect(sam.json().error.code).toBe('FORBIDDEN');
  expect(sam.stderr).toContain('FORBIDDEN:');
  const unknown = await driftCheck(undefined, 'no-such-tenant');
  expect(unknown.code).toBe(3);
  expect(unknown.json().error.code).toBe('NOT_FOUND');
  expect(await envList()).toEqual(before);
  expect(await driftMails()).toHaveLength(3);
}, 60_000);
