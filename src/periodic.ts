/** A background task run every intervalMs, never two runs at once, until stopped. */
export interface Periodic {
  /** No run starts after this; resolves once the run in progress (if any) has finished. */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `intervalMs` after the previous run ended (so a slow run delays the next instead of piling
 * up). The task must not throw: the caller decides how its failures are reported. The timer does not keep
 * the process alive.
 */
export function runEvery(intervalMs: number, task: () => Promise<void>): Periodic {
  let stopped = false;
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  const schedule = () => {
    timer = setTimeout(() => {
      running = task().finally(() => {
        running = null;
        if (!stopped) schedule();
      });
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return {
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
