-- A rescheduled booking keeps a valid link, whoever writes the UPDATE of its
-- scheduled_date, scheduled_time or duration (the app, psql, the support tool): in the same
-- transaction it keeps its link if that link is free and enabled at the new time, else takes
-- another free one, else gives its link up and waits (flagged needs_manual_link: the sweep
-- writes the "pool exhausted" line and serves it when capacity frees). A private space stays
-- with its booking at any time. The time it left is offered at once to the bookings waiting
-- for it, without waiting on anyone's locks (what cannot be had at once, the sweep does).
-- A moved session's call is ended after its new end.
--
-- New: the triggers bookings_arrange_link_for_new_time (BEFORE) and
-- bookings_offer_time_left (AFTER), and serve_waiting_quietly_v1.

-- Named to fire before bookings_derive (BEFORE triggers fire in name order): derive then
-- checks and stamps the link chosen here (enabled, taken FOR SHARE, link_assigned_at).
CREATE FUNCTION bookings_arrange_link_for_new_time() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_hold tstzrange;
    free     record;
BEGIN
    IF NEW.duration IS NULL OR NEW.duration NOT BETWEEN 1 AND 1440 OR NEW.scheduled_time >= time '24:00'
       OR NEW.scheduled_date IS NULL OR NEW.scheduled_time IS NULL THEN
        RETURN NEW;  -- bookings_derive refuses it, with the reason
    END IF;
    new_hold := session_link_hold(NEW.scheduled_date, NEW.scheduled_time, NEW.duration);
    IF new_hold IS NOT DISTINCT FROM OLD.link_hold THEN
        RETURN NEW;
    END IF;
    NEW.call_ended_at := NULL;
    NEW.call_end_outcome := NULL;
    -- The writer chose the link itself, or the booking may hold none.
    IF NEW.meeting_link_id IS DISTINCT FROM OLD.meeting_link_id
       OR NOT booking_may_hold_link(NEW.payment_status, NEW.status) OR NEW.cancelled_by_admin_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.id = NEW.meeting_link_id AND l.dedicated_to = NEW.id) THEN
        RETURN NEW;  -- its own private space: nobody else can hold it
    END IF;
    PERFORM lock_link_hold_v1(new_hold);
    IF NEW.meeting_link_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.id = NEW.meeting_link_id AND l.is_available)
       AND NOT EXISTS (SELECT 1 FROM bookings o
                       WHERE o.meeting_link_id = NEW.meeting_link_id AND o.id <> NEW.id AND o.link_hold && new_hold) THEN
        RETURN NEW;  -- keeps its link
    END IF;
    SELECT f.id INTO free FROM free_shared_links_v1(new_hold, NEW.id) f LIMIT 1;
    IF FOUND THEN
        NEW.meeting_link_id := free.id;
    ELSE
        NEW.meeting_link_id := NULL;
        NEW.needs_manual_link := true;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bookings_arrange_link_for_new_time
    BEFORE UPDATE OF scheduled_date, scheduled_time, duration ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_arrange_link_for_new_time();

-- Offers p_hold (a range just left free) to the paid bookings waiting for a link there, oldest
-- payment first, taking nothing that is not free at once: a waiting booking another
-- transaction has locked, or whose time another allocation is locking, is left to the sweep.
-- Each offer is its own subtransaction, so nothing here can fail the caller's statement.
-- Returns how many bookings got a link.
CREATE FUNCTION serve_waiting_quietly_v1(p_hold tstzrange) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    candidate record;
    w         bookings%ROWTYPE;
    free      record;
    served    integer := 0;
BEGIN
    FOR candidate IN
        SELECT b.id FROM bookings b
        WHERE booking_may_hold_link(b.payment_status, b.status) AND b.meeting_link_id IS NULL
          AND b.cancelled_by_admin_at IS NULL AND b.ends_at > now() AND b.link_hold && p_hold
        ORDER BY b.paid_at, b.id
        LIMIT 20
    LOOP
        BEGIN
            SELECT * INTO w FROM bookings WHERE id = candidate.id AND meeting_link_id IS NULL
            FOR UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND OR NOT lock_link_hold_v1(w.link_hold, false);
            SELECT f.id INTO free FROM free_shared_links_v1(w.link_hold) f LIMIT 1;
            IF FOUND THEN
                UPDATE bookings SET meeting_link_id = free.id WHERE id = w.id;
                served := served + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the sweep serves it
        END;
    END LOOP;
    RETURN served;
END $$;

CREATE FUNCTION bookings_offer_time_left() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.meeting_link_id IS NOT NULL AND OLD.link_hold IS DISTINCT FROM NEW.link_hold THEN
        PERFORM serve_waiting_quietly_v1(OLD.link_hold);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bookings_offer_time_left
    AFTER UPDATE OF scheduled_date, scheduled_time, duration ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_offer_time_left();
