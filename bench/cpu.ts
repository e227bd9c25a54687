/**
 * CPU time of the processes under test, read before and after a phase, to tell where the bottleneck is.
 * Linux only (/proc); elsewhere the figures are simply missing. Nothing here signals or changes a process.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Redis } from 'ioredis';

export interface CpuSnapshot {
  atMs: number;
  /** CPU seconds (user + system) by name. */
  seconds: Map<string, number>;
  /** CPU seconds of each PostgreSQL process, by pid: backends come and go with the pools. */
  postgres: Map<number, number>;
  /** Jiffies of all cores: busy, and in all. */
  machine: { busy: number; total: number } | null;
}

export interface CpuUsage {
  /** % of one core, by name. */
  percent: Map<string, number>;
  /** % of all cores together. */
  machinePercent: number | null;
  /**
   * % of one core used by everything else on the machine (kernel threads, other jobs): when it is high,
   * the figures of the phase are not those of this service alone.
   */
  othersPercent: number | null;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of one process, in seconds; null once it is gone. */
export function processSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: count fields from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Every PostgreSQL process (postmaster, backends, background workers), found by name. */
function postgresSeconds(): Map<number, number> {
  const seconds = new Map<number, number>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return seconds;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue; // gone meanwhile
    }
    const s = processSeconds(Number(entry));
    if (s !== null) seconds.set(Number(entry), s);
  }
  return seconds;
}

function machineJiffies(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already in user
    const idle = (values[3] ?? 0) + (values[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Redis reports its own CPU time (all its threads), so no pid is needed. */
async function redisSeconds(redis: Redis): Promise<number | null> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
  const sum = field('used_cpu_sys') + field('used_cpu_user');
  return Number.isFinite(sum) ? sum : null;
}

export async function snapshotCpu(pids: Map<string, number>, redis: Redis): Promise<CpuSnapshot> {
  const seconds = new Map<string, number>();
  for (const [name, pid] of pids) {
    const s = processSeconds(pid);
    if (s !== null) seconds.set(name, s);
  }
  const usage = process.cpuUsage();
  seconds.set('loadgen', (usage.user + usage.system) / 1e6);
  const redisCpu = await redisSeconds(redis).catch(() => null);
  if (redisCpu !== null) seconds.set('redis', redisCpu);
  return { atMs: performance.now(), seconds, postgres: postgresSeconds(), machine: machineJiffies() };
}

export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuUsage {
  const wall = (after.atMs - before.atMs) / 1000;
  const percent = new Map<string, number>();
  for (const [name, end] of after.seconds) {
    const start = before.seconds.get(name);
    if (start !== undefined && wall > 0) percent.set(name, (100 * (end - start)) / wall);
  }
  if (after.postgres.size > 0 && wall > 0) {
    // A process that started during the phase counts from zero; one that ended during it cannot be counted.
    let used = 0;
    for (const [pid, end] of after.postgres) used += end - (before.postgres.get(pid) ?? 0);
    percent.set('postgres', (100 * used) / wall);
  }
  const m0 = before.machine;
  const m1 = after.machine;
  const machinePercent = m0 && m1 && m1.total > m0.total ? (100 * (m1.busy - m0.busy)) / (m1.total - m0.total) : null;
  const ours = [...percent.values()].reduce((a, b) => a + b, 0);
  const othersPercent = machinePercent === null ? null : Math.max(0, machinePercent * cpus().length - ours);
  return { percent, machinePercent, othersPercent };
}
