import type { CouponLifecycleRepository } from '../domain/ports';
import type { Actor, Coupon, CouponEvent, CouponState, StoredCouponStatus } from '../domain/types';
import { Prisma } from '../generated/prisma/client';
import type { Db } from './client';

/** A coupon with its state: the promotion gives validUntil (read through the join, never copied per coupon). */
interface CouponRow {
  id: string;
  code: string;
  promotion_id: string;
  user_id: string;
  request_id: string;
  requested_at: Date;
  issued_at: Date;
  status: StoredCouponStatus;
  order_id: string | null;
  redeemed_at: Date | null;
  valid_until: Date | null;
}

const stateOf = (row: Pick<CouponRow, 'status' | 'order_id' | 'redeemed_at' | 'valid_until'>): CouponState => ({
  status: row.status,
  validUntil: row.valid_until,
  redeemedAt: row.redeemed_at,
  orderId: row.order_id,
});

const couponOf = (row: CouponRow): Coupon => ({
  id: row.id,
  code: row.code,
  promotionId: row.promotion_id,
  userId: row.user_id,
  requestId: row.request_id,
  requestedAt: row.requested_at,
  issuedAt: row.issued_at,
  state: stateOf(row),
});

/** The columns of CouponRow, from coupons `c` joined to promotions `p`. */
const COLUMNS = Prisma.sql`c.id::text AS id, c.code::text AS code, c.promotion_id::text AS promotion_id, c.user_id, c.request_id,
  c.requested_at, c.issued_at, c.status, c.order_id, c.redeemed_at, p.coupon_valid_until AS valid_until`;

/**
 * Every change is one statement: a conditional UPDATE that only a coupon in the expected state passes (the
 * row lock makes concurrent calls wait, then re-check the condition on the row as the winner left it), and an
 * INSERT of its trail row fed by that UPDATE's RETURNING, so the trail row commits with the change or not at
 * all. No index on coupons covers a changed column: an update is heap-only (HOT) when its page has room (a
 * coupon on a page filled by a batch insert moves, and then gets its index entries anew).
 * Codes are compared as char(16), the column's type, so the unique index on code is used.
 */
export class PrismaCouponLifecycleRepository implements CouponLifecycleRepository {
  constructor(private readonly db: Db) {}

  async findByCode(code: string): Promise<Coupon | null> {
    const [row] = await this.db.$queryRaw<CouponRow[]>`
      SELECT ${COLUMNS} FROM coupons c JOIN promotions p ON p.id = c.promotion_id
      WHERE c.code = ${code}::char(16)`;
    return row ? couponOf(row) : null;
  }

  async states(couponIds: string[]): Promise<Map<string, CouponState>> {
    if (couponIds.length === 0) return new Map();
    const rows = await this.db.$queryRaw<CouponRow[]>`
      SELECT ${COLUMNS} FROM coupons c JOIN promotions p ON p.id = c.promotion_id
      WHERE c.id = ANY(${couponIds}::uuid[])`;
    return new Map(rows.map((row) => [row.id, stateOf(row)]));
  }

  async redeem(args: { code: string; orderId: string; userId: string; actor: Actor; now: Date }): Promise<Coupon | null> {
    const { code, orderId, userId, actor, now } = args;
    const [row] = await this.db.$queryRaw<CouponRow[]>`
      WITH changed AS (
        UPDATE coupons c SET status = 'REDEEMED', order_id = ${orderId}, redeemed_at = ${now}::timestamptz
        FROM promotions p
        WHERE c.code = ${code}::char(16) AND c.status = 'ACTIVE' AND c.user_id = ${userId}
          AND p.id = c.promotion_id AND (p.coupon_valid_until IS NULL OR p.coupon_valid_until > ${now}::timestamptz)
        RETURNING ${COLUMNS}
      ), trail AS (
        INSERT INTO coupon_events (coupon_id, from_status, to_status, actor_user_id, actor_role, order_id, at)
        SELECT id::uuid, 'ACTIVE', 'REDEEMED', ${actor.userId}, ${actor.role}, ${orderId}, ${now}::timestamptz FROM changed
      )
      SELECT * FROM changed`;
    return row ? couponOf(row) : null;
  }

  async cancel(args: { code: string; orderId: string; actor: Actor; now: Date }): Promise<Coupon | null> {
    const { code, orderId, actor, now } = args;
    const [row] = await this.db.$queryRaw<CouponRow[]>`
      WITH changed AS (
        UPDATE coupons c SET status = 'ACTIVE', order_id = NULL, redeemed_at = NULL
        FROM promotions p
        WHERE c.code = ${code}::char(16) AND c.status = 'REDEEMED' AND c.order_id = ${orderId} AND p.id = c.promotion_id
        RETURNING ${COLUMNS}
      ), trail AS (
        INSERT INTO coupon_events (coupon_id, from_status, to_status, actor_user_id, actor_role, order_id, at)
        SELECT id::uuid, 'REDEEMED', 'ACTIVE', ${actor.userId}, ${actor.role}, ${orderId}, ${now}::timestamptz FROM changed
      )
      SELECT * FROM changed`;
    return row ? couponOf(row) : null;
  }

  async revoke(args: { code: string; reason: string; actor: Actor; now: Date }): Promise<Coupon | null> {
    const { code, reason, actor, now } = args;
    // The status it had is read under the row lock (FOR UPDATE re-reads the row a concurrent change left),
    // so the trail's from_status is the one this change replaced.
    const [row] = await this.db.$queryRaw<CouponRow[]>`
      WITH before AS (
        SELECT id, status FROM coupons WHERE code = ${code}::char(16) AND status <> 'REVOKED' FOR UPDATE
      ), changed AS (
        UPDATE coupons c SET status = 'REVOKED', revoked_at = ${now}::timestamptz
        FROM before b, promotions p
        WHERE c.id = b.id AND p.id = c.promotion_id
        RETURNING ${COLUMNS}, b.status AS from_status
      ), trail AS (
        INSERT INTO coupon_events (coupon_id, from_status, to_status, actor_user_id, actor_role, order_id, reason, at)
        SELECT id::uuid, from_status, 'REVOKED', ${actor.userId}, ${actor.role}, order_id, ${reason}, ${now}::timestamptz FROM changed
      )
      SELECT * FROM changed`;
    return row ? couponOf(row) : null;
  }

  async lastEvent(couponId: string): Promise<CouponEvent | null> {
    // The id, not the time: rows are numbered under the coupon's row lock, in the order the changes happened,
    // while `at` comes from the clock of whichever process made the change (clocks may differ by seconds).
    const row = await this.db.couponEvent.findFirst({ where: { couponId }, orderBy: { id: 'desc' } });
    if (!row) return null;
    return {
      couponId: row.couponId,
      fromStatus: row.fromStatus as StoredCouponStatus,
      toStatus: row.toStatus as StoredCouponStatus,
      actorUserId: row.actorUserId,
      actorRole: row.actorRole as Actor['role'],
      orderId: row.orderId,
      reason: row.reason,
      at: row.at,
    };
  }
}
