-- Private spaces its two people can walk into, and that never cost a booking its link.
--
-- * Who the booking's people are: expert_email and customer_email, written by the app with the
--   booking (optional; a booking without them behaves as before). The expert becomes a
--   member of the booking's space with role COHOST, the customer a member: both join without
--   knocking (space_members keeps what Google was told).
-- * A space is created with the access its people need (access_type, kept here): with both
--   people known RESTRICTED, else one that lets the link's holders in; opened_at: opened to
--   anyone with the link because its people could not be made members before the session.
-- * A space the database refuses (a malformed or oversized URI or name, a URI or name another
--   link already has) or a disabled one is not a 500: the booking falls back.
--
-- New operations beside the old (claim_space_v1 and attach_space_v1 stay for the previous
-- release during a rollout): claim_space_v2, attach_space_v2, record_space_members_v1,
-- forget_space_member_v1, record_space_access_v1.

ALTER TABLE bookings
    ADD COLUMN expert_email   text CONSTRAINT bookings_expert_email_check
        CHECK (expert_email IS NULL OR (length(expert_email) <= 254
               AND expert_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$')),
    ADD COLUMN customer_email text CONSTRAINT bookings_customer_email_check
        CHECK (customer_email IS NULL OR (length(customer_email) <= 254
               AND customer_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'));

ALTER TABLE meeting_links_pool
    ADD COLUMN access_type text CHECK (access_type IN ('OPEN', 'TRUSTED', 'RESTRICTED')),
    ADD COLUMN opened_at   timestamptz,
    -- A URL or name longer than this is no meeting link (and would not fit the unique index).
    ADD CONSTRAINT meeting_links_pool_meeting_link_length CHECK (length(meeting_link) <= 2048),
    ADD CONSTRAINT meeting_links_pool_space_name_length CHECK (length(space_name) <= 200);

CREATE TABLE space_members (
    link_id     uuid        NOT NULL REFERENCES meeting_links_pool (id),
    email       text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('COHOST', 'MEMBER')),
    member_name text,       -- spaces/{space}/members/{member}, as Google named it
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, email)
);

-- Step 1 of giving a booking a private space: decide who calls the Meet API.
-- outcome: claimed (the caller creates the space, then calls attach_space_v2 or fail_space_v1)
-- | busy (another caller is creating it) | assigned (the booking's own space, created before,
-- is held again) | space_disabled (its own space was disabled by support: the caller falls
-- back) | already_assigned | not_found | cancelled | not_paid. source: of the link returned.
-- expert_email, customer_email: the people to make members.
CREATE FUNCTION claim_space_v2(p_booking_id uuid, p_lease_seconds integer)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, source text, expert_email text,
               customer_email text)
LANGUAGE plpgsql AS $$
DECLARE
    b   bookings%ROWTYPE;
    own meeting_links_pool%ROWTYPE;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF b.meeting_link_id IS NOT NULL THEN
        RETURN QUERY SELECT 'already_assigned', l.id, l.meeting_link,
                            CASE WHEN l.dedicated_to IS NOT NULL THEN 'meet' ELSE 'pool' END,
                            b.expert_email, b.customer_email
                     FROM meeting_links_pool l WHERE l.id = b.meeting_link_id;
        RETURN;
    END IF;
    IF b.cancelled_by_admin_at IS NOT NULL THEN
        RETURN QUERY SELECT 'cancelled', NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF NOT booking_may_hold_link(b.payment_status, b.status) THEN
        RETURN QUERY SELECT 'not_paid', NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO own FROM meeting_links_pool l WHERE l.dedicated_to = b.id;
    IF FOUND AND NOT own.is_available THEN
        RETURN QUERY SELECT 'space_disabled', own.id, own.meeting_link, 'meet', b.expert_email, b.customer_email;
        RETURN;
    END IF;
    IF FOUND THEN  -- paid again after a refund: its own space, never a second one
        UPDATE bookings SET meeting_link_id = own.id WHERE id = b.id;
        RETURN QUERY SELECT 'assigned', own.id, own.meeting_link, 'meet', b.expert_email, b.customer_email;
        RETURN;
    END IF;
    INSERT INTO meet_space_requests AS r (booking_id, state) VALUES (b.id, 'requested')
    ON CONFLICT (booking_id) DO UPDATE
        SET state = 'requested', requested_at = now(), attempts = r.attempts + 1, last_error = NULL
        WHERE r.state = 'failed'
           OR (r.state = 'requested' AND r.requested_at < now() - make_interval(secs => p_lease_seconds));
    RETURN QUERY SELECT CASE WHEN FOUND THEN 'claimed' ELSE 'busy' END, NULL::uuid, NULL::text, NULL::text,
                        b.expert_email, b.customer_email;
END $$;

-- Step 2: record the space the API created and give it to its booking.
-- outcome: assigned | kept (stored as the booking's own space, but the booking may not hold it
-- now: no longer paid, or it got a shared link meanwhile) | orphaned (the booking already has
-- its own space: this one is recorded in meet_orphaned_spaces) | refused (the database
-- refused the space: detail says why; the request is failed, the caller falls back).
CREATE FUNCTION attach_space_v2(p_booking_id uuid, p_space_name text, p_meeting_uri text, p_meeting_code text,
                                p_access_type text)
RETURNS TABLE (outcome text, link_id uuid, meeting_link text, detail text)
LANGUAGE plpgsql AS $$
DECLARE
    b          bookings%ROWTYPE;
    new_id     uuid;
    constraint_name text;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.dedicated_to = p_booking_id) THEN
        UPDATE meet_space_requests SET state = 'created' WHERE booking_id = p_booking_id;
        INSERT INTO meet_orphaned_spaces (space_name, meeting_uri, booking_id, reason)
        VALUES (left(p_space_name, 200), left(p_meeting_uri, 2048), p_booking_id, 'the booking already has its own space')
        ON CONFLICT (space_name) DO NOTHING;
        RETURN QUERY SELECT 'orphaned', NULL::uuid, p_meeting_uri, NULL::text;
        RETURN;
    END IF;
    BEGIN
        INSERT INTO meeting_links_pool (meeting_link, notes, space_name, meeting_code, dedicated_to, access_type)
        VALUES (p_meeting_uri, 'private space', p_space_name, p_meeting_code, p_booking_id, p_access_type)
        RETURNING id INTO new_id;
    EXCEPTION WHEN check_violation OR unique_violation OR not_null_violation OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
        UPDATE meet_space_requests SET state = 'failed',
                                       last_error = left('refused by the database: ' || COALESCE(NULLIF(constraint_name, ''), SQLERRM), 500)
        WHERE booking_id = p_booking_id AND state = 'requested';
        RETURN QUERY SELECT 'refused', NULL::uuid, NULL::text, COALESCE(NULLIF(constraint_name, ''), SQLERRM);
        RETURN;
    END;
    UPDATE meet_space_requests SET state = 'created' WHERE booking_id = p_booking_id;
    IF b.meeting_link_id IS NULL AND b.cancelled_by_admin_at IS NULL
       AND booking_may_hold_link(b.payment_status, b.status) THEN
        UPDATE bookings SET meeting_link_id = new_id WHERE id = b.id;
        RETURN QUERY SELECT 'assigned', new_id, p_meeting_uri, NULL::text;
    ELSE
        RETURN QUERY SELECT 'kept', new_id, p_meeting_uri, NULL::text;
    END IF;
END $$;

-- What Google now has as the space's members: [{"email", "role", "name"}, ...], added or
-- confirmed (an email is kept in lower case).
CREATE FUNCTION record_space_members_v1(p_link_id uuid, p_members jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO space_members (link_id, email, role, member_name)
    SELECT p_link_id, lower(m->>'email'), m->>'role', m->>'name'
    FROM jsonb_array_elements(p_members) m
    ON CONFLICT (link_id, email) DO UPDATE SET role = EXCLUDED.role, member_name = EXCLUDED.member_name
$$;

CREATE FUNCTION forget_space_member_v1(p_link_id uuid, p_email text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM space_members WHERE link_id = p_link_id AND email = lower(p_email)
$$;

-- The space's access type as Google now has it. p_opened: it was opened to anyone with the link
-- because its people could not be made members in time; the app is told (link.opened).
CREATE FUNCTION record_space_access_v1(p_link_id uuid, p_access_type text, p_opened boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    b      bookings%ROWTYPE;
    new_id bigint;
BEGIN
    UPDATE meeting_links_pool SET access_type = p_access_type,
                                  opened_at = CASE WHEN p_opened THEN now() ELSE opened_at END
    WHERE id = p_link_id;
    IF p_opened THEN
        SELECT bk.* INTO b FROM bookings bk JOIN meeting_links_pool l ON l.dedicated_to = bk.id
        WHERE l.id = p_link_id;
        IF FOUND THEN
            INSERT INTO link_events (booking_id, type, link_id, starts_at, ends_at)
            VALUES (b.id, 'link.opened', p_link_id, b.starts_at, b.ends_at)
            RETURNING id INTO new_id;
            INSERT INTO link_event_deliveries (event_id, booking_id) VALUES (new_id, b.id);
        END IF;
    END IF;
END $$;

-- Ending a call can fail for one space and not the others: the failure is that session's own
-- (tried again later, after its own backoff), and never stops the round. refused: Google
-- answered 403 for that space (the app may not manage it); it is not tried again.
ALTER TABLE bookings
    ADD COLUMN call_end_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN call_end_retry_at timestamptz;
ALTER TABLE bookings DROP CONSTRAINT bookings_call_end_outcome_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_call_end_outcome_check
    CHECK (call_end_outcome IN ('ended', 'none running', 'next session running', 'refused'));
