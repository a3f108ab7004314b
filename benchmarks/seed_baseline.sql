-- The original system's design, reimplemented from its description for comparison only:
-- a copy of the bookings with its indexes and no constraint, and its lookup, which builds
-- timestamps by concatenating text (read in the session's time zone) and compares only
-- bookings on the same date. The caller finds a link, then updates in a second statement.
DROP TABLE IF EXISTS seed_bookings;
CREATE TABLE seed_bookings AS
    SELECT id, scheduled_date, scheduled_time, duration, payment_status, meeting_link_id FROM bookings;
ALTER TABLE seed_bookings ADD PRIMARY KEY (id);
CREATE INDEX seed_bookings_link ON seed_bookings (meeting_link_id);
CREATE INDEX seed_bookings_date ON seed_bookings (scheduled_date);

CREATE OR REPLACE FUNCTION seed_find_available_meeting_link(p_booking_date date, p_booking_time time, p_duration integer)
RETURNS TABLE (id uuid, meeting_link text) LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_start timestamptz := (p_booking_date || ' ' || p_booking_time)::timestamptz;
    v_end   timestamptz := v_start + (p_duration || ' minutes')::interval;
BEGIN
    RETURN QUERY
    SELECT ml.id, ml.meeting_link FROM meeting_links_pool ml
    WHERE ml.is_available AND NOT EXISTS (
        SELECT 1 FROM seed_bookings b
        WHERE b.meeting_link_id = ml.id AND b.payment_status = 'paid'
          AND b.scheduled_date = p_booking_date
          AND ((b.scheduled_date || ' ' || b.scheduled_time)::timestamptz,
               (b.scheduled_date || ' ' || b.scheduled_time)::timestamptz + (b.duration || ' minutes')::interval)
              OVERLAPS (v_start, v_end))
    ORDER BY ml.created_at
    LIMIT 1;
END $$;
