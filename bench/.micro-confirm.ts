import { randomBytes } from 'node:crypto';
import { connectRedis, createRedis } from '../src/redis/client';
import { RedisKeys } from '../src/redis/keys';
import { RedisStreamQueue } from '../src/redis/stream-queue';
import { newCouponId, newRequestId, newPromotionId } from '../src/domain/identifiers';

async function main() {
  const prefix = `consumer-micro:${randomBytes(3).toString('hex')}:`;
  const redis = createRedis('redis://127.0.0.1:6379', 'm');
  await connectRedis(redis);
  const keys = new RedisKeys(prefix);
  const q = new RedisStreamQueue(redis, redis, keys, 60_000);
  const p = newPromotionId();
  const batches = 200;
  const stat = async () => { const s = await redis.info('commandstats'); const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(s); return m ? [Number(m[1]), Number(m[2])] : [0, 0]; };
  const s0 = await stat();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    const stored = Array.from({ length: 500 }, (_, i) => {
      const requestId = newRequestId(p);
      return { request: { entryId: `1795790432047-${i}`, requestId, userId: `user${b}-${i}`, promotionId: p, requestedAt: new Date(), position: i }, coupon: { id: newCouponId(), code: 'ABCDEFGHJKLMNPQR', promotionId: p, userId: `user${b}-${i}`, requestId, requestedAt: new Date(), issuedAt: new Date() } };
    });
    await q.confirm(p, stored);
  }
  const c1 = process.cpuUsage(c0);
  const s1 = await stat();
  console.log(`node cpu µs/entry ${((c1.user + c1.system) / (batches * 500)).toFixed(2)}, redis µs/entry ${((s1[1] - s0[1]) / (batches * 500)).toFixed(2)}, wall ${(performance.now() - t0).toFixed(0)} ms`);
  let cursor = '0';
  do { const [n, ks] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000); if (ks.length) await redis.unlink(...ks); cursor = n; } while (cursor !== '0');
  redis.disconnect();
}
main();
