-- Private Meet spaces: a space created through the Meet REST API for one booking is stored as
-- a link of the pool that only that booking may ever hold (dedicated_to). So a space lives
-- under the same rules as every link: the exclusion constraint, "only a paid, confirmed
-- booking holds a link", one link per booking, and the release on refund or cancellation
-- (a released space stays dedicated: it is never handed to anyone else). Links created
-- through the API for the shared pool (`meeting-links links create`) carry space_name too,
-- so their calls can be ended after each session.

ALTER TABLE meeting_links_pool
    -- spaces/{id}: created through the Meet API, owned by the app's account.
    ADD COLUMN space_name   text UNIQUE CHECK (space_name ~ '^spaces/[^/[:space:]]+$'),
    ADD COLUMN meeting_code text,
    -- A private space: only this booking may hold it, and the allocator never offers it.
    ADD COLUMN dedicated_to uuid UNIQUE REFERENCES bookings (id),
    ADD CONSTRAINT meeting_links_pool_private_space_is_a_space
        CHECK (dedicated_to IS NULL OR space_name IS NOT NULL);

-- The sweep ends the call in an API-created link once its session is over; this records
-- that it did (or why it did not), per session.
ALTER TABLE bookings
    ADD COLUMN call_ended_at    timestamptz,
    ADD COLUMN call_end_outcome text CHECK (call_end_outcome IN ('ended', 'none running', 'next session running'));
CREATE INDEX bookings_calls_to_end ON bookings (ends_at)
    WHERE call_ended_at IS NULL AND meeting_link_id IS NOT NULL;

-- At most one space is being created for a booking at a time, whatever the retries: the
-- caller that inserts (or takes over an expired or failed) request calls the API; everyone
-- else waits for its result. A crash between the API call and attach_space_v1 leaves a
-- request whose lease runs out; the next attempt takes it over.
CREATE TABLE meet_space_requests (
    booking_id   uuid        PRIMARY KEY REFERENCES bookings (id),
    state        text        NOT NULL CHECK (state IN ('requested', 'created', 'failed')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 1,
    last_error   text
);

-- A space the API created that no booking can use (a second one for a booking that already
-- has its own, after a lease ran out mid-call): kept and reported, never lost silently.
CREATE TABLE meet_orphaned_spaces (
    space_name   text        PRIMARY KEY,
    meeting_uri  text        NOT NULL,
    booking_id   uuid        REFERENCES bookings (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    reason       text        NOT NULL
);

-- Only its booking may hold a private space, whoever writes.
CREATE FUNCTION bookings_private_space_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.meeting_link_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM meeting_links_pool l
            WHERE l.id = NEW.meeting_link_id AND l.dedicated_to IS NOT NULL AND l.dedicated_to <> NEW.id) THEN
        RAISE EXCEPTION 'link % is a private space of another booking', NEW.meeting_link_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_private_space_of_its_booking';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bookings_private_space_owner BEFORE INSERT OR UPDATE OF meeting_link_id ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_private_space_owner();

-- The allocator and the seed's lookup offer shared links only. Same interface and outcomes
-- as before; private spaces did not exist when these were written.
CREATE OR REPLACE FUNCTION find_available_meeting_link(p_booking_date date, p_booking_time time, p_duration integer)
RETURNS TABLE (id uuid, meeting_link text) LANGUAGE sql STABLE AS $$
    SELECT l.id, l.meeting_link
    FROM meeting_links_pool l
    WHERE l.is_available AND l.dedicated_to IS NULL
      AND l.id NOT IN (
          SELECT b.meeting_link_id FROM bookings b
          WHERE b.meeting_link_id IS NOT NULL
            AND b.link_hold && session_link_hold(p_booking_date, p_booking_time, p_duration))
    ORDER BY l.created_at, l.id
    LIMIT 1
$$;

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
        FOR attempt IN 1..20 LOOP
            SELECT l.id, l.meeting_link INTO free
            FROM meeting_links_pool l
            WHERE l.is_available AND l.dedicated_to IS NULL
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

-- Step 1 of giving a booking a private space: decide who calls the Meet API.
-- outcome: claimed (the caller creates the space, then calls attach_space_v1 or
-- fail_space_v1) | busy (another caller is creating it) | assigned (the booking's own space,
-- created earlier, is held again) | already_assigned | not_found | cancelled | not_paid.
CREATE FUNCTION claim_space_v1(p_booking_id uuid, p_lease_seconds integer)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text)
LANGUAGE plpgsql AS $$
DECLARE
    b   bookings%ROWTYPE;
    own meeting_links_pool%ROWTYPE;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text;
        RETURN;
    END IF;
    IF b.meeting_link_id IS NOT NULL THEN
        RETURN QUERY SELECT 'already_assigned', l.id, l.meeting_link
                     FROM meeting_links_pool l WHERE l.id = b.meeting_link_id;
        RETURN;
    END IF;
    IF b.cancelled_by_admin_at IS NOT NULL THEN
        RETURN QUERY SELECT 'cancelled', NULL::uuid, NULL::text;
        RETURN;
    END IF;
    IF NOT (b.payment_status = 'paid' AND b.status = 'confirmed') THEN
        RETURN QUERY SELECT 'not_paid', NULL::uuid, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO own FROM meeting_links_pool l WHERE l.dedicated_to = b.id;
    IF FOUND THEN  -- paid again after a refund: its own space, never a second one
        UPDATE bookings SET meeting_link_id = own.id, needs_manual_link = false WHERE id = b.id;
        RETURN QUERY SELECT 'assigned', own.id, own.meeting_link;
        RETURN;
    END IF;
    INSERT INTO meet_space_requests AS r (booking_id, state) VALUES (b.id, 'requested')
    ON CONFLICT (booking_id) DO UPDATE
        SET state = 'requested', requested_at = now(), attempts = r.attempts + 1, last_error = NULL
        WHERE r.state = 'failed'
           OR (r.state = 'requested' AND r.requested_at < now() - make_interval(secs => p_lease_seconds));
    IF FOUND THEN
        RETURN QUERY SELECT 'claimed', NULL::uuid, NULL::text;
    ELSE
        RETURN QUERY SELECT 'busy', NULL::uuid, NULL::text;
    END IF;
END $$;

-- Step 2: record the space the API created and give it to its booking.
-- outcome: assigned | kept (stored as the booking's own space, but the booking may not hold
-- it now: no longer paid, or it got a shared link meanwhile) | orphaned (the booking already
-- has its own space: this one is recorded in meet_orphaned_spaces).
CREATE FUNCTION attach_space_v1(p_booking_id uuid, p_space_name text, p_meeting_uri text, p_meeting_code text)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text)
LANGUAGE plpgsql AS $$
DECLARE
    b      bookings%ROWTYPE;
    new_id uuid;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    UPDATE meet_space_requests SET state = 'created' WHERE booking_id = p_booking_id;
    IF EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.dedicated_to = p_booking_id) THEN
        INSERT INTO meet_orphaned_spaces (space_name, meeting_uri, booking_id, reason)
        VALUES (p_space_name, p_meeting_uri, p_booking_id, 'the booking already has its own space')
        ON CONFLICT (space_name) DO NOTHING;
        RETURN QUERY SELECT 'orphaned', NULL::uuid, p_meeting_uri;
        RETURN;
    END IF;
    INSERT INTO meeting_links_pool (meeting_link, notes, space_name, meeting_code, dedicated_to)
    VALUES (p_meeting_uri, 'private space', p_space_name, p_meeting_code, p_booking_id)
    RETURNING id INTO new_id;
    IF b.meeting_link_id IS NULL AND b.cancelled_by_admin_at IS NULL
       AND b.payment_status = 'paid' AND b.status = 'confirmed' THEN
        UPDATE bookings SET meeting_link_id = new_id, needs_manual_link = false WHERE id = b.id;
        RETURN QUERY SELECT 'assigned', new_id, p_meeting_uri;
    ELSE
        RETURN QUERY SELECT 'kept', new_id, p_meeting_uri;
    END IF;
END $$;

-- The API call failed: free the request at once for the next attempt, and say why.
CREATE FUNCTION fail_space_v1(p_booking_id uuid, p_error text) RETURNS void
LANGUAGE sql AS $$
    UPDATE meet_space_requests SET state = 'failed', last_error = left(p_error, 500)
    WHERE booking_id = p_booking_id AND state = 'requested'
$$;
