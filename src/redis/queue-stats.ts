import type { PromotionQueueStats, QueueDepth } from '../metrics';
import { CONSUMER_GROUP, META_FIELDS, type RedisKeys } from './keys';
import type { ScriptedRedis } from './scripts';

/** Promotions given series of their own in /metrics, at most: the label set stays bounded whatever is sold. */
export const MAX_PROMOTION_SERIES = 50;

/** The time (ms) a stream entry id was made at: Redis's clock when the reservation was queued. */
const entryTimeMs = (entryId: string): number => Number(entryId.slice(0, entryId.indexOf('-')));

/**
 * Queue depth and consumer lag over every active promotion, and the gauges of the promotions being sold
 * (started, not ended), for /metrics and the invariant check.
 */
export async function readQueueDepth(redis: ScriptedRedis, keys: RedisKeys, nowMs = Date.now()): Promise<QueueDepth> {
  const ids = (await redis.smembers(keys.activePromotions())).sort();
  const promotions: PromotionQueueStats[] = [];
  const depth: QueueDepth = { entries: 0, pending: 0, deadLetter: 0, lagSeconds: 0, promotions, promotionsLeftOut: 0 };
  let lagSeconds = 0;
  let leftOut = 0;
  if (ids.length === 0) return depth;
  // A pipeline per promotion (its keys share a slot), all sent together: promotions may lie in other cluster slots.
  const perPromotion = await Promise.all(
    ids.map((id) => {
      const k = keys.promotion(id);
      return redis
        .pipeline()
        .xlen(k.stream)
        .xpending(k.stream, CONSUMER_GROUP)
        .xlen(k.deadLetter)
        .xrange(k.stream, '-', '+', 'COUNT', 1) // the oldest entry not yet ISSUED or FAILED (final ones are deleted)
        .hmget(k.meta, META_FIELDS.startsAt, META_FIELDS.endsAt, META_FIELDS.endedAt)
        .get(k.stock)
        .get(k.issued)
        .exec();
    }),
  );
  ids.forEach((promotionId, i) => {
    const [[, entries] = [], [, pending] = [], [, dead] = [], [, oldest] = [], [, window] = [], [, stock] = [], [, issued] = []] = perPromotion[i] ?? [];
    const backlog = Number(entries ?? 0);
    depth.entries += backlog;
    depth.pending += Array.isArray(pending) ? Number(pending[0] ?? 0) : 0;
    depth.deadLetter += Number(dead ?? 0);
    const first = Array.isArray(oldest) ? (oldest[0] as [string, string[]] | undefined) : undefined;
    const lag = first ? Math.max(0, nowMs - entryTimeMs(first[0])) / 1000 : 0;
    lagSeconds = Math.max(lagSeconds, lag);
    const [startsAt, endsAt, endedAt] = Array.isArray(window) ? (window as (string | null)[]) : [];
    const selling = startsAt != null && endsAt != null && endedAt == null && Number(startsAt) <= nowMs && nowMs < Number(endsAt);
    if (!selling) return;
    if (promotions.length >= MAX_PROMOTION_SERIES) {
      leftOut++;
      return;
    }
    promotions.push({
      promotionId,
      remainingStock: Math.max(0, Number(stock ?? 0)),
      backlog,
      issued: issued == null ? Number.NaN : Number(issued),
      lagSeconds: lag,
    });
  });
  return { ...depth, lagSeconds, promotionsLeftOut: leftOut };
}
