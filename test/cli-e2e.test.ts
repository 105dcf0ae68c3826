/**
 * End to end, as a tenant administrator would: `npm start`'s stack (Temporal dev server, worker, API) and the real
 * `cmk` bin. Durations are short here (R14) so that R5 can be passed for real.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { expectAligned } from './support/columns';
import { startStack, type Stack } from '../harness/stack';
import { tenantVaultKeyName } from '../vault/names';
import { makePfx, makeByok } from '../harness/keyfiles';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { dir: work, file } = scratchDir('cmk-e2e-');
const ALICE = 'alice@contoso.example';
const SAM = 'sam@contoso.example';

/** Sleeps until R5 allows the next key change, as `key show` reports it. */
async function untilKeyChangeAllowed(tenant = 'contoso'): Promise<void> {
  const at = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: ALICE })).json().nextKeyChangeAllowedAt as string;
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(at) - Date.now()) + 500));
}

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '20s', CMK_LOCK_EMBARGO: '30s' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

test('status answers once the API, Temporal and a worker are up', async () => {
  expect(stack.readyLine).toMatch(/^cmk ready: API http:\/\/127\.0\.0\.1:\d+ .* UI http:\/\/127\.0\.0\.1:\d+/);
  const status = await stack.cmk(['status', '--json']);
  expect(status.code).toBe(0);
  expect(status.json()).toMatchObject({ ready: true, api: 'ok', temporal: { ok: true } });
  expect(status.json().worker.pollers).toBeGreaterThan(0);
});

test('usage errors exit 2; refusals exit 3 with CODE: sentence and one JSON document', async () => {
  expect((await stack.cmk(['tenant', 'frobnicate'])).code).toBe(2);
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'x', '--name', 'X', '--admin', 'a@b.example', '--bogus'])).code).toBe(2);
  const missing = await stack.cmk(['tenant', 'create', '--tenant', 'x', '--json']);
  expect(missing.code).toBe(2);
  expect(() => JSON.parse(missing.stdout)).not.toThrow();

  const bad = await stack.cmk(['tenant', 'create', '--tenant', 'Not_An_Id', '--name', 'X', '--admin', `${ALICE}:global`, '--json']);
  expect(bad.code).toBe(3);
  expect(bad.stderr).toMatch(/^INVALID_ARGUMENT: /);
  expect(bad.json()).toEqual({ error: { code: 'INVALID_ARGUMENT', message: expect.any(String) } });
  expect((await stack.cmk(['env', 'list', '--tenant', 'not-a-tenant', '--json'])).json().error.code).toBe('NOT_FOUND');
});

describe('one tenant, from creation to its own key', () => {
  const tenant = 'contoso';
  const password = file('password.txt', 'correct horse battery staple\r\nsecond line ignored\n');
  const pfxPath = join(work, 'contoso.pfx');

  test('tenant create, never altering an existing tenant', async () => {
    const created = await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Contoso Ltd', '--region', 'emea', '--admin', `${ALICE}:global`, '--admin', 'bob@contoso.example:service', '--json']);
    expect(created.code).toBe(0);
    expect(created.json().tenant).toMatchObject({ id: tenant, name: 'Contoso Ltd', homeRegion: 'emea' });
    const again = await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Evil', '--admin', 'eve@evil.example:global']);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/^ALREADY_EXISTS: /);
    expect((await stack.cmk(['tenant', 'create', '--tenant', 'other', '--name', 'X', '--admin', `${ALICE}:global`], { as: ALICE })).stderr).toMatch(/^FORBIDDEN/);
  });

  test('env create, env list and env data on an encrypted database under the provider key', async () => {
    const created = await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM, '--json']);
    expect(created.code).toBe(0);
    expect(created.json().environment).toMatchObject({ id: 'prod', region: 'emea', state: 'Online', protection: 'provider' });
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod'])).stderr).toMatch(/^ALREADY_EXISTS/);
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'Prod!'])).stderr).toMatch(/^INVALID_ARGUMENT/);

    const list = await stack.cmk(['env', 'list', '--tenant', tenant, '--json']);
    const [env] = list.json().environments;
    expect(env).toMatchObject({ id: 'prod', region: 'emea', state: 'Online', protection: 'provider', keyThumbprint: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(env.coverage.covered).toEqual(['database']);
    expect(env.coverage.notCovered).toEqual(expect.arrayContaining(['search-index', 'mobile-offline-cache', 'activity-log']));
    // Read by a person: a title, then aligned columns (each heading starts where its values do).
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'staging-eu-2'])).code).toBe(0);
    const [title, heading, ...rows] = (await stack.cmk(['env', 'list', '--tenant', tenant])).stdout.split('\n');
    expect(title).toBe(`Environments of ${tenant} in region emea:`);
    expect(heading).toMatch(/^ENVIRONMENT +STATE +PROTECTION +KEY THUMBPRINT +SYSTEM ADMIN$/);
    expect(rows.slice(0, 2)).toEqual([expect.stringMatching(/^prod +Online +provider +[0-9a-f]{64} +sam@contoso\.example$/), expect.stringMatching(/^staging-eu-2 +Online +provider +[0-9a-f]{64} +-$/)]);
    expectAligned(heading!, rows.slice(0, 2), ['STATE', 'PROTECTION', 'KEY THUMBPRINT', 'SYSTEM ADMIN']);

    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'CANARY-ROW-7f3a'], { as: SAM })).code).toBe(0);
    const data = await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json']);
    expect(data.json().rows).toEqual([{ id: 1, text: 'CANARY-ROW-7f3a', createdAt: expect.any(String) }]);
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod'], { as: 'mallory@contoso.example' })).stderr).toMatch(/^FORBIDDEN/);
  });

  test('key generate: weak password refused; then the .pfx goes to --out only and the key is active', async () => {
    const weak = await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', file('weak.txt', 'short\n'), '--out', pfxPath], { as: ALICE });
    expect(weak.code).toBe(3);
    expect(weak.stderr).toMatch(/^WEAK_PASSWORD/);
    expect(existsSync(pfxPath)).toBe(false);
    expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', password, '--out', pfxPath], { as: SAM })).stderr).toMatch(/^FORBIDDEN/);
    expect((await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', password, '--out', pfxPath])).stderr).toMatch(/^FORBIDDEN/);

    const generated = await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k1', '--password-file', password, '--out', pfxPath, '--json'], { as: ALICE });
    expect(generated.code).toBe(0);
    expect(statSync(pfxPath).mode & 0o777).toBe(0o600);
    const report = generated.json();
    expect(report).toMatchObject({ tenant, region: 'emea', activeKey: { name: 'k1', state: 'Active', activatedBy: ALICE } });
    expect(Date.parse(report.nextKeyChangeAllowedAt) - Date.parse(report.activeKey.activatedAt)).toBe(20000);
    expect(Date.parse(report.lockAllowedAt) - Date.parse(report.activeKey.activatedAt)).toBe(30000);

    const show = await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: SAM });
    expect(Object.keys(show.json())).toEqual(expect.arrayContaining(['tenant', 'region', 'activeKey', 'nextKeyChangeAllowedAt', 'lockAllowedAt']));
    expect(show.json().activeKey.thumbprint).toBe(report.activeKey.thumbprint);

    // The .pfx opens with the password and holds the key whose thumbprint the service reports.
    if (hasOpenssl()) {
      const pem = execFileSync('openssl', ['pkcs12', '-in', pfxPath, '-nokeys', '-passin', 'pass:correct horse battery staple']).toString();
      const spki = execFileSync('openssl', ['x509', '-pubkey', '-noout'], { input: pem });
      const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: spki });
      expect(require('node:crypto').createHash('sha256').update(der).digest('hex')).toBe(report.activeKey.thumbprint);
    }
  });

  test('key upload (.pfx): R5 refuses inside the interval, hostile files are refused, then the upload is accepted', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const own = file('own.pfx', makePfx(privateKey, 'uploaded-pass'));
    const ownPassword = file('own-pass.txt', 'uploaded-pass\n');
    const upload = (path: string, extra: string[] = []) => stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'k2', '--file', path, ...extra, '--json'], { as: ALICE });

    // First, at once after the key generated above: R5 (20 s here; a slow machine must not outrun it).
    expect((await upload(own, ['--password-file', ownPassword])).json().error.code).toBe('KEY_CHANGE_TOO_SOON');
    const shown = async () => (await stack.cmk(['key', 'show', '--tenant', tenant], { as: ALICE })).stdout;
    expect(await shown()).toMatch(/^Next key change allowed at \S+\.$/m);
    expect((await upload(own)).json().error.code).toBe('PASSWORD_REQUIRED');
    expect((await upload(own, ['--password-file', password])).json().error.code).toBe('WRONG_PASSWORD');
    expect((await upload(file('random.pfx', Buffer.from('this is not a pfx at all')), ['--password-file', ownPassword])).json().error.code).toBe('INVALID_KEY_FILE');
    expect((await upload(file('big.pfx', Buffer.alloc(65 * 1024, 1)), ['--password-file', ownPassword])).json().error.code).toBe('INVALID_KEY_FILE');
    expect((await upload(file('key.pem', 'x'), ['--password-file', ownPassword])).json().error.code).toBe('INVALID_KEY_FILE');

    await untilKeyChangeAllowed();
    // Once the moment has passed, a person reads "now" rather than a timestamp to compare with the clock.
    expect(await shown()).toMatch(/^A key change is allowed now \(R5: since \S+\)\.$/m);
    const accepted = await upload(own, ['--password-file', ownPassword, '--wait']);
    expect(accepted.code).toBe(0);
    expect(accepted.json().activeKey).toMatchObject({ name: 'k2', state: 'Active' });
  });

  test('key kek and a .byok wrapped with it; a refused .byok leaves nothing staged in the vault', async () => {
    const kekPath = join(work, 'kek.pem');
    const kek = await stack.cmk(['key', 'kek', '--tenant', tenant, '--out', kekPath, '--json'], { as: ALICE });
    expect(kek.code).toBe(0);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const byok = file('hsm.byok', makeByok(readFileSync(kekPath, 'utf8'), kek.json().kid, privateKey));
    const versions = () => readdirSync(join(stack.dataDir, 'vault', 'keys', tenantVaultKeyName(tenant, 'emea'))).sort();
    const before = versions();
    // The .byok is unwrapped and staged inside the vault before the workflow answers R5: the refusal purges it.
    const tooSoon = await stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'hsm-key', '--file', byok, '--json'], { as: ALICE });
    expect(tooSoon.json().error.code).toBe('KEY_CHANGE_TOO_SOON');
    expect(versions()).toEqual(before);

    await untilKeyChangeAllowed();
    const uploaded = await stack.cmk(['key', 'upload', '--tenant', tenant, '--name', 'hsm-key', '--file', byok, '--json'], { as: ALICE });
    expect(uploaded.code).toBe(0);
    expect(uploaded.json().activeKey).toMatchObject({ name: 'hsm-key', state: 'Active' });
  });

  test('env apply, rekey and revert through the CLI keep the rows', async () => {
    const applied = await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
    expect(applied.code).toBe(0);
    const key = (await stack.cmk(['key', 'show', '--tenant', tenant, '--json'], { as: SAM })).json().activeKey;
    expect(applied.json().environment).toMatchObject({ id: 'prod', state: 'Online', protection: 'tenant', keyThumbprint: key.thumbprint });
    expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', tenant, '--env', 'prod'], { as: SAM })).stderr).toMatch(/^ALREADY_EXISTS/);
    expect((await stack.cmk(['env', 'rekey', '--tenant', tenant, '--env', 'prod'], { as: SAM })).code).toBe(0);
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).json().rows.map((r: { text: string }) => r.text)).toEqual(['CANARY-ROW-7f3a']);
    const reverted = await stack.cmk(['env', 'revert', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM });
    expect(reverted.json().environment).toMatchObject({ protection: 'provider' });
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'])).json().rows).toHaveLength(1);
    const events = ((await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string }>).filter((m) => m.to === SAM).map((m) => m.event);
    expect(events).toEqual(['environment-applied', 'environment-rekeyed', 'environment-reverted']);
  });

  test('mail list: one key-changed mail per administrator per change', async () => {
    const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().mails as Array<{ to: string; event: string; subject: string; sentAt: string }>;
    const keyChanged = mails.filter((m) => m.event === 'key-changed');
    expect(keyChanged).toHaveLength(6);
    expect(keyChanged.filter((m) => m.to === ALICE)).toHaveLength(3);
    expect(keyChanged[0]!.subject).toMatch(/Encryption key changed for Contoso Ltd/);
    // Read by a person: one aligned row per mail under a heading.
    const [heading, ...rows] = (await stack.cmk(['mail', 'list', '--tenant', tenant], { as: ALICE })).stdout.trimEnd().split('\n');
    expect(heading).toMatch(/^SENT AT +TO +EVENT +DELIVERY +SUBJECT$/);
    expect(rows).toHaveLength(mails.length);
    expectAligned(heading!, rows, ['TO', 'EVENT', 'DELIVERY', 'SUBJECT']);
    expect(rows).toContainEqual(expect.stringMatching(new RegExp(`^\\S+ +${ALICE.replace('.', '\\.')} +key-changed +delivered +Encryption key changed for Contoso Ltd`)));
    expect((await stack.cmk(['mail', 'list', '--tenant', tenant], { as: SAM })).stderr).toMatch(/^FORBIDDEN/);
  });

  test('administrators change by tenant admin add|remove, each an R4 event', async () => {
    const added = await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'carol@contoso.example:service', '--json'], { as: ALICE });
    expect(added.code).toBe(0);
    expect(added.json().admins).toContainEqual({ email: 'carol@contoso.example', role: 'service' });
    expect((await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'carol@contoso.example:service'], { as: ALICE })).stderr).toMatch(/^ALREADY_EXISTS/);
    expect((await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', 'nobody@contoso.example'], { as: ALICE })).stderr).toMatch(/^NOT_FOUND/);
    expect((await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'x@contoso.example'])).stderr).toMatch(/^FORBIDDEN/);
    // R6: while the last key change can still be rolled back (CMK_LOCK_EMBARGO 30s), no administrator is removed.
    let removed = await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', 'carol@contoso.example', '--json'], { as: ALICE });
    for (const deadline = Date.now() + 60_000; removed.code === 3 && removed.json().error.code === 'ROLLBACK_WINDOW_OPEN' && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 1000));
      removed = await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', 'carol@contoso.example', '--json'], { as: ALICE });
    }
    expect(removed.code).toBe(0);
    expect(removed.json().admins).not.toContainEqual(expect.objectContaining({ email: 'carol@contoso.example' }));
    const mails = (await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).json().mails as Array<{ to: string; event: string }>;
    expect(mails.filter((m) => m.event === 'admin-changed' && m.to === 'carol@contoso.example').length).toBeGreaterThanOrEqual(2);
  });

  test('tenant show (an extension): administrators and environments per region, for the tenant administrators and the operator only', async () => {
    const shown = await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'], { as: ALICE });
    expect(shown.code).toBe(0);
    const envs = (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ protection: string }>;
    expect(shown.json()).toEqual({
      tenant: {
        id: tenant,
        name: 'Contoso Ltd',
        homeRegion: 'emea',
        createdAt: expect.any(String),
        admins: [{ email: ALICE, role: 'global' }, { email: 'bob@contoso.example', role: 'service' }],
        regions: [{ region: 'emea', environments: envs.length, byState: { Online: envs.length }, onTenantKey: envs.filter((e) => e.protection === 'tenant').length, deleted: 0 }],
        // sam's first apply carried --accept-risk (issue 19).
        riskAcceptance: { accepted: true, by: SAM, at: expect.any(String) },
        // The two-administrator lock (issue 19): off by default, nothing waiting.
        lockApproval: 1,
        pendingLock: null,
      },
    });
    // No key in it: the operator may see it (key show is refused to the operator).
    expect((await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'])).json()).toEqual(shown.json());
    const [title, adminsHeading, ...rest] = (await stack.cmk(['tenant', 'show', '--tenant', tenant], { as: ALICE })).stdout.trimEnd().split('\n');
    expect([title, adminsHeading, rest[0], rest[1], rest[2], rest[3]]).toEqual([
      expect.stringMatching(/^Tenant contoso \("Contoso Ltd"\), home region emea, created \S+\.$/),
      'Administrators:',
      `  ${ALICE} (global)`,
      '  bob@contoso.example (service)',
      `Risk of managing its own key: accepted by ${SAM} at ${shown.json().tenant.riskAcceptance.at}.`,
      'Lock: one global or service administrator locks (`cmk tenant policy`).',
    ]);
    const [heading, row] = rest.slice(4);
    expect(heading).toMatch(/^REGION +ENVIRONMENTS +ONLINE +LOCKED +IN PROGRESS +ON THE TENANT KEY +DELETED$/);
    expectAligned(heading!, [row!], ['ENVIRONMENTS', 'ONLINE', 'LOCKED', 'IN PROGRESS', 'ON THE TENANT KEY', 'DELETED']);
    // A system administrator sees only their own environments (env list), so not the tenant's counts.
    const sam = await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'], { as: SAM });
    expect([sam.code, sam.json().error.code]).toEqual([3, 'FORBIDDEN']);
    expect((await stack.cmk(['tenant', 'show', '--tenant', tenant], { as: 'mallory@contoso.example' })).stderr).toBe('FORBIDDEN: mallory@contoso.example may not see this tenant.\n');
    expect((await stack.cmk(['tenant', 'show', '--tenant', 'no-such-tenant', '--json'])).json().error.code).toBe('NOT_FOUND');
    expect((await stack.cmk(['tenant', 'show'])).code).toBe(2);
  });
});

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version']);
    return true;
  } catch {
    return false;
  }
}
