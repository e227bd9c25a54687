import { promotionIdOfRequest } from '../domain/identifiers';
import type { Issuance, IssuanceStatus } from '../domain/types';

/**
 * How an issuance travels through Redis: as a status hash (s, u, t, c, k, i, f) and as a pub/sub message (JSON).
 */

export interface IssuanceMessage {
  r: string; // requestId
  u: string; // userId
  s: IssuanceStatus;
  t: number; // requestedAt, ms
  c?: string; // coupon id
  k?: string; // coupon code
  i?: number; // issuedAt, ms
  f?: string; // failure reason
}

export function encodeIssuance(issuance: Issuance): string {
  const message: IssuanceMessage = {
    r: issuance.requestId,
    u: issuance.userId,
    s: issuance.status,
    t: issuance.requestedAt.getTime(),
  };
  if (issuance.coupon) {
    message.c = issuance.coupon.id;
    message.k = issuance.coupon.code;
    message.i = issuance.coupon.issuedAt.getTime();
  }
  if (issuance.failureReason !== null) message.f = issuance.failureReason;
  return JSON.stringify(message);
}

/** From the pub/sub JSON or from a status hash (whose values are strings). Null when malformed. */
export function decodeIssuance(fields: Record<string, string | number | undefined>, requestId?: string): Issuance | null {
  const id = requestId ?? (fields.r as string | undefined);
  const status = fields.s as IssuanceStatus | undefined;
  const userId = fields.u as string | undefined;
  if (!id || !status || !userId) return null;
  const promotionId = promotionIdOfRequest(id);
  if (!promotionId) return null;
  const hasCoupon = status === 'ISSUED' && fields.c !== undefined && fields.k !== undefined;
  return {
    requestId: id,
    promotionId,
    userId,
    status,
    requestedAt: new Date(Number(fields.t)),
    coupon: hasCoupon
      ? {
          id: String(fields.c),
          code: String(fields.k),
          promotionId,
          userId,
          requestId: id,
          requestedAt: new Date(Number(fields.t)),
          issuedAt: new Date(Number(fields.i)),
        }
      : null,
    failureReason: status === 'FAILED' ? String(fields.f ?? 'could not be stored') : null,
  };
}
