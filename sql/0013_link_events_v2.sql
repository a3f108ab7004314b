-- Link events that any Standard Webhooks receiver accepts and that tell the time they are
-- about.
--
-- * webhook-id is a random UUID per event (evt_<32 hex>), unique across environments and
--   databases: a second environment, a restored or a re-created database never reuses an id
--   the app has already seen (the sequence did).
-- * Each event keeps the session's times when it happened, and the times before for a
--   reschedule (new types link.rescheduled: same link, new time; link.opened: a private space
--   opened to anyone with the link because its people could not be made members in time).
-- * Delivery starts when events are first sent (the first claim), not at the beginning of
--   history: events older than an hour by then are skipped, so turning LINK_EVENTS_URL on for
--   the first time sends what happened around that moment, not long-resolved waits;
--   `meeting-links events replay --since` sends older ones on purpose.
-- * A receiver that answers 410 Gone is not sent anything more until support resumes it.
--
-- New operations beside the old (claim_link_events_v1 and link_event_payload_v1 stay for the
-- previous release during a rollout): claim_link_events_v2, link_event_payload_v2,
-- mark_link_events_gone_v1, resume_link_events_v1, replay_link_events_v1.
-- Body replaced: the trigger bookings_link_events (new types, times kept with each event).

ALTER TABLE link_events
    ADD COLUMN webhook_id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN starts_at timestamptz,
    ADD COLUMN ends_at timestamptz,
    ADD COLUMN previous_starts_at timestamptz,
    ADD COLUMN previous_ends_at timestamptz;
ALTER TABLE link_events ADD CONSTRAINT link_events_webhook_id_key UNIQUE (webhook_id);
ALTER TABLE link_events DROP CONSTRAINT link_events_type_check;
ALTER TABLE link_events ADD CONSTRAINT link_events_type_check CHECK (type IN (
    'link.assigned', 'link.changed', 'link.released', 'link.waiting', 'link.rescheduled', 'link.opened'));

-- skipped: never sent, because it happened before events were first sent (or a replay was
-- asked from a later time).
ALTER TABLE link_event_deliveries ADD COLUMN skipped boolean NOT NULL DEFAULT false;

-- One row: the first event delivery starts from (NULL until events are first sent), and a
-- receiver that answered 410 Gone (nothing is sent to that URL until resume_link_events_v1).
CREATE TABLE link_event_delivery_state (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    started_at     timestamptz,
    gone_url       text,
    gone_at        timestamptz,
    gone_detail    text
);
INSERT INTO link_event_delivery_state DEFAULT VALUES;

CREATE OR REPLACE FUNCTION bookings_link_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind        text;
    new_id      bigint;
    times_moved boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.meeting_link_id IS NULL THEN
            RETURN NULL;
        END IF;
        kind := 'link.assigned';
    ELSE
        times_moved := (NEW.starts_at, NEW.ends_at) IS DISTINCT FROM (OLD.starts_at, OLD.ends_at);
        IF OLD.meeting_link_id IS NOT DISTINCT FROM NEW.meeting_link_id THEN
            IF NEW.meeting_link_id IS NOT NULL AND times_moved THEN
                kind := 'link.rescheduled';
            ELSIF NEW.meeting_link_id IS NULL AND NEW.needs_manual_link AND NOT OLD.needs_manual_link THEN
                kind := 'link.waiting';
            ELSE
                RETURN NULL;
            END IF;
        ELSIF OLD.meeting_link_id IS NULL THEN
            kind := 'link.assigned';
        ELSIF NEW.meeting_link_id IS NULL THEN
            -- Still paid, but no link free at its new time: a person must act.
            kind := CASE WHEN NEW.needs_manual_link AND booking_may_hold_link(NEW.payment_status, NEW.status)
                         THEN 'link.waiting' ELSE 'link.released' END;
        ELSE
            kind := 'link.changed';
        END IF;
    END IF;
    INSERT INTO link_events (booking_id, type, link_id, previous_link_id, starts_at, ends_at,
                             previous_starts_at, previous_ends_at)
    VALUES (NEW.id, kind, NEW.meeting_link_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.meeting_link_id END,
            NEW.starts_at, NEW.ends_at,
            CASE WHEN TG_OP = 'UPDATE' AND times_moved THEN OLD.starts_at END,
            CASE WHEN TG_OP = 'UPDATE' AND times_moved THEN OLD.ends_at END)
    RETURNING id INTO new_id;
    INSERT INTO link_event_deliveries (event_id, booking_id) VALUES (new_id, NEW.id);
    RETURN NULL;
END $$;
-- On every update, not UPDATE OF its columns: a reschedule changes the link and the times in
-- BEFORE triggers, and UPDATE OF fires only for the columns the statement itself sets.
DROP TRIGGER bookings_link_events ON bookings;
CREATE TRIGGER bookings_link_events AFTER INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_link_events();

-- The event as the app receives it (the Standard Webhooks payload: type, timestamp, data).
-- startsAt/endsAt are the session's times when the event happened; previousStartsAt and
-- previousEndsAt the times before a reschedule (null otherwise). Events written before
-- migration 0013 kept no times: theirs are the session's times now.
CREATE FUNCTION link_event_payload_v2(e link_events) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', e.type,
        'timestamp', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_build_object(
            'bookingId', e.booking_id, 'orderId', b.order_id,
            'meetingLink', l.meeting_link, 'previousMeetingLink', p.meeting_link,
            'source', CASE WHEN l.id IS NULL THEN NULL WHEN l.dedicated_to IS NOT NULL THEN 'meet' ELSE 'pool' END,
            'startsAt', COALESCE(e.starts_at, b.starts_at), 'endsAt', COALESCE(e.ends_at, b.ends_at),
            'previousStartsAt', e.previous_starts_at, 'previousEndsAt', e.previous_ends_at))
    FROM (SELECT 1) one
    LEFT JOIN bookings b ON b.id = e.booking_id
    LEFT JOIN meeting_links_pool l ON l.id = e.link_id
    LEFT JOIN meeting_links_pool p ON p.id = e.previous_link_id
$$;

-- The next events to deliver to p_url: for each booking only its earliest undelivered event
-- (in order per booking), leased so two deliverers do not send it at once. The first call
-- ever marks events more than an hour old as skipped (delivery starts about now). Nothing
-- while p_url answered 410 Gone. p_booking narrows it to one booking.
CREATE FUNCTION claim_link_events_v2(p_url text, p_limit integer, p_lease_seconds integer, p_booking uuid)
RETURNS TABLE (id bigint, webhook_id text, booking_id uuid, payload jsonb, attempts integer)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM link_event_delivery_state s WHERE s.started_at IS NULL) THEN
        UPDATE link_event_delivery_state SET started_at = now() WHERE started_at IS NULL;
        IF FOUND THEN
            UPDATE link_event_deliveries d SET delivered_at = now(), skipped = true
            FROM link_events e
            WHERE e.id = d.event_id AND d.delivered_at IS NULL AND e.created_at < now() - interval '1 hour';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM link_event_delivery_state s WHERE s.gone_url = p_url) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH heads AS (
        SELECT d.event_id
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
        FROM heads WHERE d.event_id = heads.event_id
        RETURNING d.event_id, d.attempts)
    SELECT e.id, 'evt_' || replace(e.webhook_id::text, '-', ''), e.booking_id, link_event_payload_v2(e),
           leased.attempts
    FROM leased JOIN link_events e ON e.id = leased.event_id
    ORDER BY e.id;
END $$;

-- The receiver at p_url answered 410 Gone: send it nothing more. True the first time (the
-- caller writes the ERROR line the alert fires on once).
CREATE FUNCTION mark_link_events_gone_v1(p_url text, p_detail text) RETURNS boolean
LANGUAGE sql AS $$
    WITH marked AS (
        UPDATE link_event_delivery_state
        SET gone_url = p_url, gone_at = now(), gone_detail = left(p_detail, 500)
        WHERE gone_url IS DISTINCT FROM p_url
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM marked)
$$;

-- Support sends events again after a 410 (the app is back): returns the URL that was stopped.
CREATE FUNCTION resume_link_events_v1() RETURNS text
LANGUAGE sql AS $$
    WITH before AS (SELECT gone_url FROM link_event_delivery_state),
    cleared AS (UPDATE link_event_delivery_state SET gone_url = NULL, gone_at = NULL, gone_detail = NULL
                RETURNING 1)
    SELECT gone_url FROM before
$$;

-- Sends again every event since p_since (those already delivered and those skipped), in
-- order, as new attempts with their own webhook-ids unchanged (the app deduplicates).
-- Returns how many events are due again.
CREATE FUNCTION replay_link_events_v1(p_since timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE link_event_delivery_state SET started_at = COALESCE(started_at, now());
    UPDATE link_event_deliveries d
    SET delivered_at = NULL, skipped = false, next_attempt_at = now(), last_error = NULL
    FROM link_events e
    WHERE e.id = d.event_id AND e.created_at >= p_since AND d.delivered_at IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
