-- The edges: ranges derived only when asked, a time of day that stays below 24:00, links
-- that cannot be disabled under an assignment in flight, no replayable signatures at rest,
-- and what the sweep needs to reach every waiting booking and every lost payment.

-- A booking's range is derived when the session is written or moved, or when
-- configure_pool() asks for it (by writing link_hold); any other update keeps the range it
-- has. So a session that has ended keeps the range it had when the buffer or the zone
-- changes later, and a refund of a past session never trips over a newer buffer.
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
    END IF;

    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

UPDATE bookings SET scheduled_date = scheduled_date + 1, scheduled_time = time '00:00'
WHERE scheduled_time = time '24:00';
ALTER TABLE bookings ADD CONSTRAINT bookings_scheduled_time_check
    CHECK (scheduled_time < time '24:00');

-- The buffer and zone apply to sessions that have not ended; past ones keep their range.
CREATE OR REPLACE FUNCTION configure_pool(p_time_zone text, p_buffer_minutes integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pool_settings
               WHERE time_zone = p_time_zone AND buffer_minutes = p_buffer_minutes) THEN
        RETURN;
    END IF;
    UPDATE pool_settings SET time_zone = p_time_zone, buffer_minutes = p_buffer_minutes;
    UPDATE bookings SET link_hold = session_link_hold(scheduled_date, scheduled_time, duration)
    WHERE ends_at > now();
END $$;

-- A signature_key at rest is a notification anyone who reads the table could replay.
ALTER TABLE payment_notifications DISABLE TRIGGER payment_notifications_append_only;
UPDATE payment_notifications SET body = body - 'signature_key' WHERE body ? 'signature_key';
ALTER TABLE payment_notifications ENABLE TRIGGER payment_notifications_append_only;

-- Where the payment came from: Midtrans's notification, or the sweep asking the GET Status
-- API about a payment whose notification never came.
ALTER TABLE payment_notifications ADD COLUMN source text NOT NULL DEFAULT 'notification'
    CHECK (source IN ('notification', 'status_api'));

-- When the sweep last asked Midtrans about this booking's payment, so that a bounded number
-- of calls per sweep still reaches every pending booking in turn.
ALTER TABLE bookings ADD COLUMN payment_checked_at timestamptz;
CREATE INDEX bookings_awaiting_payment ON bookings (created_at)
    WHERE payment_status IN ('pending', 'review');

-- Where a sweep that ran out of time stopped, so that the next one goes on from there
-- instead of reading the same head of the queue again.
CREATE TABLE sweep_progress (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    resume_after_paid_at timestamptz,
    resume_after_id uuid
);
INSERT INTO sweep_progress DEFAULT VALUES;
