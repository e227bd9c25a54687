import type { Prisma } from '../generated/prisma/client';
import type { PromotionCursor, PromotionRepository, PromotionWindowFilter, StockAddition, UserHoldings } from '../domain/ports';
import type { PromotionRecord } from '../domain/types';
import type { Db } from './client';

type Row = Prisma.PromotionGetPayload<object>;

const toRecord = (row: Row): PromotionRecord => ({
  id: row.id,
  name: row.name,
  totalStock: row.totalStock,
  perUserLimit: row.perUserLimit,
  startsAt: row.startsAt,
  endsAt: row.endsAt,
  endedAt: row.endedAt,
  couponValidUntil: row.couponValidUntil,
  createdAt: row.createdAt,
});

function windowWhere(window: PromotionWindowFilter | undefined, now: Date): Prisma.PromotionWhereInput {
  switch (window) {
    case 'SCHEDULED':
      return { endedAt: null, startsAt: { gt: now }, endsAt: { gt: now } };
    case 'OPEN':
      return { endedAt: null, startsAt: { lte: now }, endsAt: { gt: now } };
    case 'ENDED':
      return { OR: [{ endedAt: { not: null } }, { endsAt: { lte: now } }] };
    default:
      return {};
  }
}

export class PrismaPromotionRepository implements PromotionRepository {
  constructor(private readonly db: Db) {}

  async create(p: PromotionRecord): Promise<void> {
    await this.db.promotion.create({ data: { ...p } });
  }

  async findById(id: string): Promise<PromotionRecord | null> {
    const row = await this.db.promotion.findUnique({ where: { id } });
    return row ? toRecord(row) : null;
  }

  async list(options: { window?: PromotionWindowFilter; now: Date; limit: number; after?: PromotionCursor }): Promise<PromotionRecord[]> {
    const where = windowWhere(options.window, options.now);
    const after = options.after;
    const rows = await this.db.promotion.findMany({
      where: after
        ? {
            AND: [
              where,
              // The redundant bound lets the index seek to the cursor instead of filtering every row before it.
              { createdAt: { lte: after.createdAt } },
              { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] },
            ],
          }
        : where,
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: options.limit,
    });
    return rows.map(toRecord);
  }

  async listRecent(overSince: Date): Promise<PromotionRecord[]> {
    const rows = await this.db.promotion.findMany({
      where: { OR: [{ endedAt: null, endsAt: { gt: overSince } }, { endedAt: { gt: overSince } }] },
    });
    return rows.map(toRecord);
  }

  async addStock(id: string, amount: number, idempotencyKey: string | null): Promise<StockAddition | null> {
    return this.db.$transaction(async (tx) => {
      if (idempotencyKey !== null) {
        // The primary key (promotion_id, idempotency_key) settles concurrent repeats: the second insert waits
        // for the first transaction, then inserts nothing.
        const promotion = await tx.promotion.findUnique({ where: { id } });
        if (!promotion) return null;
        const { count } = await tx.stockAddition.createMany({ data: [{ promotionId: id, idempotencyKey, amount }], skipDuplicates: true });
        if (count === 0) {
          const first = await tx.stockAddition.findUniqueOrThrow({ where: { promotionId_idempotencyKey: { promotionId: id, idempotencyKey } } });
          // Read again: the first call may have committed its new total while this insert waited for it.
          const now = await tx.promotion.findUniqueOrThrow({ where: { id } });
          return { promotion: toRecord(now), added: false, amount: first.amount };
        }
      }
      const rows = await tx.promotion.updateManyAndReturn({ where: { id }, data: { totalStock: { increment: amount } } });
      return rows[0] ? { promotion: toRecord(rows[0]), added: true, amount } : null;
    });
  }

  async end(id: string, at: Date): Promise<PromotionRecord | null> {
    // Keeps the first end time when ended twice.
    await this.db.promotion.updateMany({ where: { id, endedAt: null }, data: { endedAt: at } });
    return this.findById(id);
  }

  async issuedCounts(ids: string[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>(ids.map((id) => [id, 0]));
    if (ids.length === 0) return counts;
    const groups = await this.db.coupon.groupBy({
      by: ['promotionId'],
      where: { promotionId: { in: ids } },
      _count: { _all: true },
    });
    for (const g of groups) counts.set(g.promotionId, g._count._all);
    return counts;
  }

  async lastPosition(promotionId: string): Promise<number> {
    const [row] = await this.db.$queryRaw<{ last: number }[]>`
      SELECT GREATEST(
        (SELECT COALESCE(max(position), 0) FROM coupons WHERE promotion_id = ${promotionId}::uuid),
        (SELECT COALESCE(max(position), 0) FROM failed_requests WHERE promotion_id = ${promotionId}::uuid))::int AS last`;
    return row?.last ?? 0;
  }

  async couponsPerUser(promotionId: string): Promise<Map<string, UserHoldings>> {
    const rows = await this.db.$queryRaw<{ user_id: string; count: number; last_request_id: string }[]>`
      SELECT user_id, count(*)::int AS count,
             (array_agg(request_id ORDER BY requested_at DESC, request_id DESC))[1] AS last_request_id
      FROM coupons WHERE promotion_id = ${promotionId}::uuid GROUP BY user_id`;
    return new Map(rows.map((r) => [r.user_id, { count: r.count, lastRequestId: r.last_request_id }]));
  }
}
