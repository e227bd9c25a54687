import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import type { RedisStreamQueue } from '../redis/stream-queue';

/** Names held by consumers of this very process (tests run several): never taken from each other. */
const heldHere = new Set<string>();

/** How many names one host may use: `<host>-0` … `<host>-63`. */
const SLOTS_PER_HOST = 64;

/** Written in the owner for what this process cannot read (not Linux): such an owner is never replaced early. */
const UNKNOWN = '-';

/**
 * This boot of this machine and this PID namespace: a pid means the same process only to a consumer that shares
 * both (containers sharing a hostname may each have a namespace of their own, where every one is pid 1).
 */
function pidScope(): { bootId: string; pidNamespace: string } {
  const read = (f: () => string): string => {
    try {
      const value = f().trim();
      return value && !/\s/.test(value) ? value : UNKNOWN;
    } catch {
      return UNKNOWN;
    }
  };
  return {
    bootId: read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
    pidNamespace: read(() => readlinkSync('/proc/self/ns/pid')), // e.g. "pid:[4026531836]"
  };
}

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
 * The owner is "<host> <pid> <instance> <boot id> <pid namespace>". The name is stable across restarts: without
 * CONSUMER_NAME it is the first free `<host>-<n>`, and a lease left by an earlier incarnation is taken over at
 * once, so a restarted process finishes its own pending entries immediately instead of waiting for the lease
 * to expire: when host, boot id and PID namespace all equal ours (so its pid names a process we can probe) and
 * its process is gone, or its pid is now ours with another instance (a restarted container). Any other owner
 * (another namespace sharing the hostname, an old-format value, a platform without /proc) keeps the name
 * until its lease expires (CONSUMER_DEAD_AFTER_MS). A name held by a live process is never taken.
 */
export class ConsumerIdentity {
  private current: string | null = null;
  private readonly owner: string;

  constructor(
    private readonly queue: RedisStreamQueue,
    private readonly options: { host: string; leaseMs: number; fixedName?: string },
  ) {
    const scope = pidScope();
    this.owner = [options.host, process.pid, randomBytes(6).toString('hex'), scope.bootId, scope.pidNamespace].join(' ');
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
    const theirs = holder.split(' ');
    const mine = this.owner.split(' ');
    if (theirs.length !== 5) return false; // an old-format or foreign value: wait for its lease
    const [host, pidText, instance, bootId, pidNamespace] = theirs;
    const pid = Number(pidText);
    if (mine[3] === UNKNOWN || mine[4] === UNKNOWN) return false; // a pid we cannot place: never replace early
    if (host !== this.options.host || bootId !== mine[3] || pidNamespace !== mine[4]) return false;
    if (!Number.isInteger(pid) || pid <= 0) return false;
    if (pid === process.pid) return instance !== mine[2]; // names held here were skipped above
    return !processAlive(pid);
  }
}
