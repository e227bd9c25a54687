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
