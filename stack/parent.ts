/** A child of `npm start` ends when the stack does, even if the stack itself was killed with SIGKILL. */
export function stopWhenStackEnds(stop: () => void): void {
  const pid = Number(process.env.CMK_STACK_PID);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const timer = setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch {
      clearInterval(timer);
      stop();
    }
  }, 1000);
  timer.unref();
}
