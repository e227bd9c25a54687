import { RateLimitedError } from '../domain/errors';
import { promotionIdOfRequest } from '../domain/identifiers';
import type { PromotionCounters, ReservationStore, ReserveArgs, UserHoldings } from '../domain/ports';
import type { IssueResult, Issuance, PromotionRecord } from '../domain/types';
import { decodeIssuance } from './issuance-codec';
import { CONSUMER_GROUP, type RedisKeys } from './keys';
import { ISSUE_CODES, ISSUE_RATE_LIMITED, type ScriptedRedis } from './scripts';

const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
/** The user hash outlives the promotion's end, so a late FAILED can still give the count back. */
const USER_GRACE_MS = 7 * 24 * 3600 * 1000;

/** issueCoupon's rate buckets, checked inside the reservation script (calls a second; 0 turns one off). */
export interface IssueRateLimits {
  perUserPerSecond: number;
  perUserBurst: number;
  perIpPerSecond: number;
}

const NO_LIMITS: IssueRateLimits = { perUserPerSecond: 0, perUserBurst: 1, perIpPerSecond: 0 };

export class RedisReservationStore implements ReservationStore {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly limits: IssueRateLimits = NO_LIMITS,
  ) {}

  async reserve({ promotionId, userId, requestId, idempotencyKey, clientIp }: ReserveArgs): Promise<IssueResult> {
    const k = this.keys.promotion(promotionId);
    // Without a known address there is no IP bucket to take from; the per-user one still applies.
    const ipRate = clientIp ? this.limits.perIpPerSecond : 0;
    const [code, id, position, remaining] = await this.redis.couponIssue(
      k.meta,
      k.stock,
      k.seq,
      this.keys.user(promotionId, userId),
      this.keys.idempotency(promotionId, userId, idempotencyKey ?? ''),
      this.keys.status(promotionId, requestId),
      k.stream,
      this.keys.issueBucket(promotionId, userId),
      this.keys.issueIpBucket(promotionId, clientIp ?? ''),
      userId,
      requestId,
      promotionId,
      idempotencyKey ?? '',
      IDEMPOTENCY_TTL_MS,
      USER_GRACE_MS,
      this.limits.perUserPerSecond,
      this.limits.perUserBurst,
      ipRate,
    );
    if (code === ISSUE_RATE_LIMITED) throw new RateLimitedError(remaining);
    const outcome = ISSUE_CODES[code as keyof typeof ISSUE_CODES];
    if (!outcome) throw new Error(`issue script returned unknown code ${code}`);
    return {
      outcome,
      requestId: id === '' ? null : id,
      position: position > 0 ? position : null,
      remainingStock: Math.max(0, remaining),
    };
  }

  async setupPromotion(
    promotion: PromotionRecord,
    issuedCount: number,
    holdings?: Map<string, UserHoldings>,
  ): Promise<boolean> {
    const k = this.keys.promotion(promotion.id);
    const created = await this.redis.couponSetupPromotion(
      k.meta,
      k.stock,
      k.seq,
      k.stream,
      promotion.totalStock,
      promotion.perUserLimit,
      promotion.startsAt.getTime(),
      promotion.endsAt.getTime(),
      promotion.endedAt ? promotion.endedAt.getTime() : '',
      Math.max(0, promotion.totalStock - issuedCount),
      issuedCount,
      CONSUMER_GROUP,
    );
    if (created === 1 && holdings && holdings.size > 0) {
      const expireAt = promotion.endsAt.getTime() + USER_GRACE_MS;
      const pipeline = this.redis.pipeline();
      for (const [userId, held] of holdings) {
        const userKey = this.keys.user(promotion.id, userId);
        pipeline.hsetnx(userKey, 'n', held.count);
        pipeline.hsetnx(userKey, 'last', held.lastRequestId);
        pipeline.pexpireat(userKey, expireAt);
      }
      await pipeline.exec();
    }
    await this.redis.sadd(this.keys.activePromotions(), promotion.id);
    return created === 1;
  }

  async hasPromotion(promotionId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.promotion(promotionId).meta)) === 1;
  }

  async addStock(promotionId: string, amount: number): Promise<PromotionCounters | null> {
    const k = this.keys.promotion(promotionId);
    const reply = await this.redis.couponAddStock(k.meta, k.stock, amount);
    if (reply === -1) return null;
    return { remainingStock: reply[0], totalStock: reply[1] };
  }

  async endPromotion(promotionId: string, at: Date): Promise<boolean> {
    const reply = await this.redis.couponEndPromotion(this.keys.promotion(promotionId).meta, at.getTime());
    return reply !== -1;
  }

  async remainingStock(promotionIds: string[]): Promise<Map<string, number>> {
    const result = new Map<string, number>();
    if (promotionIds.length === 0) return result;
    // One GET per key, pipelined: an MGET across promotions would cross cluster slots.
    const pipeline = this.redis.pipeline();
    for (const id of promotionIds) pipeline.get(this.keys.promotion(id).stock);
    const replies = (await pipeline.exec()) ?? [];
    promotionIds.forEach((id, i) => {
      const [err, value] = replies[i] ?? [null, null];
      if (err) throw err;
      result.set(id, Math.max(0, Number(value ?? 0)));
    });
    return result;
  }

  async issuance(requestId: string): Promise<Issuance | null> {
    const promotionId = promotionIdOfRequest(requestId);
    if (!promotionId) return null;
    const fields = await this.redis.hgetall(this.keys.status(promotionId, requestId));
    return decodeIssuance(fields, requestId);
  }
}
