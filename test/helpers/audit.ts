import { PrismaAuditRepository } from '../../src/db/audit-repository';
import type { Db } from '../../src/db/client';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { AuditService } from '../../src/domain/audit-service';
import type { PromotionAudit } from '../../src/domain/types';
import type { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';

/** The audit as `promotionAudit` and `npm run audit` read it, for a fault test to end with. */
export function auditFor(redis: ScriptedRedis, keys: RedisKeys, db: Db): (promotionId: string) => Promise<PromotionAudit | null> {
  const service = new AuditService(new RedisReservationStore(redis, keys), new PrismaAuditRepository(db), new PrismaPromotionRepository(db), {
    now: () => new Date(),
  });
  return (promotionId) => service.check(promotionId);
}

/** Every fault test ends here: the books of the promotion balance, and nobody is over the limit. */
export async function expectAuditHolds(audit: (promotionId: string) => Promise<PromotionAudit | null>, promotionId: string): Promise<PromotionAudit> {
  const terms = await audit(promotionId);
  expect(terms).toMatchObject({ holds: true, usersOverLimit: 0 });
  return terms as PromotionAudit;
}
