/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "mutation IssueCoupon($promotionId: ID!, $idempotencyKey: String) {\n  issueCoupon(promotionId: $promotionId, idempotencyKey: $idempotencyKey) {\n    outcome\n    requestId\n    position\n    remainingStock\n  }\n}\n\nquery Issuance($requestId: ID!) {\n  issuance(requestId: $requestId) {\n    ...IssuanceState\n  }\n}\n\nsubscription CouponIssued($requestId: ID, $promotionId: ID) {\n  couponIssued(requestId: $requestId, promotionId: $promotionId) {\n    ...IssuanceState\n  }\n}\n\nquery MyCoupons($promotionId: ID, $first: Int, $after: ID) {\n  myCoupons(promotionId: $promotionId, first: $first, after: $after) {\n    ...CouponDetails\n  }\n}\n\nfragment CouponDetails on Coupon {\n  id\n  code\n  promotionId\n  requestId\n  issuedAt\n  status\n  validUntil\n  redeemedAt\n  orderId\n}\n\nfragment IssuanceState on Issuance {\n  requestId\n  promotionId\n  status\n  requestedAt\n  failureReason\n  coupon {\n    ...CouponDetails\n  }\n}": typeof types.IssueCouponDocument,
    "query Promotion($id: ID!) {\n  promotion(id: $id) {\n    ...PromotionSummary\n  }\n}\n\nquery Promotions($status: PromotionStatus, $first: Int, $after: ID) {\n  promotions(status: $status, first: $first, after: $after) {\n    ...PromotionSummary\n  }\n}\n\nfragment PromotionSummary on Promotion {\n  id\n  name\n  totalStock\n  remainingStock\n  issuedCount\n  perUserLimit\n  startsAt\n  endsAt\n  status\n}\n\nsubscription PromotionStock($promotionId: ID!) {\n  promotionStock(promotionId: $promotionId) {\n    promotionId\n    remainingStock\n    status\n    at\n  }\n}": typeof types.PromotionDocument,
};
const documents: Documents = {
    "mutation IssueCoupon($promotionId: ID!, $idempotencyKey: String) {\n  issueCoupon(promotionId: $promotionId, idempotencyKey: $idempotencyKey) {\n    outcome\n    requestId\n    position\n    remainingStock\n  }\n}\n\nquery Issuance($requestId: ID!) {\n  issuance(requestId: $requestId) {\n    ...IssuanceState\n  }\n}\n\nsubscription CouponIssued($requestId: ID, $promotionId: ID) {\n  couponIssued(requestId: $requestId, promotionId: $promotionId) {\n    ...IssuanceState\n  }\n}\n\nquery MyCoupons($promotionId: ID, $first: Int, $after: ID) {\n  myCoupons(promotionId: $promotionId, first: $first, after: $after) {\n    ...CouponDetails\n  }\n}\n\nfragment CouponDetails on Coupon {\n  id\n  code\n  promotionId\n  requestId\n  issuedAt\n  status\n  validUntil\n  redeemedAt\n  orderId\n}\n\nfragment IssuanceState on Issuance {\n  requestId\n  promotionId\n  status\n  requestedAt\n  failureReason\n  coupon {\n    ...CouponDetails\n  }\n}": types.IssueCouponDocument,
    "query Promotion($id: ID!) {\n  promotion(id: $id) {\n    ...PromotionSummary\n  }\n}\n\nquery Promotions($status: PromotionStatus, $first: Int, $after: ID) {\n  promotions(status: $status, first: $first, after: $after) {\n    ...PromotionSummary\n  }\n}\n\nfragment PromotionSummary on Promotion {\n  id\n  name\n  totalStock\n  remainingStock\n  issuedCount\n  perUserLimit\n  startsAt\n  endsAt\n  status\n}\n\nsubscription PromotionStock($promotionId: ID!) {\n  promotionStock(promotionId: $promotionId) {\n    promotionId\n    remainingStock\n    status\n    at\n  }\n}": types.PromotionDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation IssueCoupon($promotionId: ID!, $idempotencyKey: String) {\n  issueCoupon(promotionId: $promotionId, idempotencyKey: $idempotencyKey) {\n    outcome\n    requestId\n    position\n    remainingStock\n  }\n}\n\nquery Issuance($requestId: ID!) {\n  issuance(requestId: $requestId) {\n    ...IssuanceState\n  }\n}\n\nsubscription CouponIssued($requestId: ID, $promotionId: ID) {\n  couponIssued(requestId: $requestId, promotionId: $promotionId) {\n    ...IssuanceState\n  }\n}\n\nquery MyCoupons($promotionId: ID, $first: Int, $after: ID) {\n  myCoupons(promotionId: $promotionId, first: $first, after: $after) {\n    ...CouponDetails\n  }\n}\n\nfragment CouponDetails on Coupon {\n  id\n  code\n  promotionId\n  requestId\n  issuedAt\n  status\n  validUntil\n  redeemedAt\n  orderId\n}\n\nfragment IssuanceState on Issuance {\n  requestId\n  promotionId\n  status\n  requestedAt\n  failureReason\n  coupon {\n    ...CouponDetails\n  }\n}"): (typeof documents)["mutation IssueCoupon($promotionId: ID!, $idempotencyKey: String) {\n  issueCoupon(promotionId: $promotionId, idempotencyKey: $idempotencyKey) {\n    outcome\n    requestId\n    position\n    remainingStock\n  }\n}\n\nquery Issuance($requestId: ID!) {\n  issuance(requestId: $requestId) {\n    ...IssuanceState\n  }\n}\n\nsubscription CouponIssued($requestId: ID, $promotionId: ID) {\n  couponIssued(requestId: $requestId, promotionId: $promotionId) {\n    ...IssuanceState\n  }\n}\n\nquery MyCoupons($promotionId: ID, $first: Int, $after: ID) {\n  myCoupons(promotionId: $promotionId, first: $first, after: $after) {\n    ...CouponDetails\n  }\n}\n\nfragment CouponDetails on Coupon {\n  id\n  code\n  promotionId\n  requestId\n  issuedAt\n  status\n  validUntil\n  redeemedAt\n  orderId\n}\n\nfragment IssuanceState on Issuance {\n  requestId\n  promotionId\n  status\n  requestedAt\n  failureReason\n  coupon {\n    ...CouponDetails\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query Promotion($id: ID!) {\n  promotion(id: $id) {\n    ...PromotionSummary\n  }\n}\n\nquery Promotions($status: PromotionStatus, $first: Int, $after: ID) {\n  promotions(status: $status, first: $first, after: $after) {\n    ...PromotionSummary\n  }\n}\n\nfragment PromotionSummary on Promotion {\n  id\n  name\n  totalStock\n  remainingStock\n  issuedCount\n  perUserLimit\n  startsAt\n  endsAt\n  status\n}\n\nsubscription PromotionStock($promotionId: ID!) {\n  promotionStock(promotionId: $promotionId) {\n    promotionId\n    remainingStock\n    status\n    at\n  }\n}"): (typeof documents)["query Promotion($id: ID!) {\n  promotion(id: $id) {\n    ...PromotionSummary\n  }\n}\n\nquery Promotions($status: PromotionStatus, $first: Int, $after: ID) {\n  promotions(status: $status, first: $first, after: $after) {\n    ...PromotionSummary\n  }\n}\n\nfragment PromotionSummary on Promotion {\n  id\n  name\n  totalStock\n  remainingStock\n  issuedCount\n  perUserLimit\n  startsAt\n  endsAt\n  status\n}\n\nsubscription PromotionStock($promotionId: ID!) {\n  promotionStock(promotionId: $promotionId) {\n    promotionId\n    remainingStock\n    status\n    at\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;