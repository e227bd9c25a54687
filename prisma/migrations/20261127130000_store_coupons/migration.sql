-- Stores a batch of coupons in one round trip, in autocommit: the consumer's hot path (src/db/coupon-repository.ts).
-- Takes the promotions' advisory locks shared, the same keys recording a failure takes exclusive
-- (src/db/outcome-lock.ts), so a request ends stored or failed, never both. VOLATILE: in READ COMMITTED each
-- statement below takes a fresh snapshot, so the insert starts after the locks are held and sees every failure
-- committed before, and the re-read sees rows another consumer committed while the insert waited on them.
--
-- Returns, when every request was inserted now (the usual case), one row: request_id NULL and the issued_at
-- of them all (the caller made their ids and codes), so a batch costs one row to send back, not one per request.
-- Otherwise (a redelivery, a failed request) the coupon of every request that has one, inserted now or before;
-- a failed request gets none.
CREATE OR REPLACE FUNCTION store_coupons(
    ids TEXT[], codes TEXT[], promotion_ids TEXT[], user_ids TEXT[], request_ids TEXT[], requested_ats TEXT[], positions INT[]
) RETURNS TABLE (request_id TEXT, id TEXT, code TEXT, issued_at TIMESTAMPTZ)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    issued TIMESTAMPTZ(3) := now();
    inserted INT;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p, 0))
    FROM (SELECT DISTINCT unnest(promotion_ids) AS p) AS t ORDER BY p COLLATE "C";

    INSERT INTO coupons AS c (id, code, promotion_id, user_id, request_id, requested_at, position, issued_at)
    SELECT t.id::uuid, t.code, t.promotion_id::uuid, t.user_id, t.request_id, t.requested_at::timestamptz, t.position, issued
    FROM unnest(ids, codes, promotion_ids, user_ids, request_ids, requested_ats, positions)
         AS t(id, code, promotion_id, user_id, request_id, requested_at, position)
    WHERE NOT EXISTS (SELECT 1 FROM failed_requests f WHERE f.request_id = t.request_id)
    ON CONFLICT (request_id) DO NOTHING;

    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted = cardinality(request_ids) THEN
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, issued::timestamptz;
    ELSE
        -- Some were stored before (a redelivery) or by another consumer meanwhile, or failed: a new statement,
        -- a new snapshot, that sees them all.
        RETURN QUERY
        SELECT c.request_id::text, c.id::text, c.code::text, c.issued_at
        FROM coupons c
        WHERE c.request_id = ANY(request_ids);
    END IF;
END
$$;
