/** Waiting in tests without fixed sleeps: poll with a deadline, or race a promise against one. */

/** A promise that fails naming `what` once `ms` have passed; `clear` when done with it. */
function deadline(what: string, ms: number): { late: Promise<never>; clear: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`Not within ${ms / 1000} s: ${what}`)), ms)));
  return { late, clear: () => clearTimeout(timer) };
}

/**
 * Polls `check` until it returns a value (not undefined), or fails naming `what` at the deadline, also when a check
 * itself does not answer (e.g. a query to a workflow whose task keeps failing).
 */
export async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const { late, clear } = deadline(what, ms);
  try {
    for (;;) {
      const value = await Promise.race([check(), late]);
      if (value !== undefined) return value;
      await Promise.race([new Promise((r) => setTimeout(r, 100)), late]);
    }
  } finally {
    clear();
  }
}

/** The promise's value, or a failure naming `what` if it has not settled within `ms`. */
export async function within<T>(what: string, promise: Promise<T>, ms = 30_000): Promise<T> {
  const { late, clear } = deadline(what, ms);
  try {
    return await Promise.race([promise, late]);
  } finally {
    clear();
  }
}

/** The rules only time lifts (R5, the lock embargo, R15); the e2e stacks set them to a second or two. */
const TIME_RULES = /\b(KEY_CHANGE_TOO_SOON|LOCK_EMBARGO|UNLOCK_TOO_SOON)\b/;

/**
 * Sends a `cmk` request again while a rule only time lifts refuses it (exit 3 with one of those codes), polled with a
 * deadline instead of a fixed sleep that guesses how long the rule's window is; the first other answer is returned.
 */
export function onceTimeAllows<R extends { code: number; stdout: string; stderr: string }>(what: string, send: () => Promise<R>, ms = 30_000): Promise<R> {
  return until(what, async () => {
    const answer = await send();
    return answer.code === 3 && TIME_RULES.test(answer.stderr + answer.stdout) ? undefined : answer;
  }, ms);
}
