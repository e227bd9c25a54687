import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, Redis, Result } from 'ioredis';
import { statusFieldsLua } from './issuance-codec';

/**
 * The Lua scripts, loaded with defineCommand (EVALSHA, falling back to EVAL) and typed here.
 * Each script's contract (KEYS, ARGV, return) is the header of its .lua file.
 */

type ScriptReply<T> = Result<T, { type: 'default' }>;

export interface ScriptCommands {
  couponIssue(...keysThenArgs: (string | number)[]): ScriptReply<[number, string, number, number]>;
  couponConfirm(numKeys: number, ...keysThenArgs: (string | number)[]): ScriptReply<number>;
  couponFail(...keysThenArgs: (string | number)[]): ScriptReply<number>;
  couponSetupPromotion(...keysThenArgs: (string | number)[]): ScriptReply<number>;
  couponAddStock(...keysThenArgs: (string | number)[]): ScriptReply<[number, number] | -1>;
  couponEndPromotion(...keysThenArgs: (string | number)[]): ScriptReply<string | -1>;
  couponRetire(...keysThenArgs: (string | number)[]): ScriptReply<number>;
  couponAuditSnapshot(...keys: string[]): ScriptReply<(number | string)[]>;
  couponSettleIssued(...keysThenArgs: (string | number)[]): ScriptReply<number>;
  couponConsumerLease(key: string, owner: string, leaseMs: number, replaceable: string): ScriptReply<number>;
  couponDeleteConsumer(stream: string, group: string, consumer: string): ScriptReply<number>;
  couponRateLimit(key: string, ratePerSecond: number, burst: number): ScriptReply<number>;
}

/** A single node's client or a cluster's, with the scripts: both take the same commands. */
export type ScriptedRedis = (Redis | Cluster) & ScriptCommands;

/**
 * `fragments`: shared Lua definitions (lua/fragments/) put in front of the script, in this order.
 * `status`: the script writes a status hash: the table STATUS of its field names is put in front.
 */
const SCRIPTS: { name: keyof ScriptCommands; file: string; keys?: number; fragments?: string[]; status?: boolean }[] = [
  { name: 'couponIssue', file: 'issue.lua', keys: 9, fragments: ['gcra.lua'], status: true },
  // confirm takes a variable number of keys: the caller passes numKeys first.
  { name: 'couponConfirm', file: 'confirm.lua', status: true },
  { name: 'couponFail', file: 'fail.lua', keys: 5, status: true },
  { name: 'couponSetupPromotion', file: 'setup-promotion.lua', keys: 5 },
  { name: 'couponAddStock', file: 'add-stock.lua', keys: 2 },
  { name: 'couponEndPromotion', file: 'end-promotion.lua', keys: 1 },
  { name: 'couponRetire', file: 'retire.lua', keys: 5 },
  { name: 'couponAuditSnapshot', file: 'audit-snapshot.lua', keys: 4 },
  { name: 'couponSettleIssued', file: 'settle-issued.lua', keys: 3 },
  { name: 'couponConsumerLease', file: 'consumer-lease.lua', keys: 1 },
  { name: 'couponDeleteConsumer', file: 'delete-consumer.lua', keys: 1 },
  { name: 'couponRateLimit', file: 'rate-limit.lua', keys: 1, fragments: ['gcra.lua'] },
];

const sources = new Map<string, string>();
function source(file: string): string {
  let lua = sources.get(file);
  if (lua === undefined) {
    lua = readFileSync(join(__dirname, 'lua', file), 'utf8');
    sources.set(file, lua);
  }
  return lua;
}

export function defineScripts(redis: Redis | Cluster): ScriptedRedis {
  for (const script of SCRIPTS) {
    const prelude = script.status ? [statusFieldsLua()] : [];
    const lua = [...prelude, ...(script.fragments ?? []).map((f) => source(join('fragments', f))), source(script.file)].join('\n');
    redis.defineCommand(script.name, { lua, numberOfKeys: script.keys });
  }
  return redis as ScriptedRedis;
}

/** Codes returned by issue.lua. */
export const ISSUE_CODES = {
  1: 'QUEUED',
  2: 'QUEUED',
  [-1]: 'NOT_FOUND',
  [-2]: 'NOT_STARTED',
  [-3]: 'ENDED',
  [-4]: 'ALREADY_REQUESTED',
  [-5]: 'SOLD_OUT',
} as const;

/** issue.lua's refusal by a rate bucket: not an outcome (nothing happened), the caller is told to wait. */
export const ISSUE_RATE_LIMITED = -6;

/**
 * The consumer's scripts, one typed method each: keys and arguments are named together here and put in the
 * order of the script's contract header, so no caller lays out KEYS and ARGV by hand.
 */
export class ConsumerScripts {
  constructor(private readonly redis: ScriptedRedis) {}

  /** confirm.lua: ISSUED, published, counted, acknowledged and deleted; returns the number acknowledged. */
  async confirm(
    keys: { stream: string; issued: string; meta: string },
    args: { group: string; statusTtlMs: number; entries: ConfirmedEntry[] },
  ): Promise<number> {
    const statusKeys: string[] = [];
    const argv: (string | number)[] = [args.group, args.statusTtlMs];
    for (const e of args.entries) {
      statusKeys.push(e.statusKey);
      argv.push(e.entryId, e.channel, e.message);
    }
    return this.redis.couponConfirm(3 + statusKeys.length, keys.stream, keys.issued, keys.meta, ...statusKeys, ...argv);
  }

  /** fail.lua: FAILED, stock and the user's count given back, dead-lettered, published, acknowledged. */
  async fail(
    keys: { stream: string; deadLetter: string; stock: string; status: string; user: string },
    args: {
      group: string;
      statusTtlMs: number;
      entryId: string;
      channel: string;
      message: string;
      requestId: string;
      userId: string;
      requestedAtMs: number;
      reason: string;
    },
  ): Promise<number> {
    return this.redis.couponFail(
      keys.stream, keys.deadLetter, keys.stock, keys.status, keys.user,
      args.group, args.statusTtlMs, args.entryId, args.channel, args.message, args.requestId, args.userId, args.requestedAtMs, args.reason,
    );
  }

  /** retire.lua: 1 when the ended, drained promotion's keys were let go (or are gone). */
  async retire(
    keys: { meta: string; stock: string; seq: string; stream: string; deadLetter: string },
    args: { group: string; graceMs: number; ttlMs: number },
  ): Promise<number> {
    return this.redis.couponRetire(keys.meta, keys.stock, keys.seq, keys.stream, keys.deadLetter, args.group, args.graceMs, args.ttlMs);
  }

  /** consumer-lease.lua: takes, renews (leaseMs > 0) or releases (0) a name's lease; 1 when held after. */
  async consumerLease(keys: { heartbeat: string }, args: { owner: string; leaseMs: number; replaceable: string }): Promise<number> {
    return this.redis.couponConsumerLease(keys.heartbeat, args.owner, args.leaseMs, args.replaceable);
  }

  /** delete-consumer.lua: 1 when the name was removed from the group (it held no entry). */
  async deleteConsumer(keys: { stream: string }, args: { group: string; consumer: string }): Promise<number> {
    return this.redis.couponDeleteConsumer(keys.stream, args.group, args.consumer);
  }
}

/** One request of confirm.lua: its status hash, entry, channel, and message (encodeIssuance: the hash is written from it). */
export interface ConfirmedEntry {
  statusKey: string;
  entryId: string;
  channel: string;
  message: string;
}
