/**
 * The typed client library as a package (issue 14): another TypeScript API layer installs cmk, imports it by name
 * (package.json `exports`, with `types`), compiles against the published declarations with tsc in strict mode, and
 * drives a running control plane with it — a tenant created through the package is the CLI's tenant.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startStack, type Stack } from '../harness/stack';

const root = resolve(__dirname, '..');
const tsc = require.resolve('typescript/bin/tsc');

/** The outside project: its own package.json and tsconfig, cmk and its peers installed (as links) in its node_modules. */
function outsideProject(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cmk-outside-api-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'outside-api', version: '1.0.0', private: true }));
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        // node16 resolution honours `exports` (the older "node" resolution would read files by path instead).
        module: 'node16',
        moduleResolution: 'node16',
        strict: true,
        noUncheckedIndexedAccess: true,
        types: ['node'],
        // As Temporal's own users must: @temporalio/common's declarations import 'ms', which has no types under node16
        // resolution. Our declarations are still what the code below is checked against (see its @ts-expect-error).
        skipLibCheck: true,
        outDir: 'out',
        rootDir: 'src',
      },
      include: ['src'],
    }),
  );
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(root, join(dir, 'node_modules', 'cmk'), 'dir');
  // What an API layer installs beside cmk: the Temporal client it connects with, and Node's types.
  symlinkSync(join(root, 'node_modules', '@temporalio'), join(dir, 'node_modules', '@temporalio'), 'dir');
  symlinkSync(join(root, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'), 'dir');
  mkdirSync(join(dir, 'src'));
  writeFileSync(
    join(dir, 'src', 'index.ts'),
    `import { Client, Connection } from '@temporalio/client';
import { ControlPlane, OPERATOR, dataConverterFor, isCmkError, loadCodecKeyRing, loadRequestSigner, tenantWorkflowId, type ErrorCode, type TenantCreateCheck, type TenantSnapshot } from 'cmk';

/** Never called: the published types are real types, not any, so each misuse here must be an error, or tsc fails (TS2578). */
export function misuses(plane: ControlPlane, request: TenantCreateCheck): unknown[] {
  // @ts-expect-error a tenant ID is a string
  const wrongId: TenantCreateCheck = { ...request, tenant: 42 };
  // @ts-expect-error the control plane has no such method
  const noSuchMethod: unknown = plane.dropAllTenants();
  return [wrongId, noSuchMethod];
}

async function run(): Promise<void> {
  const [address, secretsDir, tenant] = process.argv.slice(2);
  if (!address || !secretsDir || !tenant) throw new Error('usage: index.js ADDRESS SECRETS_DIR TENANT');
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection, namespace: 'default', dataConverter: dataConverterFor(loadCodecKeyRing(secretsDir)) });
    const plane = new ControlPlane(client, 'cmk', loadRequestSigner(secretsDir));
    const request: TenantCreateCheck = { actor: OPERATOR, tenant, displayName: 'Outside Ltd', homeRegion: 'default', admins: [{ email: 'alice@example.com', role: 'global' }] };
    const created: TenantSnapshot = await plane.createTenant(request);
    let again: ErrorCode | undefined;
    try {
      await plane.createTenant(request);
    } catch (err) {
      if (isCmkError(err)) again = err.code;
    }
    const snapshot = await plane.snapshot(tenant);
    console.log(JSON.stringify({ workflowId: tenantWorkflowId(tenant), created: created.displayName, again, admins: snapshot?.admins.map((a) => a.email) }));
  } finally {
    await connection.close();
  }
}

run().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
`,
  );
  return dir;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', fail);
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

let stack: Stack;
let project: string;

beforeAll(async () => {
  // What `npm run build:client` makes: dist/, the files package.json `exports` names.
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.client.json'], { cwd: root, encoding: 'utf8' });
  expect(build.stdout + build.stderr).toBe('');
  project = outsideProject();
  stack = await startStack();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

test('an outside project compiles against the published types in strict mode', async () => {
  const compiled = await run(process.execPath, [tsc, '-p', '.'], project);
  expect(compiled.stdout + compiled.stderr).toBe('');
  expect(compiled.code).toBe(0);
});

test('a file of the library that `exports` does not name cannot be imported by path', async () => {
  const deep = await run(process.execPath, ['-e', "require('cmk/client/library')"], project);
  expect(deep.code).not.toBe(0);
  expect(deep.stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
});

test('the compiled project drives the control plane through the package: its tenant is the CLI’s tenant', async () => {
  const tenant = `outside-${process.pid % 10000}`;
  const result = await run(process.execPath, [join(project, 'out', 'index.js'), stack.env.TEMPORAL_ADDRESS!, stack.secretsDir, tenant], project, stack.env);
  expect(result.stderr).toBe('');
  expect(JSON.parse(result.stdout)).toEqual({ workflowId: `cmk-tenant/${tenant}`, created: 'Outside Ltd', again: 'ALREADY_EXISTS', admins: ['alice@example.com'] });
  const shown = await stack.cmk(['tenant', 'show', '--tenant', tenant, '--json'], { as: 'alice@example.com' });
  expect(shown.code).toBe(0);
  expect(shown.json()).toMatchObject({ tenant: { id: tenant, name: 'Outside Ltd' } });
});
