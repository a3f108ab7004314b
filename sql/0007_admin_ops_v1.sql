-- The support tool's writes as one statement each, and an allocator that settles its own
-- conflicts.
--
-- assign_link_v1 (sql/0005) left a 23P01 from a writer that takes no bucket locks (psql, a
-- manual assignment) to its caller, which ran the whole statement again. A fresh statement
-- inside the function suffices: under READ COMMITTED each statement of a plpgsql function
-- takes a new snapshot, and the exclusion check waits for the conflicting writer to finish,
-- so the next scan sees the link as busy. The interface and outcomes are unchanged.

CREATE OR REPLACE FUNCTION assign_link_v1(p_booking_id uuid)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, order_id text, payment_status text,
               status text, cancelled_by_admin_at timestamptz, starts_at timestamptz,
               ends_at timestamptz, newly_flagged boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b      bookings%ROWTYPE;
    bucket integer;
    free   record;
    result text;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, false;
        RETURN;
    END IF;

    IF b.meeting_link_id IS NOT NULL THEN
        result := 'already_assigned';
    ELSIF b.cancelled_by_admin_at IS NOT NULL THEN
        result := 'cancelled';
    ELSIF NOT (b.payment_status = 'paid' AND b.status = 'confirmed') THEN
        result := 'not_paid';
    ELSE
        FOR bucket IN SELECT x FROM link_hold_buckets(b.link_hold) AS x ORDER BY x LOOP
            PERFORM pg_advisory_xact_lock(7285193, bucket);
        END LOOP;
        -- Bounded: each lost race means another writer took a link for this range, and
        -- there are only so many links.
        FOR attempt IN 1..20 LOOP
            SELECT l.id, l.meeting_link INTO free
            FROM meeting_links_pool l
            WHERE l.is_available
              AND l.id NOT IN (SELECT o.meeting_link_id FROM bookings o
                               WHERE o.link_hold && b.link_hold AND o.meeting_link_id IS NOT NULL)
            ORDER BY l.created_at, l.id
            LIMIT 1;
            IF NOT FOUND THEN
                UPDATE bookings SET needs_manual_link = true WHERE id = b.id AND NOT needs_manual_link;
                RETURN QUERY SELECT 'exhausted', NULL::uuid, NULL::text, b.order_id, b.payment_status,
                                    b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at, FOUND;
                RETURN;
            END IF;
            BEGIN
                UPDATE bookings SET meeting_link_id = free.id WHERE id = b.id;
                RETURN QUERY SELECT 'assigned', free.id, free.meeting_link, b.order_id, b.payment_status,
                                    b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at, false;
                RETURN;
            EXCEPTION WHEN exclusion_violation THEN
                NULL;  -- taken meanwhile by a writer without bucket locks: scan again
            END;
        END LOOP;
        RAISE EXCEPTION 'assign_link_v1: lost 20 races for booking %', b.id
            USING ERRCODE = 'serialization_failure';
    END IF;

    RETURN QUERY
        SELECT result, b.meeting_link_id, l.meeting_link, b.order_id, b.payment_status, b.status,
               b.cancelled_by_admin_at, b.starts_at, b.ends_at, false
        FROM (SELECT 1) one LEFT JOIN meeting_links_pool l ON l.id = b.meeting_link_id;
END $$;

-- Support gives a booking a chosen link (by id or URL). It takes the same locks as the
-- allocator, in the same order (the booking row, then the range's buckets ascending), so it
-- cannot deadlock with one, and an allocator never loses a race to it.
-- outcome: assigned | unchanged (it already held that link) | not_found | link_not_found |
-- cancelled (by support). previous_*: the link it held before and the range that link is
-- now free for, to hand over. A busy, disabled link or an unpaid booking is refused by the
-- constraints (bookings_no_overlapping_link_use, bookings_link_must_be_enabled,
-- bookings_link_requires_active_booking), which the caller turns into its own errors.
CREATE FUNCTION assign_link_by_hand_v1(p_booking_id uuid, p_link text)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, previous_link text,
               released_from timestamptz, released_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    b      bookings%ROWTYPE;
    chosen meeting_links_pool%ROWTYPE;
    before meeting_links_pool%ROWTYPE;
    bucket integer;
BEGIN
    SELECT * INTO chosen FROM meeting_links_pool l
    WHERE l.meeting_link = p_link
       OR l.id = CASE WHEN p_link ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' THEN p_link::uuid END;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'link_not_found', NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', chosen.id, chosen.meeting_link, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    IF b.cancelled_by_admin_at IS NOT NULL THEN
        RETURN QUERY SELECT 'cancelled', chosen.id, chosen.meeting_link, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    IF b.meeting_link_id = chosen.id THEN
        RETURN QUERY SELECT 'unchanged', chosen.id, chosen.meeting_link, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    FOR bucket IN SELECT x FROM link_hold_buckets(b.link_hold) AS x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(7285193, bucket);
    END LOOP;
    SELECT * INTO before FROM meeting_links_pool l WHERE l.id = b.meeting_link_id;
    UPDATE bookings SET meeting_link_id = chosen.id WHERE id = b.id;
    RETURN QUERY SELECT 'assigned', chosen.id, chosen.meeting_link, before.meeting_link,
                        CASE WHEN before.id IS NOT NULL THEN lower(b.link_hold) END,
                        CASE WHEN before.id IS NOT NULL THEN upper(b.link_hold) END;
END $$;

-- Support cancels a booking: it keeps no link, and no later payment brings it back.
-- outcome: cancelled | not_found. released_*: the link it held and the range now free.
CREATE FUNCTION cancel_booking_v1(p_booking_id uuid)
RETURNS TABLE (outcome text, released_link text, released_from timestamptz,
               released_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    b    bookings%ROWTYPE;
    link text;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT l.meeting_link INTO link FROM meeting_links_pool l WHERE l.id = b.meeting_link_id;
    UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL, needs_manual_link = false,
                        cancelled_by_admin_at = COALESCE(cancelled_by_admin_at, now())
    WHERE id = b.id;
    RETURN QUERY SELECT 'cancelled', link,
                        CASE WHEN link IS NOT NULL THEN lower(b.link_hold) END,
                        CASE WHEN link IS NOT NULL THEN upper(b.link_hold) END;
END $$;
