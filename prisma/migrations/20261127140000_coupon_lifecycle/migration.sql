-- The coupon lifecycle: validity, redemption at checkout, cancellation and revocation.
--
-- Issuance must not pay for any of it: the new coupon columns are nullable or carry a constant default, which
-- PostgreSQL adds without rewriting the table and store_coupons (migration 20261127130000) does not name, and
-- no index or trigger is added on coupons. A coupon's validity is its promotion's coupon_valid_until, read
-- through the join at read time rather than copied into every row at insert. EXPIRED is never stored: it is
-- derived from the validity when read.

ALTER TABLE "promotions" ADD COLUMN "coupon_valid_until" TIMESTAMPTZ(3);

-- status holds what was decided: ACTIVE, REDEEMED or REVOKED.
ALTER TABLE "coupons"
    ADD COLUMN "status" VARCHAR(8) NOT NULL DEFAULT 'ACTIVE',
    ADD COLUMN "order_id" VARCHAR(128),
    ADD COLUMN "redeemed_at" TIMESTAMPTZ(3),
    ADD COLUMN "revoked_at" TIMESTAMPTZ(3);

-- Every change of a coupon's status, written in the same statement as the change: who (user id and role),
-- when, for which order, and why (a revocation's reason).
CREATE TABLE "coupon_events" (
    "id" BIGSERIAL NOT NULL,
    "coupon_id" UUID NOT NULL,
    "from_status" VARCHAR(8) NOT NULL,
    "to_status" VARCHAR(8) NOT NULL,
    "actor_user_id" VARCHAR(128) NOT NULL,
    "actor_role" VARCHAR(16) NOT NULL,
    "order_id" VARCHAR(128),
    "reason" VARCHAR(500),
    "at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "coupon_events_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "coupon_events_coupon_id_at_idx" ON "coupon_events"("coupon_id", "at");

ALTER TABLE "coupon_events" ADD CONSTRAINT "coupon_events_coupon_id_fkey" FOREIGN KEY ("coupon_id") REFERENCES "coupons"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
