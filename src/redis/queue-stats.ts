import type { QueueDepth } from '../metrics';
import { CONSUMER_GROUP, type RedisKeys } from './keys';
import type { ScriptedRedis } from './scripts';

/** Queue depth over every active promotion, for /metrics and the invariant check. */
export async function readQueueDepth(redis: ScriptedRedis, keys: RedisKeys): Promise<QueueDepth> {
  const ids = await redis.smembers(keys.activePromotions());
  const depth: QueueDepth = { entries: 0, pending: 0, deadLetter: 0 };
  if (ids.length === 0) return depth;
  const pipeline = redis.pipeline();
  for (const id of ids) {
    const k = keys.promotion(id);
    pipeline.xlen(k.stream);
    pipeline.xpending(k.stream, CONSUMER_GROUP);
    pipeline.xlen(k.deadLetter);
  }
  const replies = (await pipeline.exec()) ?? [];
  for (let i = 0; i < ids.length; i++) {
    const [, entries] = replies[i * 3] ?? [];
    const [, pending] = replies[i * 3 + 1] ?? [];
    const [, dead] = replies[i * 3 + 2] ?? [];
    depth.entries += Number(entries ?? 0);
    depth.pending += Array.isArray(pending) ? Number(pending[0] ?? 0) : 0;
    depth.deadLetter += Number(dead ?? 0);
  }
  return depth;
}
