/**
 * The audit trail end to end on `npm start`'s stack (issue 16): no content a caller sends can jam it (a field it
 * cannot keep is redacted where the record is made), reads of tenant data and KEK creation are recorded, and a
 * trail deleted or rolled back behind the stack's back fails `cmk audit verify` after a restart, because the audit
 * workflow (outside the data dir's audit files) knows the head it last saw written.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type CliResult, type Stack } from '../harness/stack';

const ALICE = 'alice@fabrikam.example';
const BOB = 'bob@fabrikam.example';
const SAM = 'sam@fabrikam.example';
const tenant = 'fabrikam';

interface RecordView {
  seq: number;
  action: string;
  outcome: string;
  actor: string;
  tenant: string | null;
  code?: string | null;
  message?: string | null;
  details?: Record<string, unknown>;
}

/** A CLI call that must answer within `ms` (a jammed trail makes `audit list|verify` wait for ever). */
async function answers(run: Promise<CliResult>, ms = 45_000): Promise<CliResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s: the audit trail is jammed`)), ms);
  });
  try {
    return await Promise.race([run, late]);
  } finally {
    clearTimeout(timer);
  }
}

const newDirs = () => {
  const base = mkdtempSync(join(tmpdir(), 'cmk-audit-e2e-'));
  return { base, dataDir: join(base, 'var'), secretsDir: join(base, 'secrets') };
};

async function seed(stack: Stack): Promise<void> {
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Fabrikam', '--admin', `${ALICE}:global`, '--admin', `${BOB}:service`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
}

const list = async (stack: Stack): Promise<RecordView[]> => {
  const r = await answers(stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE }));
  expect(r.code).toBe(0);
  return r.json().records as RecordView[];
};
const verify = (stack: Stack) => answers(stack.cmk(['audit', 'verify', '--tenant', tenant, '--json'], { as: ALICE }));

describe('one stack', () => {
  const dirs = newDirs();
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '2s', CMK_LOCK_EMBARGO: '10m' }, dirs);
    await seed(stack);
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
  });

  test('a refusal quoting "-----BEGIN" cannot jam the trail: audit verify and list answer, the refusal is there, redacted', async () => {
    const refused = await stack.api('POST', `/v1/tenants/${tenant}/admins`, { as: ALICE, body: { change: 'add', email: 'carol@fabrikam.example', role: '-----BEGIN x' } });
    expect([refused.status, refused.body.error.code]).toEqual([400, 'INVALID_ARGUMENT']);
    // The refusal never repeats the caller's text.
    expect(refused.text).not.toMatch(/-----BEGIN/i);
    // A path the caller typed, quoted back by a refusal, reaches the trail redacted rather than refused.
    const badEnv = await stack.api('POST', `/v1/tenants/${tenant}/environments/${encodeURIComponent('-----BEGIN RSA PRIVATE KEY-----')}/apply`, { as: ALICE });
    expect(badEnv.status).toBeGreaterThanOrEqual(400);

    const verified = await verify(stack);
    expect([verified.code, verified.json().ok]).toEqual([0, true]);
    const records = await list(stack);
    const refusal = records.find((r) => r.action === 'tenant.admin' && r.outcome === 'refused');
    expect(refusal).toMatchObject({ actor: ALICE, code: 'INVALID_ARGUMENT' });
    expect(JSON.stringify(records)).not.toMatch(/-----BEGIN/i);
    const apply = records.find((r) => r.action === 'env.apply' && r.outcome === 'refused');
    expect(apply).toBeDefined();
    if (/redacted/.test(apply!.message ?? '')) expect(apply!.details?.redacted).toMatch(/message/);
  }, 120_000);

  test('a key named "k-----BEGIN" and an administrator "-----begin@x.test" are recorded, redacted where needed; the trail keeps answering', async () => {
    const pw = join(dirs.base, 'pw.txt');
    writeFileSync(pw, 'fabrikam key password 1\n');
    const generated = await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k-----BEGIN', '--password-file', pw, '--out', join(dirs.base, 'k.pfx'), '--json'], { as: ALICE });
    expect(generated.code).toBe(0);
    const added = await stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', '-----begin@x.test:service', '--json'], { as: ALICE });
    expect(added.code).toBe(0);
    // The new administrator acts: their own address is the record's actor.
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'test', '--json'], { as: '-----begin@x.test' })).code).toBe(0);

    const verified = await verify(stack);
    expect([verified.code, verified.json().ok]).toEqual([0, true]);
    const records = await list(stack);
    const generate = records.find((r) => r.action === 'key.generate' && r.outcome === 'completed');
    expect(generate?.details).toMatchObject({ name: '[redacted: looks like key material]', redacted: expect.stringMatching(/details\.name/) });
    const admin = records.filter((r) => r.action === 'tenant.admin' && r.outcome === 'completed').at(-1);
    expect(admin?.details).toMatchObject({ change: 'add', redacted: expect.stringMatching(/details\.email/) });
    // An address is kept as the actor (no PEM block fits in it); nowhere else does the marker survive.
    expect(records.find((r) => r.action === 'env.create' && r.outcome === 'completed' && (r as { environment?: string }).environment === 'test')).toMatchObject({ actor: '-----begin@x.test' });
    expect(JSON.stringify(records.map(({ actor: _actor, ...rest }) => rest))).not.toMatch(/-----BEGIN/i);
  }, 120_000);

  test('reads of tenant data by anyone but its own administrators, and KEK creation, are recorded', async () => {
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--write', 'row one'], { as: SAM })).code).toBe(0);
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'])).code).toBe(0);
    expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'prod', '--json'], { as: SAM })).code).toBe(0);
    expect((await stack.cmk(['env', 'list', '--tenant', tenant, '--json'])).code).toBe(0);
    expect((await stack.cmk(['mail', 'list', '--tenant', tenant, '--json'])).code).toBe(0);
    const kek = await stack.cmk(['key', 'kek', '--tenant', tenant, '--out', join(dirs.base, 'kek.pem'), '--json'], { as: BOB });
    expect(kek.code).toBe(0);

    const records = await list(stack);
    const reads = records.filter((r) => r.action === 'env.data.read');
    // The write's answer holds the rows too: a read.
    expect(reads.map((r) => r.actor)).toEqual([SAM, 'operator', SAM]);
    expect(reads[1]).toMatchObject({ outcome: 'completed', tenant, environment: 'prod', details: { rows: 1 } });
    expect(records.filter((r) => r.actor === 'operator' && ['env.list', 'mail.list'].includes(r.action)).map((r) => r.action)).toEqual(['env.list', 'mail.list']);
    expect(records.find((r) => r.action === 'key.kek')).toMatchObject({ actor: BOB, outcome: 'completed', thumbprints: [kek.json().thumbprint] });
  }, 120_000);

  test('R6: while a key change can be rolled back, `tenant admin remove` of another administrator is refused (exit 3, ROLLBACK_WINDOW_OPEN)', async () => {
    const pw = join(dirs.base, 'pw.txt');
    // The first key (above) has nothing to roll back to; a second change opens the window (CMK_LOCK_EMBARGO: 10m).
    let second: CliResult | undefined;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      second = await stack.cmk(['key', 'generate', '--tenant', tenant, '--name', 'k2', '--password-file', pw, '--out', join(dirs.base, 'k2.pfx'), '--json'], { as: ALICE });
      if (second.code === 0 || second.json().error?.code !== 'KEY_CHANGE_TOO_SOON') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(second?.code).toBe(0);
    const removed = await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', BOB, '--json'], { as: ALICE });
    expect([removed.code, removed.json().error.code]).toEqual([3, 'ROLLBACK_WINDOW_OPEN']);
    expect(removed.stderr).toMatch(/^ROLLBACK_WINDOW_OPEN: .*until \d{4}-/m);
    const show = await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'], { as: ALICE });
    expect((show.json().tenant.admins as Array<{ email: string }>).map((a) => a.email)).toContain(BOB);
  }, 120_000);

  test('a trail restored from an older copy (stack stopped) fails audit verify after the restart: records missing', async () => {
    const audit = join(dirs.dataDir, 'audit');
    const older = join(dirs.base, 'older-audit');
    cpSync(audit, older, { recursive: true });
    const seqBefore = (await list(stack)).at(-1)!.seq;
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'stage'], { as: ALICE })).code).toBe(0);
    expect((await list(stack)).at(-1)!.seq).toBeGreaterThan(seqBefore);
    const ports = { CMK_API_PORT: stack.env.CMK_API_PORT!, TEMPORAL_ADDRESS: stack.env.TEMPORAL_ADDRESS! };
    await stack.stop();
    rmSync(audit, { recursive: true, force: true });
    cpSync(older, audit, { recursive: true });
    stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '2s', CMK_LOCK_EMBARGO: '10m', ...ports }, dirs);

    const verified = await verify(stack);
    expect(verified.code).toBe(1);
    expect(JSON.stringify(verified.json().problems)).toMatch(/deleted or rolled back/);
    const human = await answers(stack.cmk(['audit', 'verify', '--tenant', tenant], { as: ALICE }));
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/rolled back/);
    // Later records are still written, and the alarm stays.
    expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'later'], { as: ALICE })).code).toBe(0);
    expect((await verify(stack)).code).toBe(1);
  }, 240_000);
});

test('a trail deleted (stack stopped) fails audit verify after the restart: records 1..N missing', async () => {
  const dirs = newDirs();
  let stack = await startStack({}, dirs);
  try {
    await seed(stack);
    expect((await verify(stack)).code).toBe(0);
    const ports = { CMK_API_PORT: stack.env.CMK_API_PORT!, TEMPORAL_ADDRESS: stack.env.TEMPORAL_ADDRESS! };
    await stack.stop();
    rmSync(join(dirs.dataDir, 'audit', 'trail.jsonl'));
    rmSync(join(dirs.dataDir, 'audit', 'head.json'));
    stack = await startStack(ports, dirs);
    const verified = await verify(stack);
    expect(verified.code).toBe(1);
    expect(JSON.stringify(verified.json().problems)).toMatch(/deleted or rolled back.*records 1\.\.\d+/);
  } finally {
    await stack.stop();
  }
}, 240_000);
