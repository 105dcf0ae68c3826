/** What the console's browser tests share: acting until a refusal that only time lifts is gone. */
import type { Page } from 'playwright-core';
import { until } from './deadline';

/** Refusals that only time lifts: R5's interval, the lock embargo (R6), R15's unlock delay. */
const TIME_REFUSALS = /KEY_CHANGE_TOO_SOON|LOCK_EMBARGO|UNLOCK_TOO_SOON/;

/**
 * Runs `act` (which clicks the control) until what it shows in `scope` is the `.done` line matching `done`; a refusal
 * that only time lifts is tried again, any other fails the test. The previous refusal goes when the new attempt starts,
 * so only what this attempt brings is read.
 */
export async function actWhenTimeAllows(scope: ReturnType<Page['locator']>, act: () => Promise<void>, done: RegExp): Promise<void> {
  await until('time allows it', async () => {
    const earlier = (await scope.getByRole('alert').count()) > 0;
    await act();
    // The page clears the refusal when the attempt starts; a refusal answered at once may be drawn in the same
    // render as the clearing, in the same element (CI saw it 62 times in a row), so the wait is bounded: what shows
    // after it is this attempt's answer either way.
    if (earlier) await scope.getByRole('alert').waitFor({ state: 'detached', timeout: 5_000 }).catch(() => undefined);
    const shown = await Promise.race([scope.locator('.done').filter({ hasText: done }).waitFor().then(() => 'done'), scope.getByRole('alert').waitFor().then(() => 'refused')]);
    if (shown === 'done') return true;
    const text = await scope.getByRole('alert').innerText();
    if (!TIME_REFUSALS.test(text)) throw new Error(`refused: ${text}`);
    return undefined;
  }, 60_000);
}
