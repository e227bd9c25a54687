import { newCouponCodes, newCouponId } from '../domain/identifiers';
import type { CouponRepository } from '../domain/ports';
import type { Coupon, QueuedRequest, StoredCouponStatus } from '../domain/types';
import type { Prisma } from '../generated/prisma/client';
import type { Db } from './client';

/** A coupon row with what its state needs (validUntil is the promotion's). */
const WITH_STATE = {
  id: true,
  code: true,
  promotionId: true,
  userId: true,
  requestId: true,
  requestedAt: true,
  issuedAt: true,
  status: true,
  orderId: true,
  redeemedAt: true,
  promotion: { select: { couponValidUntil: true } },
} as const;

const withState = (row: Prisma.CouponGetPayload<{ select: typeof WITH_STATE }>): Coupon => ({
  id: row.id,
  code: row.code,
  promotionId: row.promotionId,
  userId: row.userId,
  requestId: row.requestId,
  requestedAt: row.requestedAt,
  issuedAt: row.issuedAt,
  state: {
    status: row.status as StoredCouponStatus,
    validUntil: row.promotion.couponValidUntil,
    redeemedAt: row.redeemedAt,
    orderId: row.orderId,
  },
});

/** A row of store_coupons: request_id null means "all inserted now, at issued_at". */
interface StoredRow {
  request_id: string | null;
  id: string | null;
  code: string | null;
  issued_at: Date;
}

const couponOf = (r: QueuedRequest, id: string, code: string, issuedAt: Date): Coupon => ({
  id,
  code,
  promotionId: r.promotionId,
  userId: r.userId,
  requestId: r.requestId,
  requestedAt: r.requestedAt,
  issuedAt,
});

export class PrismaCouponRepository implements CouponRepository {
  constructor(private readonly db: Db) {}

  async findByRequestId(requestId: string): Promise<Coupon | null> {
    const row = await this.db.coupon.findUnique({ where: { requestId }, select: WITH_STATE });
    return row ? withState(row) : null;
  }

  async listByUser(userId: string, promotionId: string | null, limit: number, after: string | null): Promise<Coupon[]> {
    const cursor = after ? await this.db.coupon.findUnique({ where: { id: after }, select: { userId: true, promotionId: true, issuedAt: true, id: true } }) : null;
    // A cursor that is not one of this list's rows gives an empty page, as deadLetters does.
    if (after && (!cursor || cursor.userId !== userId || (promotionId !== null && cursor.promotionId !== promotionId))) return [];
    const where = promotionId ? { userId, promotionId } : { userId };
    const rows = await this.db.coupon.findMany({
      where: cursor
        ? {
            ...where,
            // The redundant bound lets the index seek to the cursor instead of filtering every row before it.
            issuedAt: { lte: cursor.issuedAt },
            OR: [{ issuedAt: { lt: cursor.issuedAt } }, { issuedAt: cursor.issuedAt, id: { lt: cursor.id } }],
          }
        : where,
      orderBy: [{ issuedAt: 'desc' }, { id: 'desc' }],
      take: limit,
      select: WITH_STATE,
    });
    return rows.map(withState);
  }

  /**
   * The whole batch in one round trip, in autocommit: store_coupons (migration 20261127130000) takes the
   * promotions' advisory locks shared (outcome-lock.ts), then one INSERT … SELECT FROM unnest(…) ON CONFLICT
   * (request_id) DO NOTHING, so a redelivered request inserts nothing twice. When all were inserted it sends
   * back only their issued_at (the ids and codes are made here); otherwise it re-reads, in a statement of its
   * own (a fresh snapshot), the coupon of every request that has one, stored now, before, or by another
   * consumer meanwhile. A request recorded as failed gets none: it is simply not in the result.
   */
  async persistBatch(requests: QueuedRequest[]): Promise<Coupon[]> {
    if (requests.length === 0) return [];
    const unique = [...new Map(requests.map((r) => [r.requestId, r])).values()];
    const ids = unique.map(() => newCouponId());
    const codes = newCouponCodes(unique.length);
    const requestIds = unique.map((r) => r.requestId);
    const rows = await this.db.$queryRaw<StoredRow[]>`
      SELECT request_id, id, code, issued_at
      FROM store_coupons(${ids}::text[], ${codes}::text[], ${unique.map((r) => r.promotionId)}::text[],
                         ${unique.map((r) => r.userId)}::text[], ${requestIds}::text[],
                         ${unique.map((r) => r.requestedAt.toISOString())}::text[], ${unique.map((r) => r.position)}::int[])`;
    const [first] = rows;
    if (first && first.request_id === null) {
      const issuedAt = new Date(first.issued_at);
      return unique.map((r, i) => couponOf(r, ids[i] as string, codes[i] as string, issuedAt));
    }
    const byRequest = new Map(unique.map((r) => [r.requestId, r]));
    return rows.flatMap((row) => {
      const request = row.request_id === null ? undefined : byRequest.get(row.request_id);
      return request ? [couponOf(request, row.id as string, row.code as string, new Date(row.issued_at))] : [];
    });
  }
}
