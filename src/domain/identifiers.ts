import { randomBytes, randomUUID } from 'node:crypto';

/**
 * Identifiers and their formats.
 * A requestId carries its promotion id (`<promotionId>.<random>`), so any instance can find the
 * promotion's Redis keys (one hash-tagged slot) from the requestId alone.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const REQUEST_SUFFIX = /^[0-9a-f]{32}$/;
/** Identity providers' subjects (`auth0|abc`, emails, URNs) fit; nothing that needs escaping anywhere. */
export const USER_ID_MAX_LENGTH = 128;
const USER_ID = /^[A-Za-z0-9_\-.:@|]{1,128}$/;

// 32 symbols, no 0/O and no 1/I: safe to read aloud or type from a screen.
const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
export const COUPON_CODE_LENGTH = 16;
const COUPON_CODE = new RegExp(`^[${CODE_ALPHABET}]{${COUPON_CODE_LENGTH}}$`);

export const newPromotionId = (): string => randomUUID();
export const newCouponId = (): string => randomUUID();
export const newRequestId = (promotionId: string): string =>
  `${promotionId}.${randomUUID().replace(/-/g, '')}`;

export function isPromotionId(value: string): boolean {
  return UUID.test(value);
}

/** Coupon ids are UUIDs too (the column's type): anything else names no coupon. */
export function isCouponId(value: string): boolean {
  return UUID.test(value);
}

/** A code this service could have made: anything else names no coupon (and is not looked up). */
export function isCouponCode(value: string): boolean {
  return COUPON_CODE.test(value);
}

export function isUserId(value: string): boolean {
  return USER_ID.test(value);
}

/** The promotion a requestId belongs to, or null when the id is not one this service made. */
export function promotionIdOfRequest(requestId: string): string | null {
  const dot = requestId.indexOf('.');
  if (dot < 0) return null;
  const promotionId = requestId.slice(0, dot);
  return isPromotionId(promotionId) && REQUEST_SUFFIX.test(requestId.slice(dot + 1)) ? promotionId : null;
}

/** 16 symbols of 32 = 80 random bits; the unique index in PostgreSQL backs it. */
export function newCouponCode(): string {
  return newCouponCodes(1)[0] as string;
}

/** `count` codes from one draw of random bytes: a batch of coupons asks the system for randomness once. */
export function newCouponCodes(count: number): string[] {
  const bytes = randomBytes(COUPON_CODE_LENGTH * count);
  const codes: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    let code = '';
    for (let j = i * COUPON_CODE_LENGTH; j < (i + 1) * COUPON_CODE_LENGTH; j++) code += CODE_ALPHABET[(bytes[j] as number) & 31];
    codes[i] = code;
  }
  return codes;
}
