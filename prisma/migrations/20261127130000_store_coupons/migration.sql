-- Stores a batch of coupons in one round trip, in autocommit: the consumer's hot path (src/db/coupon-repository.ts).
-- Takes the promotions' advisory locks shared, the same keys recording a failure takes exclusive
-- (src/db/outcome-lock.ts), so a request ends stored or failed, never both. VOLATILE: in READ COMMITTED each
-- statement below takes a fresh snapshot, so the insert starts after the locks are held and sees every failure
-- committed before, and the re-read sees rows another consumer committed while the insert waited on them.
-- Returns the coupon of every request that has one (inserted now or before); a failed request gets none.
CREATE OR REPLACE FUNCTION store_coupons(
    ids TEXT[], codes TEXT[], promotion_ids TEXT[], user_ids TEXT[], request_ids TEXT[], requested_ats TEXT[], positions INT[]
) RETURNS TABLE (id TEXT, code TEXT, promotion_id TEXT, user_id TEXT, request_id TEXT, requested_at TIMESTAMPTZ, issued_at TIMESTAMPTZ)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    inserted INT;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p, 0))
    FROM (SELECT DISTINCT unnest(promotion_ids) AS p) AS t ORDER BY p COLLATE "C";

    RETURN QUERY
    WITH ins AS (
        INSERT INTO coupons AS c (id, code, promotion_id, user_id, request_id, requested_at, position)
        SELECT t.id::uuid, t.code, t.promotion_id::uuid, t.user_id, t.request_id, t.requested_at::timestamptz, t.position
        FROM unnest(ids, codes, promotion_ids, user_ids, request_ids, requested_ats, positions)
             AS t(id, code, promotion_id, user_id, request_id, requested_at, position)
        WHERE NOT EXISTS (SELECT 1 FROM failed_requests f WHERE f.request_id = t.request_id)
        ON CONFLICT (request_id) DO NOTHING
        RETURNING c.id, c.code, c.promotion_id, c.user_id, c.request_id, c.requested_at, c.issued_at
    )
    SELECT ins.id::text, ins.code::text, ins.promotion_id::text, ins.user_id::text, ins.request_id::text, ins.requested_at, ins.issued_at
    FROM ins;

    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted < cardinality(request_ids) THEN
        -- Requests stored before (a redelivery) or by another consumer meanwhile: a new statement, a new snapshot.
        RETURN QUERY
        SELECT c.id::text, c.code::text, c.promotion_id::text, c.user_id::text, c.request_id::text, c.requested_at, c.issued_at
        FROM coupons c
        WHERE c.request_id = ANY(request_ids) AND c.id <> ALL(ids::uuid[]);
    END IF;
END
$$;
