import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config';
import { PrismaAuditRepository } from '../db/audit-repository';
import { createDb } from '../db/client';
import { PrismaPromotionRepository } from '../db/promotion-repository';
import { AuditService, type AuditOutcome } from '../domain/audit-service';
import type { PromotionAudit } from '../domain/types';
import { connectRedis, createRedis, redisTarget } from '../redis/client';
import { RedisKeys } from '../redis/keys';
import { RedisReservationStore } from '../redis/reservation-store';

/**
 * npm run audit [-- --promotion ID]: the invariant's terms of every promotion PostgreSQL says Redis should
 * still serve (not over, or over within the last hour), or of one, one line each, read as promotionAudit reads
 * them. Exits 0 when all hold, 1 when one does not, 2 when it could not check (bad configuration, Redis or
 * PostgreSQL unreachable, an unknown promotion, a promotion Redis holds nothing for).
 */
export function formatAudit(a: PromotionAudit): string {
  return [
    a.holds ? 'HOLDS' : 'BROKEN',
    a.promotionId,
    `total=${a.totalStock}`,
    `remaining=${a.remainingStock}`,
    `persisted=${a.persisted}`,
    `inFlight=${a.inFlight}`,
    `failed=${a.failed}`,
    `usersOverLimit=${a.usersOverLimit}`,
  ].join(' ');
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { promotion: { type: 'string' } } });
  const config = loadConfig();
  const db = createDb(config.databaseUrl);
  const redis = createRedis(redisTarget(config), 'coupon-audit');
  try {
    await connectRedis(redis);
    const promotions = new PrismaPromotionRepository(db);
    const reservations = new RedisReservationStore(redis, new RedisKeys(config.redisKeyPrefix));
    const service = new AuditService(reservations, new PrismaAuditRepository(db), promotions, { now: () => new Date() });
    let outcomes: AuditOutcome[];
    if (values.promotion) {
      const one = await service.check(values.promotion);
      if (!one) {
        console.error(`no such promotion: ${values.promotion}`);
        return 2;
      }
      outcomes = [{ promotionId: one.promotionId, audit: one }];
    } else {
      outcomes = await service.checkAll();
    }
    for (const o of outcomes) console.log('audit' in o ? formatAudit(o.audit) : `UNCHECKED ${o.promotionId} ${o.error.message}`);
    if (outcomes.length === 0) console.log('no promotion to check');
    if (outcomes.some((o) => 'error' in o)) return 2;
    return outcomes.every((o) => 'audit' in o && o.audit.holds) ? 0 : 1;
  } finally {
    redis.disconnect();
    await db.$disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError || error instanceof Error ? `could not check: ${error.message}` : error);
    process.exit(2);
  },
);
