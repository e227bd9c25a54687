import type { AuditRepository } from '../domain/ports';
import type { Db } from './client';

/**
 * The audit's PostgreSQL terms. Only rows of reservations made before Redis was read count (position up to
 * `reservations`), so a coupon stored between the two reads is never counted twice or against the wrong stock.
 */
export class PrismaAuditRepository implements AuditRepository {
  constructor(private readonly db: Db) {}

  async termsAt(args: {
    promotionId: string;
    reservations: number;
    perUserLimit: number;
    inFlight: { requestId: string; userId: string }[];
  }): Promise<{ persisted: number; failed: number; storedInFlight: number; usersOverLimit: number }> {
    const { promotionId, reservations, perUserLimit, inFlight } = args;
    const requestIds = inFlight.map((r) => r.requestId);
    const userIds = inFlight.map((r) => r.userId);
    const [row] = await this.db.$queryRaw<{ persisted: number; failed: number; stored_in_flight: number; users_over: number }[]>`
      WITH stored AS (
        SELECT user_id, request_id FROM coupons
        WHERE promotion_id = ${promotionId}::uuid AND position <= ${reservations}
      ),
      in_flight AS (
        SELECT t.request_id, t.user_id FROM unnest(${requestIds}::text[], ${userIds}::text[]) AS t(request_id, user_id)
        WHERE NOT EXISTS (SELECT 1 FROM coupons c WHERE c.request_id = t.request_id)
      ),
      held AS (
        SELECT user_id FROM stored UNION ALL SELECT user_id FROM in_flight
      )
      SELECT
        (SELECT count(*) FROM stored)::int AS persisted,
        (SELECT count(*) FROM failed_requests f
           WHERE f.promotion_id = ${promotionId}::uuid AND f.position <= ${reservations})::int AS failed,
        (${requestIds.length}::int - (SELECT count(*) FROM in_flight))::int AS stored_in_flight,
        (SELECT count(*) FROM (SELECT user_id FROM held GROUP BY user_id HAVING count(*) > ${perUserLimit}) o)::int AS users_over`;
    return {
      persisted: row?.persisted ?? 0,
      failed: row?.failed ?? 0,
      storedInFlight: row?.stored_in_flight ?? 0,
      usersOverLimit: row?.users_over ?? 0,
    };
  }
}
