/**
 * Every Redis key and channel name, built in one place from REDIS_KEY_PREFIX.
 * All keys of a promotion share the hash tag {p:<promotionId>}, so each script touches one cluster slot.
 */

export const CONSUMER_GROUP = 'coupon-writers';

/** Fields of a promotion's meta hash read from TypeScript (the Lua scripts spell the same names). */
export const META_FIELDS = { totalStock: 'totalStock', endedAt: 'endedAt', startsAt: 'startsAt', endsAt: 'endsAt', recount: 'recount' } as const;

export interface PromotionKeys {
  /**
   * hash: totalStock, perUserLimit, startsAt, endsAt (epoch ms), endedAt (epoch ms, when ended early); recount = 1
   * after a rebuild, until the issued counter is checked against PostgreSQL (settle-issued.lua)
   */
  meta: string;
  /** string: stock not yet reserved */
  stock: string;
  /** string: reservations made so far (a request's position) */
  seq: string;
  /** stream: queued requests, read by the consumer group; fields r, u, p, t (requestedAt ms), n (position) */
  stream: string;
  /** stream: requests that could never be stored */
  deadLetter: string;
  /**
   * string: coupons issued so far. Set from PostgreSQL's count when the state is built (setup-promotion.lua),
   * then raised by confirm.lua on each request's transition to ISSUED; read instead of counting rows.
   */
  issued: string;
}

export class RedisKeys {
  constructor(readonly prefix: string) {}

  private tag(promotionId: string): string {
    return `${this.prefix}{p:${promotionId}}`;
  }

  promotion(promotionId: string): PromotionKeys {
    const tag = this.tag(promotionId);
    return {
      meta: `${tag}:meta`,
      stock: `${tag}:stock`,
      seq: `${tag}:seq`,
      stream: `${tag}:stream`,
      deadLetter: `${tag}:dead`,
      issued: `${tag}:issued`,
    };
  }

  /** hash: n (reservations held by the user), last (the user's latest requestId) */
  user(promotionId: string, userId: string): string {
    return `${this.tag(promotionId)}:user:${userId}`;
  }

  /**
   * string: "<requestId> <position> <remainingStock>", the first QUEUED payload for this key; expires after 24 h.
   * The user id is length-prefixed: any character may appear in it or in the key, and still no (user, key)
   * pair can spell another's key (`a|b` + `c` and `a` + `b|c` differ).
   */
  idempotency(promotionId: string, userId: string, idempotencyKey: string): string {
    return `${this.tag(promotionId)}:idem:${userId.length}:${userId}:${idempotencyKey}`;
  }

  /** string: a user's issueCoupon rate bucket in one promotion (GCRA: the theoretical arrival time, µs) */
  issueBucket(promotionId: string, userId: string): string {
    return `${this.tag(promotionId)}:rl:user:${userId}`;
  }

  /** string: one client IP's issueCoupon rate bucket in one promotion, across accounts (GCRA, µs) */
  issueIpBucket(promotionId: string, clientIp: string): string {
    return `${this.tag(promotionId)}:rl:ip:${clientIp}`;
  }

  /** string: a signed-in user's bucket for every operation other than issueCoupon (GCRA, µs) */
  userBucket(userId: string): string {
    return `${this.prefix}rl:user:${userId}`;
  }

  /** string: one client IP's bucket for anonymous requests and WebSocket upgrades (GCRA, µs) */
  anonBucket(clientIp: string): string {
    return `${this.prefix}rl:anon:${clientIp}`;
  }

  /** hash: the issuance status of one request (s, u, t, n = position; c/k/i once issued, f once failed) */
  status(promotionId: string, requestId: string): string {
    return `${this.tag(promotionId)}:req:${requestId}`;
  }

  /** set: promotions whose streams the consumers read */
  activePromotions(): string {
    return `${this.prefix}promotions`;
  }

  /**
   * string: "<pid> <instance>" of the live consumer of that name, with a TTL its owner renews (heartbeat).
   * A consumer whose key is gone is dead, and its pending entries are taken over.
   */
  consumerHeartbeat(consumerName: string): string {
    return `${this.prefix}consumer:${consumerName}`;
  }

  /**
   * string: written when this deployment's Redis state was built. Its absence means Redis lost its data
   * (a restart without persistence, a flush): readiness fails until the state is rebuilt from PostgreSQL.
   */
  stateMarker(): string {
    return `${this.prefix}state`;
  }

  /**
   * sharded pub/sub channel (SPUBLISH): final states of one user's requests in one promotion. It carries the
   * promotion's hash tag, so the script confirming a batch publishes in the slot of the keys it writes.
   */
  userChannel(promotionId: string, userId: string): string {
    return `${this.tag(promotionId)}:events:user:${userId}`;
  }

  /** The promotion id in a stream key made by promotion(). */
  promotionIdOfStream(streamKey: string): string {
    const start = streamKey.indexOf('{p:') + 3;
    return streamKey.slice(start, streamKey.indexOf('}', start));
  }
}
