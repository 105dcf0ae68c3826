/**
 * `cmk env create --from-file` end to end (issue 20) on `npm start`'s stack with the real `cmk` bin: 200
 * environments in one operation, with progress and one audit record; then every refusal names its line and leaves
 * the tenant exactly as it was — no environment recorded, no database made.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stackWorkerPid, startStack, type Stack } from '../harness/stack';
import { scratchDir } from './support/scratch';

let stack: Stack;
const { file } = scratchDir('cmk-bulk-e2e-');
const tenant = 'bulkco';
const ALICE = 'alice@bulkco.example';
const SAM = 'sam@bulkco.example';

/** A list of `n` environments `<prefix>-0 …` with a header comment, a blank line and every tenth one with an administrator. */
function list(prefix: string, n: number): string[] {
  const lines = ['# environments of bulkco', ''];
  for (let i = 0; i < n; i++) lines.push(i % 10 === 0 ? `${prefix}-${i},Admin-${i % 3}@bulkco.example` : `${prefix}-${i}`);
  return lines;
}

const envList = async () => (await stack.cmk(['env', 'list', '--tenant', tenant, '--json'], { as: ALICE })).json().environments as Array<{ id: string; systemAdmin: string | null; state: string; protection: string }>;
const databasesOnDisk = () => readdirSync(join(stack.dataDir, 'environments', tenant)).sort();

beforeAll(async () => {
  stack = await startStack();
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Bulk Co', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'prod', '--admin', SAM])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

test('200 environments in one operation: progress on stderr, counts and IDs in the JSON, one audit record', async () => {
  const lines = list('web', 200);
  const created = await stack.cmk(['env', 'create', '--tenant', tenant, '--from-file', file('ok.txt', `${lines.join('\r\n')}\n`), '--json'], { as: ALICE });
  expect(created.stderr).toMatch(/^created 200 \/ 200$/m);
  expect(created.code).toBe(0);
  const doc = created.json();
  expect(doc).toMatchObject({ tenant, region: 'default', requested: 200, created: 200, protection: 'provider', keyThumbprint: expect.stringMatching(/^[0-9a-f]{64}$/) });
  expect(doc.environments).toEqual(Array.from({ length: 200 }, (_, i) => `web-${i}`));

  const envs = await envList();
  expect(envs.map((e) => e.id)).toEqual(['prod', ...doc.environments]);
  expect(envs.find((e) => e.id === 'web-10')).toMatchObject({ state: 'Online', protection: 'provider', systemAdmin: 'admin-1@bulkco.example' });
  expect(envs.find((e) => e.id === 'web-11')?.systemAdmin).toBeNull();
  expect(databasesOnDisk()).toEqual(['prod', ...doc.environments].sort());
  // Each is a working database, and its system administrator acts on it (R12).
  expect((await stack.cmk(['env', 'data', '--tenant', tenant, '--env', 'web-20', '--write', 'hello'], { as: 'admin-2@bulkco.example' })).code).toBe(0);

  // One record for the operation, naming the count: not 200.
  const records = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE })).json().records as Array<{ action: string; outcome: string; details?: Record<string, unknown> }>;
  const bulk = records.filter((r) => r.action === 'env.create.bulk');
  expect(bulk).toHaveLength(1);
  expect(bulk[0]).toMatchObject({ outcome: 'completed', actor: ALICE, region: 'default', details: { operation: doc.operation, environments: 200, created: 200, first: 'web-0', last: 'web-199' } });
  expect(records.filter((r) => r.action === 'env.create')).toHaveLength(1);

  // --region applies to every line; the human form says how many, where and under which key.
  const more = await stack.cmk(['env', 'create', '--tenant', tenant, '--from-file', file('two.txt', 'api-1\napi-2\n'), '--region', 'eu'], { as: ALICE });
  expect(more.code).toBe(0);
  expect(more.stdout).toMatch(/^2 environments created in region eu, Online, protected by the provider key [0-9a-f]{64}\.$/m);
  const eu = (await stack.cmk(['env', 'list', '--tenant', tenant, '--region', 'eu', '--json'], { as: ALICE })).json().environments as Array<{ id: string; region: string }>;
  expect(eu.map((e) => [e.id, e.region])).toEqual([['api-1', 'eu'], ['api-2', 'eu']]);
});

describe('a bad line refuses the whole list, names the line, and creates nothing', () => {
  /** The list of 200 with line `at` (1-based, in the file) replaced by `bad`. */
  const withLine = (name: string, at: number, bad: string) => {
    const lines = list(`${name}`, 200);
    lines[at - 1] = bad;
    return file(`${name}.txt`, `${lines.join('\n')}\n`);
  };

  test.each([
    ['a bad ID', withLine('bad-id', 17, 'Not_An_Id!'), ALICE, /^INVALID_ARGUMENT: line 17: "Not_An_Id!" is not a valid environment ID/],
    ['a duplicate line', withLine('dup', 40, 'dup-1'), ALICE, /^INVALID_ARGUMENT: line 40: environment dup-1 is already on line 4\./],
    ['an existing ID', withLine('exists', 17, 'prod'), ALICE, /^ALREADY_EXISTS: line 17: environment prod already exists\./],
    ['one created by an earlier list', withLine('again', 150, 'web-7'), ALICE, /^ALREADY_EXISTS: line 150: environment web-7 already exists\./],
    ['a bad e-mail address', withLine('mail', 17, 'mail-x,sam at bulkco'), ALICE, /^INVALID_ARGUMENT: line 17: "sam at bulkco" is not a valid e-mail address\./],
    ['a line of three fields', withLine('fields', 9, 'x,a@b.example,c'), ALICE, /^INVALID_ARGUMENT: line 9: expected an environment ID, or ID,ADMIN_EMAIL/],
    ['a system administrator as the caller', withLine('sysadmin', 5, 'sysadmin-x'), SAM, /^FORBIDDEN: sam@bulkco\.example may not create environments for this tenant\./],
    ['an empty list (comments and blank lines only)', file('empty.txt', '# nothing yet\n\n   \n'), ALICE, /^INVALID_ARGUMENT: The list names no environment/],
    ['a file over 1 MiB', file('large.txt', `${'x'.repeat(80)}\n`.repeat(13_200)), ALICE, /^INVALID_ARGUMENT: .*large\.txt is larger than 1024 KiB/],
    ['more than 10,000 environments', file('many.txt', Array.from({ length: 10_001 }, (_, i) => `m-${i}`).join('\n')), ALICE, /^INVALID_ARGUMENT: The list names 10001 environments; at most 10000/],
  ])('%s', async (_name, path, as, refusal) => {
    const before = await envList();
    const onDisk = databasesOnDisk();
    const refused = await stack.cmk(['env', 'create', '--tenant', tenant, '--from-file', path, '--json'], { as });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(refusal);
    expect(refused.json().error.message).toMatch(/Nothing was created\.|may not|no environment|larger than|at most/);
    expect(await envList()).toEqual(before);
    expect(databasesOnDisk()).toEqual(onDisk);
  });

  test('every bad line is counted, the first is named; a refusal is audited', async () => {
    const lines = list('many-bad', 50);
    for (const at of [20, 7, 33]) lines[at - 1] = `Bad${at}`;
    const refused = await stack.cmk(['env', 'create', '--tenant', tenant, '--from-file', file('many-bad.txt', lines.join('\n'))], { as: ALICE });
    expect(refused.stderr).toMatch(/^INVALID_ARGUMENT: line 7: "Bad7" is not a valid environment ID .* 2 more line\(s\) refused: 20, 33\. Nothing was created\.$/m);
    const records = (await stack.cmk(['audit', 'list', '--tenant', tenant, '--limit', '500', '--json'], { as: ALICE })).json().records as Array<{ action: string; outcome: string; code?: string }>;
    expect(records.filter((r) => r.action === 'env.create.bulk' && r.outcome === 'refused').length).toBeGreaterThanOrEqual(1);
  });
});

test('the API route: a body over its limit and a bad operation ID are refused; usage errors exit 2', async () => {
  const path = `/v1/tenants/${tenant}/environments/bulk`;
  const huge = await stack.api('POST', path, { body: { list: 'a\n'.repeat(700_000) }, as: ALICE });
  expect(huge.body.error.code).toBe('INVALID_ARGUMENT');
  const badOperation = await stack.api('POST', path, { body: { list: 'op-1\n', operation: 'Not An Id' }, as: ALICE });
  expect(badOperation.body.error.code).toBe('INVALID_ARGUMENT');
  expect((await stack.api('GET', `${path}/no-such-operation/progress`, { as: ALICE })).body).toEqual({ tenant, operation: 'no-such-operation', known: false });
  expect((await stack.api('GET', `${path}/no-such-operation/progress`, { as: SAM })).body.error.code).toBe('FORBIDDEN');
  expect((await stack.cmk(['env', 'create', '--tenant', tenant, '--env', 'x', '--from-file', file('x.txt', 'x\n')], { as: ALICE })).code).toBe(2);
  expect((await stack.cmk(['env', 'create', '--tenant', tenant], { as: ALICE })).code).toBe(2);
  expect(existsSync(join(stack.dataDir, 'environments', tenant, 'op-1'))).toBe(false);
});

test('a worker SIGKILLed midway: the supervisor starts another, the operation resumes and the CLI answers with every environment created once', async () => {
  const n = 2000;
  const ids = Array.from({ length: n }, (_, i) => `crash-${i}`);
  const before = (await envList()).length;
  const running = stack.cmk(['env', 'create', '--tenant', tenant, '--from-file', file('crash.txt', ids.join('\n')), '--json'], { as: ALICE });
  // Killed once some batches, but not all, are recorded.
  const deadline = Date.now() + 120_000;
  for (;;) {
    const recorded = (await envList()).length - before;
    if (recorded > 0) {
      expect(recorded).toBeLessThan(n);
      break;
    }
    if (Date.now() > deadline) throw new Error('no batch was recorded within 2 minutes');
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(stackWorkerPid(stack.dataDir), 'SIGKILL');
  const done = await running;
  expect(done.stderr).toMatch(/^created 2,000 \/ 2,000$/m);
  expect(done.code).toBe(0);
  expect(done.json()).toMatchObject({ requested: n, created: n });
  expect(stack.output()).toMatch(/worker stopped unexpectedly \(SIGKILL\); starting it again/);
  const after = (await envList()).map((e) => e.id);
  expect(after.slice(before)).toEqual(ids);
  expect(databasesOnDisk().filter((d) => d.startsWith('crash-'))).toHaveLength(n);
  for (const env of ['crash-0', 'crash-1999']) expect(existsSync(join(stack.dataDir, 'environments', tenant, env, 'key-record.json'))).toBe(true);
  // The worker started again has the memory bounds of the first (stack/worker-process.ts; issue 20).
  const again = stackWorkerPid(stack.dataDir);
  expect(readFileSync(`/proc/${again}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['--max-old-space-size=256', '--max-semi-space-size=8']));
  expect(readFileSync(`/proc/${again}/environ`, 'utf8').split('\0')).toContain('MALLOC_ARENA_MAX=2');
}, 300_000);
