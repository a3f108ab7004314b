-- Every Midtrans notification that passed the signature check, as received, with what it
-- did. Append-only: it is the audit trail for money, so rows are never changed or removed.
CREATE TABLE payment_notifications (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at        timestamptz NOT NULL DEFAULT now(),
    order_id           text        NOT NULL,
    transaction_id     text,
    transaction_status text        NOT NULL,
    fraud_status       text,
    gross_amount       text,
    booking_id         uuid        REFERENCES bookings (id),
    -- applied: changed the booking; unchanged: already in that state; stale: older than
    -- the booking's state; duplicate: seen before; ignored: unknown status or order;
    -- rejected: failed a check (amount) and changed nothing.
    outcome            text        NOT NULL CHECK (outcome IN
                           ('applied', 'unchanged', 'stale', 'duplicate', 'ignored', 'rejected')),
    payment_status_before text,
    payment_status_after  text,
    detail             text,
    body               jsonb       NOT NULL
);
CREATE INDEX payment_notifications_order ON payment_notifications (order_id, id);

CREATE FUNCTION payment_notifications_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment_notifications is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER payment_notifications_append_only
    BEFORE UPDATE OR DELETE ON payment_notifications
    FOR EACH ROW EXECUTE FUNCTION payment_notifications_append_only();
CREATE TRIGGER payment_notifications_no_truncate
    BEFORE TRUNCATE ON payment_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION payment_notifications_append_only();
