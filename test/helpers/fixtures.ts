import { newPromotionId } from '../../src/domain/identifiers';
import type { PromotionRecord } from '../../src/domain/types';

const HOUR = 3600_000;

/** A promotion open since an hour ago and for another hour, one coupon per user: change what a test needs. */
export function promotionRecord(overrides: Partial<PromotionRecord> = {}): PromotionRecord {
  const now = Date.now();
  return {
    id: newPromotionId(),
    name: 'test promotion',
    totalStock: 10,
    perUserLimit: 1,
    startsAt: new Date(now - HOUR),
    endsAt: new Date(now + HOUR),
    endedAt: null,
    createdAt: new Date(now),
    ...overrides,
  };
}
