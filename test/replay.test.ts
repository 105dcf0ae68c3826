/**
 * Determinism guard: recorded tenant workflow histories (test/fixtures/histories, made by
 * test/support/record-histories.ts) must replay against today's workflow code. Change a workflow that may be running
 * with `patched()`, never by editing its command sequence.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { testDataConverter } from './support/codec';

const dir = join(__dirname, 'fixtures', 'histories');
const histories = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ name: f, history: temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>) }));

test('there are recorded histories to replay', () => {
  expect(histories.length).toBeGreaterThan(0);
});

test.each(histories.map((h) => [h.name, h.history] as const))('%s replays against the current workflow code', async (_name, history) => {
  // Histories recorded since the payload codec are encrypted with the test-only key; older ones are plaintext, which
  // only a replay (or CMK_CODEC_ACCEPT_PLAINTEXT) accepts.
  await Worker.runReplayHistory({ workflowsPath: require.resolve('../workflows'), dataConverter: testDataConverter({ acceptPlaintext: true }) }, history);
});

test('an incompatible change fails the replay check', async () => {
  const lifecycle = histories.find((h) => h.name === 'recorded-lifecycle.json')!;
  await expect(Worker.runReplayHistory({ workflowsPath: require.resolve('./fixtures/changed-workflows') }, lifecycle.history)).rejects.toThrow(DeterminismViolationError);
});
