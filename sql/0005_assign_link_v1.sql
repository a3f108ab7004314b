-- Allocation as one statement that locks the time a booking needs, not the links.
--
-- Before this, an allocator locked the link row it meant to take (FOR UPDATE), and a link row
-- is shared by every slot of every day: allocations for unrelated slots queued behind each
-- other, and a support person's uncommitted UPDATE at 10:00 made an allocation of the same
-- link at 14:00 wait and time out. Now an allocator takes a transaction-scoped advisory lock
-- on each 15-minute bucket its range touches, so only allocations whose ranges share a
-- bucket take turns; the exclusion constraint stays the rule for every writer.
--
-- No deadlock: an allocator locks its own booking row, then its buckets in ascending order,
-- and takes no other lock before its one UPDATE; every allocator acquires buckets in the
-- same global order, so no two can each hold what the other waits for.

-- The 15-minute buckets (numbered from the epoch) that a half-open range touches:
-- [10:00, 10:30) is two buckets and does not share one with [10:30, 11:00).
CREATE FUNCTION link_hold_buckets(p_hold tstzrange) RETURNS SETOF integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT generate_series(floor(extract(epoch FROM lower(p_hold)) / 900)::integer,
                           ceil(extract(epoch FROM upper(p_hold)) / 900)::integer - 1)
$$;

-- Gives the booking the first enabled link (created_at, then id) free for its range, or
-- reports why not. outcome: assigned | already_assigned | exhausted | not_found | cancelled
-- (by support) | not_paid. newly_flagged: this call marked the booking needs_manual_link.
-- A 23P01 can still come from a writer that takes no bucket locks (psql, the admin tool's
-- chosen link); the caller runs the statement again.
CREATE FUNCTION assign_link_v1(p_booking_id uuid)
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
        -- The links busy in the range come from one scan of the exclusion constraint's index.
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
        UPDATE bookings SET meeting_link_id = free.id WHERE id = b.id;
        RETURN QUERY SELECT 'assigned', free.id, free.meeting_link, b.order_id, b.payment_status,
                            b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at, false;
        RETURN;
    END IF;

    RETURN QUERY
        SELECT result, b.meeting_link_id, l.meeting_link, b.order_id, b.payment_status, b.status,
               b.cancelled_by_admin_at, b.starts_at, b.ends_at, false
        FROM (SELECT 1) one LEFT JOIN meeting_links_pool l ON l.id = b.meeting_link_id;
END $$;
