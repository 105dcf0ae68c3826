/**
 * docs/RUNBOOK.md, "A tenant's workflow failed, was terminated, or is stuck", run for real on `npm start`'s stack: an
 * operator terminates a tenant's workflow by mistake; the operator sees it closed (`temporal workflow list` by
 * CmkTenant, `cmk env list` answers NOT_FOUND), resets it to its last workflow task, and the tenant answers `cmk` again
 * with every environment, key and audit record it had. (A garbage payload sent through the frontend no longer sticks a
 * workflow task: the codec refuses it, test/codec-garbage-e2e.test.ts.)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { startStack, type Stack } from '../harness/stack';
import { scratchDir } from './support/scratch';
import { temporalCliPath } from '../stack/tools';
import { tenantWorkflowId } from '../workflows/messages';

const run = promisify(execFile);
const ALICE = 'alice@acme.example';
const { dir: work, file } = scratchDir('cmk-runbook-');
let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/** The operator's `temporal` CLI against the stack's frontend. */
async function temporalCli(args: string[]): Promise<string> {
  const { stdout } = await run(temporalCliPath(), [...args, '--address', stack.env.TEMPORAL_ADDRESS!, '--namespace', 'default'], { timeout: 60_000 });
  return stdout;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test("RUNBOOK: a tenant's workflow terminated by mistake; reset to its last workflow task; the tenant answers cmk again", async () => {
  const id = tenantWorkflowId('acme');
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'acme', '--name', 'Acme', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'acme', '--env', 'prod'])).code).toBe(0);
  const generated = await stack.cmk(['key', 'generate', '--tenant', 'acme', '--name', 'k1', '--password-file', file('pw.txt', 'runbook password 1\n'), '--out', join(work, 'k1.pfx'), '--json'], { as: ALICE });
  expect(generated.code).toBe(0);
  const thumbprint = generated.json().activeKey.thumbprint as string;

  // The fault: the operator terminates the tenant's workflow (the wrong ID pasted into `temporal workflow terminate`).
  await temporalCli(['workflow', 'terminate', '--workflow-id', id, '--reason', 'runbook: terminated by mistake']);

  // How the operator sees it: the tenant's workflow is closed; cmk refuses changes with TENANT_UNAVAILABLE.
  const listedClosed = await temporalCli(['workflow', 'list', '--query', 'CmkTenant="acme"', '--output', 'json']);
  expect(listedClosed).toMatch(/WORKFLOW_EXECUTION_STATUS_TERMINATED|"status":\s*"?Terminated/i);
  const gone = await stack.cmk(['env', 'create', '--tenant', 'acme', '--env', 'staging']);
  expect([gone.code, gone.stderr]).toEqual([3, expect.stringMatching(/^TENANT_UNAVAILABLE: Tenant acme cannot take requests: its workflow is terminated\./)]);
  // Reads still answer from the closed workflow's last state.
  expect((await stack.cmk(['env', 'list', '--tenant', 'acme', '--json'])).json().environments.map((e: { id: string }) => e.id)).toEqual(['prod']);
  const again = await stack.cmk(['tenant', 'create', '--tenant', 'acme', '--name', 'Acme', '--admin', `${ALICE}:global`]);
  // `tenant create` never replaces it with an empty tenant (before: it did, and the keys and environments were forgotten).
  expect([again.code, again.stderr]).toEqual([3, expect.stringMatching(/^ALREADY_EXISTS: Tenant acme already exists; its workflow is terminated/)]);

  // The repair, as docs/RUNBOOK.md gives it.
  const reset = await temporalCli(['workflow', 'reset', '--workflow-id', id, '--type', 'LastWorkflowTask', '--reason', 'runbook: terminated by mistake']);
  expect(reset).toMatch(/Resetting workflow cmk-tenant\/acme to event ID \d+/);

  // The tenant answers again, with what it had; it takes new requests; its audit trail verifies.
  const listed = await until('the tenant answering', async () => {
    const r = await stack.cmk(['env', 'list', '--tenant', 'acme', '--json']);
    return r.code === 0 ? r : undefined;
  });
  expect(listed.json().environments.map((e: { id: string }) => e.id)).toEqual(['prod']);
  const key = await stack.cmk(['key', 'show', '--tenant', 'acme', '--json'], { as: ALICE });
  expect(key.json().activeKey.thumbprint).toBe(thumbprint);
  expect((await stack.cmk(['env', 'create', '--tenant', 'acme', '--env', 'dev'])).code).toBe(0);
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', 'acme', '--env', 'prod'], { as: ALICE })).code).toBe(0);
  const verified = await stack.cmk(['audit', 'verify', '--tenant', 'acme', '--json'], { as: ALICE });
  expect(verified.code).toBe(0);
  const actions = (await stack.cmk(['audit', 'list', '--tenant', 'acme', '--json'], { as: ALICE })).json().records.map((r: { action: string }) => r.action);
  expect(actions).toEqual(expect.arrayContaining(['tenant.create', 'env.create', 'key.generate', 'env.apply']));
}, 240_000);
