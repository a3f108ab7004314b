-- One place for each rule, and allocations whose locks are bounded.
--
-- New operations beside the old ones (the _v1 functions stay, unchanged, for instances of the
-- previous release during a rollout; a later migration drops them):
--   assign_link_v2            allocation: bounded time locks, the link's source, the waiting flag
--   assign_link_by_hand_v2    support's choice, or (no link given) the first free enabled link
--   configure_pool_v2         zone and buffer, asked for by a person, with what it changes
-- New rules, each written once and used by every function that needs it:
--   booking_may_hold_link     only a paid, confirmed booking may hold a link
--   is_midtrans_order_id      the order ids Midtrans sends (the webhook refuses others too)
--   lock_link_hold_v1         the advisory locks that make allocations for one time take turns
--   free_shared_links_v1      the enabled shared links no booking holds for a range
-- Body only replaced (same interface, same behaviour): find_available_meeting_link,
-- bookings_derive (also forgets that a waiting booking was reported once it holds a link).

-- Only a paid, confirmed booking may hold a link.
CREATE FUNCTION booking_may_hold_link(p_payment_status text, p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_payment_status = 'paid' AND p_status = 'confirmed'
$$;
ALTER TABLE bookings DROP CONSTRAINT bookings_link_requires_active_booking;
ALTER TABLE bookings ADD CONSTRAINT bookings_link_requires_active_booking
    CHECK (meeting_link_id IS NULL OR booking_may_hold_link(payment_status, status));
DROP INDEX bookings_waiting_for_link;
CREATE INDEX bookings_waiting_for_link ON bookings (paid_at, id)
    WHERE booking_may_hold_link(payment_status, status) AND meeting_link_id IS NULL;

-- Midtrans's order_id: 1 to 50 of letters, digits, "-", "_", "~" and "." (midtrans.md §2).
-- A booking whose order id Midtrans would never send could never be paid. NOT VALID: rows
-- written before this migration are not checked, but any later change to such a row is
-- refused until its order id is corrected (it could never have been paid through Midtrans).
CREATE FUNCTION is_midtrans_order_id(p_order_id text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_order_id ~ '^[A-Za-z0-9_~.-]{1,50}$'
$$;
ALTER TABLE bookings ADD CONSTRAINT bookings_order_id_format
    CHECK (is_midtrans_order_id(order_id)) NOT VALID;

-- A consultation is scheduled in this century; a date like 202501-01-07 is a typo, and it used
-- to overflow the lock arithmetic. NOT VALID, as above: older rows are not checked.
ALTER TABLE bookings ADD CONSTRAINT bookings_scheduled_date_check
    CHECK (scheduled_date >= date '2000-01-01' AND scheduled_date < date '2100-01-01') NOT VALID;

-- When the "pool exhausted" ERROR line went out for this wait (so that it goes out once per
-- wait, whoever flagged the booking: the allocator, or a reschedule in the app's UPDATE).
ALTER TABLE bookings ADD COLUMN waiting_reported_at timestamptz;

-- The advisory locks an allocation for p_hold takes, so that allocations whose ranges overlap
-- take turns and others do not wait. A short range (at most 32 quarter hours: 8 h) locks its
-- quarter-hour buckets, and shares its days; a longer one locks its days. Two overlapping
-- ranges always meet on a lock: on a quarter hour, or on a day one of them holds exclusively.
-- At most 34 locks, whatever the duration and buffer. Every caller takes days before quarter
-- hours, each in ascending order, after its booking row, so no two can deadlock. Buckets are
-- bigint and clamped to the int4 the lock key takes: nothing can overflow.
-- p_wait false tries each lock without waiting and says whether it got them all.
CREATE FUNCTION lock_link_hold_v1(p_hold tstzrange, p_wait boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first_quarter bigint := floor(extract(epoch FROM lower(p_hold)) / 900);
    last_quarter  bigint := ceil(extract(epoch FROM upper(p_hold)) / 900) - 1;
    first_day     bigint := floor(extract(epoch FROM lower(p_hold)) / 86400);
    last_day      bigint := ceil(extract(epoch FROM upper(p_hold)) / 86400) - 1;
    short_range   boolean := last_quarter - first_quarter < 32;
    k             bigint;
BEGIN
    FOR k IN SELECT generate_series(first_day, last_day) LOOP  -- bigint: an integer FOR would overflow
        IF short_range AND p_wait THEN
            PERFORM pg_advisory_xact_lock_shared(7285194, least(greatest(k, -2147483648), 2147483647)::integer);
        ELSIF short_range THEN
            IF NOT pg_try_advisory_xact_lock_shared(7285194, least(greatest(k, -2147483648), 2147483647)::integer) THEN
                RETURN false;
            END IF;
        ELSIF p_wait THEN
            PERFORM pg_advisory_xact_lock(7285194, least(greatest(k, -2147483648), 2147483647)::integer);
        ELSIF NOT pg_try_advisory_xact_lock(7285194, least(greatest(k, -2147483648), 2147483647)::integer) THEN
            RETURN false;
        END IF;
    END LOOP;
    IF short_range THEN
        FOR k IN SELECT generate_series(first_quarter, last_quarter) LOOP
            IF p_wait THEN
                PERFORM pg_advisory_xact_lock(7285193, least(greatest(k, -2147483648), 2147483647)::integer);
            ELSIF NOT pg_try_advisory_xact_lock(7285193, least(greatest(k, -2147483648), 2147483647)::integer) THEN
                RETURN false;
            END IF;
        END LOOP;
    END IF;
    RETURN true;
END $$;

-- The enabled shared links (private spaces excluded) that no booking holds for any part of
-- p_hold, in the allocator's stable order; p_except: a booking whose own holds do not count
-- (one being moved). The busy links come from one scan of the exclusion constraint's index.
CREATE FUNCTION free_shared_links_v1(p_hold tstzrange, p_except uuid DEFAULT NULL)
RETURNS TABLE (id uuid, meeting_link text) LANGUAGE sql STABLE AS $$
    SELECT l.id, l.meeting_link
    FROM meeting_links_pool l
    WHERE l.is_available AND l.dedicated_to IS NULL
      AND l.id NOT IN (SELECT o.meeting_link_id FROM bookings o
                       WHERE o.link_hold && p_hold AND o.meeting_link_id IS NOT NULL
                         AND o.id IS DISTINCT FROM p_except)
    ORDER BY l.created_at, l.id
$$;

CREATE OR REPLACE FUNCTION find_available_meeting_link(p_booking_date date, p_booking_time time, p_duration integer)
RETURNS TABLE (id uuid, meeting_link text) LANGUAGE sql STABLE AS $$
    SELECT f.id, f.meeting_link
    FROM free_shared_links_v1(session_link_hold(p_booking_date, p_booking_time, p_duration)) f
    LIMIT 1
$$;

CREATE OR REPLACE FUNCTION bookings_derive() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link_enabled boolean;
    rederive     boolean;
BEGIN
    -- Checked here because the range below is derived before CHECK constraints run.
    IF NEW.duration IS NULL OR NEW.duration NOT BETWEEN 1 AND 1440 THEN
        RAISE EXCEPTION 'duration must be between 1 and 1440 minutes, got %', NEW.duration
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_duration_check';
    END IF;
    -- PostgreSQL accepts 24:00, but it names the next day's 00:00 and most clients (our
    -- driver included) cannot read it back.
    IF NEW.scheduled_time >= time '24:00' THEN
        RAISE EXCEPTION 'scheduled_time must be before 24:00 (write 00:00 of the next day), got %',
                        NEW.scheduled_time
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_scheduled_time_check';
    END IF;

    IF TG_OP = 'INSERT' THEN
        rederive := true;
    ELSE
        rederive := (NEW.scheduled_date, NEW.scheduled_time, NEW.duration)
                        IS DISTINCT FROM (OLD.scheduled_date, OLD.scheduled_time, OLD.duration)
                    OR (NEW.link_hold, NEW.starts_at, NEW.ends_at)
                        IS DISTINCT FROM (OLD.link_hold, OLD.starts_at, OLD.ends_at);
    END IF;
    IF rederive THEN
        NEW.link_hold := session_link_hold(NEW.scheduled_date, NEW.scheduled_time, NEW.duration);
        NEW.starts_at := lower(NEW.link_hold);
        NEW.ends_at   := NEW.starts_at + make_interval(mins => NEW.duration);
    END IF;

    IF NEW.payment_status = 'paid' AND NEW.paid_at IS NULL THEN
        NEW.paid_at := now();
    END IF;

    IF NEW.meeting_link_id IS NULL THEN
        NEW.link_assigned_at := NULL;
    ELSIF TG_OP = 'INSERT' OR NEW.meeting_link_id IS DISTINCT FROM OLD.meeting_link_id THEN
        -- FOR SHARE: a concurrent `links disable` (an UPDATE of the link) waits for this
        -- assignment to commit, or this one waits for the disable and then sees it.
        SELECT is_available INTO link_enabled FROM meeting_links_pool
        WHERE id = NEW.meeting_link_id FOR SHARE;
        IF link_enabled IS FALSE THEN
            RAISE EXCEPTION 'meeting link % is disabled and cannot be assigned', NEW.meeting_link_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_link_must_be_enabled';
        END IF;
        NEW.link_assigned_at := now();
        NEW.needs_manual_link := false;
        NEW.waiting_reported_at := NULL;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Gives the booking the first enabled shared link free for its range, or says why not.
-- outcome: assigned | already_assigned | exhausted | not_found | cancelled (by support) |
-- not_paid. source: "meet" when the link is the booking's private space, "pool" otherwise.
-- exhausted also flags the booking needs_manual_link; with p_report, report_waiting says
-- whether the "pool exhausted" line for this wait is still to be written (and marks it
-- written; see report_waiting_v1 for a caller that reports later). A 23P01 from a writer that takes no
-- locks (psql) is settled inside: under READ COMMITTED each statement here sees what
-- committed before it, so the next scan finds the link busy.
CREATE FUNCTION assign_link_v2(p_booking_id uuid, p_report boolean)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, source text, order_id text,
               payment_status text, status text, cancelled_by_admin_at timestamptz,
               starts_at timestamptz, ends_at timestamptz, report_waiting boolean)
LANGUAGE plpgsql AS $$
DECLARE
    b      bookings%ROWTYPE;
    free   record;
    result text;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text,
                            NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, false;
        RETURN;
    END IF;

    IF b.meeting_link_id IS NOT NULL THEN
        result := 'already_assigned';
    ELSIF b.cancelled_by_admin_at IS NOT NULL THEN
        result := 'cancelled';
    ELSIF NOT booking_may_hold_link(b.payment_status, b.status) THEN
        result := 'not_paid';
    ELSE
        PERFORM lock_link_hold_v1(b.link_hold);
        -- Bounded: each lost race means another writer took a link for this range, and
        -- there are only so many links.
        FOR attempt IN 1..20 LOOP
            SELECT f.id, f.meeting_link INTO free FROM free_shared_links_v1(b.link_hold) f LIMIT 1;
            IF NOT FOUND THEN
                UPDATE bookings SET needs_manual_link = true,
                                    waiting_reported_at = CASE WHEN p_report THEN COALESCE(waiting_reported_at, now())
                                                               ELSE waiting_reported_at END
                WHERE id = b.id AND (NOT needs_manual_link OR (p_report AND waiting_reported_at IS NULL));
                RETURN QUERY SELECT 'exhausted', NULL::uuid, NULL::text, NULL::text, b.order_id, b.payment_status,
                                    b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at,
                                    p_report AND b.waiting_reported_at IS NULL;
                RETURN;
            END IF;
            BEGIN
                UPDATE bookings SET meeting_link_id = free.id WHERE id = b.id;
                RETURN QUERY SELECT 'assigned', free.id, free.meeting_link, 'pool', b.order_id, b.payment_status,
                                    b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at, false;
                RETURN;
            EXCEPTION WHEN exclusion_violation THEN
                NULL;  -- taken meanwhile by a writer without the locks: scan again
            END;
        END LOOP;
        RAISE EXCEPTION 'assign_link_v2: lost 20 races for booking %', b.id
            USING ERRCODE = 'serialization_failure';
    END IF;

    RETURN QUERY
        SELECT result, b.meeting_link_id, l.meeting_link,
               CASE WHEN l.id IS NULL THEN NULL WHEN l.dedicated_to IS NOT NULL THEN 'meet' ELSE 'pool' END,
               b.order_id, b.payment_status, b.status, b.cancelled_by_admin_at, b.starts_at, b.ends_at, false
        FROM (SELECT 1) one LEFT JOIN meeting_links_pool l ON l.id = b.meeting_link_id;
END $$;

-- Whether the "pool exhausted" line for this booking's wait is still to be written, for a
-- caller that tried something else first (a private space); a true answer marks it written.
-- False for a booking that is not waiting.
CREATE FUNCTION report_waiting_v1(p_booking_id uuid) RETURNS boolean
LANGUAGE sql AS $$
    WITH marked AS (
        UPDATE bookings SET waiting_reported_at = now()
        WHERE id = p_booking_id AND needs_manual_link AND meeting_link_id IS NULL
          AND waiting_reported_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM marked)
$$;

-- Support gives a booking a chosen link (by id or URL), or with p_link NULL the first free
-- enabled shared link: a booking that holds a disabled link moves off it. Same locks as the
-- allocator, in the same order, so it cannot deadlock with one.
-- outcome: assigned | unchanged (it already holds that link, or an enabled one when none was
-- chosen) | exhausted (none free: a booking holding no link is flagged as waiting) |
-- not_found | link_not_found | cancelled (by support) |
-- not_paid. previous_link and released_*: the link it left and the range now free there.
-- A busy or disabled chosen link is refused by the constraints, which the caller names.
CREATE FUNCTION assign_link_by_hand_v2(p_booking_id uuid, p_link text)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, previous_link text,
               released_from timestamptz, released_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    b           bookings%ROWTYPE;
    chosen_id   uuid;
    chosen_link text;
    current     meeting_links_pool%ROWTYPE;
BEGIN
    IF p_link IS NOT NULL THEN
        SELECT l.id, l.meeting_link INTO chosen_id, chosen_link FROM meeting_links_pool l
        WHERE l.meeting_link = p_link
           OR l.id = CASE WHEN p_link ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' THEN p_link::uuid END;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'link_not_found', NULL::uuid, NULL::text, NULL::text,
                                NULL::timestamptz, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    IF b.cancelled_by_admin_at IS NOT NULL THEN
        RETURN QUERY SELECT 'cancelled', NULL::uuid, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    IF NOT booking_may_hold_link(b.payment_status, b.status) THEN
        RETURN QUERY SELECT 'not_paid', NULL::uuid, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO current FROM meeting_links_pool l WHERE l.id = b.meeting_link_id;
    IF (p_link IS NOT NULL AND b.meeting_link_id IS NOT DISTINCT FROM chosen_id)
       OR (p_link IS NULL AND current.id IS NOT NULL AND current.is_available) THEN
        RETURN QUERY SELECT 'unchanged', current.id, current.meeting_link, NULL::text,
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    PERFORM lock_link_hold_v1(b.link_hold);
    IF p_link IS NULL THEN
        SELECT f.id, f.meeting_link INTO chosen_id, chosen_link FROM free_shared_links_v1(b.link_hold, b.id) f LIMIT 1;
        IF NOT FOUND THEN
            -- Waits, flagged, unless it keeps the (disabled) link it holds.
            UPDATE bookings SET needs_manual_link = true WHERE id = b.id AND meeting_link_id IS NULL;
            RETURN QUERY SELECT 'exhausted', NULL::uuid, NULL::text, current.meeting_link,
                                NULL::timestamptz, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    UPDATE bookings SET meeting_link_id = chosen_id WHERE id = b.id;
    RETURN QUERY SELECT 'assigned', chosen_id, chosen_link, current.meeting_link,
                        CASE WHEN current.id IS NOT NULL THEN lower(b.link_hold) END,
                        CASE WHEN current.id IS NOT NULL THEN upper(b.link_hold) END;
END $$;

-- Changes the business time zone and the buffer kept free after each session, when a person
-- asks (`meeting-links pool configure`), never as a side effect of a migration. Sessions
-- that have not ended are re-derived under the constraint; ended ones keep their range.
-- p_apply false: only says what would change. outcome: changed | unchanged | would_change |
-- conflict (nothing changed; conflicts lists the pairs of sessions that would then overlap on
-- one link, by order id). affected: sessions to come whose range changes.
CREATE FUNCTION configure_pool_v2(p_time_zone text, p_buffer_minutes integer, p_apply boolean)
RETURNS TABLE (outcome text, time_zone_before text, buffer_minutes_before integer,
               affected integer, conflicts jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    s          pool_settings%ROWTYPE;
    n_affected integer;
    clashes    jsonb;
BEGIN
    SELECT * INTO s FROM pool_settings FOR UPDATE;
    IF s.time_zone = p_time_zone AND s.buffer_minutes = p_buffer_minutes THEN
        RETURN QUERY SELECT 'unchanged', s.time_zone, s.buffer_minutes, 0, '[]'::jsonb;
        RETURN;
    END IF;
    -- The new ranges, computed as session_link_hold will once the settings change (a bad zone
    -- name raises here, as it would in the CHECK of pool_settings).
    WITH upcoming AS (
        SELECT b.id, b.order_id, b.meeting_link_id, b.starts_at, b.ends_at, b.link_hold AS old_hold,
               tstzrange((b.scheduled_date + b.scheduled_time) AT TIME ZONE p_time_zone,
                         ((b.scheduled_date + b.scheduled_time) AT TIME ZONE p_time_zone)
                             + make_interval(mins => b.duration + p_buffer_minutes), '[)') AS new_hold
        FROM bookings b WHERE b.ends_at > now()),
    held AS (
        SELECT id, order_id, meeting_link_id, new_hold AS hold FROM upcoming WHERE meeting_link_id IS NOT NULL
        UNION ALL
        SELECT b.id, b.order_id, b.meeting_link_id, b.link_hold FROM bookings b
        WHERE b.ends_at <= now() AND b.meeting_link_id IS NOT NULL AND upper(b.link_hold) > now())
    SELECT (SELECT count(*) FROM upcoming WHERE new_hold <> old_hold)::integer,
           COALESCE((SELECT jsonb_agg(jsonb_build_array(x.order_id, y.order_id) ORDER BY x.order_id, y.order_id)
                     FROM held x JOIN held y ON x.meeting_link_id = y.meeting_link_id
                                            AND (x.order_id, x.id) < (y.order_id, y.id)
                                            AND x.hold && y.hold), '[]'::jsonb)
    INTO n_affected, clashes;
    IF jsonb_array_length(clashes) > 0 THEN
        RETURN QUERY SELECT 'conflict', s.time_zone, s.buffer_minutes, n_affected, clashes;
        RETURN;
    END IF;
    IF NOT p_apply THEN
        RETURN QUERY SELECT 'would_change', s.time_zone, s.buffer_minutes, n_affected, clashes;
        RETURN;
    END IF;
    UPDATE pool_settings SET time_zone = p_time_zone, buffer_minutes = p_buffer_minutes;
    UPDATE bookings SET link_hold = session_link_hold(scheduled_date, scheduled_time, duration)
    WHERE ends_at > now();
    RETURN QUERY SELECT 'changed', s.time_zone, s.buffer_minutes, n_affected, clashes;
END $$;
