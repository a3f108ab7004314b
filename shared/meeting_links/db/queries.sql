-- Every query the Python code runs, by name. Parameters are :named. Each operation is one
-- call of a versioned SQL function (sql/schema.sql lists them); the rest read.

-- ---- allocation -----------------------------------------------------------------------

-- name: assign_link
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link, a.source, a.order_id, a.payment_status, a.status,
       a.cancelled_by_admin_at, a.starts_at, a.ends_at, a.report_waiting
FROM assign_link_v2(CAST(:booking_id AS uuid), CAST(:report AS boolean)) a

-- name: report_waiting
SELECT report_waiting_v1(CAST(:booking_id AS uuid)) AS report

-- name: waiting_bookings_page
-- Paid bookings without a link whose session has not ended, oldest payment first, one
-- page after a keyset position (and up to one, when given); optionally only those
-- overlapping a range that was just freed.
SELECT id, paid_at FROM bookings
WHERE booking_may_hold_link(payment_status, status) AND meeting_link_id IS NULL
  AND ends_at > now()
  AND (CAST(:hold_from AS timestamptz) IS NULL
       OR link_hold && tstzrange(CAST(:hold_from AS timestamptz), CAST(:hold_until AS timestamptz), '[)'))
  AND (paid_at, id) > (CAST(:after_paid_at AS timestamptz), CAST(:after_id AS uuid))
  AND (CAST(:until_paid_at AS timestamptz) IS NULL
       OR (paid_at, id) <= (CAST(:until_paid_at AS timestamptz), CAST(:until_id AS uuid)))
ORDER BY paid_at, id
LIMIT :page_size

-- name: sweep_resume_point
SELECT resume_after_paid_at AS paid_at, resume_after_id AS id FROM sweep_progress

-- name: set_sweep_resume_point
UPDATE sweep_progress SET resume_after_paid_at = CAST(:paid_at AS timestamptz),
                          resume_after_id = CAST(:booking_id AS uuid)

-- ---- payments -------------------------------------------------------------------------

-- name: record_payment
-- One statement, one round trip: see sql/0012_payments_decided_in_sql.sql.
SELECT * FROM record_payment_v2(
    CAST(:order_id AS text), CAST(:transaction_id AS text), CAST(:transaction_status AS text),
    CAST(:fraud_status AS text), CAST(:gross_amount AS text), CAST(:payment_type AS text), CAST(:body AS jsonb),
    CAST(:source AS text), CAST(:confirmed AS boolean), CAST(:confirm_always AS boolean),
    CAST(:alternatives AS jsonb))

-- name: payments_to_check
-- Bookings whose payment is still open some minutes after they were made and inside the
-- payment window, least recently checked first, so that a bounded number of calls per
-- sweep reaches each of them in turn.
SELECT id, order_id, payment_status, last_transaction_id, last_payment_type FROM bookings
WHERE payment_status IN ('pending', 'review')
  AND created_at < now() - make_interval(mins => CAST(:after_minutes AS integer))
  AND created_at > now() - make_interval(hours => CAST(:window_hours AS integer))
  AND (payment_checked_at IS NULL
       OR payment_checked_at < now() - make_interval(mins => CAST(:after_minutes AS integer)))
ORDER BY payment_checked_at NULLS FIRST, created_at
LIMIT :max_calls

-- name: mark_payment_checked
UPDATE bookings SET payment_checked_at = now() WHERE id = CAST(:booking_id AS uuid)

-- ---- private spaces -------------------------------------------------------------------

-- name: claim_space
SELECT c.outcome, c.link_id::text AS link_id, c.meeting_link, c.source, c.expert_email, c.customer_email
FROM claim_space_v2(CAST(:booking_id AS uuid), CAST(:lease_seconds AS integer)) c

-- name: attach_space
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link, a.detail
FROM attach_space_v2(CAST(:booking_id AS uuid), :space_name, :meeting_uri, :meeting_code, :access_type) a

-- name: fail_space
SELECT fail_space_v1(CAST(:booking_id AS uuid), :error)

-- name: space_request
SELECT state, attempts, last_error FROM meet_space_requests WHERE booking_id = CAST(:booking_id AS uuid)

-- name: record_space_members
SELECT record_space_members_v1(CAST(:link_id AS uuid), CAST(:members AS jsonb))

-- name: forget_space_member
SELECT forget_space_member_v1(CAST(:link_id AS uuid), :email)

-- name: record_space_access
SELECT record_space_access_v1(CAST(:link_id AS uuid), :access_type, CAST(:opened AS boolean))

-- name: spaces_to_tend
-- Private spaces held by their booking whose session has not ended and whose members are
-- not the booking's people, or that are open while both people are known; starts_soon:
-- within MEET_OPEN_BEFORE_MINUTES of the start.
SELECT l.id AS link_id, l.space_name, l.access_type, l.opened_at, b.id AS booking_id, b.starts_at,
       lower(b.expert_email) AS expert_email, lower(b.customer_email) AS customer_email,
       b.starts_at <= now() + make_interval(mins => CAST(:open_before_minutes AS integer)) AS starts_soon,
       m.members
FROM meeting_links_pool l
JOIN bookings b ON b.id = l.dedicated_to AND b.meeting_link_id = l.id
CROSS JOIN LATERAL (
    SELECT COALESCE(jsonb_agg(jsonb_build_object('email', sm.email, 'name', sm.member_name, 'role', sm.role)),
                    '[]'::jsonb) AS members,
           COALESCE(array_agg(sm.email ORDER BY sm.email) FILTER (WHERE sm.email IS NOT NULL), '{}') AS emails
    FROM space_members sm WHERE sm.link_id = l.id) m
WHERE b.ends_at > now()
  AND (m.emails IS DISTINCT FROM ARRAY(SELECT e FROM unnest(ARRAY[lower(b.expert_email), lower(b.customer_email)]) e
                                       WHERE e IS NOT NULL ORDER BY e)
       OR (l.access_type = 'OPEN' AND l.opened_at IS NULL AND b.expert_email IS NOT NULL
           AND b.customer_email IS NOT NULL))
ORDER BY b.starts_at
LIMIT 100

-- name: calls_to_end
-- Sessions on a link created through the Meet API that ended more than the grace period ago
-- (within the last week), whose call was not ended yet and is not waiting for a retry.
-- next_session_running: another booking holds the same link now, so its call is someone
-- else's and must not be ended.
SELECT b.id, l.space_name,
       EXISTS (SELECT 1 FROM bookings o WHERE o.meeting_link_id = l.id AND o.id <> b.id
               AND o.link_hold && tstzrange(now(), now() + interval '5 minutes')) AS next_session_running
FROM bookings b JOIN meeting_links_pool l ON l.id = b.meeting_link_id
WHERE b.call_ended_at IS NULL AND b.meeting_link_id IS NOT NULL AND l.space_name IS NOT NULL
  AND b.ends_at < now() - make_interval(mins => CAST(:grace_minutes AS integer))
  AND b.ends_at > now() - interval '7 days'
  AND (b.call_end_retry_at IS NULL OR b.call_end_retry_at <= now())
ORDER BY b.ends_at
LIMIT 100

-- name: mark_call_ended
UPDATE bookings SET call_ended_at = now(), call_end_outcome = :outcome WHERE id = CAST(:booking_id AS uuid)

-- name: delay_call_end
-- One space failed: that session alone waits 1, 2, 4 ... up to 60 minutes.
UPDATE bookings SET call_end_attempts = call_end_attempts + 1,
                    call_end_retry_at = now() + make_interval(mins => least(60, 2 ^ call_end_attempts)::integer)
WHERE id = CAST(:booking_id AS uuid)

-- ---- link events ----------------------------------------------------------------------

-- name: link_event_state
SELECT started_at, gone_url, gone_at, gone_detail FROM link_event_delivery_state

-- name: claim_link_events
SELECT c.id, c.webhook_id, c.booking_id, c.payload, c.attempts
FROM claim_link_events_v2(:url, CAST(:limit AS integer), CAST(:lease_seconds AS integer), CAST(:booking_id AS uuid)) c

-- name: finish_link_event
SELECT finish_link_event_v1(CAST(:id AS bigint), CAST(:delivered AS boolean), CAST(:retry_seconds AS integer), :error)

-- name: mark_link_events_gone
SELECT mark_link_events_gone_v1(:url, :detail) AS first

-- name: resume_link_events
SELECT resume_link_events_v1() AS url

-- name: replay_link_events
SELECT replay_link_events_v1(CAST(:since AS timestamptz)) AS events

-- name: link_events
-- The newest events first, with their delivery, for one booking or all.
SELECT e.id, 'evt_' || replace(e.webhook_id::text, '-', '') AS webhook_id, e.type, e.booking_id, b.order_id,
       e.created_at, d.delivered_at, d.skipped, d.attempts, d.next_attempt_at, d.last_error
FROM link_events e
JOIN link_event_deliveries d ON d.event_id = e.id
LEFT JOIN bookings b ON b.id = e.booking_id
WHERE CAST(:booking_id AS uuid) IS NULL OR e.booking_id = CAST(:booking_id AS uuid)
ORDER BY e.id DESC
LIMIT :limit

-- name: link_event
SELECT e.id, 'evt_' || replace(e.webhook_id::text, '-', '') AS webhook_id, e.type, e.booking_id, e.created_at,
       d.delivered_at, d.skipped, d.attempts, d.next_attempt_at, d.last_error, link_event_payload_v2(e) AS payload
FROM link_events e JOIN link_event_deliveries d ON d.event_id = e.id
WHERE e.id = CAST(:id AS bigint) OR 'evt_' || replace(e.webhook_id::text, '-', '') = :ref

-- name: resend_link_event
UPDATE link_event_deliveries SET delivered_at = NULL, skipped = false, next_attempt_at = now(), last_error = NULL
WHERE event_id = CAST(:id AS bigint)
RETURNING event_id

-- name: link_events_after
-- What happened since an event (the support tool's tail).
SELECT e.id, 'evt_' || replace(e.webhook_id::text, '-', '') AS webhook_id, e.type, b.order_id, e.created_at,
       d.delivered_at, d.skipped, d.attempts, d.last_error
FROM link_events e JOIN link_event_deliveries d ON d.event_id = e.id
LEFT JOIN bookings b ON b.id = e.booking_id
WHERE e.id > CAST(:after AS bigint) OR (d.delivered_at > CAST(:since AS timestamptz))
ORDER BY e.id

-- ---- the support tool -----------------------------------------------------------------

-- name: booking_by_ref
-- A booking by its id or its order id.
SELECT b.id, b.order_id, b.price, b.payment_status, b.status, b.scheduled_date, b.scheduled_time, b.duration,
       b.starts_at, b.ends_at, b.paid_at, b.needs_manual_link, b.cancelled_by_admin_at, b.expert_email,
       b.customer_email, b.last_transaction_id, b.call_ended_at, b.call_end_outcome,
       l.meeting_link, l.id AS link_id, (l.dedicated_to IS NOT NULL) AS private_space, l.access_type,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object('email', m.email, 'role', m.role) ORDER BY m.email), '[]')
        FROM space_members m JOIN meeting_links_pool s ON s.id = m.link_id WHERE s.dedicated_to = b.id) AS members
FROM bookings b LEFT JOIN meeting_links_pool l ON l.id = b.meeting_link_id
WHERE b.id::text = lower(:ref) OR b.order_id = :ref

-- name: create_booking
INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time, duration, price, order_id,
                      expert_email, customer_email)
VALUES (:user_id, :expert_id, :session_type, CAST(:scheduled_date AS date), CAST(:scheduled_time AS time),
        CAST(:duration AS integer), CAST(:price AS numeric), :order_id, :expert_email, :customer_email)
RETURNING id

-- name: move_booking
-- A reschedule, as the app writes it: the database keeps or finds the link (sql/0014).
UPDATE bookings SET scheduled_date = CAST(:scheduled_date AS date), scheduled_time = CAST(:scheduled_time AS time),
                    duration = CAST(:duration AS integer)
WHERE id = CAST(:booking_id AS uuid)
RETURNING id

-- name: holders_of_link
-- Who holds a link at any time of a booking's range (to name them when support is refused).
SELECT o.order_id, o.starts_at, o.ends_at FROM bookings o
JOIN bookings b ON b.id = CAST(:booking_id AS uuid)
WHERE o.meeting_link_id = CAST(:link_id AS uuid) AND o.id <> b.id AND o.link_hold && b.link_hold
ORDER BY o.starts_at

-- name: find_link
SELECT id, meeting_link, is_available, notes, created_at FROM meeting_links_pool
WHERE id::text = lower(:ref) OR meeting_link = :ref

-- name: add_link
INSERT INTO meeting_links_pool (meeting_link, notes) VALUES (:meeting_link, :notes)
RETURNING id, meeting_link, is_available, notes

-- name: add_api_link
INSERT INTO meeting_links_pool (meeting_link, notes, space_name, meeting_code)
VALUES (:meeting_link, 'created through the Meet API', :space_name, :meeting_code)
RETURNING id, meeting_link, is_available, notes

-- name: remove_link
-- Only a link no booking ever held and no event ever named: a mistake, not history.
DELETE FROM meeting_links_pool l
WHERE l.id = CAST(:link_id AS uuid)
  AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.meeting_link_id = l.id)
  AND NOT EXISTS (SELECT 1 FROM link_events e WHERE e.link_id = l.id OR e.previous_link_id = l.id)
  AND l.dedicated_to IS NULL
RETURNING id, meeting_link

-- name: set_link_available
UPDATE meeting_links_pool SET is_available = :available WHERE id = CAST(:link_id AS uuid)
RETURNING id, meeting_link, is_available

-- name: upcoming_holds_of_link
SELECT b.id AS booking_id, b.order_id, b.starts_at, b.ends_at,
       lower(b.link_hold) AS hold_from, upper(b.link_hold) AS hold_until
FROM bookings b WHERE b.meeting_link_id = CAST(:link_id AS uuid) AND upper(b.link_hold) > now()
ORDER BY lower(b.link_hold)

-- name: pool_links
SELECT l.id, l.meeting_link, l.is_available, l.notes, l.space_name,
       EXISTS (SELECT 1 FROM bookings b WHERE b.meeting_link_id = l.id
               AND b.link_hold @> now()) AS in_use_now
FROM meeting_links_pool l WHERE l.dedicated_to IS NULL ORDER BY l.created_at, l.id

-- name: link_usage
-- The seed's "link usage statistics", with the upcoming count in absolute time.
SELECT ml.id, ml.meeting_link, ml.notes, ml.is_available,
       COUNT(b.id) AS total_bookings,
       COUNT(b.id) FILTER (WHERE b.ends_at > now()) AS upcoming_bookings
FROM meeting_links_pool ml
LEFT JOIN bookings b ON b.meeting_link_id = ml.id AND b.payment_status = 'paid'
WHERE ml.dedicated_to IS NULL
GROUP BY ml.id, ml.meeting_link, ml.notes, ml.is_available
ORDER BY total_bookings DESC, ml.created_at

-- name: bookings_waiting_for_link
SELECT id, order_id, scheduled_date, scheduled_time, duration, starts_at, ends_at, paid_at, needs_manual_link
FROM bookings
WHERE booking_may_hold_link(payment_status, status) AND meeting_link_id IS NULL
  AND (CAST(:include_ended AS boolean) OR ends_at > now())
ORDER BY paid_at, id

-- name: free_links_for_slot
SELECT f.id, f.meeting_link
FROM free_shared_links_v1(session_link_hold(CAST(:on_date AS date), CAST(:at_time AS time),
                                            CAST(:duration AS integer))) f

-- name: assign_link_by_hand
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link, a.previous_link, a.released_from, a.released_until
FROM assign_link_by_hand_v2(CAST(:booking_id AS uuid), :link) a

-- name: cancel_booking
SELECT * FROM cancel_booking_v1(CAST(:booking_id AS uuid))

-- name: private_spaces
-- Per-booking spaces and their state, newest first; then spaces no booking can use.
SELECT l.space_name, l.meeting_link, b.id AS booking_id, b.order_id, b.starts_at, b.ends_at, l.access_type,
       (SELECT count(*) FROM space_members m WHERE m.link_id = l.id)::integer AS members, l.created_at,
       CASE WHEN b.meeting_link_id = l.id AND b.call_ended_at IS NOT NULL THEN 'ended'
            WHEN b.meeting_link_id = l.id THEN 'held'
            ELSE 'released' END AS state
FROM meeting_links_pool l JOIN bookings b ON b.id = l.dedicated_to
UNION ALL
SELECT o.space_name, o.meeting_uri, o.booking_id, b.order_id, b.starts_at, b.ends_at, NULL, 0, o.created_at, 'orphaned'
FROM meet_orphaned_spaces o LEFT JOIN bookings b ON b.id = o.booking_id
ORDER BY created_at DESC

-- name: capacity_by_day
-- For each local day from today: the most sessions holding (or owed) a link at one instant,
-- against the number of enabled links. Ends sort before starts at the same instant, as the
-- ranges are half-open.
WITH zone AS (SELECT time_zone FROM pool_settings),
days AS (
    SELECT d::date AS day,
           tstzrange(d::date::timestamp AT TIME ZONE zone.time_zone,
                     (d::date + 1)::timestamp AT TIME ZONE zone.time_zone) AS span
    FROM zone, generate_series(COALESCE(CAST(:start AS date), (now() AT TIME ZONE zone.time_zone)::date),
                               COALESCE(CAST(:start AS date), (now() AT TIME ZONE zone.time_zone)::date)
                                   + CAST(:days AS integer) - 1,
                               interval '1 day') AS d),
events AS (
    SELECT days.day, e.at, e.delta
    FROM days
    JOIN bookings b ON b.link_hold && days.span AND booking_may_hold_link(b.payment_status, b.status)
    CROSS JOIN LATERAL (VALUES (greatest(lower(b.link_hold), lower(days.span)), 1),
                               (least(upper(b.link_hold), upper(days.span)), -1)) AS e(at, delta)),
load AS (
    SELECT day, sum(delta) OVER (PARTITION BY day ORDER BY at, delta
                                 ROWS UNBOUNDED PRECEDING) AS concurrent
    FROM events)
SELECT days.day, COALESCE(max(load.concurrent), 0)::integer AS peak,
       (SELECT count(*) FROM meeting_links_pool WHERE is_available AND dedicated_to IS NULL)::integer AS pool_size,
       (SELECT count(*) FROM events e WHERE e.day = days.day AND e.delta = 1)::integer AS sessions
FROM days LEFT JOIN load ON load.day = days.day
GROUP BY days.day ORDER BY days.day

-- name: pool_settings
SELECT time_zone, buffer_minutes FROM pool_settings

-- name: configure_pool
SELECT * FROM configure_pool_v2(:time_zone, CAST(:buffer_minutes AS integer), CAST(:apply AS boolean))

-- name: now
SELECT now() AS now
