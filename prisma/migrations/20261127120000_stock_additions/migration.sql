-- CreateTable
CREATE TABLE "stock_additions" (
    "promotion_id" UUID NOT NULL,
    "idempotency_key" VARCHAR(64) NOT NULL,
    "amount" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stock_additions_pkey" PRIMARY KEY ("promotion_id","idempotency_key")
);

-- CreateIndex
CREATE INDEX "promotions_ends_at_idx" ON "promotions"("ends_at");

-- CreateIndex
CREATE INDEX "promotions_ended_at_idx" ON "promotions"("ended_at");

-- AddForeignKey
ALTER TABLE "stock_additions" ADD CONSTRAINT "stock_additions_promotion_id_fkey" FOREIGN KEY ("promotion_id") REFERENCES "promotions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
