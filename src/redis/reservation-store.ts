import { RateLimitedError } from '../domain/errors';
import { promotionIdOfRequest } from '../domain/identifiers';
import type { AuditSnapshot, PromotionCounters, PromotionLiveState, ReservationStore, ReserveArgs, UserHoldings } from '../domain/ports';
import type { IssueResult, Issuance, PromotionRecord } from '../domain/types';
import { decodeIssuance } from './issuance-codec';
import { CONSUMER_GROUP, META_FIELDS, type RedisKeys } from './keys';
import type { ReplicaWaiter } from './replica-wait';
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

/**
 * With REDIS_WAIT_REPLICAS, every write here (a reservation, an admin write) is acknowledged only once the
 * replicas hold it (replica-wait.ts), on a connection of its own (`redis`): WAIT holds up the commands behind it
 * on its connection, so reads go through another (`reads`).
 */
export class RedisReservationStore implements ReservationStore {
  private readonly reads: ScriptedRedis;

  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly limits: IssueRateLimits = NO_LIMITS,
    private readonly replicas: ReplicaWaiter | null = null,
    reads?: ScriptedRedis,
  ) {
    this.reads = reads ?? redis;
  }

  /** Runs a write to `key`'s slot; with REDIS_WAIT_REPLICAS, returns once the replicas hold it. */
  private async replicated<T>(key: string, write: () => Promise<T>): Promise<T> {
    if (!this.replicas?.enabled) return write();
    const route = this.replicas.route(key);
    const result = await write();
    await this.replicas.confirm(route);
    return result;
  }

  // Redis unreachable or failing over surfaces as SERVICE_UNAVAILABLE through the API's error formatter
  // (redis/unavailable.ts), for this call as for every other.
  async reserve({ promotionId, userId, requestId, idempotencyKey, clientIp }: ReserveArgs): Promise<IssueResult> {
    const k = this.keys.promotion(promotionId);
    // Without a known address there is no IP bucket to take from; the per-user one still applies.
    const ipRate = clientIp ? this.limits.perIpPerSecond : 0;
    const route = this.replicas?.enabled ? this.replicas.route(k.stock) : null;
    // A master known to have lost its replica refuses before anything is reserved.
    if (route) await this.replicas?.ensureReplicas(route);
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
    // QUEUED (new, or an idempotent replay of one that may not have reached a replica yet) is a promise: it is
    // made only once the replicas hold it. Refusals promise nothing and wait for nothing.
    if (this.replicas?.enabled && outcome === 'QUEUED') await this.replicas.confirm(route);
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
    reservationsMade = issuedCount,
    rebuild = false,
  ): Promise<boolean> {
    const k = this.keys.promotion(promotion.id);
    await this.register(promotion.id);
    // Per-user counts go in before the meta hash: until the meta exists the issue script answers NOT_FOUND,
    // so a rebuild cut short between the two can never open the sale without its per-user limits.
    // HSETNX leaves any count Redis still holds as it is.
    if (holdings && holdings.size > 0) {
      const expireAt = promotion.endsAt.getTime() + USER_GRACE_MS;
      const pipeline = this.redis.pipeline();
      for (const [userId, held] of holdings) {
        const userKey = this.keys.user(promotion.id, userId);
        pipeline.hsetnx(userKey, 'n', held.count);
        pipeline.hsetnx(userKey, 'last', held.lastRequestId);
        pipeline.pexpireat(userKey, expireAt);
      }
      const failed = ((await pipeline.exec()) ?? []).find(([err]) => err);
      if (failed) throw failed[0];
    }
    const created = await this.replicated(k.meta, () => this.redis.couponSetupPromotion(
      k.meta,
      k.stock,
      k.seq,
      k.stream,
      k.issued,
      promotion.totalStock,
      promotion.perUserLimit,
      promotion.startsAt.getTime(),
      promotion.endsAt.getTime(),
      promotion.endedAt ? promotion.endedAt.getTime() : '',
      Math.max(0, promotion.totalStock - issuedCount),
      reservationsMade,
      CONSUMER_GROUP,
      issuedCount,
      rebuild ? '1' : '',
    ));
    return created === 1;
  }

  async register(promotionId: string): Promise<void> {
    const registry = this.keys.activePromotions();
    await this.replicated(registry, () => this.redis.sadd(registry, promotionId));
  }

  async hasPromotion(promotionId: string): Promise<boolean> {
    return (await this.reads.exists(this.keys.promotion(promotionId).meta)) === 1;
  }

  async raiseTotalStock(promotionId: string, totalStock: number): Promise<PromotionCounters | null> {
    const k = this.keys.promotion(promotionId);
    const reply = await this.replicated(k.meta, () => this.redis.couponAddStock(k.meta, k.stock, totalStock));
    if (reply === -1) return null;
    return { remainingStock: reply[0], totalStock: reply[1] };
  }

  async endPromotion(promotionId: string, at: Date): Promise<Date | null> {
    const meta = this.keys.promotion(promotionId).meta;
    const reply = await this.replicated(meta, () => this.redis.couponEndPromotion(meta, at.getTime()));
    return reply === -1 ? null : new Date(Number(reply));
  }

  async liveStates(promotionIds: string[]): Promise<Map<string, PromotionLiveState>> {
    const result = new Map<string, PromotionLiveState>();
    if (promotionIds.length === 0) return result;
    // A pipeline per promotion (its keys share a slot), all sent together: promotions may lie in other slots.
    const perPromotion = await Promise.all(
      promotionIds.map((id) => {
        const k = this.keys.promotion(id);
        return this.reads
          .pipeline()
          .hmget(k.meta, META_FIELDS.totalStock, META_FIELDS.endedAt, META_FIELDS.startsAt, META_FIELDS.endsAt, META_FIELDS.recount)
          .get(k.stock)
          .get(k.issued)
          .exec();
      }),
    );
    const reply = <T>(i: number, j: number): T => {
      const [err, value] = perPromotion[i]?.[j] ?? [new Error('missing pipeline reply'), null];
      if (err) throw err;
      return value as T;
    };
    promotionIds.forEach((id, i) => {
      const [total, endedAt, startsAt, endsAt, recount] = reply<(string | null)[]>(i, 0);
      const stock = reply<string | null>(i, 1);
      const issued = reply<string | null>(i, 2);
      result.set(id, {
        exists: total !== null && total !== undefined,
        totalStock: Number(total ?? 0),
        remainingStock: Math.max(0, Number(stock ?? 0)),
        endedAt: endedAt ? new Date(Number(endedAt)) : null,
        startsAt: startsAt ? new Date(Number(startsAt)) : null,
        endsAt: endsAt ? new Date(Number(endsAt)) : null,
        issuedCount: issued === null || issued === undefined ? null : Number(issued),
        recountIssued: recount === '1',
      });
    });
    return result;
  }

  async settleIssuedCount(promotionId: string, seen: number | null, counted: number): Promise<'settled' | 'nothing' | 'later'> {
    const k = this.keys.promotion(promotionId);
    const reply = await this.replicated(k.meta, () => this.redis.couponSettleIssued(k.meta, k.stream, k.issued, seen === null ? '' : String(seen), counted));
    return reply === 1 ? 'settled' : reply === 0 ? 'nothing' : 'later';
  }

  async registered(promotionIds: string[]): Promise<Set<string>> {
    if (promotionIds.length === 0) return new Set();
    const flags = await this.reads.smismember(this.keys.activePromotions(), ...promotionIds);
    return new Set(promotionIds.filter((_, i) => flags[i] === 1));
  }

  async issuance(requestId: string): Promise<Issuance | null> {
    const promotionId = promotionIdOfRequest(requestId);
    if (!promotionId) return null;
    const fields = await this.reads.hgetall(this.keys.status(promotionId, requestId));
    return decodeIssuance(fields, requestId);
  }

  async latestIssuance(promotionId: string, userId: string): Promise<Issuance | null> {
    const requestId = await this.reads.hget(this.keys.user(promotionId, userId), 'last');
    return requestId ? this.issuance(requestId) : null;
  }

  async auditSnapshot(promotionId: string): Promise<AuditSnapshot | null> {
    const k = this.keys.promotion(promotionId);
    const reply = await this.reads.couponAuditSnapshot(k.meta, k.stock, k.seq, k.stream);
    if (reply.length < 4) return null;
    const [totalStock, remainingStock, perUserLimit, reservations] = reply.slice(0, 4).map(Number) as [number, number, number, number];
    const inFlight: AuditSnapshot['inFlight'] = [];
    for (let i = 4; i + 1 < reply.length; i += 2) inFlight.push({ requestId: String(reply[i]), userId: String(reply[i + 1]) });
    return { totalStock, remainingStock, perUserLimit, reservations, inFlight };
  }

  /** Whether this deployment's Redis state is still the one built (see RedisKeys.stateMarker). */
  async stateIntact(): Promise<boolean> {
    return (await this.reads.exists(this.keys.stateMarker())) === 1;
  }

  async markStateBuilt(): Promise<void> {
    await this.redis.set(this.keys.stateMarker(), String(Date.now()));
  }
}
