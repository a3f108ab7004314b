-- The pool, the bookings, and the rule that no link serves two overlapping sessions.
-- The rule lives here, in an exclusion constraint, so that it holds for every writer:
-- the functions, the admin tool, and a person typing an UPDATE in psql.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- One row. Scheduled dates and times are wall-clock times in this zone; the buffer is
-- kept free after every session on the same link. Change them with configure_pool(),
-- which re-derives every booking's range under the constraint.
CREATE TABLE pool_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    time_zone      text    NOT NULL DEFAULT 'Asia/Jakarta'
                   -- AT TIME ZONE raises "time zone ... not recognized" for a bad name.
                   CHECK ((timestamp '2000-01-01' AT TIME ZONE time_zone) IS NOT NULL),
    buffer_minutes integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 1440)
);
INSERT INTO pool_settings DEFAULT VALUES;

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TABLE meeting_links_pool (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    meeting_link text        NOT NULL UNIQUE CHECK (meeting_link ~ '^https://[^[:space:]]+$'),
    is_available boolean     NOT NULL DEFAULT true,
    notes        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- The allocator's order.
CREATE INDEX meeting_links_pool_order ON meeting_links_pool (created_at, id);
CREATE TRIGGER meeting_links_pool_touch BEFORE UPDATE ON meeting_links_pool
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- The absolute range a session keeps its link busy: [start, start + duration + buffer).
-- Half-open, so back-to-back sessions do not overlap; absolute, so a session that crosses
-- midnight meets the one on the next date.
CREATE FUNCTION session_link_hold(p_date date, p_time time, p_duration integer)
RETURNS tstzrange LANGUAGE sql STABLE AS $$
    SELECT tstzrange(start_at,
                     start_at + make_interval(mins => p_duration + s.buffer_minutes),
                     '[)')
    FROM pool_settings s,
         LATERAL (SELECT (p_date + p_time) AT TIME ZONE s.time_zone AS start_at) t
$$;

CREATE TABLE bookings (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           text          NOT NULL,
    expert_id         text          NOT NULL,
    session_type      text          NOT NULL,
    scheduled_date    date          NOT NULL,
    scheduled_time    time          NOT NULL,
    duration          integer       NOT NULL CHECK (duration > 0 AND duration <= 1440),
    price             numeric(14,2) NOT NULL CHECK (price >= 0),
    payment_status    text          NOT NULL DEFAULT 'pending' CHECK (payment_status IN
                          ('pending', 'review', 'paid', 'failed', 'cancelled', 'expired', 'refunded')),
    status            text          NOT NULL DEFAULT 'pending' CHECK (status IN
                          ('pending', 'confirmed', 'cancelled')),
    order_id          text          NOT NULL UNIQUE,
    meeting_link_id   uuid          REFERENCES meeting_links_pool (id),
    paid_at           timestamptz,
    link_assigned_at  timestamptz,
    -- The pool had no free link when we tried; support should look (cleared on assignment).
    needs_manual_link boolean       NOT NULL DEFAULT false,
    -- Set when support cancels the booking: that decision stands whatever payments do later,
    -- unlike a cancellation that follows a failed or refunded payment.
    cancelled_by_admin_at timestamptz,
    -- Derived by bookings_derive() from the columns above; never written by hand.
    starts_at         timestamptz   NOT NULL,
    ends_at           timestamptz   NOT NULL,
    link_hold         tstzrange     NOT NULL,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),

    -- Only a paid, confirmed booking may hold a link: un-paying or cancelling a booking
    -- without releasing its link fails here instead of silently blocking the link.
    CONSTRAINT bookings_link_requires_active_booking
        CHECK (meeting_link_id IS NULL OR (payment_status = 'paid' AND status = 'confirmed')),
    CONSTRAINT bookings_no_overlapping_link_use
        EXCLUDE USING gist (meeting_link_id WITH =, link_hold WITH &&)
        WHERE (meeting_link_id IS NOT NULL)
);

CREATE INDEX bookings_waiting_for_link ON bookings (paid_at, id)
    WHERE payment_status = 'paid' AND status = 'confirmed' AND meeting_link_id IS NULL;
CREATE INDEX bookings_starts_at ON bookings (starts_at);

CREATE FUNCTION bookings_derive() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link_enabled boolean;
BEGIN
    -- Checked here because the range below is derived before CHECK constraints run.
    IF NEW.duration IS NULL OR NEW.duration NOT BETWEEN 1 AND 1440 THEN
        RAISE EXCEPTION 'duration must be between 1 and 1440 minutes, got %', NEW.duration
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_duration_check';
    END IF;
    NEW.link_hold := session_link_hold(NEW.scheduled_date, NEW.scheduled_time, NEW.duration);
    NEW.starts_at := lower(NEW.link_hold);
    NEW.ends_at   := NEW.starts_at + make_interval(mins => NEW.duration);

    IF NEW.payment_status = 'paid' AND NEW.paid_at IS NULL THEN
        NEW.paid_at := now();
    END IF;

    IF NEW.meeting_link_id IS NULL THEN
        NEW.link_assigned_at := NULL;
    ELSIF TG_OP = 'INSERT' OR NEW.meeting_link_id IS DISTINCT FROM OLD.meeting_link_id THEN
        SELECT is_available INTO link_enabled FROM meeting_links_pool WHERE id = NEW.meeting_link_id;
        IF link_enabled IS FALSE THEN
            RAISE EXCEPTION 'meeting link % is disabled and cannot be assigned', NEW.meeting_link_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_link_must_be_enabled';
        END IF;
        NEW.link_assigned_at := now();
        NEW.needs_manual_link := false;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER bookings_derive BEFORE INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_derive();

-- The seed's lookup, kept callable as it was called:
--   SELECT * FROM find_available_meeting_link('2025-12-01', '14:00', 60);
-- A hint only: between this and an UPDATE another writer may take the link, and then the
-- exclusion constraint refuses the UPDATE.
CREATE FUNCTION find_available_meeting_link(p_booking_date date, p_booking_time time, p_duration integer)
RETURNS TABLE (id uuid, meeting_link text) LANGUAGE sql STABLE AS $$
    SELECT l.id, l.meeting_link
    FROM meeting_links_pool l
    WHERE l.is_available
      AND l.id NOT IN (
          SELECT b.meeting_link_id FROM bookings b
          WHERE b.meeting_link_id IS NOT NULL
            AND b.link_hold && session_link_hold(p_booking_date, p_booking_time, p_duration))
    ORDER BY l.created_at, l.id
    LIMIT 1
$$;

-- Changes the zone or buffer and re-derives every booking under the constraint: if a
-- larger buffer would make two held links overlap, the whole change is refused.
CREATE FUNCTION configure_pool(p_time_zone text, p_buffer_minutes integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pool_settings
               WHERE time_zone = p_time_zone AND buffer_minutes = p_buffer_minutes) THEN
        RETURN;
    END IF;
    UPDATE pool_settings SET time_zone = p_time_zone, buffer_minutes = p_buffer_minutes;
    UPDATE bookings SET scheduled_date = scheduled_date;
END $$;
