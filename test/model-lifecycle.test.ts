/**
 * Issue 14: random sequences of requests by random administrators against the real tenant workflow on the
 * time-skipping server, each answer (accepted, or the refusal's code) and the state after it compared with the
 * reference model of DESIGN.md §3–§4 (harness/lifecycle-model.ts). A failure shrinks to its shortest sequence and
 * prints it, one command per line. `npm run fuzz -- --model` runs the same property much longer.
 */
import fc from 'fast-check';
import { lifecycleProperty, startLifecycleServer, type LifecycleServer } from '../harness/lifecycle';

/**
 * The same sequences on every CI run (CMK_PROPERTY_SEED to explore others); `npm run fuzz -- --model` draws fresh ones.
 * Seed 7's 28 sequences (612 commands) include a rollback, ROLLBACK_WINDOW_OPEN, five locks and the way back from one
 * (re-activation, unlock), which most seeds of this budget do not reach.
 */
const SEED = Number(process.env.CMK_PROPERTY_SEED ?? 7);
const RUNS = 28;
const MAX_COMMANDS = 40;

let server: LifecycleServer | undefined;

beforeAll(async () => {
  server = await startLifecycleServer();
}, 120_000);

afterAll(async () => {
  await server?.close();
});

test('the tenant workflow answers every sequence of requests as the model of DESIGN.md §3–§4 does', async () => {
  let steps = 0;
  const answers = new Map<string, number>();
  await fc.assert(
    lifecycleProperty(server!, MAX_COMMANDS, { steps: (n) => (steps += n), outcome: (what) => answers.set(what, (answers.get(what) ?? 0) + 1) }),
    { seed: SEED, numRuns: RUNS, endOnFailure: false },
  );
  if (process.env.CMK_MODEL_VERBOSE) process.stdout.write(`${steps} steps\n${[...answers].sort().map(([k, v]) => `${k} ${v}`).join('\n')}\n`);
  // A budget that ran no request would prove nothing.
  expect(steps).toBeGreaterThan(RUNS);
}, 600_000);
