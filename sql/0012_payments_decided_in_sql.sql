-- What a payment notification means, decided in one language: the payment state machine moves
-- from Python into payment_intent_v1 and booking_status_after_v1, and record_payment_v2 takes
-- Midtrans's fields as they are (statuses in any case: DANA's status answers say "PENDING").
--
-- New operation beside the old one (record_payment_v1 stays, unchanged, for the previous
-- release during a rollout):
--   record_payment_v2   a notification's effect, which also decides when a notification must
--                       first be confirmed with Midtrans's GET Status API: always when the
--                       deployment asks for it, and otherwise only when another split of its
--                       signed fields names a booking that exists with exactly that amount
-- New rules:
--   payment_intent_v1        (transaction_status, fraud_status) -> the state asked for, the
--                            states it may move a booking from, a note
--   booking_status_after_v1  the booking's status once its payment is in a state

CREATE FUNCTION payment_intent_v1(p_transaction_status text, p_fraud_status text,
                                  OUT target text, OUT may_follow text[], OUT note text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    ts text := lower(p_transaction_status);
    fs text := lower(NULLIF(p_fraud_status, ''));
    not_yet_paid constant text[] := ARRAY['pending', 'review'];
    ended_unpaid constant text[] := ARRAY['failed', 'cancelled', 'expired'];
BEGIN
    note := '';
    IF ts IN ('settlement', 'capture') THEN
        -- Money that arrived wins over an earlier failure (a denied card may be retried and
        -- then succeed), but never over a refund that came later.
        IF fs IS NULL OR fs = 'accept' THEN
            target := 'paid';      may_follow := not_yet_paid || ended_unpaid;
        ELSIF fs = 'challenge' THEN
            target := 'review';    may_follow := ARRAY['pending'];
        ELSIF fs = 'deny' THEN
            target := 'failed';    may_follow := not_yet_paid || ARRAY['paid'];
        END IF;
    ELSIF ts IN ('pending', 'authorize') THEN
        target := 'pending';       may_follow := ARRAY[]::text[];
    ELSIF ts = 'deny' THEN
        -- deny after settlement is the documented reversal (Permata, Mandiri bill, Indomaret).
        target := 'failed';        may_follow := not_yet_paid || ARRAY['paid'];
    ELSIF ts = 'failure' THEN
        target := 'failed';        may_follow := not_yet_paid;
    ELSIF ts = 'cancel' THEN
        -- A capture can be cancelled before it settles.
        target := 'cancelled';     may_follow := not_yet_paid || ARRAY['paid'];
    ELSIF ts = 'expire' THEN
        target := 'expired';       may_follow := not_yet_paid;
    ELSIF ts IN ('refund', 'chargeback') THEN
        target := 'refunded';      may_follow := not_yet_paid || ended_unpaid || ARRAY['paid'];
    ELSIF ts IN ('partial_refund', 'partial_chargeback') THEN
        -- Part of the money stays with us, so the session still happens: paid, link kept.
        target := 'paid';          may_follow := not_yet_paid || ended_unpaid;
        note := 'partial refund or chargeback; link kept';
    END IF;
END $$;

-- An admin's cancellation stands whatever the payment does later.
CREATE FUNCTION booking_status_after_v1(p_payment_status text, p_cancelled_by_admin boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_cancelled_by_admin OR p_payment_status NOT IN ('pending', 'review', 'paid') THEN 'cancelled'
                WHEN p_payment_status = 'paid' THEN 'confirmed'
                ELSE 'pending' END
$$;

-- The transaction a booking's payment last was, as Midtrans named it: DANA's and BI-SNAP's
-- payments can be asked about by transaction id only, so the sweep asks with this one.
ALTER TABLE bookings ADD COLUMN last_transaction_id text, ADD COLUMN last_payment_type text;

-- outcome: applied | unchanged | stale | duplicate | ignored | rejected (amount) | malformed
-- (an order id Midtrans would never send; nothing written) | needs_confirmation (nothing
-- written: ask Midtrans's GET Status API, then call again with p_confirmed).
-- p_alternatives: the other splits of the signed string into (order_id, gross_amount), as a
-- JSON array of two-element arrays. From the status API (p_source status_api), only a
-- notification that changes something or is rejected is logged.
CREATE FUNCTION record_payment_v2(
    p_order_id text, p_transaction_id text, p_transaction_status text, p_fraud_status text,
    p_gross_amount text, p_payment_type text, p_body jsonb, p_source text,
    p_confirmed boolean, p_confirm_always boolean, p_alternatives jsonb)
RETURNS TABLE (outcome text, booking_id uuid, payment_status text, status text, meeting_link text,
               needs_link boolean, released_from timestamptz, released_until timestamptz, detail text)
LANGUAGE plpgsql AS $$
DECLARE
    ts        text := lower(p_transaction_status);
    fs        text := lower(NULLIF(p_fraud_status, ''));
    b         record;
    intent    record;
    v_outcome text;
    v_detail  text;
    v_status  text;
    v_after   text;
    v_link    text;
BEGIN
    IF NOT is_midtrans_order_id(p_order_id) THEN
        RETURN QUERY SELECT 'malformed', NULL::uuid, NULL::text, NULL::text, NULL::text, false,
                            NULL::timestamptz, NULL::timestamptz,
                            'order_id must be 1 to 50 letters, digits, ''-'', ''_'', ''~'' or ''.''';
        RETURN;
    END IF;

    SELECT bk.id, bk.price, bk.payment_status, bk.status, bk.meeting_link_id, bk.cancelled_by_admin_at,
           bk.link_hold, bk.last_transaction_id, bk.last_payment_type, l.meeting_link AS link
    INTO b
    FROM bookings bk LEFT JOIN meeting_links_pool l ON l.id = bk.meeting_link_id
    WHERE bk.order_id = p_order_id
    FOR UPDATE OF bk;

    IF NOT FOUND THEN
        IF p_source = 'notification' THEN
            INSERT INTO payment_notifications (order_id, transaction_id, transaction_status, fraud_status,
                                               gross_amount, outcome, detail, body, source)
            VALUES (p_order_id, p_transaction_id, ts, fs, p_gross_amount, 'ignored', 'unknown order_id',
                    p_body, p_source);
        END IF;
        RETURN QUERY SELECT 'ignored', NULL::uuid, NULL::text, NULL::text, NULL::text, false,
                            NULL::timestamptz, NULL::timestamptz, 'unknown order_id';
        RETURN;
    END IF;

    IF NOT p_confirmed THEN
        IF p_confirm_always THEN
            v_detail := 'every notification is confirmed (MIDTRANS_VERIFY_WITH_STATUS_API)';
        ELSE
            -- An alternative split is only a danger when it names a booking that exists with
            -- exactly that amount: the same signature could then have been made for it.
            SELECT format('the signed fields also read as order %s with amount %s', o.order_id, a.value->>1)
            INTO v_detail
            FROM jsonb_array_elements(COALESCE(p_alternatives, '[]'::jsonb)) a
            JOIN bookings o ON o.order_id = a.value->>0
            WHERE is_midtrans_order_id(a.value->>0) AND a.value->>1 ~ '^[0-9]+(\.[0-9]+)?$'
              AND (a.value->>1)::numeric = o.price
            LIMIT 1;
        END IF;
        IF v_detail IS NOT NULL THEN
            RETURN QUERY SELECT 'needs_confirmation', b.id, b.payment_status, b.status, b.link, false,
                                NULL::timestamptz, NULL::timestamptz, v_detail;
            RETURN;
        END IF;
    END IF;

    SELECT * INTO intent FROM payment_intent_v1(ts, fs);
    v_after := b.payment_status;
    v_status := b.status;
    v_link := b.link;
    IF NOT (p_gross_amount ~ '^[0-9]+(\.[0-9]+)?$' AND p_gross_amount::numeric = b.price) THEN
        v_outcome := 'rejected';
        v_detail := format('gross_amount %s does not match price %s', p_gross_amount, b.price);
    ELSIF EXISTS (SELECT 1 FROM payment_notifications n
                  WHERE n.order_id = p_order_id
                    AND n.transaction_id IS NOT DISTINCT FROM p_transaction_id
                    AND lower(n.transaction_status) = ts
                    AND lower(n.fraud_status) IS NOT DISTINCT FROM fs
                    AND n.outcome IN ('applied', 'unchanged', 'stale')) THEN
        v_outcome := 'duplicate';
    ELSIF intent.target IS NULL THEN
        v_outcome := 'ignored';
        v_detail := format('transaction_status %L / fraud_status %L is not acted on', ts, fs);
    ELSIF b.payment_status = intent.target THEN
        v_outcome := 'unchanged';
        v_detail := intent.note;
    ELSIF b.payment_status <> ALL (intent.may_follow) THEN
        v_outcome := 'stale';
        v_detail := intent.note;
    ELSE
        v_outcome := 'applied';
        v_detail := intent.note;
        v_after := intent.target;
        v_status := booking_status_after_v1(v_after, b.cancelled_by_admin_at IS NOT NULL);
        IF NOT booking_may_hold_link(v_after, v_status) THEN
            v_link := NULL;
        END IF;
        -- Leaving the paid, confirmed state releases the link in the same statement: the
        -- bookings_link_requires_active_booking constraint would refuse anything else.
        UPDATE bookings bk
        SET payment_status = v_after,
            status = v_status,
            needs_manual_link = bk.needs_manual_link AND booking_may_hold_link(v_after, v_status),
            meeting_link_id = CASE WHEN booking_may_hold_link(v_after, v_status) THEN bk.meeting_link_id END,
            last_transaction_id = COALESCE(p_transaction_id, bk.last_transaction_id),
            last_payment_type = COALESCE(p_payment_type, bk.last_payment_type)
        WHERE bk.id = b.id;
    END IF;

    IF v_outcome NOT IN ('applied', 'rejected')
       AND (p_transaction_id, p_payment_type) IS DISTINCT FROM (b.last_transaction_id, b.last_payment_type)
       AND (p_transaction_id IS NOT NULL OR p_payment_type IS NOT NULL) THEN
        UPDATE bookings SET last_transaction_id = COALESCE(p_transaction_id, last_transaction_id),
                            last_payment_type = COALESCE(p_payment_type, last_payment_type)
        WHERE id = b.id;
    END IF;

    IF p_source = 'notification' OR v_outcome IN ('applied', 'rejected') THEN
        INSERT INTO payment_notifications (order_id, transaction_id, transaction_status, fraud_status,
                                           gross_amount, booking_id, outcome, payment_status_before,
                                           payment_status_after, detail, body, source)
        VALUES (p_order_id, p_transaction_id, ts, fs, p_gross_amount, b.id, v_outcome, b.payment_status,
                v_after, NULLIF(v_detail, ''), p_body, p_source);
    END IF;

    RETURN QUERY SELECT v_outcome, b.id, v_after, v_status, v_link,
                        v_outcome <> 'rejected' AND booking_may_hold_link(v_after, v_status)
                            AND b.cancelled_by_admin_at IS NULL AND v_link IS NULL,
                        CASE WHEN v_outcome = 'applied' AND b.meeting_link_id IS NOT NULL AND v_link IS NULL
                             THEN lower(b.link_hold) END,
                        CASE WHEN v_outcome = 'applied' AND b.meeting_link_id IS NOT NULL AND v_link IS NULL
                             THEN upper(b.link_hold) END,
                        v_detail;
END $$;
