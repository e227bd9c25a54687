import { createDb } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { PrismaCouponRepository } from '../src/db/coupon-repository';
import { PrismaPromotionRepository } from '../src/db/promotion-repository';
import { newPromotionId, newRequestId } from '../src/domain/identifiers';

async function main() {
  const url = 'postgresql://postgres@127.0.0.1:5432/consumer_scratch_fn';
  await migrate(url);
  const db = createDb(url, 2);
  const p = newPromotionId();
  await new PrismaPromotionRepository(db).create({ id: p, name: 'm', totalStock: 1, perUserLimit: 1, startsAt: new Date(), endsAt: new Date(Date.now() + 3600_000), endedAt: null, createdAt: new Date() });
  const repo = new PrismaCouponRepository(db);
  const batches = 100;
  const all = Array.from({ length: batches }, (_, b) => Array.from({ length: 500 }, (_, i) => ({ entryId: `1-${i}`, requestId: newRequestId(p), userId: `user${b}-${i}`, promotionId: p, requestedAt: new Date(), position: i })));
  await repo.persistBatch(all[0]!);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 1; b < batches; b++) await repo.persistBatch(all[b]!);
  const c1 = process.cpuUsage(c0);
  const n = (batches - 1) * 500;
  console.log(`node cpu µs/entry ${((c1.user + c1.system) / n).toFixed(2)}, wall µs/entry ${((performance.now() - t0) * 1000 / n).toFixed(2)}`);
  await db.$executeRawUnsafe('TRUNCATE coupons, promotions CASCADE');
  await db.$disconnect();
}
main();
