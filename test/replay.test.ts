/**
 * Determinism guard: recorded tenant workflow histories (test/fixtures/histories, made by
 * test/support/record-histories.ts) must replay against today's workflow code. Change a workflow that may be running
 * with `patched()`, never by editing its command sequence. `NAME@BUILD.json` is scenario NAME recorded by an older
 * build (`@signed-requests`: main at 7b59e42, the first with signed requests and the requestTrust local activity).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { testDataConverter } from './support/codec';
import { AUDIT_WORKFLOW_ID, tenantWorkflowId } from '../workflows/messages';

const dir = join(__dirname, 'fixtures', 'histories');
const histories = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ name: f, history: temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>) }));

test('there are recorded histories to replay', () => {
  expect(histories.length).toBeGreaterThan(0);
});

/** The workflow each history belongs to: signed starts are bound to their workflow ID, so a replay must use it. */
function workflowIdOf(file: string): string {
  const scenario = file.replace(/\.json$/, '').replace(/@.*$/, '');
  return scenario === 'recorded-audit-trail' ? AUDIT_WORKFLOW_ID : tenantWorkflowId(scenario);
}

test.each(histories.map((h) => [h.name, h.history] as const))('%s replays against the current workflow code', async (name, history) => {
  // Histories recorded since the payload codec are encrypted with the test-only key; older ones are plaintext, which
  // only a replay (or CMK_CODEC_ACCEPT_PLAINTEXT) accepts.
  await Worker.runReplayHistory({ workflowsPath: require.resolve('../workflows'), dataConverter: testDataConverter({ acceptPlaintext: true }) }, history, workflowIdOf(name));
});

test('an incompatible change fails the replay check', async () => {
  const lifecycle = histories.find((h) => h.name === 'recorded-lifecycle.json')!;
  await expect(Worker.runReplayHistory({ workflowsPath: require.resolve('./fixtures/changed-workflows') }, lifecycle.history)).rejects.toThrow(DeterminismViolationError);
});
