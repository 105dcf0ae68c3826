/**
 * Issue 19, end to end through `npm start`'s stack and the real `cmk` bin: the opt-in of a first apply
 * (`--accept-risk`, RISK_NOT_ACCEPTED, recorded once with who and when, audited, never asked again); a key change
 * mailed to the system administrators of the environments it re-protects, each about their own; and the mail
 * (`reprotection-incomplete`) when a re-protection leaves environments on the previous key, provoked by taking two
 * environments' key records away, whose advice (`cmk env rekey`) then moves them.
 */
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { Outbox, type OutboxEntry } from '../mail/outbox';
import { startStack, type Stack } from '../harness/stack';
import { onceTimeAllows } from './support/deadline';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-risk-mails-e2e-');
const ALICE = 'alice@fourth.example';
const BOB = 'bob@fourth.example';
const SAM = 'sam@fourth.example';
const KIM = 'kim@fourth.example';
const tenant = 'fourth-coffee';

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'fourth coffee key password\n');
const envList = async () => (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ id: string; protection: string; keyThumbprint: string }>;
const audit = async () =>
  (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE })).json().records as Array<{ action: string; outcome: string; actor: string; code?: string; details?: Record<string, unknown> }>;
const riskAcceptance = async () => (await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json().tenant.riskAcceptance;
const outbox = async (event: string): Promise<OutboxEntry[]> => (await new Outbox({ dataDir: stack.dataDir }).list(tenant)).filter((m) => m.event === event);
const keyRecord = (env: string) => join(stack.dataDir, 'environments', tenant, env, 'key-record.json');

test('a first apply needs --accept-risk: refused with the warning and nothing changed, then recorded once (who, when, audit) and never asked again', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Fourth Coffee', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  for (const [env, admin] of [['prod', SAM], ['dev', SAM], ['test', KIM], ['hr', null]] as const) {
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', env, ...(admin ? ['--admin', admin] : [])])).code).toBe(0);
  }
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', password, '--out', join(work, 'k1.pfx')], { as: ALICE })).code).toBe(0);
  expect(await riskAcceptance()).toEqual({ accepted: false, by: null, at: null });
  expect((await stack.cmk(['tenant', 'show', '--tenant', tenant], { as: ALICE })).stdout).toMatch(/not accepted yet/);

  const before = await envList();
  const refused = await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
  expect(refused.code).toBe(3);
  expect(refused.json().error.code).toBe('RISK_NOT_ACCEPTED');
  expect(refused.stderr).toMatch(/^RISK_NOT_ACCEPTED: .*cannot be recovered by anyone.*offline.*--accept-risk/);
  // The API says the same to a caller of its own, with a body that is not a boolean refused as such.
  const viaApi = await stack.api('POST', `/v1/tenants/${tenant}/environments/prod/apply`, { as: SAM, body: { acceptRisk: 'yes' } });
  expect([viaApi.status, viaApi.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
  const noBody = await stack.api('POST', `/v1/tenants/${tenant}/environments/prod/apply`, { as: SAM });
  expect([noBody.status, noBody.body.error.code]).toEqual([409, 'RISK_NOT_ACCEPTED']);
  // Nothing changed: the environments, the acceptance, no apply completed (the refusals are audited as refusals).
  expect(await envList()).toEqual(before);
  expect(await riskAcceptance()).toEqual({ accepted: false, by: null, at: null });
  const records = await audit();
  expect(records.filter((r) => r.action === 'env.apply' && r.outcome !== 'refused')).toEqual([]);
  expect(records.filter((r) => r.action === 'env.apply').map((r) => r.code)).toContain('RISK_NOT_ACCEPTED');

  const applied = await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'prod', '--accept-risk', '--json'], { as: SAM });
  expect(applied.code).toBe(0);
  expect(applied.json().environment).toMatchObject({ id: 'prod', protection: 'tenant' });
  const accepted = await riskAcceptance();
  expect(accepted).toEqual({ accepted: true, by: SAM, at: expect.any(String) });
  expect((await stack.cmk(['tenant', 'show', '--tenant', tenant], { as: ALICE })).stdout).toContain(`accepted by ${SAM} at ${accepted.at}`);
  expect((await audit()).filter((r) => r.action === 'env.apply' && r.outcome === 'completed').map((r) => [r.actor, r.details])).toEqual([[SAM, { acceptRisk: true, riskAcceptedBy: SAM }]]);

  // Never asked again for this tenant, whoever applies; the first acceptance stays as it was.
  expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'test'], { as: KIM })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'dev'], { as: ALICE })).code).toBe(0);
  expect(await riskAcceptance()).toEqual(accepted);
  expect((await audit()).filter((r) => r.action === 'env.apply' && r.outcome === 'completed').map((r) => r.details)).toEqual([
    { acceptRisk: true, riskAcceptedBy: SAM },
    { acceptRisk: false, riskAcceptedBy: SAM },
    { acceptRisk: false, riskAcceptedBy: SAM },
  ]);
}, 120_000);

test('a key change is mailed to the system administrators of the environments it re-protects, each about their own; those it leaves behind are mailed with why and what to do', async () => {
  // test (kim's) and dev (sam's) lose their key records: their re-protection is refused, prod's goes through.
  renameSync(keyRecord('test'), `${keyRecord('test')}.away`);
  renameSync(keyRecord('dev'), `${keyRecord('dev')}.away`);
  const k2 = await onceTimeAllows('R5 lets the key change', () => stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k2', '--password-file', password, '--out', join(work, 'k2.pfx'), '--wait', '--json'], { as: BOB }));
  expect(k2.code).toBe(0);
  const shown = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json();
  expect(shown.reprotection.refused.map((r: { env: string }) => r.env).sort()).toEqual(['dev', 'test']);

  // The key change: the administrators' mail names no environment; sam's names prod and dev, kim's test only.
  const changed = (await outbox('key-changed')).filter((m) => m.body.includes('"k2"'));
  expect(changed.map((m) => m.to).sort()).toEqual([ALICE, BOB, KIM, SAM].sort());
  const bodyOf = (mails: OutboxEntry[], to: string) => mails.find((m) => m.to === to)!.body;
  expect(bodyOf(changed, ALICE)).not.toMatch(/Your environment/);
  expect(bodyOf(changed, SAM)).toMatch(/Your environment\(s\) concerned: (prod, dev|dev, prod)\./);
  expect(bodyOf(changed, KIM)).toMatch(/Your environment\(s\) concerned: test\./);
  expect(bodyOf(changed, KIM)).not.toMatch(/\bprod\b|\bdev\b/);

  // Left behind: everyone concerned learns which, why, what to do and why before a lock; each system administrator
  // only about their own.
  const incomplete = await outbox('reprotection-incomplete');
  expect(incomplete.map((m) => m.to).sort()).toEqual([ALICE, BOB, KIM, SAM].sort());
  const all = bodyOf(incomplete, ALICE);
  expect(all).toMatch(/- dev: NOT_FOUND: /);
  expect(all).toMatch(/- test: NOT_FOUND: /);
  expect(all).toMatch(/cmk env rekey --tenant fourth-coffee --env/);
  expect(all).toMatch(/can never be unlocked/);
  expect(incomplete[0]!.subject).toMatch(/Action needed for Fourth Coffee: 2 environment\(s\) left on the previous key/);
  expect(bodyOf(incomplete, SAM)).toMatch(/- dev: NOT_FOUND/);
  expect(bodyOf(incomplete, SAM)).not.toMatch(/\btest\b/);
  expect(bodyOf(incomplete, KIM)).toMatch(/- test: NOT_FOUND/);
  expect(bodyOf(incomplete, KIM)).not.toMatch(/\bdev\b|\bprod\b/);
  // `mail list` names the new event.
  const listed = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().mails as Array<{ to: string; event: string }>;
  expect(listed.filter((m) => m.event === 'reprotection-incomplete')).toHaveLength(4);

  // The mail's advice works: once the cause is repaired, `env rekey` moves each to the active key.
  renameSync(`${keyRecord('dev')}.away`, keyRecord('dev'));
  const rekeyed = await stack.cmk(['env', 'rekey', '--tenant', tenant, '--env', 'dev', '--json'], { as: SAM });
  expect(rekeyed.code).toBe(0);
  expect(rekeyed.json().environment.keyThumbprint).toBe(shown.activeKey.thumbprint);
}, 120_000);
