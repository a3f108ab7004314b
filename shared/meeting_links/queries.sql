-- Every query the Python code runs, by name. Parameters are :named.

-- name: assign_link
-- One statement, one round trip: see sql/0005_assign_link_v1.sql. The times only matter when
-- no link was given, so the hot path parses none of them.
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link, a.order_id, a.payment_status, a.status,
       a.newly_flagged, a.cancelled_by_admin_at,
       CASE WHEN a.outcome = 'exhausted' THEN a.starts_at END AS starts_at,
       CASE WHEN a.outcome = 'exhausted' THEN a.ends_at END AS ends_at,
       link_is_private_space_v1(a.link_id) AS private_space  -- fresh snapshot: see sql/0010
FROM assign_link_v1(CAST(:booking_id AS uuid)) a

-- name: claim_space
SELECT c.outcome, c.link_id::text AS link_id, c.meeting_link,
       link_is_private_space_v1(c.link_id) AS private_space
FROM claim_space_v1(CAST(:booking_id AS uuid), CAST(:lease_seconds AS integer)) c

-- name: attach_space
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link
FROM attach_space_v1(CAST(:booking_id AS uuid), :space_name, :meeting_uri, :meeting_code) a

-- name: fail_space
SELECT fail_space_v1(CAST(:booking_id AS uuid), :error)

-- name: space_request
SELECT state, attempts, last_error FROM meet_space_requests WHERE booking_id = CAST(:booking_id AS uuid)

-- name: private_spaces
-- Per-booking spaces and their state, newest first; then spaces no booking can use.
SELECT l.space_name, l.meeting_link, b.id AS booking_id, b.order_id, b.starts_at, b.ends_at,
       l.created_at,
       CASE WHEN b.meeting_link_id = l.id AND b.call_ended_at IS NOT NULL THEN 'ended'
            WHEN b.meeting_link_id = l.id THEN 'held'
            ELSE 'released' END AS state
FROM meeting_links_pool l JOIN bookings b ON b.id = l.dedicated_to
UNION ALL
SELECT o.space_name, o.meeting_uri, o.booking_id, b.order_id, b.starts_at, b.ends_at, o.created_at, 'orphaned'
FROM meet_orphaned_spaces o LEFT JOIN bookings b ON b.id = o.booking_id
ORDER BY created_at DESC

-- name: waiting_bookings_page
-- Paid bookings without a link whose session has not ended, oldest payment first, one
-- page after a keyset position (and up to one, when given); optionally only those
-- overlapping a range that was just freed.
SELECT id, paid_at FROM bookings
WHERE payment_status = 'paid' AND status = 'confirmed' AND meeting_link_id IS NULL
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

-- name: payments_to_check
-- Bookings whose payment is still open some minutes after they were made and inside the
-- payment window, least recently checked first, so that a bounded number of calls per
-- sweep reaches each of them in turn.
SELECT id, order_id, payment_status FROM bookings
WHERE payment_status IN ('pending', 'review')
  AND created_at < now() - make_interval(mins => CAST(:after_minutes AS integer))
  AND created_at > now() - make_interval(hours => CAST(:window_hours AS integer))
  AND (payment_checked_at IS NULL
       OR payment_checked_at < now() - make_interval(mins => CAST(:after_minutes AS integer)))
ORDER BY payment_checked_at NULLS FIRST, created_at
LIMIT :max_calls

-- name: mark_payment_checked
UPDATE bookings SET payment_checked_at = now() WHERE id = :booking_id

-- name: record_payment
-- One statement, one round trip: see sql/0006_record_payment_v1.sql.
SELECT * FROM record_payment_v1(
    CAST(:order_id AS text), CAST(:transaction_id AS text), CAST(:transaction_status AS text),
    CAST(:fraud_status AS text), CAST(:gross_amount AS text), CAST(:body AS jsonb), CAST(:source AS text),
    CAST(:target AS text), CAST(:may_follow AS text[]), CAST(:status_for_target AS text),
    CAST(:status_if_cancelled_by_admin AS text), CAST(:note AS text))

-- name: booking_by_order_id
SELECT id, order_id, price, payment_status, status, meeting_link_id FROM bookings
WHERE order_id = :order_id

-- name: find_link
SELECT id, meeting_link, is_available, notes, created_at FROM meeting_links_pool
WHERE id::text = :ref OR meeting_link = :ref

-- name: add_link
INSERT INTO meeting_links_pool (meeting_link, notes) VALUES (:meeting_link, :notes)
RETURNING id, meeting_link, is_available, notes

-- name: add_api_link
INSERT INTO meeting_links_pool (meeting_link, notes, space_name, meeting_code)
VALUES (:meeting_link, 'created through the Meet API', :space_name, :meeting_code)
RETURNING id, meeting_link, is_available, notes

-- name: set_link_available
UPDATE meeting_links_pool SET is_available = :available WHERE id = :link_id
RETURNING id, meeting_link, is_available

-- name: upcoming_holds_of_link
SELECT b.id AS booking_id, b.order_id, b.starts_at, b.ends_at,
       lower(b.link_hold) AS hold_from, upper(b.link_hold) AS hold_until
FROM bookings b WHERE b.meeting_link_id = :link_id AND upper(b.link_hold) > now()
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
SELECT id, order_id, scheduled_date, scheduled_time, duration, starts_at, ends_at, paid_at,
       needs_manual_link
FROM bookings
WHERE payment_status = 'paid' AND status = 'confirmed' AND meeting_link_id IS NULL
  AND (CAST(:include_ended AS boolean) OR ends_at > now())
ORDER BY paid_at, id

-- name: free_links_for_slot
SELECT l.id, l.meeting_link
FROM meeting_links_pool l
WHERE l.is_available AND l.dedicated_to IS NULL
  AND l.id NOT IN (SELECT b.meeting_link_id FROM bookings b
                   WHERE b.meeting_link_id IS NOT NULL
                     AND b.link_hold && session_link_hold(CAST(:on_date AS date), CAST(:at_time AS time),
                                                          CAST(:duration AS integer)))
ORDER BY l.created_at, l.id

-- name: assign_link_by_hand
SELECT a.outcome, a.link_id::text AS link_id, a.meeting_link, a.previous_link, a.released_from,
       a.released_until
FROM assign_link_by_hand_v1(CAST(:booking_id AS uuid), :link) a

-- name: cancel_booking
SELECT * FROM cancel_booking_v1(CAST(:booking_id AS uuid))

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
    JOIN bookings b ON b.link_hold && days.span
                   AND b.payment_status = 'paid' AND b.status = 'confirmed'
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

-- name: now
SELECT now() AS now

-- name: calls_to_end
-- Sessions on a link created through the Meet API that ended more than the grace period ago
-- (within the last week) and whose call was not ended yet. next_session_running: another
-- booking holds the same link now, so its call is someone else's and must not be ended.
SELECT b.id, l.space_name,
       EXISTS (SELECT 1 FROM bookings o WHERE o.meeting_link_id = l.id AND o.id <> b.id
               AND o.link_hold && tstzrange(now(), now() + interval '5 minutes')) AS next_session_running
FROM bookings b JOIN meeting_links_pool l ON l.id = b.meeting_link_id
WHERE b.call_ended_at IS NULL AND b.meeting_link_id IS NOT NULL AND l.space_name IS NOT NULL
  AND b.ends_at < now() - make_interval(mins => CAST(:grace_minutes AS integer))
  AND b.ends_at > now() - interval '7 days'
ORDER BY b.ends_at
LIMIT 100

-- name: mark_call_ended
UPDATE bookings SET call_ended_at = now(), call_end_outcome = :outcome WHERE id = CAST(:booking_id AS uuid)

-- name: business_time_zone
SELECT time_zone FROM pool_settings

-- name: claim_link_events
SELECT c.id, c.event_id, c.booking_id, c.payload, c.attempts
FROM claim_link_events_v1(CAST(:limit AS integer), CAST(:lease_seconds AS integer), CAST(:booking_id AS uuid)) c

-- name: finish_link_event
SELECT finish_link_event_v1(CAST(:id AS bigint), CAST(:delivered AS boolean), CAST(:retry_seconds AS integer), :error)
