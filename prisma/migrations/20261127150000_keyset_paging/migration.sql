-- Keyset pages (promotions, myCoupons): newest first with the id as tie-breaker, so a page resumes strictly
-- after the previous page's last row. The new indexes end with the id and replace those without it.
DROP INDEX "promotions_created_at_idx";

DROP INDEX "coupons_user_id_issued_at_idx";

CREATE INDEX "promotions_created_at_id_idx" ON "promotions"("created_at" DESC, "id" DESC);

CREATE INDEX "coupons_user_id_issued_at_id_idx" ON "coupons"("user_id", "issued_at" DESC, "id" DESC);
