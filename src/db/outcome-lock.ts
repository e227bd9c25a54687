import type { Db } from './client';

/**
 * A queued request ends stored (a coupon) or failed (a failed_requests row), never both, even when two
 * consumers hold it at once (a frozen holder that wakes up after another took its entry over). Storing holds
 * its promotion's advisory lock shared (inside the store_coupons function, see its migration) and recording a
 * failure holds it exclusive, each until its transaction ends, and each then checks for the other outcome in
 * a statement that starts after the lock is held (so it sees what the other committed). Batches of one
 * promotion still store side by side. Both take the key as hashtextextended(<promotion id as text>, 0).
 */
const lockKey = 'hashtextextended(p, 0)';

export function lockForFailing(db: Db, promotionId: string) {
  return db.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${lockKey}) FROM (SELECT $1::text AS p) AS t`, promotionId);
}
