import { randomBytes } from 'node:crypto';
import type { RedisStreamQueue } from '../redis/stream-queue';

/** Names held by consumers of this very process (tests run several): never taken from each other. */
const heldHere = new Set<string>();

/** How many names one host may use: `<host>-0` … `<host>-63`. */
const SLOTS_PER_HOST = 64;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A consumer's name in the group, held by a lease it renews every heartbeat (consumer-lease.lua).
 *
 * The name is stable across restarts: without CONSUMER_NAME it is the first free `<host>-<n>`, and a lease
 * left by an earlier incarnation on the same host whose process is gone (or whose pid is now ours, as in a
 * restarted container) is taken over at once, so a restarted process finishes its own pending entries
 * immediately instead of waiting for the lease to expire. A name held by a live process is never taken.
 */
export class ConsumerIdentity {
  private current: string | null = null;
  private readonly owner: string;

  constructor(
    private readonly queue: RedisStreamQueue,
    private readonly options: { host: string; leaseMs: number; fixedName?: string },
  ) {
    this.owner = `${options.host} ${process.pid} ${randomBytes(6).toString('hex')}`;
  }

  get name(): string {
    if (!this.current) throw new Error('consumer identity not acquired');
    return this.current;
  }

  /** Takes a name; null when every candidate is held by a live consumer (try again later). */
  async acquire(): Promise<string | null> {
    const candidates = this.options.fixedName
      ? [this.options.fixedName]
      : Array.from({ length: SLOTS_PER_HOST }, (_, i) => `${this.options.host}-${i}`);
    for (const name of candidates) {
      if (heldHere.has(name) && name !== this.current) continue;
      const holder = await this.queue.leaseOwner(name);
      const replaceable = holder && this.isDeadIncarnation(holder) ? holder : '';
      if ((!holder || holder === this.owner || replaceable) && (await this.queue.lease(name, this.owner, this.options.leaseMs, replaceable))) {
        if (this.current && this.current !== name) heldHere.delete(this.current);
        this.current = name;
        heldHere.add(name);
        return name;
      }
    }
    return null;
  }

  /** Renews the lease; false when it was lost (expired while this process was frozen, or taken). */
  async renew(): Promise<boolean> {
    if (!this.current) return false;
    return this.queue.lease(this.current, this.owner, this.options.leaseMs);
  }

  async release(): Promise<void> {
    if (!this.current) return;
    heldHere.delete(this.current);
    await this.queue.releaseLease(this.current, this.owner);
    this.current = null;
  }

  private isDeadIncarnation(holder: string): boolean {
    const [host, pidText, instance] = holder.split(' ');
    const pid = Number(pidText);
    if (host !== this.options.host || !Number.isInteger(pid)) return false;
    if (pid === process.pid) return instance !== this.owner.split(' ')[2]; // names held here were skipped above
    return !processAlive(pid);
  }
}
