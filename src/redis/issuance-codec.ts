import { promotionIdOfRequest } from '../domain/identifiers';
import type { Issuance, IssuanceStatus } from '../domain/types';

/**
 * How an issuance travels through Redis: as a status hash (STATUS_FIELDS) and as a pub/sub message (JSON).
 */

/**
 * The fields of a request's status hash, one letter each (there is one hash per request). The Lua scripts
 * that write the hash get these very names as a table STATUS (statusFieldsLua, put in front of them by
 * scripts.ts), so the names are spelled here only.
 */
export const STATUS_FIELDS = {
  status: 's',
  userId: 'u',
  requestedAt: 't', // ms
  position: 'n',
  couponId: 'c',
  code: 'k',
  issuedAt: 'i', // ms
  failureReason: 'f',
} as const;

/** `local STATUS = { status = 's', ... }`: the status hash's field names for a Lua script. */
export function statusFieldsLua(): string {
  const entries = Object.entries(STATUS_FIELDS).map(([name, field]) => `${name} = '${field}'`);
  return `local STATUS = { ${entries.join(', ')} }`;
}

/** `"<letter>":` for each field: the message is written as text, once per confirmed request, on the hot path. */
const KEY = Object.fromEntries(Object.entries(STATUS_FIELDS).map(([name, field]) => [name, `"${field}":`])) as Record<keyof typeof STATUS_FIELDS, string>;

/** The pub/sub message: r (requestId), the status hash's fields, and p (when it was sent for publishing, ms). */
export function encodeIssuance(issuance: Issuance, publishedAtMs?: number): string {
  const str = JSON.stringify;
  let json = `{"r":${str(issuance.requestId)},${KEY.userId}${str(issuance.userId)},${KEY.status}${str(issuance.status)},${KEY.requestedAt}${issuance.requestedAt.getTime()}`;
  const coupon = issuance.coupon;
  if (coupon) json += `,${KEY.couponId}${str(coupon.id)},${KEY.code}${str(coupon.code)},${KEY.issuedAt}${coupon.issuedAt.getTime()}`;
  if (issuance.failureReason !== null) json += `,${KEY.failureReason}${str(issuance.failureReason)}`;
  if (publishedAtMs !== undefined) json += `,"p":${publishedAtMs}`;
  return `${json}}`;
}

/** A pub/sub message: the issuance, and when it was sent for publishing (null when the sender did not say). */
export function decodeMessage(message: string): { issuance: Issuance; publishedAtMs: number | null } | null {
  let fields: Record<string, string | number | undefined>;
  try {
    fields = JSON.parse(message) as Record<string, string | number | undefined>;
  } catch {
    return null; // not ours: a message that is not JSON cannot be an issuance
  }
  const issuance = decodeIssuance(fields);
  if (!issuance) return null;
  return { issuance, publishedAtMs: typeof fields.p === 'number' ? fields.p : null };
}

/**
 * From the pub/sub JSON or from a status hash (whose values are strings). Null when malformed. The message
 * and the hash use the same letters (STATUS_FIELDS), and the message adds r (requestId).
 */
export function decodeIssuance(fields: Record<string, string | number | undefined>, requestId?: string): Issuance | null {
  const F = STATUS_FIELDS;
  const id = requestId ?? (fields.r as string | undefined);
  const status = fields[F.status] as IssuanceStatus | undefined;
  const userId = fields[F.userId] as string | undefined;
  if (!id || !status || !userId) return null;
  const promotionId = promotionIdOfRequest(id);
  if (!promotionId) return null;
  const hasCoupon = status === 'ISSUED' && fields[F.couponId] !== undefined && fields[F.code] !== undefined;
  return {
    requestId: id,
    promotionId,
    userId,
    status,
    requestedAt: new Date(Number(fields[F.requestedAt])),
    coupon: hasCoupon
      ? {
          id: String(fields[F.couponId]),
          code: String(fields[F.code]),
          promotionId,
          userId,
          requestId: id,
          requestedAt: new Date(Number(fields[F.requestedAt])),
          issuedAt: new Date(Number(fields[F.issuedAt])),
        }
      : null,
    failureReason: status === 'FAILED' ? String(fields[F.failureReason] ?? 'could not be stored') : null,
  };
}
