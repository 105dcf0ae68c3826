/**
 * docs/RUNBOOK.md, "A tenant's workflow failed or is stuck", run for real on `npm start`'s stack: a signal whose
 * payload the worker cannot decode (encrypted under a codec key it does not hold, as after a botched key rotation)
 * fails every workflow task of the tenant's workflow; the operator sees it (`temporal workflow describe`, the
 * history's WorkflowTaskFailed), resets the workflow to its last good task without re-applying that signal, and the
 * tenant answers `cmk` again with every environment, key and audit record it had.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { startStack, type Stack } from './support/stack';
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

test("RUNBOOK: a tenant's workflow task fails; reset to the last good task; the tenant answers cmk again", async () => {
  const id = tenantWorkflowId('acme');
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'acme', '--name', 'Acme', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'acme', '--env', 'prod'])).code).toBe(0);
  const generated = await stack.cmk(['key', 'generate', '--tenant', 'acme', '--name', 'k1', '--password-file', file('pw.txt', 'runbook password 1\n'), '--out', join(work, 'k1.pfx'), '--json'], { as: ALICE });
  expect(generated.code).toBe(0);
  const thumbprint = generated.json().activeKey.thumbprint as string;

  // The fault: a payload under codec key 99, which no process of the stack holds.
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  try {
    await connection.workflowService.signalWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId: id },
      signalName: 'poison',
      input: { payloads: [{ metadata: { encoding: Buffer.from('binary/encrypted'), 'encryption-key-id': Buffer.from('99') }, data: Buffer.alloc(64, 1) }] },
    });
  } finally {
    await connection.close();
  }

  // How the operator sees it: the history shows WorkflowTaskFailed; describe shows the task retrying.
  await until('a failed workflow task', async () => (/WORKFLOW_TASK_FAILED|workflowTaskFailed/i.test(await temporalCli(['workflow', 'show', '--workflow-id', id, '--output', 'json'])) ? true : undefined));
  // The failed task is retried (attempt 2, 3, …), with backoff: poll for it.
  const described = await until('a retried workflow task', async () => {
    const text = await temporalCli(['workflow', 'describe', '--workflow-id', id, '--output', 'json']);
    return /"pendingWorkflowTask"[\s\S]*"attempt":\s*([2-9]|\d{2,})/.test(text) ? text : undefined;
  });
  expect(described).toMatch(/WORKFLOW_EXECUTION_STATUS_RUNNING/);

  // The repair, as docs/RUNBOOK.md gives it.
  const reset = await temporalCli(['workflow', 'reset', '--workflow-id', id, '--type', 'LastWorkflowTask', '--reapply-exclude', 'Signal', '--reason', 'runbook: undecodable signal']);
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
  expect((await stack.cmk(['env', 'apply', '--tenant', 'acme', '--env', 'prod'], { as: ALICE })).code).toBe(0);
  const verified = await stack.cmk(['audit', 'verify', '--tenant', 'acme', '--json'], { as: ALICE });
  expect(verified.code).toBe(0);
  const actions = (await stack.cmk(['audit', 'list', '--tenant', 'acme', '--json'], { as: ALICE })).json().records.map((r: { action: string }) => r.action);
  expect(actions).toEqual(expect.arrayContaining(['tenant.create', 'env.create', 'key.generate', 'env.apply']));
}, 240_000);
