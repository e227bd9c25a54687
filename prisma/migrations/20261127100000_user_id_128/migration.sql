-- AlterTable: user ids are identity-provider subjects of up to 128 characters (e.g. "auth0|abc").
-- Widening a VARCHAR needs no table rewrite and no index rebuild in PostgreSQL.
ALTER TABLE "coupons" ALTER COLUMN "user_id" SET DATA TYPE VARCHAR(128);
