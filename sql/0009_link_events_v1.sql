-- Link events for the app: every change of a booking's link, written by the database in the
-- same transaction as the change (whoever writes: the functions, the support tool, psql), to
-- an append-only log; their delivery to the app (LINK_EVENTS_URL) is tracked beside it.

-- Kept narrow: the trigger runs inside every assignment, so it stores ids only; the JSON the
-- app receives is built when the event is delivered (link_event_payload_v1).
CREATE TABLE link_events (
    id               bigserial   PRIMARY KEY,
    -- No foreign keys: the log is history and outlives a booking or link deleted by hand.
    booking_id       uuid        NOT NULL,
    type             text        NOT NULL CHECK (type IN ('link.assigned', 'link.changed', 'link.released',
                                                          'link.waiting')),
    link_id          uuid,
    previous_link_id uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION link_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'link_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER link_events_append_only BEFORE UPDATE OR DELETE ON link_events
    FOR EACH ROW EXECUTE FUNCTION link_events_append_only();
CREATE TRIGGER link_events_no_truncate BEFORE TRUNCATE ON link_events
    FOR EACH STATEMENT EXECUTE FUNCTION link_events_append_only();

CREATE TABLE link_event_deliveries (
    event_id        bigint      PRIMARY KEY REFERENCES link_events (id),
    booking_id      uuid        NOT NULL,
    delivered_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX link_event_deliveries_pending ON link_event_deliveries (booking_id, event_id)
    WHERE delivered_at IS NULL;

CREATE FUNCTION bookings_link_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind   text;
    new_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.meeting_link_id IS NULL THEN
            RETURN NULL;
        END IF;
        kind := 'link.assigned';
    ELSIF OLD.meeting_link_id IS NOT DISTINCT FROM NEW.meeting_link_id THEN
        IF NOT (NEW.needs_manual_link AND NOT OLD.needs_manual_link AND NEW.meeting_link_id IS NULL) THEN
            RETURN NULL;
        END IF;
        kind := 'link.waiting';
    ELSIF OLD.meeting_link_id IS NULL THEN
        kind := 'link.assigned';
    ELSIF NEW.meeting_link_id IS NULL THEN
        kind := 'link.released';
    ELSE
        kind := 'link.changed';
    END IF;
    INSERT INTO link_events (booking_id, type, link_id, previous_link_id)
    VALUES (NEW.id, kind, NEW.meeting_link_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.meeting_link_id END)
    RETURNING id INTO new_id;
    INSERT INTO link_event_deliveries (event_id, booking_id) VALUES (new_id, NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER bookings_link_events AFTER INSERT OR UPDATE OF meeting_link_id, needs_manual_link ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_link_events();

-- The event as the app receives it (the Standard Webhooks payload: type, timestamp, data).
-- Links' URLs do not change; startsAt/endsAt are the session's times when it is delivered.
CREATE FUNCTION link_event_payload_v1(e link_events) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', e.type,
        'timestamp', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_build_object(
            'bookingId', e.booking_id, 'orderId', b.order_id,
            'meetingLink', l.meeting_link, 'previousMeetingLink', p.meeting_link,
            'source', CASE WHEN l.id IS NULL THEN NULL WHEN l.dedicated_to IS NOT NULL THEN 'meet' ELSE 'pool' END,
            'startsAt', b.starts_at, 'endsAt', b.ends_at))
    FROM (SELECT 1) one
    LEFT JOIN bookings b ON b.id = e.booking_id
    LEFT JOIN meeting_links_pool l ON l.id = e.link_id
    LEFT JOIN meeting_links_pool p ON p.id = e.previous_link_id
$$;

-- The next events to deliver: for each booking, only its earliest undelivered event, so the
-- app receives a booking's events in order; each is leased (next_attempt_at moves on) so that
-- two deliverers do not send it at once. p_booking narrows it to one booking.
CREATE FUNCTION claim_link_events_v1(p_limit integer, p_lease_seconds integer, p_booking uuid)
RETURNS TABLE (id bigint, event_id text, booking_id uuid, payload jsonb, created_at timestamptz,
               attempts integer)
LANGUAGE sql AS $$
    WITH heads AS (
        SELECT d.event_id AS id
        FROM link_event_deliveries d
        WHERE d.delivered_at IS NULL AND d.next_attempt_at <= now()
          AND (p_booking IS NULL OR d.booking_id = p_booking)
          AND NOT EXISTS (SELECT 1 FROM link_event_deliveries e
                          WHERE e.booking_id = d.booking_id AND e.delivered_at IS NULL
                            AND e.event_id < d.event_id)
        ORDER BY d.event_id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED),
    leased AS (
        UPDATE link_event_deliveries d
        SET next_attempt_at = now() + make_interval(secs => p_lease_seconds), attempts = d.attempts + 1
        FROM heads WHERE d.event_id = heads.id
        RETURNING d.event_id, d.attempts)
    SELECT e.id, 'evt_' || e.id, e.booking_id, link_event_payload_v1(e), e.created_at, leased.attempts
    FROM leased JOIN link_events e ON e.id = leased.event_id
    ORDER BY e.id
$$;

-- The outcome of one delivery attempt: delivered, or tried again after p_retry_seconds.
CREATE FUNCTION finish_link_event_v1(p_id bigint, p_delivered boolean, p_retry_seconds integer, p_error text)
RETURNS void LANGUAGE sql AS $$
    UPDATE link_event_deliveries
    SET delivered_at = CASE WHEN p_delivered THEN now() END,
        next_attempt_at = CASE WHEN p_delivered THEN next_attempt_at
                               ELSE now() + make_interval(secs => p_retry_seconds) END,
        last_error = CASE WHEN p_delivered THEN NULL ELSE left(p_error, 500) END
    WHERE event_id = p_id AND delivered_at IS NULL
$$;
