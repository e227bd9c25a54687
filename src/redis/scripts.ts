import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Result } from 'ioredis';

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
  couponConsumerLease(key: string, owner: string, leaseMs: number, replaceable: string): ScriptReply<number>;
  couponDeleteConsumer(stream: string, group: string, consumer: string): ScriptReply<number>;
  couponRateLimit(key: string, ratePerSecond: number, burst: number): ScriptReply<number>;
}

export type ScriptedRedis = Redis & ScriptCommands;

/** `fragments`: shared Lua definitions (lua/fragments/) put in front of the script, in this order. */
const SCRIPTS: { name: keyof ScriptCommands; file: string; keys?: number; fragments?: string[] }[] = [
  { name: 'couponIssue', file: 'issue.lua', keys: 9, fragments: ['gcra.lua'] },
  // confirm takes a variable number of keys: the caller passes numKeys first.
  { name: 'couponConfirm', file: 'confirm.lua' },
  { name: 'couponFail', file: 'fail.lua', keys: 5 },
  { name: 'couponSetupPromotion', file: 'setup-promotion.lua', keys: 4 },
  { name: 'couponAddStock', file: 'add-stock.lua', keys: 2 },
  { name: 'couponEndPromotion', file: 'end-promotion.lua', keys: 1 },
  { name: 'couponRetire', file: 'retire.lua', keys: 5 },
  { name: 'couponAuditSnapshot', file: 'audit-snapshot.lua', keys: 4 },
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

export function defineScripts(redis: Redis): ScriptedRedis {
  for (const script of SCRIPTS) {
    const lua = [...(script.fragments ?? []).map((f) => source(join('fragments', f))), source(script.file)].join('\n');
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
