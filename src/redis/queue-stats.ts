import type { QueueDepth } from '../metrics';
import { CONSUMER_GROUP, type RedisKeys } from './keys';
import type { ScriptedRedis } from './scripts';

/** Queue depth over every active promotion, for /metrics and the invariant check. */
export async function readQueueDepth(redis: ScriptedRedis, keys: RedisKeys): Promise<QueueDepth> {
  const ids = await redis.smembers(keys.activePromotions());
  const depth: QueueDepth = { entries: 0, pending: 0, deadLetter: 0 };
  if (ids.length === 0) return depth;
  // A pipeline per promotion (its keys share a slot), all sent together: promotions may lie in other cluster slots.
  const perPromotion = await Promise.all(
    ids.map((id) => {
      const k = keys.promotion(id);
      return redis.pipeline().xlen(k.stream).xpending(k.stream, CONSUMER_GROUP).xlen(k.deadLetter).exec();
    }),
  );
  for (const replies of perPromotion) {
    const [[, entries] = [], [, pending] = [], [, dead] = []] = replies ?? [];
    depth.entries += Number(entries ?? 0);
    depth.pending += Array.isArray(pending) ? Number(pending[0] ?? 0) : 0;
    depth.deadLetter += Number(dead ?? 0);
  }
  return depth;
}
