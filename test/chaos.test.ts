/**
 * The fault suite's short version (`npm run chaos` runs it at 500 environments; docs/RELIABILITY.md "Fault suite"):
 * each scenario on the embedded stack with 20 environments (10 for the deletion), with the same checks — no
 * environment lost, left on a deleted key or with its rows changed; no mail sent twice to a recipient or lost; vault
 * calls at most 1.5 × the minimum; the tenant workflow Running and answering the next request.
 */
import { runScenario, type ChaosOptions, type ChaosResult, type ScenarioId } from '../bench/chaos';

const SMALL: ChaosOptions = { envs: 20, cluster: false, kills: 2, mailOutageMs: 20_000, retentionMs: 60_000, log: (line) => process.stderr.write(`${line}\n`) };

function expectEveryBoundHeld(result: ChaosResult): void {
  expect(result.broken).toEqual([]);
  expect(result).toMatchObject({ lost: 0, onDeletedKey: 0, rowsChanged: 0, duplicateMails: 0, mailsLost: 0, workflow: 'RUNNING' });
  if (result.vaultCalls !== null) expect(result.vaultCalls).toBeLessThanOrEqual(1.5 * result.vaultMinimum!);
}

const cases: Array<[ScenarioId, string, Partial<ChaosOptions>]> = [
  ['a', 'the worker SIGKILLed twice while 20 environments are re-protected', {}],
  ['b', 'the Temporal dev server SIGKILLed and restarted while 20 environments are re-protected', { kills: 1 }],
  ['c', 'the vault answering 429 or 503 to 20 % of calls while 20 environments are re-protected', {}],
  ['d', 'the mail provider down for 20 s while keys and environments change', {}],
  ['e', 'a recipient rejected and the provider key revoked through the deletion warnings and the deletion', { envs: 10 }],
];

test.each(cases)('chaos %s: %s loses nothing', async (scenario, _title, options) => {
  const result = await runScenario(scenario, { ...SMALL, ...options });
  expectEveryBoundHeld(result);
  if (scenario === 'c') expect(result.faults).toMatch(/[1-9]\d* of \d+ vault calls answered 429\/503/);
  if (scenario === 'e') expect(result.mailsRejected).toBeGreaterThan(0);
}, 600_000);
