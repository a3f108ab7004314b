"""Private Meet spaces (LINK_SOURCE): a space per booking through the Meet REST API, created
at most once whatever the retries, stored under the pool's rules, and the pool as fallback.
Google is a local fake speaking the token endpoint's and the Meet API's protocols."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import function_client
from support import INTERNAL_TOKEN, booking, insert_booking, local_time_ago, notification, paid

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def space_row(conn, booking_id):
    rows = conn.run("SELECT space_name, meeting_link, meeting_code, dedicated_to::text, created_at"
                    " FROM meeting_links_pool WHERE dedicated_to = CAST(:b AS uuid)", b=booking_id)
    return rows[0] if rows else None


def test_meet_then_pool_gives_each_booking_its_own_space(conn, google, meet_env, seed_links):
    client = meet_env()
    a, b = paid(conn), paid(conn)  # same slot
    first = client.post("/", json={"bookingId": a["id"]}, headers=AUTH).get_json()
    second = client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    assert first["source"] == second["source"] == "meet"
    assert first["meetingLink"] != second["meetingLink"]
    assert {first["meetingLink"], second["meetingLink"]}.isdisjoint(link["meeting_link"] for link in seed_links)
    name, uri, code, owner, created = space_row(conn, a["id"])
    assert google.spaces[name]["meetingUri"] == uri == first["meetingLink"] and uri.endswith(code)
    assert owner == a["id"] and created is not None
    # Created with the access its holders need (AUTO: nobody named to admit anyone, so OPEN;
    # see the members tests), entry from every entry point.
    assert google.spaces[name]["config"] == {"accessType": "OPEN", "entryPointAccess": "ALL"}
    assert booking(conn, a["id"])["meeting_link"] == uri
    # Asking again gives the same space and calls Google no more.
    again = client.post("/", json={"bookingId": a["id"]}, headers=AUTH).get_json()
    assert again["meetingLink"] == uri and again["alreadyAssigned"] is True and again["source"] == "meet"
    assert google.calls["create"] == 2


def test_twenty_concurrent_calls_for_one_booking_create_one_space(conn, google, meet_env):
    google.create_delay_s = 0.3
    client = meet_env()
    b = paid(conn)
    barrier = threading.Barrier(20)

    def call(_):
        barrier.wait()
        return client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(20)))
    assert google.calls["create"] == 1
    assert {a["meetingLink"] for a in answers} == {booking(conn, b["id"])["meeting_link"]}
    assert {a["source"] for a in answers} == {"meet"}


def test_a_private_space_is_never_offered_to_another_booking(conn, google, meet_env, set_links):
    set_links(0)  # no shared links at all
    client = meet_env(source="pool_then_meet")
    owner, other = paid(conn, time="09:00"), paid(conn, time="15:00")
    client.post("/", json={"bookingId": owner["id"]}, headers=AUTH)
    space = space_row(conn, owner["id"])
    # Not by the allocator, not by the seed's lookup, and not by hand.
    google.fail_next(500)
    r = client.post("/", json={"bookingId": other["id"]}, headers=AUTH)
    assert r.status_code == 409 and r.get_json()["requiresManualAssignment"] is True
    assert conn.run("SELECT count(*) FROM find_available_meeting_link('2030-01-07', '15:00', 60)")[0][0] == 0
    with pytest.raises(Exception, match="bookings_private_space_of_its_booking|private space"):
        conn.run("UPDATE bookings SET meeting_link_id = (SELECT id FROM meeting_links_pool WHERE space_name = :s)"
                 " WHERE id = CAST(:b AS uuid)", s=space[0], b=other["id"])


def test_pool_then_meet_uses_the_pool_first(conn, google, meet_env, set_links):
    set_links(1)
    client = meet_env(source="pool_then_meet")
    a, b = paid(conn), paid(conn)
    first = client.post("/", json={"bookingId": a["id"]}, headers=AUTH).get_json()
    second = client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    assert (first["source"], second["source"]) == ("pool", "meet")
    assert google.calls["create"] == 1
    assert booking(conn, b["id"])["needs_manual_link"] is False


@pytest.mark.parametrize("failure", ["429", "500", "slow", "no credentials", "refused credentials"])
def test_meet_then_pool_falls_back_to_the_pool_when_meet_fails(conn, google, meet_env, seed_links, capfd, failure):
    extra = {}
    if failure == "429":
        google.fail_next(429)
    elif failure == "500":
        google.fail_next(500)
    elif failure == "slow":
        google.create_delay_s = 1.0
        extra["MEET_API_TIMEOUT_S"] = "0.3"
    elif failure == "refused credentials":
        google.refuse_refresh = True
    if failure == "no credentials":
        extra["MEET_CREDENTIALS"] = ""
    client = meet_env(**extra)
    b = paid(conn)
    capfd.readouterr()
    started = time.monotonic()
    r = client.post("/", json={"bookingId": b["id"]}, headers=AUTH)
    assert time.monotonic() - started < 1.5
    assert r.status_code == 200 and r.get_json()["source"] == "pool"
    assert r.get_json()["meetingLink"] == seed_links[0]["meeting_link"]
    assert space_row(conn, b["id"]) is None
    logged = capfd.readouterr().err
    if failure in ("no credentials", "refused credentials"):
        assert '"severity": "ERROR"' in logged and "MEET_CREDENTIALS" in logged
    # The failed request does not block the next attempt: it creates the space.
    if failure in ("429", "500"):
        c = paid(conn, time="16:00")
        assert client.post("/", json={"bookingId": c["id"]}, headers=AUTH).get_json()["source"] == "meet"


def test_pool_then_meet_with_meet_down_leaves_the_booking_flagged_for_a_person(conn, google, meet_env, set_links, capfd):
    set_links(0)
    client = meet_env(source="pool_then_meet")
    google.fail_next(503)
    b = paid(conn)
    capfd.readouterr()
    r = client.post("/", json={"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 409 and booking(conn, b["id"])["needs_manual_link"] is True
    assert "pool exhausted: booking needs manual assignment" in capfd.readouterr().err


def test_pool_mode_never_calls_google(conn, google, meet_env, seed_links):
    client = meet_env(source="pool")
    b = paid(conn)
    r = client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    assert r["source"] == "pool" and sum(google.calls.values()) == 0


def test_a_refund_releases_the_space_and_a_new_payment_gets_the_same_one_back(conn, google, meet_env, app_env):
    client = meet_env()
    b = paid(conn)
    uri = client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()["meetingLink"]
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = CAST(:b AS uuid)", b=b["id"])
    conn.run("UPDATE bookings SET payment_status = 'paid', status = 'confirmed' WHERE id = CAST(:b AS uuid)",
             b=b["id"])
    again = client.post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    assert again["meetingLink"] == uri and again["source"] == "meet" and google.calls["create"] == 1


def test_a_request_left_by_a_crash_is_taken_over_after_its_lease(conn, google, meet_env, database_url):
    """A caller that claimed the space and died before recording it: the claim blocks others
    only until its lease runs out, then the next attempt creates the space."""
    client = meet_env(MEET_SPACE_LEASE_S="30")
    b = paid(conn)
    conn.run("INSERT INTO meet_space_requests (booking_id, state) VALUES (CAST(:b AS uuid), 'requested')", b=b["id"])
    r = client.post("/", json={"bookingId": b["id"]}, headers=AUTH)  # busy: falls back within the budget
    assert r.get_json()["source"] == "pool" and google.calls["create"] == 0
    c = paid(conn, time="18:00")
    conn.run("INSERT INTO meet_space_requests (booking_id, state, requested_at)"
             " VALUES (CAST(:b AS uuid), 'requested', now() - interval '31 seconds')", b=c["id"])
    r = client.post("/", json={"bookingId": c["id"]}, headers=AUTH).get_json()
    assert r["source"] == "meet" and google.calls["create"] == 1
    assert conn.run("SELECT state, attempts FROM meet_space_requests WHERE booking_id = CAST(:b AS uuid)",
                    b=c["id"]) == [["created", 2]]


def test_the_webhook_answers_with_the_private_space(conn, google, meet_env, app_env, assign_server, monkeypatch):
    """End to end in one process: the webhook records the payment and calls assign (served
    for real by the session's assign server would use pool mode, so here assign runs in-process
    behind a local HTTP server)."""
    from support import FakeServer
    assign = meet_env()

    def forward(method, path, headers, body):
        r = assign.post("/", data=body, headers={"Authorization": headers.get("Authorization"),
                                                 "Content-Type": "application/json"})
        return r.status_code, r.get_json(), None
    with FakeServer(forward) as proxy:
        monkeypatch.setenv("ASSIGN_MEETING_LINK_URL", proxy.url)
        from meeting_links import config
        config.settings.cache_clear()
        b = insert_booking(conn)
        r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    body = r.get_json()
    assert r.status_code == 200 and body["source"] == "meet"
    assert body["meetingLink"] == booking(conn, b["id"])["meeting_link"] == space_row(conn, b["id"])[1]


def test_the_sweep_ends_calls_whose_session_is_over(conn, google, meet_env, set_links):
    """A private space's call is ended 15 minutes (MEET_END_GRACE_MINUTES) after its session,
    once, and recorded; a session not yet past the grace is left alone; a shared link made
    through the API is not ended while its next session runs."""
    client = meet_env()
    over, recent = paid(conn, **local_time_ago(conn, 120)), paid(conn, **local_time_ago(conn, 70), duration=60)
    for b in (over, recent):
        client.post("/", json={"bookingId": b["id"]}, headers=AUTH)
    over_space, recent_space = space_row(conn, over["id"])[0], space_row(conn, recent["id"])[0]
    google.start_call(over_space)
    google.start_call(recent_space)
    swept = client.post("/", json={"sweep": True}, headers=AUTH).get_json()
    assert swept["callsEnded"] == 1
    assert over_space not in google.active and recent_space in google.active
    assert conn.run("SELECT call_end_outcome FROM bookings WHERE id = CAST(:b AS uuid)", b=over["id"]) == [["ended"]]
    assert client.post("/", json={"sweep": True}, headers=AUTH).get_json()["callsEnded"] == 0
    assert google.calls["end"] == 1

    # A shared link created through the API, held by a session that ended 2 hours ago and by
    # one running now: the running one's call stays.
    shared = "spaces/sharedOne"
    google.spaces[shared] = {"name": shared, "meetingUri": "https://meet.google.com/sha-redx-one",
                             "meetingCode": "sha-redx-one"}
    link = conn.run("INSERT INTO meeting_links_pool (meeting_link, space_name) VALUES"
                    " ('https://meet.google.com/sha-redx-one', :s) RETURNING id::text", s=shared)[0][0]
    earlier = paid(conn, **local_time_ago(conn, 120), duration=30)
    running = paid(conn, **local_time_ago(conn, 10), duration=60)
    for b in (earlier, running):
        conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)", l=link, b=b["id"])
    google.start_call(shared)
    client.post("/", json={"sweep": True}, headers=AUTH)
    assert shared in google.active
    assert conn.run("SELECT call_end_outcome FROM bookings WHERE id = CAST(:b AS uuid)",
                    b=earlier["id"]) == [["next session running"]]


def test_support_grows_the_pool_with_api_spaces_and_checks_every_link(conn, google, admin, monkeypatch, set_links):
    """`links create N` makes app-owned spaces and hands them to waiting bookings; `links check`
    tells which links the API knows, which are gone, and which it cannot see; `spaces` lists
    the private ones."""
    set_links(0)
    monkeypatch.setenv("MEET_API_BASE_URL", google.url)
    monkeypatch.setenv("MEET_CREDENTIALS", google.authorized_user())
    waiting = paid(conn)
    conn.run("UPDATE bookings SET needs_manual_link = true WHERE id = CAST(:b AS uuid)", b=waiting["id"])
    created = admin.json("links", "create", "2")
    assert len(created) == 2 and google.calls["create"] == 2
    assert created[0]["waitingBookingsServed"] == [{"bookingId": waiting["id"],
                                                    "meetingLink": created[0]["meetingLink"]}]
    assert booking(conn, waiting["id"])["meeting_link"] == created[0]["meetingLink"]
    conn.run("INSERT INTO meeting_links_pool (meeting_link) VALUES ('https://meet.google.com/han-dmad-eee'),"
             " ('https://meet.google.com/gon-egon-eee'), ('https://zoom.us/j/1')")
    google.foreign_codes.add("han-dmad-eee")
    google.spaces[created[1]["meetingLink"] and next(n for n, sp in google.spaces.items()
                   if sp["meetingUri"] == created[1]["meetingLink"])]["meetingUri"] = "https://meet.google.com/new-code-now"
    checked = {r["meetingLink"]: r["apiSays"] for r in admin.json("links", "check")}
    # The second one's code now opens another URL (Google reuses codes unused for 365 days).
    assert checked == {created[0]["meetingLink"]: "exists", created[1]["meetingLink"]: "moved",
                       "https://meet.google.com/han-dmad-eee": "not ours",
                       "https://meet.google.com/gon-egon-eee": "missing", "https://zoom.us/j/1": "not a Meet link"}
    code, out, _ = admin("links", "check")
    assert code == 0 and "2 missing or moved, 2 the API cannot check" in out

    # A private space, listed with its state.
    monkeypatch.setenv("LINK_SOURCE", "meet_then_pool")
    from meeting_links import clients, config, link_source
    from meeting_links.db import Database
    settings = config.from_environment()
    b = paid(conn, time="18:00")
    database = Database(settings)
    try:
        link_source.give_link(database, settings, b["id"])
    finally:
        database.close()
        clients.reset()
    listed = admin.json("spaces")
    assert [(r["bookingId"], r["state"]) for r in listed] == [(b["id"], "held")]


def test_links_create_without_credentials_is_a_one_line_error(admin, monkeypatch):
    monkeypatch.delenv("MEET_CREDENTIALS", raising=False)
    code, out, err = admin("links", "create", "1")
    assert code == 6 and out == "" and err == "error: MEET_CREDENTIALS is not set\n"  # 6: misconfigured


def test_meet_login_gets_a_refresh_token_that_then_creates_spaces(google, tmp_path, app_env, conn, seed_links):
    """The one-time sign-in: the printed URL goes to the consent screen (here the fake, which
    agrees at once), the redirect comes back to our loopback server, the code and PKCE verifier
    become a refresh token, and the file written is MEET_CREDENTIALS that works."""
    import os
    import re

    import requests

    from meeting_links.meet import login as meet_login
    client_file = tmp_path / "client.json"
    client_file.write_text(json.dumps({"installed": {
        "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret",
        "auth_uri": f"{google.url}/auth", "token_uri": f"{google.url}/token"}}))
    out = tmp_path / "meet-credentials.json"
    shown = []

    def browser():
        while not shown:
            time.sleep(0.01)
        url = re.search(r"(http://\S+/auth\?\S+)", shown[0]).group(1)
        consent = requests.get(url, allow_redirects=False, timeout=5)
        requests.get(consent.headers["Location"], timeout=5)
    user = threading.Thread(target=browser)
    user.start()
    credentials = meet_login.login(str(client_file), str(out), show=shown.append, timeout_s=10)
    user.join()
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    assert json.loads(out.read_text()) == credentials and credentials["type"] == "authorized_user"
    assert credentials["refresh_token"] in google.refresh_tokens and credentials["token_uri"] == f"{google.url}/token"

    app_env(LINK_SOURCE="meet_then_pool", MEET_API_BASE_URL=google.url, MEET_CREDENTIALS=str(out))
    b = paid(conn)
    answer = function_client("assign_meeting_link").post("/", json={"bookingId": b["id"]}, headers=AUTH).get_json()
    assert answer["source"] == "meet"
