-- Comments only: one line per function, which sql/schema.sql shows as its index of
-- operations. Nothing's behaviour changes.

-- Operations the code calls, one statement each.
COMMENT ON FUNCTION assign_link_v2(uuid, boolean) IS
    'allocation: the first free shared link for a paid booking''s range, or why not (flags a booking left waiting)';
COMMENT ON FUNCTION report_waiting_v1(uuid) IS
    'whether a waiting booking''s "pool exhausted" line is still to be written (and marks it written)';
COMMENT ON FUNCTION record_payment_v2(text, text, text, text, text, text, jsonb, text, boolean, boolean, jsonb) IS
    'a Midtrans notification''s effect: amount, duplicates, state machine, release, log; says when to confirm it first';
COMMENT ON FUNCTION claim_space_v2(uuid, integer) IS
    'private space, step 1: who calls the Meet API for a booking (at most one caller at a time)';
COMMENT ON FUNCTION attach_space_v2(uuid, text, text, text, text) IS
    'private space, step 2: record the space Google made and give it to its booking (or say why not)';
COMMENT ON FUNCTION fail_space_v1(uuid, text) IS
    'private space: the API call failed; the next attempt goes ahead at once';
COMMENT ON FUNCTION record_space_members_v1(uuid, jsonb) IS 'the members Google now has for a space';
COMMENT ON FUNCTION forget_space_member_v1(uuid, text) IS 'a member no longer of a space';
COMMENT ON FUNCTION record_space_access_v1(uuid, text, boolean) IS
    'a space''s access as Google now has it; opened: the app is told (link.opened)';
COMMENT ON FUNCTION assign_link_by_hand_v2(uuid, text) IS
    'support: a chosen link, or the first free enabled one (moving a booking off a disabled link)';
COMMENT ON FUNCTION cancel_booking_v1(uuid) IS 'support: cancel a booking for good, releasing its link';
COMMENT ON FUNCTION configure_pool_v2(text, integer, boolean) IS
    'support: the business time zone and buffer, with what changes and which sessions would clash';
COMMENT ON FUNCTION claim_link_events_v2(text, integer, integer, uuid) IS
    'link events: the next ones to deliver to a URL, in order per booking, leased';
COMMENT ON FUNCTION finish_link_event_v1(bigint, boolean, integer, text) IS
    'link events: one delivery attempt done (delivered, or tried again after a delay)';
COMMENT ON FUNCTION mark_link_events_gone_v1(text, text) IS 'link events: the receiver answered 410 Gone';
COMMENT ON FUNCTION resume_link_events_v1() IS 'link events: send again after a 410';
COMMENT ON FUNCTION replay_link_events_v1(timestamptz) IS 'link events: send every event since a time again';
COMMENT ON FUNCTION find_available_meeting_link(date, time, integer) IS
    'the seed''s lookup, as it was called: a free link for a local date, time and duration (a hint)';

-- Rules, each written once and used wherever it applies.
COMMENT ON FUNCTION booking_may_hold_link(text, text) IS 'rule: only a paid, confirmed booking may hold a link';
COMMENT ON FUNCTION is_midtrans_order_id(text) IS 'rule: the order ids Midtrans sends';
COMMENT ON FUNCTION payment_intent_v1(text, text) IS
    'rule: Midtrans''s transaction_status and fraud_status as the payment state asked for and where it may come from';
COMMENT ON FUNCTION booking_status_after_v1(text, boolean) IS 'rule: a booking''s status once its payment is in a state';
COMMENT ON FUNCTION session_link_hold(date, time, integer) IS
    'rule: the absolute range a session keeps its link busy, [start, start + duration + buffer)';
COMMENT ON FUNCTION lock_link_hold_v1(tstzrange, boolean) IS
    'rule: the bounded advisory locks that make allocations of overlapping times take turns';
COMMENT ON FUNCTION free_shared_links_v1(tstzrange, uuid) IS 'rule: the enabled shared links free for a whole range';
COMMENT ON FUNCTION serve_waiting_quietly_v1(tstzrange) IS
    'a range just left free, offered to waiting bookings without waiting on anyone''s locks';
COMMENT ON FUNCTION link_event_payload_v2(link_events) IS 'link events: the JSON the app receives';

-- Superseded, kept for the previous release during a rollout.
COMMENT ON FUNCTION assign_link_v1(uuid) IS 'superseded by assign_link_v2';
COMMENT ON FUNCTION record_payment_v1(text, text, text, text, text, jsonb, text, text, text[], text, text, text) IS
    'superseded by record_payment_v2';
COMMENT ON FUNCTION claim_space_v1(uuid, integer) IS 'superseded by claim_space_v2';
COMMENT ON FUNCTION attach_space_v1(uuid, text, text, text) IS 'superseded by attach_space_v2';
COMMENT ON FUNCTION assign_link_by_hand_v1(uuid, text) IS 'superseded by assign_link_by_hand_v2';
COMMENT ON FUNCTION configure_pool(text, integer) IS 'superseded by configure_pool_v2';
COMMENT ON FUNCTION claim_link_events_v1(integer, integer, uuid) IS 'superseded by claim_link_events_v2';
COMMENT ON FUNCTION link_event_payload_v1(link_events) IS 'superseded by link_event_payload_v2';
COMMENT ON FUNCTION link_is_private_space_v1(uuid) IS 'superseded: assign_link_v2 and claim_space_v2 say the source';
COMMENT ON FUNCTION link_hold_buckets(tstzrange) IS 'superseded by lock_link_hold_v1 (used by the _v1 operations)';
