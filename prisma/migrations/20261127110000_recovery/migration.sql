-- The n-th reservation of its promotion: lets the audit count, at one consistent point, the coupons of the
-- reservations made before it read Redis. Rows stored before this column existed read 0.
ALTER TABLE "coupons" ADD COLUMN "position" INTEGER NOT NULL DEFAULT 0;

-- Requests that ended FAILED (never stored; their stock was given back). Kept here so issuance,
-- deadLetters and the audit remember them past the status TTL and a Redis loss. No foreign key: a request
-- whose promotion PostgreSQL does not know is one of the reasons a request fails.
CREATE TABLE "failed_requests" (
    "request_id" VARCHAR(128) NOT NULL,
    "promotion_id" UUID NOT NULL,
    "user_id" VARCHAR(128) NOT NULL,
    "position" INTEGER NOT NULL DEFAULT 0,
    "reason" TEXT NOT NULL,
    "deliveries" INTEGER NOT NULL,
    "requested_at" TIMESTAMPTZ(3) NOT NULL,
    "failed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "failed_requests_pkey" PRIMARY KEY ("request_id")
);

CREATE INDEX "failed_requests_promotion_id_failed_at_request_id_idx" ON "failed_requests"("promotion_id", "failed_at" DESC, "request_id" DESC);
