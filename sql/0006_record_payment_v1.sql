-- Recording a payment notification as one statement (one round trip instead of six).
--
-- Python maps Midtrans's vocabulary to an intent (payments.py: the payment state asked for,
-- the states it may follow, the booking status that goes with it); this function applies the
-- intent atomically: lock the booking by order_id, check the amount, drop duplicates, move
-- the state or call the notification stale, release the link when the booking may no longer
-- hold one, and append the notification with what it did to payment_notifications.
--
-- p_target NULL: a status we do not act on (logged as ignored). The booking's status comes
-- from payments.booking_status_for: p_status_for_target, or p_status_if_cancelled_by_admin
-- when support cancelled the booking.
-- outcome: applied | unchanged | stale | duplicate | ignored | rejected.
CREATE FUNCTION record_payment_v1(
    p_order_id text, p_transaction_id text, p_transaction_status text, p_fraud_status text,
    p_gross_amount text, p_body jsonb, p_source text,
    p_target text, p_may_follow text[], p_status_for_target text,
    p_status_if_cancelled_by_admin text, p_note text)
RETURNS TABLE (outcome text, booking_id uuid, payment_status text, status text, meeting_link text,
               released_from timestamptz, released_until timestamptz, detail text)
LANGUAGE plpgsql AS $$
DECLARE
    b         record;
    v_outcome text;
    v_detail  text;
    v_status  text;
    v_after   text;
BEGIN
    SELECT bk.id, bk.price, bk.payment_status, bk.status, bk.meeting_link_id,
           bk.cancelled_by_admin_at, bk.link_hold, l.meeting_link AS link
    INTO b
    FROM bookings bk LEFT JOIN meeting_links_pool l ON l.id = bk.meeting_link_id
    WHERE bk.order_id = p_order_id
    FOR UPDATE OF bk;

    IF NOT FOUND THEN
        INSERT INTO payment_notifications (order_id, transaction_id, transaction_status, fraud_status,
                                           gross_amount, outcome, detail, body, source)
        VALUES (p_order_id, p_transaction_id, p_transaction_status, p_fraud_status, p_gross_amount,
                'ignored', 'unknown order_id', p_body, p_source);
        RETURN QUERY SELECT 'ignored', NULL::uuid, NULL::text, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::timestamptz, 'unknown order_id';
        RETURN;
    END IF;

    v_after := b.payment_status;
    v_status := b.status;
    IF NOT (p_gross_amount ~ '^[0-9]+(\.[0-9]+)?$' AND p_gross_amount::numeric = b.price) THEN
        v_outcome := 'rejected';
        v_detail := format('gross_amount %s does not match price %s', p_gross_amount, b.price);
    ELSIF EXISTS (SELECT 1 FROM payment_notifications n
                  WHERE n.order_id = p_order_id
                    AND n.transaction_id IS NOT DISTINCT FROM p_transaction_id
                    AND n.transaction_status = p_transaction_status
                    AND n.fraud_status IS NOT DISTINCT FROM p_fraud_status
                    AND n.outcome IN ('applied', 'unchanged', 'stale')) THEN
        v_outcome := 'duplicate';
    ELSIF p_target IS NULL THEN
        v_outcome := 'ignored';
        v_detail := format('transaction_status %L / fraud_status %L is not acted on',
                           p_transaction_status, p_fraud_status);
    ELSIF b.payment_status = p_target THEN
        v_outcome := 'unchanged';
        v_detail := p_note;
    ELSIF b.payment_status <> ALL (p_may_follow) THEN
        v_outcome := 'stale';
        v_detail := p_note;
    ELSE
        v_outcome := 'applied';
        v_detail := p_note;
        v_after := p_target;
        v_status := CASE WHEN b.cancelled_by_admin_at IS NOT NULL THEN p_status_if_cancelled_by_admin
                         ELSE p_status_for_target END;
        -- Leaving the paid, confirmed state releases the link in the same statement: the
        -- bookings_link_requires_active_booking constraint would refuse anything else.
        UPDATE bookings bk
        SET payment_status = v_after,
            status = v_status,
            needs_manual_link = bk.needs_manual_link AND v_after = 'paid' AND v_status = 'confirmed',
            meeting_link_id = CASE WHEN v_after = 'paid' AND v_status = 'confirmed' THEN bk.meeting_link_id END
        WHERE bk.id = b.id;
    END IF;

    INSERT INTO payment_notifications (order_id, transaction_id, transaction_status, fraud_status,
                                       gross_amount, booking_id, outcome, payment_status_before,
                                       payment_status_after, detail, body, source)
    VALUES (p_order_id, p_transaction_id, p_transaction_status, p_fraud_status, p_gross_amount, b.id,
            v_outcome, b.payment_status, v_after, NULLIF(v_detail, ''), p_body, p_source);

    IF v_outcome = 'applied' AND b.meeting_link_id IS NOT NULL
       AND NOT (v_after = 'paid' AND v_status = 'confirmed') THEN
        RETURN QUERY SELECT v_outcome, b.id, v_after, v_status, NULL::text,
                            lower(b.link_hold), upper(b.link_hold), v_detail;
    ELSE
        RETURN QUERY SELECT v_outcome, b.id, v_after, v_status, b.link,
                            NULL::timestamptz, NULL::timestamptz, v_detail;
    END IF;
END $$;
