import type { ReservationStore } from '../domain/ports';
import type { Logger } from '../logger';

/**
 * Notices when Redis has lost this deployment's state (a restart without persistence, a flush): the marker
 * written after the state was built is gone. Readiness then fails with the reason, the state is rebuilt
 * from PostgreSQL without a restart, and live feeds are told to read their requests again (a request whose
 * status vanished with Redis, and that PostgreSQL never stored, then ends NOT_FOUND).
 */
export class RedisStateGuard {
  private rebuilding: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly reservations: ReservationStore,
    private readonly rebuild: () => Promise<string[]>,
    private readonly onRebuilt: () => void,
    private readonly logger: Logger,
  ) {}

  /** null when the state is intact; else why it is not (and a rebuild is under way). */
  async check(): Promise<string | null> {
    if (this.rebuilding) return 'Redis lost its state: rebuilding from PostgreSQL';
    if (await this.reservations.stateIntact()) return null;
    this.rebuilding = this.rebuildNow().finally(() => (this.rebuilding = null));
    return 'Redis lost its state: rebuilding from PostgreSQL';
  }

  /** Builds the state at start (a first start finds no marker either) and marks it built. */
  async ensure(): Promise<void> {
    if (!(await this.reservations.stateIntact())) await this.rebuildNow();
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.check().catch(() => undefined); // Redis unreachable: readiness says so on its own
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.rebuilding?.catch(() => undefined);
  }

  private async rebuildNow(): Promise<void> {
    this.logger.warn('Redis lost its state (no marker): rebuilding from PostgreSQL');
    try {
      const rebuilt = await this.rebuild();
      await this.reservations.markStateBuilt();
      this.logger.warn({ promotions: rebuilt }, 'Redis state rebuilt from PostgreSQL');
      this.onRebuilt();
    } catch (error) {
      this.logger.error({ err: error }, 'could not rebuild the Redis state; will try again');
    }
  }
}
