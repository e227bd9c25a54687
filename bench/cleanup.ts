/** Undo steps, run once, newest first, each on its own so that one failure does not skip the others. */
export class Cleanup {
  private readonly steps: { what: string; run: () => Promise<unknown> }[] = [];
  private running: Promise<void> | null = null;

  constructor(private readonly log: (message: string) => void) {}

  add(what: string, run: () => Promise<unknown>): void {
    this.steps.push({ what, run });
  }

  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop()) {
        try {
          await step.run();
        } catch (error) {
          this.log(`cleanup: ${step.what} failed: ${String(error)}`);
        }
      }
    })());
  }
}
