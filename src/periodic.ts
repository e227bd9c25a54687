/** A background task run every intervalMs, never two runs at once, until stopped. */
export interface Periodic {
  /** No run starts after this. A run in progress is not waited for (see runEvery). */
  stop(): void;
  readonly stopped: boolean;
}

/**
 * Runs `task` every `intervalMs` after the previous run ended (so a slow run delays the next instead of piling
 * up). The task must not throw: the caller decides how its failures are reported. The timer does not keep
 * the process alive. stop() does not wait for a run in progress, so a task stuck on an unreachable database
 * cannot hold a graceful stop past its budget; use it only for tasks that an interruption leaves nothing
 * half done by (each step one atomic write, repeated by the next run).
 */
export function runEvery(intervalMs: number, task: () => Promise<void>): Periodic {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const schedule = () => {
    timer = setTimeout(() => {
      void task().finally(() => {
        if (!stopped) schedule();
      });
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    get stopped() {
      return stopped;
    },
  };
}
