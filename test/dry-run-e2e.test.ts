/**
 * `--dry-run` (issue 19) end to end on `npm start`'s stack with the real `cmk` bin: each of the six commands, accepted
 * and refused, shows its report and changes nothing (key show, env list, mail list, the vault's files, the audit
 * trail's length); the real command run right after agrees with it — accepted or refused with the same code, and the
 * mail it sends is the mail the dry run named. Durations are short (R14).
 */
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type CliResult, type Stack } from '../harness/stack';
import { makeByok, makePfx } from '../harness/keyfiles';
import { parsePfx } from '../keyfiles';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-dry-run-e2e-');
const ALICE = 'alice@contoso.example';
const BOB = 'bob@contoso.example';
const SAM = 'sam@contoso.example';
const tenant = 'contoso';
const NAME = 'Contoso Ltd';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '15s', CMK_LOCK_EMBARGO: '25s', CMK_UNLOCK_DELAY: '1m' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'contoso key password 1\n');
const generatedPfx = join(work, 'generated.pfx');
const uploaded = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const uploadedPfx = file('uploaded.pfx', makePfx(uploaded, 'upload password'));
const uploadPassword = file('upload-password.txt', 'upload password\n');

/** Every file under `dir`, relative, sorted (the vault's listing). */
function filesUnder(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((name) => (statSync(join(dir, name)).isDirectory() ? filesUnder(join(dir, name), `${prefix}${name}/`) : [`${prefix}${name}`]))
    .sort();
}

/** What a dry run must leave as it found it. */
async function observed() {
  // The API's answers to `key show`, `env list`, `mail list` and `audit list` (read straight, for speed).
  const json = async (path: string) => {
    const r = await stack.api('GET', `/v1/tenants/${tenant}${path}`, { as: ALICE });
    expect(r.status).toBe(200);
    return r.body;
  };
  return {
    key: await json('/key'),
    environments: (await json('/environments')).environments,
    mails: (await json('/mail')).mails,
    vault: filesUnder(join(stack.dataDir, 'vault')),
    audit: (await json('/audit?limit=500')).records.length as number,
  };
}

/**
 * What is observed once background work (a re-protection's end, a replaced key leaving the vault) has settled: two
 * reads a second apart that agree.
 */
async function settled() {
  let last = await observed();
  for (let i = 0; i < 30; i++) {
    await sleep(1000);
    const now = await observed();
    if (JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
  throw new Error('the tenant never settled');
}

/** Runs a dry run (human, then --json) and checks that nothing changed; returns the --json result. */
async function dryRun(args: string[], as: string): Promise<CliResult> {
  const before = await settled();
  const human = await stack.cmk([...args, '--dry-run'], { as });
  expect(human.stdout).toMatch(/^Dry run: nothing was changed\.$/m);
  const json = await stack.cmk([...args, '--dry-run', '--json'], { as });
  expect(json.code).toBe(human.code);
  expect(json.json().dryRun).toBe(true);
  expect(await observed()).toEqual(before);
  return json;
}

/** The mails a real command sent: those in the outbox after it that were not before, by event and sorted recipients. */
async function mailsSentBy(run: () => Promise<CliResult>): Promise<{ result: CliResult; mails: Array<{ event: string; to: string[] }> }> {
  const count = (await observed()).mails.length;
  const result = await run();
  const fresh = (await observed()).mails.slice(count) as Array<{ event: string; to: string }>;
  const events = [...new Set(fresh.map((m) => m.event))];
  return { result, mails: events.map((event) => ({ event, to: fresh.filter((m) => m.event === event).map((m) => m.to).sort() })) };
}

async function waitUntil(at: string | null): Promise<void> {
  if (at) await sleep(Math.max(0, Date.parse(at) + 500 - Date.now()));
}

test('set-up: a tenant with prod (its system administrator sam) and dev, both on the provider key', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', NAME, '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'dev'])).code).toBe(0);
});

test('key generate --dry-run: a weak password is refused as the real run refuses it; a good one makes no key and writes no file', async () => {
  const weak = file('weak.txt', 'short\n');
  const generate = (passwordFile: string, extra: string[] = []) => ['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', passwordFile, '--out', generatedPfx, ...extra];
  const refused = await dryRun(generate(weak), ALICE);
  expect(refused.code).toBe(3);
  expect(refused.stderr).toMatch(/^WEAK_PASSWORD: /);
  expect(refused.json()).toMatchObject({ operation: 'key.generate', tenant, region: 'default', wouldSucceed: false, refusal: { code: 'WEAK_PASSWORD' }, environments: [], mails: [] });
  const human = await stack.cmk([...generate(weak), '--dry-run'], { as: ALICE });
  expect(human.stdout).toMatch(/would be refused: WEAK_PASSWORD: The password must be at least 12 characters long\./);
  const real = await stack.cmk([...generate(weak), '--json'], { as: ALICE });
  expect(real.code).toBe(3);
  expect(real.json().error).toEqual(refused.json().refusal);

  const accepted = await dryRun(generate(password), ALICE);
  expect(accepted.code).toBe(0);
  expect(accepted.json()).toMatchObject({ wouldSucceed: true, refusal: null, environments: [], mails: [{ event: 'key-changed', to: [ALICE, BOB] }] });
  expect(existsSync(generatedPfx)).toBe(false);
  // Authorisation is the real one: the 403 of the real request, not a report; recorded as a refused attempt.
  const before = (await observed()).audit;
  const forbidden = await stack.cmk([...generate(password), '--dry-run', '--json'], { as: SAM });
  expect(forbidden.code).toBe(3);
  expect(forbidden.json().error.code).toBe('FORBIDDEN');
  expect((await observed()).audit).toBe(before + 1);
  const [record] = (await stack.api('GET', `/v1/tenants/${tenant}/audit?limit=1`, { as: ALICE })).body.records;
  expect(record).toMatchObject({ actor: SAM, action: 'key.generate', outcome: 'refused', code: 'FORBIDDEN', details: { dryRun: true } });

  const { result, mails } = await mailsSentBy(() => stack.cmk([...generate(password), '--json'], { as: ALICE }));
  expect(result.code).toBe(0);
  expect(mails).toEqual(accepted.json().mails);

  // R5, while its 15 s surely run: the next change is refused, dry or real, with the same sentence.
  const again = ['key', 'generate', '--tenant', tenant, '--name', 'k1b', '--password-file', password, '--out', join(work, 'again.pfx')];
  const tooSoon = await stack.cmk([...again, '--dry-run', '--json'], { as: BOB });
  expect(tooSoon.code).toBe(3);
  expect(tooSoon.json().refusal.code).toBe('KEY_CHANGE_TOO_SOON');
  expect((await stack.cmk([...again, '--json'], { as: BOB })).json().error).toEqual(tooSoon.json().refusal);
});

test('env apply and env revert --dry-run: the protection each would move between, the mail to sam too; the real runs agree', async () => {
  const thumbprint = (await observed()).key.activeKey.thumbprint as string;
  // The tenant's first apply asks for the opt-in: the dry run meets it as the real run does.
  const withoutOptIn = await dryRun(['env', 'apply', '--tenant', tenant, '--env', 'prod'], SAM);
  expect(withoutOptIn.code).toBe(3);
  expect(withoutOptIn.json()).toMatchObject({ wouldSucceed: false, refusal: { code: 'RISK_NOT_ACCEPTED' } });
  expect((await stack.cmk(['env', 'apply', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error).toEqual(withoutOptIn.json().refusal);
  const apply = (env: string) => ['env', 'apply', '--tenant', tenant, '--env', env, '--accept-risk'];
  const accepted = await dryRun(apply('prod'), SAM);
  expect(accepted.code).toBe(0);
  expect(accepted.json()).toMatchObject({
    operation: 'env.apply',
    wouldSucceed: true,
    environments: [{ id: 'prod', from: { state: 'Online', protection: 'provider' }, to: { state: 'Online', protection: 'tenant', keyThumbprint: thumbprint }, goesOffline: false }],
    mails: [{ event: 'environment-applied', to: [ALICE, BOB, SAM] }],
  });
  expect((await stack.cmk([...apply('prod'), '--dry-run'], { as: SAM })).stdout).toMatch(/^ {2}prod: Online on provider key -> Online on tenant key [0-9a-f]{16}$/m);
  const applied = await mailsSentBy(() => stack.cmk([...apply('prod'), '--json'], { as: SAM }));
  expect(applied.result.code).toBe(0);
  expect(applied.mails).toEqual(accepted.json().mails);

  const again = await dryRun(apply('prod'), SAM);
  expect(again.code).toBe(3);
  expect(again.json()).toMatchObject({ wouldSucceed: false, refusal: { code: 'ALREADY_EXISTS' } });
  expect((await stack.cmk([...apply('prod'), '--json'], { as: SAM })).json().error).toEqual(again.json().refusal);

  const revert = (env: string) => ['env', 'revert', '--tenant', tenant, '--env', env];
  const refused = await dryRun(revert('dev'), ALICE);
  expect(refused.code).toBe(3);
  expect(refused.json().refusal.code).toBe('ALREADY_EXISTS');
  expect((await stack.cmk([...revert('dev'), '--json'], { as: ALICE })).json().error).toEqual(refused.json().refusal);
  const reverting = await dryRun(revert('prod'), SAM);
  expect(reverting.json()).toMatchObject({ wouldSucceed: true, environments: [{ id: 'prod', from: { protection: 'tenant', keyThumbprint: thumbprint }, to: { protection: 'provider' } }], mails: [{ event: 'environment-reverted', to: [ALICE, BOB, SAM] }] });
  const reverted = await mailsSentBy(() => stack.cmk([...revert('prod'), '--json'], { as: SAM }));
  expect(reverted.result.json().environment.protection).toBe('provider');
  expect(reverted.mails).toEqual(reverting.json().mails);
  // Back on the tenant key for what follows; rekey has no dry run.
  expect((await stack.cmk(apply('prod'), { as: SAM })).code).toBe(0);
  expect((await stack.cmk(['env', 'rekey', '--tenant', tenant, '--env', 'prod', '--dry-run'], { as: SAM })).code).toBe(2);
  expect((await stack.api('POST', `/v1/tenants/${tenant}/environments/prod/rekey`, { body: { dryRun: true }, as: SAM })).body.error.code).toBe('INVALID_ARGUMENT');
});

test('key upload --dry-run: the .pfx opened (wrong password, R5), its thumbprint shown, nothing staged; the real upload agrees', async () => {
  const upload = (passwordFile: string) => ['key', 'upload', '--tenant', tenant, '--name', 'k2', '--file', uploadedPfx, '--password-file', passwordFile];
  const wrong = await dryRun(upload(file('wrong.txt', 'not the password\n')), BOB);
  expect(wrong.code).toBe(3);
  expect(wrong.json().refusal.code).toBe('WRONG_PASSWORD');
  expect((await stack.cmk([...upload(file('wrong2.txt', 'not the password\n')), '--json'], { as: BOB })).json().error).toEqual(wrong.json().refusal);

  // R5: the key changed less than the interval ago (unless the machine was slow enough for it to pass).
  const { nextKeyChangeAllowedAt } = (await observed()).key;
  const tooSoon = await dryRun(upload(uploadPassword), BOB);
  if (Date.parse(nextKeyChangeAllowedAt) > Date.now() + 2000) {
    expect(tooSoon.json().refusal.code).toBe('KEY_CHANGE_TOO_SOON');
    const real = await stack.cmk([...upload(uploadPassword), '--json'], { as: BOB });
    expect(real.json().error.code).toBe('KEY_CHANGE_TOO_SOON');
  }
  await waitUntil(nextKeyChangeAllowedAt);

  // A .byok opens only inside the vault: its form is checked, nothing is staged, its thumbprint is not known yet.
  const kekPath = join(work, 'kek.pem');
  const kek = await stack.cmk(['key', 'kek', '--tenant', tenant, '--out', kekPath, '--json'], { as: BOB });
  expect(kek.code).toBe(0);
  const hsm = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const byok = (path: string) => ['key', 'upload', '--tenant', tenant, '--name', 'hsm', '--file', path];
  const wellFormed = await dryRun(byok(file('hsm.byok', makeByok(readFileSync(kekPath, 'utf8'), kek.json().kid, hsm))), BOB);
  expect(wellFormed.code).toBe(0);
  expect(wellFormed.json()).toMatchObject({ wouldSucceed: true, key: { name: 'hsm', source: 'byok', thumbprint: null }, environments: [{ id: 'prod', to: { protection: 'tenant', keyThumbprint: null } }] });
  const junk = await dryRun(byok(file('junk.byok', '{"schema_version":"1.0.0"}')), BOB);
  expect(junk.code).toBe(3);
  expect(junk.json().refusal.code).toBe('INVALID_KEY_FILE');
  expect((await stack.cmk([...byok(join(work, 'junk.byok')), '--json'], { as: BOB })).json().error).toEqual(junk.json().refusal);

  const before = (await observed()).key.activeKey.thumbprint as string;
  const accepted = await dryRun(upload(uploadPassword), BOB);
  expect(accepted.code).toBe(0);
  const thumbprint = accepted.json().key.thumbprint as string;
  expect(accepted.json()).toMatchObject({
    wouldSucceed: true,
    key: { name: 'k2', source: 'pfx', thumbprint: expect.stringMatching(/^[0-9a-f]{64}$/), activate: true },
    environments: [{ id: 'prod', from: { protection: 'tenant', keyThumbprint: before }, to: { protection: 'tenant', keyThumbprint: thumbprint }, goesOffline: false }],
    // Sam administers prod, which the change re-protects: he gets a mail of his own about it.
    mails: [{ event: 'key-changed', to: [ALICE, BOB, SAM] }],
  });
  const { result, mails } = await mailsSentBy(() => stack.cmk([...upload(uploadPassword), '--wait', '--json'], { as: BOB }));
  expect(result.code).toBe(0);
  expect(result.json().activeKey.thumbprint).toBe(thumbprint);
  expect(mails).toEqual(accepted.json().mails);
});

test('key rollback --dry-run: the maker is refused with the real 403; another administrator sees the key put back; then nothing to roll back', async () => {
  const rollback = ['key', 'rollback', '--tenant', tenant];
  const maker = await stack.cmk([...rollback, '--dry-run', '--json'], { as: BOB });
  expect(maker.code).toBe(3);
  expect(maker.json().error.code).toBe('FORBIDDEN');
  const generated = parsePfx(readFileSync(generatedPfx), 'contoso key password 1').thumbprint;
  const accepted = await dryRun(rollback, ALICE);
  expect(accepted.code).toBe(0);
  expect(accepted.json()).toMatchObject({
    operation: 'key.rollback',
    environments: [{ id: 'prod', to: { protection: 'tenant', keyThumbprint: generated }, goesOffline: false }],
    mails: [{ event: 'key-rolled-back', to: [ALICE, BOB, SAM] }],
  });
  const { result, mails } = await mailsSentBy(() => stack.cmk([...rollback, '--wait', '--json'], { as: ALICE }));
  expect(result.code).toBe(0);
  expect(result.json().activeKey.thumbprint).toBe(generated);
  expect(mails).toEqual(accepted.json().mails);

  // R6 restarted by the rollback, while its 25 s surely run: a lock is refused, dry or real.
  const lock = ['tenant', 'lock', '--tenant', tenant, '--confirm', NAME, '--file', generatedPfx, '--password-file', password, '--json'];
  const embargo = await stack.cmk([...lock, '--dry-run'], { as: ALICE });
  expect(embargo.code).toBe(3);
  expect(embargo.json()).toMatchObject({ wouldSucceed: false, refusal: { code: 'LOCK_EMBARGO' }, environments: [], mails: [] });
  expect((await stack.cmk(lock, { as: ALICE })).json().error.code).toBe('LOCK_EMBARGO');

  // One step back only (alice made this change now, so bob asks).
  const nothing = await dryRun(rollback, BOB);
  expect(nothing.code).toBe(3);
  expect(nothing.json().refusal.code).toBe('NOT_FOUND');
  expect((await stack.cmk([...rollback, '--json'], { as: BOB })).json().error).toEqual(nothing.json().refusal);
});

test('tenant lock --dry-run: the name, R6, what proof is needed; with a signature the challenge is not spent, and the real lock takes it', async () => {
  const lock = ['tenant', 'lock', '--tenant', tenant, '--confirm', NAME];

  // Within R6's embargo after the rollback (unless the machine was slow enough for it to end).
  const { lockAllowedAt } = (await observed()).key;
  const embargo = await dryRun([...lock, '--file', generatedPfx, '--password-file', password], ALICE);
  if (Date.parse(lockAllowedAt) > Date.now() + 3000) {
    expect(embargo.code).toBe(3);
    expect(embargo.json().refusal.code).toBe('LOCK_EMBARGO');
    expect((await stack.cmk([...lock, '--file', generatedPfx, '--password-file', password, '--json'], { as: ALICE })).json().error.code).toBe('LOCK_EMBARGO');
  }
  await waitUntil(lockAllowedAt);
  const mismatch = await dryRun(['tenant', 'lock', '--tenant', tenant, '--confirm', 'contoso ltd'], ALICE);
  expect(mismatch.json().refusal.code).toBe('TENANT_NAME_MISMATCH');
  expect((await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'contoso ltd', '--file', generatedPfx, '--password-file', password, '--json'], { as: ALICE })).json().error.code).toBe('TENANT_NAME_MISMATCH');

  const unproven = await dryRun(lock, ALICE);
  expect(unproven.code).toBe(0);
  expect(unproven.json().proof).toMatchObject({ given: false, needs: expect.stringContaining('proof of possession of the active key "k1"') });
  expect((await stack.cmk([...lock, '--dry-run'], { as: ALICE })).stdout).toMatch(/^Would go offline: prod, dev\.$/m);

  // A signature made elsewhere over `tenant challenge`: the dry run verifies it, and the real lock then takes the same.
  const challengeFile = join(work, 'challenge.txt');
  expect((await stack.cmk(['tenant', 'challenge', '--tenant', tenant, '--out', challengeFile], { as: ALICE })).code).toBe(0);
  const key = createPrivateKey({ key: parsePfx(readFileSync(generatedPfx), 'contoso key password 1').pkcs8Der, format: 'der', type: 'pkcs8' });
  const signatureFile = file('signature.bin', sign('sha256', readFileSync(challengeFile), key));
  const signed = [...lock, '--signature-file', signatureFile, '--challenge-file', challengeFile];
  const accepted = await dryRun(signed, ALICE);
  expect(accepted.code).toBe(0);
  expect(accepted.json()).toMatchObject({
    operation: 'tenant.lock',
    wouldSucceed: true,
    proof: { given: true, verified: true },
    environments: [
      { id: 'prod', from: { state: 'Online', protection: 'tenant' }, to: { state: 'Locked', protection: 'tenant' }, goesOffline: true },
      { id: 'dev', from: { state: 'Online', protection: 'provider' }, to: { state: 'Locked', protection: 'provider' }, goesOffline: true },
    ],
    mails: [{ event: 'tenant-locked', to: [ALICE, BOB, SAM] }],
  });
  const { result, mails } = await mailsSentBy(() => stack.cmk([...signed, '--json'], { as: ALICE }));
  expect(result.code).toBe(0);
  expect(result.json()).toMatchObject({ sealed: ['prod'], lockedByDecisionOnly: ['dev'] });
  expect(mails).toEqual(accepted.json().mails);

  // Locked now: the dry run and the real lock both meet LOCKED_ENVIRONMENTS_EXIST.
  const again = await dryRun(lock, ALICE);
  expect(again.code).toBe(3);
  expect(again.json().refusal.code).toBe('LOCKED_ENVIRONMENTS_EXIST');
  expect((await stack.cmk([...lock, '--file', generatedPfx, '--password-file', password, '--json'], { as: ALICE })).json().error.code).toBe('LOCKED_ENVIRONMENTS_EXIST');
});
