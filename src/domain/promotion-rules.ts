import { InputError } from './errors';
import type { PromotionRecord, PromotionStatus } from './types';

export const LIMITS = {
  nameMaxLength: 200,
  totalStockMax: 10_000_000,
  perUserLimitMax: 100,
  addStockMax: 1_000_000,
  listMax: 100,
  idempotencyKeyMaxLength: 64,
} as const;

export interface NewPromotion {
  name: string;
  totalStock: number;
  perUserLimit: number;
  startsAt: Date;
  endsAt: Date;
  couponValidUntil: Date | null;
}

// C0 and C1 controls and DEL: invisible in a shop page, and a NUL is refused by PostgreSQL's text type.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

// Half of a UTF-16 surrogate pair, alone: JSON allows it, PostgreSQL stores it as U+FFFD, so two different
// values would be stored as one (two order ids compared equal after a round trip through the database).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function freeText(field: string, value: string): string {
  if (CONTROL_CHARACTER.test(value)) throw new InputError(field, 'must not contain control characters');
  if (LONE_SURROGATE.test(value)) throw new InputError(field, 'must be well-formed text (a lone UTF-16 surrogate)');
  return value;
}

function intInRange(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InputError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** What an admin gives to create a promotion, before validation. */
export interface CreatePromotionInput {
  name: string;
  totalStock: number;
  perUserLimit?: number | null;
  startsAt?: Date | null;
  endsAt: Date;
  couponValidUntil?: Date | null;
}

export function validateNewPromotion(input: CreatePromotionInput, now: Date): NewPromotion {
  const name = freeText('input.name', input.name).trim();
  if (name.length < 1 || name.length > LIMITS.nameMaxLength) {
    throw new InputError('input.name', `must be 1 to ${LIMITS.nameMaxLength} characters`);
  }
  const startsAt = input.startsAt ?? now;
  if (input.endsAt.getTime() <= startsAt.getTime()) throw new InputError('input.endsAt', 'must be after startsAt');
  const couponValidUntil = input.couponValidUntil ?? null;
  // A coupon must stay usable for at least as long as it can be issued.
  if (couponValidUntil !== null && couponValidUntil.getTime() <= input.endsAt.getTime()) {
    throw new InputError('input.couponValidUntil', 'must be after endsAt');
  }
  return {
    name,
    totalStock: intInRange('input.totalStock', input.totalStock, 1, LIMITS.totalStockMax),
    perUserLimit: intInRange('input.perUserLimit', input.perUserLimit ?? 1, 1, LIMITS.perUserLimitMax),
    startsAt,
    endsAt: input.endsAt,
    couponValidUntil,
  };
}

export function validateStockAmount(amount: number): number {
  return intInRange('amount', amount, 1, LIMITS.addStockMax);
}

export function validateListSize(first: number): number {
  return intInRange('first', first, 1, LIMITS.listMax);
}

/** A page of up to `max` items. */
export function validatePageSize(first: number, max: number): number {
  return intInRange('first', first, 1, max);
}

export function validateIdempotencyKey(key: string | null | undefined): string | null {
  if (key === null || key === undefined) return null;
  if (key.length < 1 || key.length > LIMITS.idempotencyKeyMaxLength) {
    throw new InputError('idempotencyKey', `must be 1 to ${LIMITS.idempotencyKeyMaxLength} characters`);
  }
  return freeText('idempotencyKey', key);
}

/**
 * An admin's idempotency key is stored in PostgreSQL and appears in logs: control characters are refused
 * (PostgreSQL text cannot even hold NUL).
 */
export function validateAdminIdempotencyKey(key: string | null | undefined): string | null {
  const checked = validateIdempotencyKey(key);
  if (checked !== null && /[\u0000-\u001f\u007f-\u009f]/.test(checked)) {
    throw new InputError('idempotencyKey', 'must not contain control characters');
  }
  return checked;
}

/** The status a client sees. An early end (endPromotion) and the natural end both read as ENDED. */
export function promotionStatus(
  promotion: Pick<PromotionRecord, 'startsAt' | 'endsAt' | 'endedAt'>,
  remainingStock: number,
  now: Date,
): PromotionStatus {
  const t = now.getTime();
  if (promotion.endedAt !== null || t >= promotion.endsAt.getTime()) return 'ENDED';
  if (t < promotion.startsAt.getTime()) return 'SCHEDULED';
  return remainingStock > 0 ? 'ACTIVE' : 'SOLD_OUT';
}
