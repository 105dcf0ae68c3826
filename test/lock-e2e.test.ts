/**
 * The last resort, end to end as tenant administrators would live it: `npm start`'s stack and the real `cmk` bin.
 * Lock with the .pfx (its private key signs the service's challenge on the caller's machine), the seal checked on the
 * data dir itself, re-activation, the unlock delay (R15), unlock, and backups. Durations are short (R14).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { loadConfig } from '../config';
import { buildParts } from '../worker/parts';
import { startStack, type Stack } from '../harness/stack';
import { tenantVaultKeyName } from '../vault/names';
import { makePfx } from '../harness/keyfiles';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-lock-e2e-');
const ALICE = 'alice@fabrikam.example';
const BOB = 'bob@fabrikam.example';
const SAM = 'sam@fabrikam.example';
const tenant = 'fabrikam';
const CANARY = 'CANARY-LOCKED-ROW-5e1d';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const UNLOCK_DELAY_S = 45;

beforeAll(async () => {
  // R15's delay must outlast everything between the lock and the first unlock that expects UNLOCK_TOO_SOON (about
  // fifteen CLI calls and the seal check: 10–20 s on a busy machine).
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '20s', CMK_UNLOCK_DELAY: `${UNLOCK_DELAY_S}s` });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const password = file('password.txt', 'fabrikam key password 1\n');
const pfxPath = join(work, 'fabrikam.pfx');
const lock = (extra: string[] = [], as = ALICE, pfx = pfxPath, passwordFile = password) =>
  stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Fabrikam Inc.', '--file', pfx, '--password-file', passwordFile, '--json', ...extra], { as });

test('set-up: a tenant with prod on its own key (with a backup) and dev on the provider key', async () => {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Fabrikam Inc.', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'dev'])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'fab-1', '--password-file', password, '--out', pfxPath], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', CANARY], { as: SAM })).code).toBe(0);
  const backup = await stack.cmk(['env', 'backup', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
  expect(backup.code).toBe(0);
  expect(backup.json().backup).toMatchObject({ id: expect.stringMatching(/^b-\d{17}-[0-9a-f]{4}$/), sizeBytes: expect.any(Number) });
  expect(backup.json().backups).toHaveLength(1);
});

test('tenant lock refuses, in order, what must be refused — and changes nothing', async () => {
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const otherPfx = file('other.pfx', makePfx(other, 'other password'));
  const otherPassword = file('other-password.txt', 'other password\n');
  // First, while the 20 s embargo after the key change surely runs: a good request is refused by R6.
  const embargo = await lock();
  expect(embargo.code).toBe(3);
  expect(embargo.stderr).toMatch(/^LOCK_EMBARGO: .*cannot be locked before/);
  expect((await lock([], SAM)).json().error.code).toBe('FORBIDDEN');
  expect((await lock([], 'mallory@fabrikam.example')).json().error.code).toBe('FORBIDDEN');
  expect((await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Fabrikam Inc.', '--file', pfxPath, '--password-file', password])).stderr).toMatch(/^FORBIDDEN/);
  expect((await lock([], ALICE, pfxPath, file('wrong.txt', 'not the password\n'))).json().error.code).toBe('WRONG_PASSWORD');
  expect((await lock([], ALICE, file('junk.pfx', 'junk'))).json().error.code).toBe('INVALID_KEY_FILE');
  expect((await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'fabrikam inc.', '--file', pfxPath, '--password-file', password, '--json'], { as: ALICE })).json().error.code).toBe('TENANT_NAME_MISMATCH');
  expect((await lock([], ALICE, otherPfx, otherPassword)).json().error.code).toBe('KEY_MISMATCH');
  // A lock without --password-file is a usage error (exit 2).
  expect((await stack.cmk(['tenant', 'lock', '--tenant', tenant, '--confirm', 'Fabrikam Inc.', '--file', pfxPath], { as: ALICE })).code).toBe(2);
  const envs = (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'])).json().environments as Array<{ state: string }>;
  expect(envs.map((e) => e.state)).toEqual(['Online', 'Online']);
});

test('tenant lock: every environment Locked, prod sealed; no key the service still holds opens its database or backup', async () => {
  const { lockAllowedAt } = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json();
  await sleep(Math.max(0, Date.parse(lockAllowedAt) + 500 - Date.now()));
  const locked = await lock();
  expect(locked.code).toBe(0);
  const result = locked.json();
  expect(result).toMatchObject({ tenant, sealed: ['prod'], lockedByDecisionOnly: ['dev'], withdrawnKeys: [expect.stringMatching(/^[0-9a-f]{64}$/)] });
  const human = await stack.cmk(['env', 'list', '--tenant', tenant], { as: ALICE });
  expect(human.stdout).toMatch(/^prod +Locked +tenant .*deleted at \S+ unless unlocked$/m);

  for (const env of ['prod', 'dev']) {
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', env, '--json'])).json().error.code).toBe('ENVIRONMENT_LOCKED');
  }
  expect((await stack.cmk(['env', 'restore', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error.code).toBe('ENVIRONMENT_LOCKED');
  expect((await stack.cmk(['env', 'backup', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error.code).toBe('ENVIRONMENT_LOCKED');
  expect((await stack.cmk(['env', 'rekey', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error.code).toBe('ENVIRONMENT_LOCKED');
  const show = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: SAM })).json();
  expect(show.activeKey).toMatchObject({ state: 'Locked', lockedAt: result.lockedAt });
  expect((await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'])).json().tenant.regions).toEqual([{ region: 'default', environments: 2, byState: { Locked: 2 }, onTenantKey: 1, deleted: 0 }]);
  // Read by a person: what to do next, and no "a lock is allowed now" for a region already locked.
  const shown = (await stack.cmk(['key', 'show', '--tenant', tenant], { as: SAM })).stdout;
  expect(shown).toMatch(/^The key was withdrawn from the vault by a lock at \S+: upload it again with `cmk key reactivate`/m);
  expect(shown).not.toMatch(/lock is allowed|Lock allowed/);
  expect((await lock()).json().error.code).toBe('LOCKED_ENVIRONMENTS_EXIST');

  // The seal, checked on the data dir with the service's own secrets: every key the vault still holds — the
  // provider key included — fails to unwrap every DEK of prod's key record; the database and backup hold no plaintext.
  const parts = buildParts(loadConfig({ CMK_DATA_DIR: stack.dataDir, CMK_SECRETS_DIR: stack.secretsDir }));
  const envDir = join(stack.dataDir, 'environments', tenant, 'prod');
  const record = readFileSync(join(envDir, 'key-record.json'), 'utf8');
  const wrapped = [...record.matchAll(/"wrappedDek":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64'));
  expect(wrapped.length).toBeGreaterThan(0);
  const held = (await Promise.all(readdirSync(join(stack.dataDir, 'vault', 'keys')).map((name) => parts.vault.listVersions(name)))).flat();
  expect(held.some((k) => k.purpose === 'provider')).toBe(true);
  for (const key of held) for (const dek of wrapped) await expect(parts.vault.unwrapKey(key, dek)).rejects.toThrow();
  const files = [join(envDir, 'database.sqlite'), ...readdirSync(join(envDir, 'backups')).map((f) => join(envDir, 'backups', f))];
  expect(files.length).toBeGreaterThanOrEqual(2);
  for (const path of files) expect(readFileSync(path).includes(CANARY)).toBe(false);

  const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string; subject: string }>;
  expect(mails.filter((m) => m.event === 'tenant-locked').map((m) => m.to).sort()).toEqual([ALICE, BOB, SAM]);
});

test('key reactivate with the same .pfx, then env unlock after the delay: prod reads its rows, restore works again', async () => {
  expect((await stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().error.code).toBe('KEY_NOT_ACTIVE');
  const other = file('other2.pfx', makePfx(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'other password'));
  const reactivate = (pfx: string, passwordFile: string) => stack.cmk(['key', 'reactivate', '--tenant', tenant, '--file', pfx, '--password-file', passwordFile, '--json'], { as: BOB });
  const versions = () => readdirSync(join(stack.dataDir, 'vault', 'keys', tenantVaultKeyName(tenant, 'default'))).sort();
  const before = versions();
  expect((await reactivate(other, file('other2-password.txt', 'other password\n'))).json().error.code).toBe('KEY_MISMATCH');
  expect(versions()).toEqual(before);
  const reactivated = await reactivate(pfxPath, password);
  expect(reactivated.code).toBe(0);
  expect(reactivated.json().activeKey).toMatchObject({ state: 'Active', reactivatedAt: expect.any(String) });

  const tooSoon = await stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
  expect(tooSoon.json().error.code).toBe('UNLOCK_TOO_SOON');
  const lockedAt = Date.parse((await stack.cmk(['env', 'list', '--tenant', tenant, '--json'])).json().environments[0].lock.lockedAt);
  await sleep(Math.max(0, lockedAt + UNLOCK_DELAY_S * 1000 + 500 - Date.now()));
  const unlocked = await stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
  expect(unlocked.code).toBe(0);
  expect(unlocked.json().environment).toMatchObject({ id: 'prod', state: 'Online', protection: 'tenant' });
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().rows.map((r: { text: string }) => r.text)).toEqual([CANARY]);

  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'after unlock'], { as: SAM })).code).toBe(0);
  const restored = await stack.cmk(['env', 'restore', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
  expect(restored.code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().rows.map((r: { text: string }) => r.text)).toEqual([CANARY]);
  expect((await stack.cmk(['env', 'restore', '--tenant', tenant, '--env', 'prod', '--backup', 'b-19990101000000000-0000', '--json'], { as: SAM })).json().error.code).toBe('NOT_FOUND');

  // dev is still locked, so the key cannot change (R11); its unlock brings it back on the provider key.
  expect((await stack.cmk(['env', 'unlock', '--tenant', tenant, '--env', 'dev', '--json'], { as: ALICE })).json().environment).toMatchObject({ state: 'Online', protection: 'provider' });
  // R4: the re-activation (a key event) to the tenant's administrators; the lock and prod's unlock to sam as well.
  const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string }>;
  const to = (event: string) => mails.filter((m) => m.event === event).map((m) => m.to).sort();
  // sam too: his prod was still locked, and the re-activated key lets it be unlocked (issue 19).
  expect(to('key-reactivated')).toEqual([ALICE, BOB, SAM]);
  expect(to('tenant-locked')).toEqual([ALICE, BOB, SAM]);
  expect(to('environment-unlocked')).toEqual([ALICE, ALICE, BOB, BOB, SAM]);
});
