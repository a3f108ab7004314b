"""Link events for the app: written by the database with every change of a booking's link,
delivered to LINK_EVENTS_URL in the Standard Webhooks format, at least once, in order per
booking, retried on the spec's schedule, never holding up Midtrans's answer. The app is a
local receiver that verifies every delivery with the official `standardwebhooks` library."""
import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest
import standardwebhooks
from jsonschema import Draft202012Validator

from conftest import function_client
from meeting_links import config, link_events
from meeting_links.db import Database
from support import INTERNAL_TOKEN, FakeServer, FunctionServer, insert_booking, notification

_DOC = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
# Every event any test receives must be what docs/openapi.json says the app gets.
EVENT_SCHEMA = Draft202012Validator({**_DOC["components"]["schemas"]["LinkEvent"], "components": _DOC["components"]})
KEY = b"link-events-test-secret-32-bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()                    # padded ("...=")
UNPADDED = "whsec_" + base64.b64encode(KEY + b"!").decode().rstrip("=")  # 33 bytes: no padding left


class Receiver:
    """The app: verifies each delivery with the official Standard Webhooks library."""

    def __init__(self, secret=SECRET):
        self.webhook = standardwebhooks.Webhook(secret)
        self.events, self.deliveries, self.bad, self.fail, self.delay_s = [], 0, 0, 0, 0.0
        self.undocumented = []  # events that do not validate against docs/openapi.json
        self.answer = None  # (status, headers) to answer instead, once
        self.lock = threading.Lock()
        self.server = FakeServer(self._handle)
        self.url = self.server.url + "/hooks/links"

    def _handle(self, method, path, headers, body):
        time.sleep(self.delay_s)
        with self.lock:
            self.deliveries += 1
            try:
                payload = self.webhook.verify(body, dict(headers))
            except standardwebhooks.webhooks.WebhookVerificationError:
                self.bad += 1
                return 401, {"error": "bad signature"}, None
            self.undocumented += [e.message for e in EVENT_SCHEMA.iter_errors(payload)]
            if self.answer:
                (status, extra), self.answer = self.answer, None
                return status, {"error": "not now"}, extra
            if self.fail:
                self.fail -= 1
                return 500, {"error": "down"}, None
            self.events.append({"id": headers.get("webhook-id"), **payload})
        return 204, b"", None

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events


@pytest.fixture
def receiver():
    r = Receiver()
    with r.server:
        yield r
    assert r.undocumented == []


def events(conn, booking_id):
    return [r[0] for r in conn.run("SELECT type FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id",
                                   b=booking_id)]


def settings_for(url, secret=SECRET):
    return config.from_environment({"DATABASE_URL": "postgresql://x/y", "LINK_EVENTS_URL": url,
                                    "LINK_EVENTS_SECRET": secret})


def webhook_ids(conn, booking_id):
    return [r[0] for r in conn.run("SELECT 'evt_' || replace(webhook_id::text, '-', '') FROM link_events"
                                   " WHERE booking_id = CAST(:b AS uuid) ORDER BY id", b=booking_id)]


def test_every_change_of_a_link_is_an_event_written_with_it(conn, seed_links):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    give = "UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)"
    conn.run(give, l=seed_links[0]["id"], b=b["id"])
    conn.run(give, l=seed_links[1]["id"], b=b["id"])
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = CAST(:b AS uuid)", b=b["id"])
    conn.run("UPDATE bookings SET price = 120000 WHERE id = CAST(:b AS uuid)", b=b["id"])  # not a link change
    # A change rolled back leaves no event: the event is part of the change's transaction.
    conn.run("BEGIN")
    conn.run("UPDATE bookings SET payment_status = 'paid', status = 'confirmed' WHERE id = CAST(:b AS uuid)", b=b["id"])
    conn.run(give, l=seed_links[2]["id"], b=b["id"])
    conn.run("ROLLBACK")
    assert events(conn, b["id"]) == ["link.assigned", "link.changed", "link.released"]
    other = insert_booking(conn, payment_status="paid", status="confirmed", time="18:00")
    conn.run("UPDATE bookings SET needs_manual_link = true WHERE id = CAST(:b AS uuid)", b=other["id"])
    assert events(conn, other["id"]) == ["link.waiting"]
    payload = conn.run("SELECT link_event_payload_v2(e) FROM link_events e"
                       " WHERE e.booking_id = CAST(:b AS uuid) AND e.type = 'link.changed'", b=b["id"])[0][0]
    assert payload["data"]["meetingLink"] == seed_links[1]["meeting_link"]
    assert payload["data"]["previousMeetingLink"] == seed_links[0]["meeting_link"]
    assert payload["data"]["source"] == "pool" and payload["data"]["orderId"] == b["order_id"]
    assert payload["data"]["startsAt"] == "2030-01-07T07:00:00+00:00" and payload["data"]["previousStartsAt"] is None
    with pytest.raises(Exception, match="append-only"):
        conn.run("UPDATE link_events SET type = 'link.assigned'")
    with pytest.raises(Exception, match="append-only"):
        conn.run("DELETE FROM link_events")


def test_a_reschedule_is_an_event_with_the_times_before_and_after(conn, seed_links):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])
    conn.run("UPDATE bookings SET scheduled_time = '16:00' WHERE id = CAST(:b AS uuid)", b=b["id"])
    assert events(conn, b["id"]) == ["link.assigned", "link.rescheduled"]
    data = conn.run("SELECT link_event_payload_v2(e) FROM link_events e WHERE e.booking_id = CAST(:b AS uuid)"
                    " AND e.type = 'link.rescheduled'", b=b["id"])[0][0]["data"]
    assert (data["startsAt"], data["previousStartsAt"]) == ("2030-01-07T09:00:00+00:00", "2030-01-07T07:00:00+00:00")
    assert data["meetingLink"] == seed_links[0]["meeting_link"]


def test_a_payment_delivers_the_assignment_to_the_app_without_waiting_for_it(conn, app_env, receiver, seed_links,
                                                                          database_url):
    receiver.delay_s = 1.5  # a slow app
    assign = FunctionServer("assign_meeting_link", {"DATABASE_URL": database_url,
                                                    "INTERNAL_API_TOKEN": INTERNAL_TOKEN}).start()
    try:
        app_env(LINK_EVENTS_URL=receiver.url, LINK_EVENTS_SECRET=SECRET, ASSIGN_MEETING_LINK_URL=assign.url)
        b = insert_booking(conn)
        started = time.monotonic()
        r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
        answered = time.monotonic() - started
        assert r.status_code == 200 and answered < 1.0  # the app's 1.5 s did not hold the answer
        delivered = receiver.wait_for(1)
    finally:
        assign.stop()
    assert receiver.bad == 0 and len(delivered) == 1
    event = delivered[0]
    assert event["type"] == "link.assigned" and event["data"]["bookingId"] == b["id"]
    assert event["data"]["meetingLink"] == r.get_json()["meetingLink"]
    assert [event["id"]] == webhook_ids(conn, b["id"])


def test_failed_deliveries_are_retried_in_order_per_booking(conn, db, receiver, seed_links):
    """The app is down for the first three attempts: nothing is lost, the booking's events
    arrive in the order they happened, each attempt waits longer (the spec's schedule, with
    a little jitter), and the same webhook-id is kept across attempts."""
    settings = settings_for(receiver.url)
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = CAST(:b AS uuid)", b=b["id"])
    receiver.fail = 3
    waits = []
    for _ in range(6):
        link_events.deliver(db, settings, time.monotonic() + 5)
        due = conn.run("SELECT extract(epoch FROM next_attempt_at - now()) FROM link_event_deliveries"
                       " WHERE delivered_at IS NULL ORDER BY event_id LIMIT 1")
        if due:
            waits.append(float(due[0][0]))
        conn.run("UPDATE link_event_deliveries SET next_attempt_at = now() WHERE delivered_at IS NULL")
    assert [e["type"] for e in receiver.events] == ["link.assigned", "link.released"]
    assert receiver.deliveries == 5 and receiver.bad == 0
    for wait, scheduled in zip(waits[:3], (5, 300, 1800)):  # 5 s, 5 min, 30 min, ...
        assert 0.8 * scheduled <= wait <= 1.2 * scheduled, waits  # the schedule, give or take its 10 % jitter
    assert [e["id"] for e in receiver.events] == webhook_ids(conn, b["id"])


def test_the_sweep_delivers_what_is_left(conn, receiver, seed_links, app_env):
    app_env(LINK_EVENTS_URL=receiver.url, LINK_EVENTS_SECRET=SECRET)
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])  # a change in psql: nobody woke a deliverer
    swept = function_client("assign_meeting_link").post(
        "/", json={"sweep": True}, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}).get_json()
    assert swept["eventsDelivered"] == 1 and [e["type"] for e in receiver.events] == ["link.assigned"]


@pytest.mark.parametrize("secret", [SECRET, UNPADDED, SECRET.removeprefix("whsec_")],
                         ids=["padded", "unpadded", "without-prefix"])
def test_every_secret_form_the_official_library_accepts_signs_events_it_verifies(conn, db, seed_links, secret):
    receiver = Receiver(secret)
    with receiver.server:
        b = insert_booking(conn, payment_status="paid", status="confirmed")
        conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
                 l=seed_links[0]["id"], b=b["id"])
        assert link_events.deliver(db, settings_for(receiver.url, secret), time.monotonic() + 5).count == 1
    assert receiver.bad == 0 and [e["type"] for e in receiver.events] == ["link.assigned"]


@pytest.mark.parametrize("secret,why", [
    ("whsec_abc", "2 bytes"),          # decodes, but to a key anyone could guess
    ("whsec_!!!!", "not base64"),      # the library would sign with an empty key
    ("whsec_abcde", "not valid base64"),
    ("whsec_", "empty"),
])
def test_a_secret_a_receiver_could_not_use_is_refused_at_start_naming_the_setting(secret, why):
    found = config.problems({"LINK_EVENTS_URL": "https://app.example.com/hooks", "LINK_EVENTS_SECRET": secret})
    assert len(found) == 1 and found[0].startswith("LINK_EVENTS_SECRET ") and why in found[0]
    assert secret.removeprefix("whsec_") not in found[0] or not secret.removeprefix("whsec_")


def test_link_events_need_a_secret():
    found = config.problems({"LINK_EVENTS_URL": "https://app.example.com/hooks"})
    assert found == ["LINK_EVENTS_URL is set but LINK_EVENTS_SECRET is not: events must be signed"]


def test_two_databases_sending_to_one_receiver_never_share_a_webhook_id(conn, db, receiver, seed_links, server_url):
    """webhook-id is a random UUID per event, not a database's sequence: a second environment,
    or a database re-created from the same migrations, never reuses an id the app has seen."""
    from meeting_links.db import migrations
    from support import connect
    name = f"meeting_links_second_{os.getpid()}"
    admin = connect(server_url)
    admin.run(f"DROP DATABASE IF EXISTS {name}")
    admin.run(f"CREATE DATABASE {name}")
    second_url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrations.migrate(config.from_environment({"DATABASE_URL": second_url}), echo=lambda *_: None)
        other = connect(second_url)
        other_db = Database(config.from_environment({"DATABASE_URL": second_url}))
        try:
            for c in (conn, other):
                link = c.run("SELECT id::text FROM meeting_links_pool ORDER BY created_at LIMIT 1")[0][0]
                b = insert_booking(c, payment_status="paid", status="confirmed")
                c.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)", l=link,
                      b=b["id"])
            link_events.deliver(db, settings_for(receiver.url), time.monotonic() + 5)
            link_events.deliver(other_db, settings_for(receiver.url), time.monotonic() + 5)
        finally:
            other_db.close()
            other.close()
    finally:
        admin.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        admin.run(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    ids = [e["id"] for e in receiver.events]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(i.startswith("evt_") and len(i) == 36 for i in ids)


def test_410_gone_stops_deliveries_to_that_url_until_support_resumes_them(conn, db, receiver, seed_links, capsys,
                                                                           admin):
    settings = settings_for(receiver.url)
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])
    receiver.answer = (410, {})
    link_events.deliver(db, settings, time.monotonic() + 5)
    errors = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [e["alert"] for e in errors if e.get("alert")] == ["link_events_gone"]
    before = receiver.deliveries
    assert link_events.deliver(db, settings, time.monotonic() + 5).count == 0
    assert receiver.deliveries == before  # nothing more was sent
    assert admin.json("events", "resume")[0]["resumedUrl"] == receiver.url
    assert link_events.deliver(db, settings, time.monotonic() + 5).count == 1


def test_retry_after_is_honoured(conn, db, receiver, seed_links):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])
    receiver.answer = (503, {"Retry-After": "3600"})
    link_events.deliver(db, settings_for(receiver.url), time.monotonic() + 5)
    wait = float(conn.run("SELECT extract(epoch FROM next_attempt_at - now()) FROM link_event_deliveries")[0][0])
    assert 3500 < wait <= 3600  # not the schedule's 5 s: the receiver asked for an hour


def test_the_first_delivery_starts_from_about_now_not_from_history(conn, db, receiver, seed_links, admin):
    """Turning LINK_EVENTS_URL on for the first time does not send months of history in one
    burst (long-resolved waits included); `events replay --since` sends it on purpose."""
    conn.run("UPDATE link_event_delivery_state SET started_at = NULL")
    old = insert_booking(conn, payment_status="paid", status="confirmed", time="08:00")
    conn.run("UPDATE bookings SET needs_manual_link = true WHERE id = CAST(:b AS uuid)", b=old["id"])
    conn.run("SET session_replication_role = replica")  # back-date history, for the test only
    conn.run("UPDATE link_events SET created_at = now() - interval '30 days'")
    conn.run("SET session_replication_role = DEFAULT")
    recent = insert_booking(conn, payment_status="paid", status="confirmed", time="09:00")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=recent["id"])
    link_events.deliver(db, settings_for(receiver.url), time.monotonic() + 5)
    assert [(e["type"], e["data"]["bookingId"]) for e in receiver.events] == [("link.assigned", recent["id"])]
    assert admin.json("events", "replay", "--since", "2000-01-01")[0]["eventsDueAgain"] == 2
    link_events.deliver(db, settings_for(receiver.url), time.monotonic() + 5)
    assert sorted(e["type"] for e in receiver.events[1:]) == ["link.assigned", "link.waiting"]
