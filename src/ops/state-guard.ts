import type { ReservationStore } from '../domain/ports';
import type { Logger } from '../logger';

/**
 * Notices when Redis has lost this deployment's state (a restart without persistence, a flush): the marker
 * written once the state was built from PostgreSQL is gone. Readiness then fails with the reason, the state
 * is rebuilt without a restart (the reconciliation pass, which rebuilds what Redis lacks), and live feeds are
 * told to read their requests again, so one whose status vanished, and that PostgreSQL never stored, ends
 * NOT_FOUND. Checked at every /readyz and every reconciliation pass.
 */
export class RedisStateGuard {
  private rebuilding: Promise<void> | null = null;

  constructor(
    private readonly reservations: ReservationStore,
    private readonly reconcile: () => Promise<void>,
    private readonly onRebuilt: () => void,
    private readonly logger: Logger,
  ) {}

  /** null when the state is intact; else why not (a rebuild is then under way). */
  async check(): Promise<string | null> {
    if (!this.rebuilding) {
      if (await this.reservations.stateIntact()) return null;
      this.rebuilding = this.rebuild().finally(() => (this.rebuilding = null));
    }
    return 'Redis lost its state: rebuilding from PostgreSQL';
  }

  /** One pass: rebuild if the state was lost, else reconcile. Also the first pass at start. */
  async pass(): Promise<void> {
    if ((await this.check()) === null) await this.reconcile();
    await this.rebuilding;
  }

  /** Waits for a rebuild in progress (for stopping). */
  async settle(): Promise<void> {
    await this.rebuilding?.catch(() => undefined);
  }

  private async rebuild(): Promise<void> {
    this.logger.warn('Redis holds no state marker (first start, or Redis lost its data): building it from PostgreSQL');
    try {
      await this.reconcile();
      await this.reservations.markStateBuilt();
      this.onRebuilt();
    } catch (error) {
      this.logger.error({ err: error }, 'could not rebuild the Redis state; trying again at the next pass');
    }
  }
}
