import { registerEnumType } from 'type-graphql';

export enum PromotionStatusEnum {
  SCHEDULED = 'SCHEDULED',
  ACTIVE = 'ACTIVE',
  SOLD_OUT = 'SOLD_OUT',
  ENDED = 'ENDED',
}

export enum IssueOutcomeEnum {
  QUEUED = 'QUEUED',
  ALREADY_REQUESTED = 'ALREADY_REQUESTED',
  SOLD_OUT = 'SOLD_OUT',
  NOT_STARTED = 'NOT_STARTED',
  ENDED = 'ENDED',
  NOT_FOUND = 'NOT_FOUND',
}

export enum IssuanceStatusEnum {
  QUEUED = 'QUEUED',
  ISSUED = 'ISSUED',
  FAILED = 'FAILED',
}

export enum CouponStatusEnum {
  ACTIVE = 'ACTIVE',
  REDEEMED = 'REDEEMED',
  REVOKED = 'REVOKED',
  EXPIRED = 'EXPIRED',
}

export enum RedeemOutcomeEnum {
  REDEEMED = 'REDEEMED',
  ALREADY_REDEEMED = 'ALREADY_REDEEMED',
  EXPIRED = 'EXPIRED',
  REVOKED = 'REVOKED',
  NOT_OWNER = 'NOT_OWNER',
  NOT_FOUND = 'NOT_FOUND',
}

registerEnumType(PromotionStatusEnum, { name: 'PromotionStatus' });
registerEnumType(IssueOutcomeEnum, {
  name: 'IssueOutcome',
  valuesConfig: {
    QUEUED: { description: 'stock reserved and the request queued; a confirmation follows' },
    ALREADY_REQUESTED: { description: 'this user has reached perUserLimit for this promotion' },
    NOT_FOUND: { description: 'no such promotion' },
  },
});
registerEnumType(IssuanceStatusEnum, { name: 'IssuanceStatus' });
registerEnumType(CouponStatusEnum, { name: 'CouponStatus' });
registerEnumType(RedeemOutcomeEnum, {
  name: 'RedeemOutcome',
  valuesConfig: {
    REDEEMED: { description: 'this order now holds the coupon (also the answer to a repeat of the same code + orderId)' },
    ALREADY_REDEEMED: { description: 'another order holds it' },
    NOT_OWNER: { description: 'the coupon belongs to another user' },
  },
});
