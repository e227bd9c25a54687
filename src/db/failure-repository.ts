import type { FailureRepository } from '../domain/ports';
import type { DeadLetter } from '../domain/types';
import type { Db } from './client';
import { lockForFailing } from './outcome-lock';

export class PrismaFailureRepository implements FailureRepository {
  constructor(private readonly db: Db) {}

  async record(failure: Omit<DeadLetter, 'failedAt'>): Promise<'failed' | 'stored'> {
    const f = failure;
    const [, , stored] = await this.db.$transaction([
      lockForFailing(this.db, f.promotionId),
      this.db.$executeRaw`
        INSERT INTO failed_requests (request_id, promotion_id, user_id, position, reason, deliveries, requested_at)
        SELECT ${f.requestId}, ${f.promotionId}::uuid, ${f.userId}, ${f.position}, ${f.reason}, ${f.deliveries}, ${f.requestedAt}
        WHERE NOT EXISTS (SELECT 1 FROM coupons WHERE request_id = ${f.requestId})
        ON CONFLICT (request_id) DO NOTHING`,
      this.db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM coupons WHERE request_id = ${f.requestId}`,
    ]);
    return (stored[0]?.n ?? 0) > 0 ? 'stored' : 'failed';
  }

  async find(requestId: string): Promise<DeadLetter | null> {
    return this.db.failedRequest.findUnique({ where: { requestId } });
  }

  async reasonsOf(requestIds: string[]): Promise<Map<string, string>> {
    if (requestIds.length === 0) return new Map();
    const rows = await this.db.failedRequest.findMany({ where: { requestId: { in: requestIds } }, select: { requestId: true, reason: true } });
    return new Map(rows.map((r) => [r.requestId, r.reason]));
  }

  async list(promotionId: string, limit: number, after: string | null): Promise<DeadLetter[]> {
    const cursor = after ? await this.db.failedRequest.findUnique({ where: { requestId: after } }) : null;
    if (after && (!cursor || cursor.promotionId !== promotionId)) return [];
    return this.db.failedRequest.findMany({
      where: cursor
        ? {
            promotionId,
            // The redundant bound lets the index seek to the cursor instead of filtering every row before it.
            failedAt: { lte: cursor.failedAt },
            OR: [{ failedAt: { lt: cursor.failedAt } }, { failedAt: cursor.failedAt, requestId: { lt: cursor.requestId } }],
          }
        : { promotionId },
      orderBy: [{ failedAt: 'desc' }, { requestId: 'desc' }],
      take: limit,
    });
  }
}
