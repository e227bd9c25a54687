import type { FailureRepository } from '../domain/ports';
import type { DeadLetter } from '../domain/types';
import type { Db } from './client';

export class PrismaFailureRepository implements FailureRepository {
  constructor(private readonly db: Db) {}

  async record(failure: Omit<DeadLetter, 'failedAt'>): Promise<void> {
    await this.db.failedRequest.createMany({ data: [failure], skipDuplicates: true });
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
            OR: [{ failedAt: { lt: cursor.failedAt } }, { failedAt: cursor.failedAt, requestId: { lt: cursor.requestId } }],
          }
        : { promotionId },
      orderBy: [{ failedAt: 'desc' }, { requestId: 'desc' }],
      take: limit,
    });
  }
}
