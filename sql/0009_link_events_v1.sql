-- Link events for the app: every change of a booking's link, written by the database in the
-- same transaction as the change (whoever writes: the functions, the support tool, psql), to
-- an append-only log; their delivery to the app (LINK_EVENTS_URL) is tracked beside it.

CREATE TABLE link_events (
    id         bigserial   PRIMARY KEY,
    -- The Standard Webhooks webhook-id: the same on every delivery attempt of this event.
    event_id   text        NOT NULL UNIQUE DEFAULT ('evt_' || replace(gen_random_uuid()::text, '-', '')),
    -- No foreign key: the log is history and outlives a booking deleted by hand.
    booking_id uuid        NOT NULL,
    type       text        NOT NULL CHECK (type IN ('link.assigned', 'link.changed', 'link.released',
                                                    'link.waiting')),
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX link_events_by_booking ON link_events (booking_id, id);

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
    kind     text;
    link     meeting_links_pool%ROWTYPE;
    previous text;
    new_id   bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.meeting_link_id IS NOT DISTINCT FROM NEW.meeting_link_id THEN
        IF NEW.needs_manual_link AND NOT OLD.needs_manual_link AND NEW.meeting_link_id IS NULL THEN
            kind := 'link.waiting';
        ELSE
            RETURN NULL;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.meeting_link_id IS NULL THEN
            RETURN NULL;
        END IF;
        kind := 'link.assigned';
    ELSIF OLD.meeting_link_id IS NULL THEN
        kind := 'link.assigned';
    ELSIF NEW.meeting_link_id IS NULL THEN
        kind := 'link.released';
    ELSE
        kind := 'link.changed';
    END IF;
    SELECT * INTO link FROM meeting_links_pool l WHERE l.id = NEW.meeting_link_id;
    IF TG_OP = 'UPDATE' THEN
        SELECT l.meeting_link INTO previous FROM meeting_links_pool l WHERE l.id = OLD.meeting_link_id;
    END IF;
    INSERT INTO link_events (booking_id, type, payload)
    VALUES (NEW.id, kind, jsonb_build_object(
        'type', kind,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_build_object(
            'bookingId', NEW.id, 'orderId', NEW.order_id,
            'meetingLink', link.meeting_link, 'previousMeetingLink', previous,
            'source', CASE WHEN link.id IS NULL THEN NULL
                           WHEN link.dedicated_to IS NOT NULL THEN 'meet' ELSE 'pool' END,
            'startsAt', NEW.starts_at, 'endsAt', NEW.ends_at)))
    RETURNING id INTO new_id;
    INSERT INTO link_event_deliveries (event_id, booking_id) VALUES (new_id, NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER bookings_link_events AFTER INSERT OR UPDATE OF meeting_link_id, needs_manual_link ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_link_events();

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
    SELECT e.id, e.event_id, e.booking_id, e.payload, e.created_at, leased.attempts
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
