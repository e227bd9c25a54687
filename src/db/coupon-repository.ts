import { newCouponCode, newCouponId } from '../domain/identifiers';
import type { CouponRepository } from '../domain/ports';
import type { Coupon, QueuedRequest } from '../domain/types';
import type { Db } from './client';

interface CouponRow {
  id: string;
  code: string;
  promotion_id: string;
  user_id: string;
  request_id: string;
  requested_at: Date;
  issued_at: Date;
}

const toCoupon = (row: CouponRow): Coupon => ({
  id: row.id,
  code: row.code,
  promotionId: row.promotion_id,
  userId: row.user_id,
  requestId: row.request_id,
  requestedAt: new Date(row.requested_at),
  issuedAt: new Date(row.issued_at),
});

export class PrismaCouponRepository implements CouponRepository {
  constructor(private readonly db: Db) {}

  async findByRequestId(requestId: string): Promise<Coupon | null> {
    const row = await this.db.coupon.findUnique({ where: { requestId } });
    return row ? { ...row } : null;
  }

  async listByUser(userId: string, promotionId: string | null, limit: number): Promise<Coupon[]> {
    const rows = await this.db.coupon.findMany({
      where: promotionId ? { userId, promotionId } : { userId },
      orderBy: [{ issuedAt: 'desc' }, { id: 'desc' }],
      take: limit,
      select: { id: true, code: true, promotionId: true, userId: true, requestId: true, requestedAt: true, issuedAt: true },
    });
    return rows;
  }

  /**
   * The whole batch in one round trip, in autocommit: store_coupons (migration 20261127130000) takes the
   * promotions' advisory locks shared (outcome-lock.ts), then one INSERT … SELECT FROM unnest(…) ON CONFLICT
   * (request_id) DO NOTHING, so a redelivered request inserts nothing twice, then re-reads, in a statement
   * of its own (a fresh snapshot), the coupons of requests stored before or by another consumer meanwhile.
   * A request recorded as failed gets none: it is simply not in the result.
   */
  async persistBatch(requests: QueuedRequest[]): Promise<Coupon[]> {
    if (requests.length === 0) return [];
    const unique = [...new Map(requests.map((r) => [r.requestId, r])).values()];
    const ids = unique.map(() => newCouponId());
    const codes = unique.map(() => newCouponCode());
    const promotionIds = unique.map((r) => r.promotionId);
    const userIds = unique.map((r) => r.userId);
    const requestIds = unique.map((r) => r.requestId);
    const requestedAts = unique.map((r) => r.requestedAt.toISOString());
    const positions = unique.map((r) => r.position);
    const rows = await this.db.$queryRaw<CouponRow[]>`
      SELECT id, code, promotion_id, user_id, request_id, requested_at, issued_at
      FROM store_coupons(${ids}::text[], ${codes}::text[], ${promotionIds}::text[], ${userIds}::text[],
                         ${requestIds}::text[], ${requestedAts}::text[], ${positions}::int[])`;
    return rows.map(toCoupon);
  }
}
