/**
 * Issue 19, what the reference document has and cmk lacked, end to end through `npm start`'s stack and the real `cmk`
 * bin: `env delete` of a locked environment (R11 lifts with the last one); the lock of a tenant whose key lives in an
 * HSM (`tenant challenge`, a detached signature made by `openssl dgst`, `tenant lock --signature-file`), and its
 * re-activation from the `.byok` without a password; `key upload --no-activate` then `key activate`; `key history`.
 * Durations are short (R14); time rules are waited for by asking again (onceTimeAllows), never by a fixed sleep.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeByok, makePfx } from '../harness/keyfiles';
import { startStack, type Stack } from '../harness/stack';
import { expectAligned } from './support/columns';
import { onceTimeAllows } from './support/deadline';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-reference-e2e-');
const ALICE = 'alice@tailspin.example';
const BOB = 'bob@tailspin.example';
const SAM = 'sam@tailspin.example';

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '3s', CMK_UNLOCK_DELAY: '1s' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'tailspin key password 1\n');

/** A tenant with prod (system administrator sam) on its own generated key and dev on the provider key. */
async function tenantWithKey(tenant: string, name: string): Promise<string> {
  const pfx = join(work, `${tenant}.pfx`);
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', name, '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'dev'])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', `${tenant}-1`, '--password-file', password, '--out', pfx], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  return pfx;
}

const states = async (tenant: string) => ((await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ id: string; state: string }>).map((e) => [e.id, e.state]);

describe('env delete', () => {
  const tenant = 'tailspin';
  const del = (env: string, confirm: string | null, as = ALICE) => stack.cmk(['env', 'delete', '--tenant', tenant, '--env', env, ...(confirm === null ? [] : ['--confirm', confirm]), '--json'], { as });

  test('a locked environment is deleted now, mailed and audited; refusals change nothing; R11 lifts with the last one', async () => {
    const pfx = await tenantWithKey(tenant, 'Tailspin Toys');
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'a row'], { as: SAM })).code).toBe(0);
    expect((await stack.cmk(['env', 'backup', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);

    // Online: not deletable.
    const online = await del('prod', 'prod');
    expect([online.code, online.json().error.code]).toEqual([3, 'ALREADY_EXISTS']);
    expect(online.stderr).toMatch(/^ALREADY_EXISTS: Environment prod is not locked .*only a locked environment can be deleted/);

    const locked = await onceTimeAllows('the embargo lets the lock in', () => stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Tailspin Toys', '--file', pfx, '--password-file', password, '--json'], { as: ALICE }));
    expect(locked.code).toBe(0);

    // Refusals, in the order of DESIGN.md §4: usage, FORBIDDEN, NOT_FOUND, INVALID_ARGUMENT.
    expect((await del('prod', null)).code).toBe(2);
    expect((await del('prod', 'prod', SAM)).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['env', 'delete', '--tenant', tenant, '--env', 'prod', '--confirm', 'prod', '--json'])).json().error.code).toBe('FORBIDDEN');
    expect((await del('staging', 'staging')).json().error.code).toBe('NOT_FOUND');
    const mismatch = await del('prod', 'dev');
    expect([mismatch.code, mismatch.json().error.code]).toEqual([3, 'INVALID_ARGUMENT']);
    expect(await states(tenant)).toEqual([['prod', 'Locked'], ['dev', 'Locked']]);
    const envDir = join(stack.dataDir, 'environments', tenant, 'prod');
    expect(existsSync(envDir)).toBe(true);

    const deleted = await stack.cmk(['env', 'delete', '--tenant', tenant, '--env', 'prod', '--confirm', 'prod'], { as: BOB });
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(/^Environment prod deleted at \S+, with its backups and key record: no one can recover its data\.$/m);
    expect(existsSync(envDir)).toBe(false);
    expect(await states(tenant)).toEqual([['prod', 'Deleted'], ['dev', 'Locked']]);
    expect((await del('prod', 'prod')).json().error.code).toBe('NOT_FOUND');

    // R11 holds while dev is locked; it lifts once dev is deleted too.
    const newKey = () => stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'after-the-lock', '--password-file', password, '--out', join(work, `after-${Date.now()}.pfx`), '--json'], { as: ALICE });
    expect((await newKey()).json().error.code).toBe('LOCKED_ENVIRONMENTS_EXIST');
    const dev = await del('dev', 'dev');
    expect(dev.json().environment).toMatchObject({ id: 'dev', state: 'Deleted', deletedAt: expect.any(String) });
    const generated = await newKey();
    expect(generated.code).toBe(0);
    expect(generated.json().activeKey).toMatchObject({ name: 'after-the-lock', state: 'Active' });

    // R4: mailed to the administrators, and prod's deletion to its system administrator; audited with who did it.
    const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string }>;
    expect(mails.filter((m) => m.event === 'environment-deleted').map((m) => m.to).sort()).toEqual([ALICE, ALICE, BOB, BOB, SAM]);
    const records = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE })).json().records as Array<{ action: string; actor: string; outcome: string; environment?: string; code?: string }>;
    const deletions = records.filter((r) => r.action === 'env.delete');
    expect(deletions.filter((r) => r.outcome === 'completed').map((r) => [r.actor, r.environment])).toEqual([[BOB, 'prod'], [ALICE, 'dev']]);
    expect(deletions.filter((r) => r.outcome === 'refused').map((r) => r.code)).toEqual(expect.arrayContaining(['ALREADY_EXISTS', 'FORBIDDEN', 'INVALID_ARGUMENT', 'NOT_FOUND']));
  }, 120_000);
});

describe('BYOK lock', () => {
  const tenant = 'northwind';
  // The CLI remembers the last challenge here (CMK_STATE_DIR), as it would under ~/.local/state on a laptop.
  const state = { CMK_STATE_DIR: join(work, 'state') };
  const cli = (args: string[], as = ALICE) => stack.cmk(args, { as, env: state });
  const challenge = (extra: string[] = [], as = ALICE) => cli(['tenant', 'challenge', '--tenant', tenant, ...extra], as);
  const lock = (extra: string[], as = ALICE) => cli(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Northwind Traders', '--json', ...extra], as);
  /** What the HSM does: `openssl dgst -sha256 -sign key.pem -out S` over the challenge's bytes. */
  const opensslSign = (key: KeyObject, challengeFile: string, name: string) => {
    const pem = file(`${name}.pem`, key.export({ type: 'pkcs8', format: 'pem' }));
    const out = join(work, `${name}.sig`);
    execFileSync('openssl', ['dgst', '-sha256', '-sign', pem, '-out', out, challengeFile]);
    return out;
  };
  let hsmKey: KeyObject;
  let byokPath: string;

  test('set-up: the active key came as a .byok from an HSM; prod is on it, dev on the provider key', async () => {
    expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Northwind Traders', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'dev'])).code).toBe(0);
    const kekPath = join(work, 'northwind-kek.pem');
    const kek = await stack.cmk(['key', 'kek', '--tenant', tenant, '--out', kekPath, '--json'], { as: ALICE });
    hsmKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    byokPath = file('northwind.byok', makeByok(readFileSync(kekPath, 'utf8'), kek.json().kid, hsmKey));
    expect((await stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'hsm-1', '--file', byokPath], { as: ALICE })).code).toBe(0);
    expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  });

  test('tenant challenge: the challenge alone as text; with --json its bytes base64-encoded as `challenge`; --out writes the bytes', async () => {
    const text = await challenge();
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^cmk-possession-challenge\.v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
    const out = join(work, 'challenge-json.bin');
    const json = await challenge(['--json', '--out', out]);
    expect(json.json()).toMatchObject({ tenant, region: 'default', operation: 'lock', expiresAt: expect.any(String) });
    expect(Buffer.from(json.json().challenge, 'base64')).toEqual(readFileSync(out));
    expect(readFileSync(out, 'utf8')).toMatch(/^cmk-possession-challenge\.v1\./);
    // Only those who may lock get one.
    expect((await challenge(['--json'], SAM)).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['tenant', 'challenge', '--tenant', tenant, '--json'])).json().error.code).toBe('FORBIDDEN');
  });

  test('tenant lock --signature-file: exactly one proof (usage), another key refused, the HSM signature locks; the .byok re-activates without a password', async () => {
    const pfx = file('unused.pfx', 'not read');
    const pw = file('unused-pw.txt', 'x\n');
    const sig = file('some.sig', 'x');
    // Usage errors (exit 2) before anything is read or asked.
    for (const flags of [[], ['--file', pfx, '--password-file', pw, '--signature-file', sig], ['--signature-file', sig, '--password-file', pw], ['--file', pfx, '--password-file', pw, '--challenge-file', sig]]) {
      const usage = await lock(flags);
      expect([flags, usage.code, usage.json().error.code]).toEqual([flags, 2, 'USAGE']);
    }

    // Another key's signature over a good challenge: KEY_MISMATCH, nothing locked.
    const wrongChallenge = join(work, 'wrong.bin');
    expect((await challenge(['--out', wrongChallenge])).code).toBe(0);
    const wrong = await lock(['--signature-file', opensslSign(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, wrongChallenge, 'other')]);
    expect([wrong.code, wrong.json().error.code]).toEqual([3, 'KEY_MISMATCH']);
    expect((await lock(['--signature-file', file('empty.sig', '')])).json().error.code).toBe('INVALID_ARGUMENT');
    // Nothing remembered on another machine (another state dir): the challenge must be named.
    const elsewhere = await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Northwind Traders', '--signature-file', sig, '--json'], { as: ALICE, env: { CMK_STATE_DIR: join(work, 'other-machine') } });
    expect([elsewhere.code, elsewhere.json().error.code, elsewhere.stderr]).toEqual([3, 'INVALID_ARGUMENT', expect.stringMatching(/give --challenge-file/)]);
    expect((await lock(['--signature-file', sig], SAM)).json().error.code).toBe('FORBIDDEN');
    expect(await states(tenant)).toEqual([['prod', 'Online'], ['dev', 'Online']]);

    // The two steps: `tenant challenge` (remembered here), signed in the "HSM", then the lock with the
    // raw signature alone; asked again while R6's short embargo still runs.
    const challengeFile = join(work, 'challenge.bin');
    expect((await challenge(['--out', challengeFile])).code).toBe(0);
    const signature = opensslSign(hsmKey, challengeFile, 'hsm');
    const locked = await onceTimeAllows('the embargo lets the lock in', () => lock(['--signature-file', signature]));
    expect(locked.code).toBe(0);
    expect(locked.json()).toMatchObject({ tenant, sealed: ['prod'], lockedByDecisionOnly: ['dev'] });
    // Locked now: a second lock with the same proof is refused.
    expect((await lock(['--signature-file', signature, '--challenge-file', challengeFile])).json().error.code).toBe('LOCKED_ENVIRONMENTS_EXIST');

    // A .pfx still needs its password file (PASSWORD_REQUIRED); R10 with the .byok itself needs none; then the same HSM locks again, its signature as base64 text.
    const hsmPfx = file('northwind.pfx', makePfx(hsmKey, 'a password'));
    expect((await stack.cmk(['key', 'reactivate', '--tenant', tenant, '--file', hsmPfx, '--json'], { as: BOB })).json().error.code).toBe('PASSWORD_REQUIRED');
    const reactivated = await stack.cmk(['key', 'reactivate', '--tenant', tenant, '--file', byokPath, '--json'], { as: BOB });
    expect([reactivated.code, reactivated.json().activeKey?.state]).toEqual([0, 'Active']);
    for (const env of ['prod', 'dev']) expect((await onceTimeAllows('R15 lets the unlock in', () => stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', env], { as: ALICE }))).code).toBe(0);
    const again = join(work, 'again.bin');
    expect((await challenge(['--out', again])).code).toBe(0);
    const base64Signature = file('again.sig.b64', `${readFileSync(opensslSign(hsmKey, again, 'hsm-again')).toString('base64').replace(/.{64}/g, '$&\n')}\n`);
    const relocked = await lock(['--signature-file', base64Signature, '--challenge-file', again]);
    expect([relocked.code, relocked.stderr]).toEqual([0, '']);
    expect(await states(tenant)).toEqual([['prod', 'Locked'], ['dev', 'Locked']]);
  }, 120_000);
});

describe('key upload --no-activate, key activate', () => {
  const tenant = 'adventure';
  const activate = (thumbprint: string, as = BOB, extra: string[] = []) => stack.cmk(['key', 'activate', '--tenant', tenant, '--thumbprint', thumbprint, '--json', ...extra], { as });

  test('the uploaded key stays Available until activated; the key change rules and R5 apply from the activation', async () => {
    expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Adventure Works', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
    expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'first', '--password-file', password, '--out', join(work, 'adventure-1.pfx')], { as: ALICE })).code).toBe(0);
    expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
    const first = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json().activeKey.thumbprint as string;

    const pfx = file('adventure-2.pfx', makePfx(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'second password'));
    const pw = file('adventure-2-pw.txt', 'second password\n');
    const upload = () => stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'second', '--file', pfx, '--password-file', pw, '--no-activate'], { as: ALICE });
    const uploaded = await upload();
    expect(uploaded.code).toBe(0);
    const thumbprint = /thumbprint ([0-9a-f]{64}): it protects nothing until `cmk key activate/.exec(uploaded.stdout)?.[1];
    expect(thumbprint).toBeDefined();
    const shown = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: SAM })).json();
    expect(shown.activeKey.thumbprint).toBe(first);
    expect(shown.availableKeys).toEqual([{ name: 'second', thumbprint, createdAt: expect.any(String), createdBy: ALICE }]);
    expect((await stack.cmk(['key', 'show', '--tenant', tenant], { as: SAM })).stdout).toMatch(new RegExp(`^Available \\(uploaded \\S+ by ${ALICE}, not active\\): "second", thumbprint ${thumbprint}\\.$`, 'm'));
    expect((await stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'again', '--file', pfx, '--password-file', pw, '--no-activate', '--json'], { as: ALICE })).json().error.code).toBe('ALREADY_EXISTS');

    // Refusals change nothing.
    expect((await activate(thumbprint!, SAM)).json().error.code).toBe('FORBIDDEN');
    expect((await activate('F00D')).json().error.code).toBe('INVALID_ARGUMENT');
    expect((await activate('0'.repeat(64))).json().error.code).toBe('NOT_FOUND');
    expect((await activate(first)).json().error.code).toBe('ALREADY_EXISTS');
    expect((await stack.cmk(['key', 'activate', '--tenant', tenant], { as: BOB })).code).toBe(2);
    expect((await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json().activeKey.thumbprint).toBe(first);

    const activated = await onceTimeAllows('R5 lets the activation in', () => activate(thumbprint!, BOB, ['--wait']));
    expect(activated.code).toBe(0);
    const report = activated.json();
    expect(report.activeKey).toMatchObject({ name: 'second', thumbprint, state: 'Active', activatedBy: BOB });
    expect(report.availableKeys).toEqual([]);
    // R5 and R6 count from the activation (the stack's interval is 1 s, its embargo 3 s).
    expect(Date.parse(report.nextKeyChangeAllowedAt) - Date.parse(report.activeKey.activatedAt)).toBe(1000);
    expect(Date.parse(report.lockAllowedAt) - Date.parse(report.activeKey.activatedAt)).toBe(3000);
    expect((await activate(thumbprint!)).json().error.code).toBe('ALREADY_EXISTS');
    const envs = (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ keyThumbprint: string }>;
    expect(envs.map((e) => e.keyThumbprint)).toEqual([thumbprint]);
    const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ event: string; subject: string; to: string }>;
    // Two changes to the two administrators; the activation also to sam, whose prod it re-protects (issue 19).
    expect(mails.filter((m) => m.event === 'key-changed').map((m) => m.to).sort()).toEqual([ALICE, ALICE, BOB, BOB, SAM]);
  }, 120_000);
});

describe('key history', () => {
  const tenant = 'adventure';

  test('every key the tenant has had in the region, newest first, as JSON and aligned columns; refusals', async () => {
    // After the test above: "first" generated by alice and replaced, "second" uploaded by alice and activated by bob;
    // then a third one uploaded and left Available.
    const pfx = file('adventure-3.pfx', makePfx(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'third password'));
    expect((await stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'third', '--file', pfx, '--password-file', file('adventure-3-pw.txt', 'third password\n'), '--no-activate'], { as: ALICE })).code).toBe(0);
    const history = await stack.cmk(['key', 'history', '--tenant', tenant, '--json'], { as: SAM });
    expect(history.code).toBe(0);
    const keys = history.json().keys as Array<Record<string, unknown>>;
    expect(keys.map((k) => [k.name, k.state, k.setBy])).toEqual([['third', 'Available', ALICE], ['second', 'Active', BOB], ['first', 'Retired', ALICE]]);
    expect(keys[0]).toMatchObject({ activatedAt: null, replacedAt: null, source: 'pfx', inVault: true });
    expect(keys[1]).toMatchObject({ createdBy: ALICE, activatedBy: BOB, replacedAt: null });
    expect(Date.parse(keys[2]!.replacedAt as string)).toBe(Date.parse(keys[1]!.activatedAt as string));
    expect(history.json()).toMatchObject({ tenant, region: 'default' });

    const text = await stack.cmk(['key', 'history', '--tenant', tenant], { as: ALICE });
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`Keys of ${tenant} in region default, newest first:`);
    const [heading, ...rows] = lines.slice(1);
    expect(heading).toMatch(/^NAME +THUMBPRINT +STATE +SET BY +ACTIVATED +REPLACED$/);
    expect(rows.map((r) => r.split(/ +/)[0])).toEqual(['third', 'second', 'first']);
    expectAligned(heading!, rows, ['THUMBPRINT', 'STATE', 'SET BY', 'ACTIVATED', 'REPLACED']);

    expect((await stack.cmk(['key', 'history', '--tenant', tenant, '--json'])).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['key', 'history', '--tenant', tenant, '--json'], { as: 'mallory@evil.example' })).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['key', 'history', '--tenant', 'no-such-tenant', '--json'], { as: ALICE })).json().error.code).toBe('FORBIDDEN');
    expect((await stack.cmk(['key', 'history', '--tenant', tenant, '--region', 'Bad Region', '--json'], { as: ALICE })).json().error.code).toBe('INVALID_ARGUMENT');
    expect((await stack.cmk(['key', 'history', '--tenant', tenant, '--region', 'apac'], { as: ALICE })).stdout).toBe(`${tenant} has had no key of its own in region apac.\n`);
  }, 60_000);
});
