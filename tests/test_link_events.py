"""Link events for the app: written by the database with every change of a booking's link,
delivered to LINK_EVENTS_URL in the Standard Webhooks format, at least once, in order per
booking, retried with backoff, never holding up Midtrans's answer. The app is a local
receiver that checks signatures, fails on demand and counts deliveries."""
import base64
import hashlib
import hmac
import json
import threading
import time

import pytest

from conftest import make_client
from support import FakeServer, insert_booking, notification

SECRET = "whsec_" + base64.b64encode(b"link-events-test-secret-32-bytes").decode()


class Receiver:
    """The app: verifies each delivery as the Standard Webhooks libraries do."""

    def __init__(self):
        self.events, self.deliveries, self.bad, self.fail, self.delay_s = [], 0, 0, 0, 0.0
        self.lock = threading.Lock()
        self.server = FakeServer(self._handle)
        self.url = self.server.url + "/hooks/links"

    def _handle(self, method, path, headers, body):
        time.sleep(self.delay_s)
        with self.lock:
            self.deliveries += 1
            event_id, ts = headers.get("webhook-id"), headers.get("webhook-timestamp")
            key = base64.b64decode(SECRET.removeprefix("whsec_"))
            expected = base64.b64encode(hmac.new(key, f"{event_id}.{ts}.".encode() + body, hashlib.sha256).digest())
            given = [s.split(",", 1)[1].encode() for s in (headers.get("webhook-signature") or "").split()]
            if not (ts and abs(time.time() - int(ts)) < 300 and any(hmac.compare_digest(expected, g) for g in given)):
                self.bad += 1
                return 401, {"error": "bad signature"}, None
            if self.fail:
                self.fail -= 1
                return 500, {"error": "down"}, None
            self.events.append({"id": event_id, **json.loads(body)})
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


def events(conn, booking_id):
    return [r[0] for r in conn.run("SELECT type FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id",
                                   b=booking_id)]


def test_every_change_of_a_link_is_an_event_written_with_it(conn, seed_links):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    give = "UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)"
    conn.run(give, l=seed_links[0]["id"], b=b["id"])
    conn.run(give, l=seed_links[1]["id"], b=b["id"])
    conn.run("UPDATE bookings SET meeting_link_id = NULL, needs_manual_link = true WHERE id = CAST(:b AS uuid)", b=b["id"])
    conn.run("UPDATE bookings SET duration = 30 WHERE id = CAST(:b AS uuid)", b=b["id"])  # not a link change
    # A change rolled back leaves no event: the event is part of the change's transaction.
    conn.run("BEGIN")
    conn.run(give, l=seed_links[2]["id"], b=b["id"])
    conn.run("ROLLBACK")
    assert events(conn, b["id"]) == ["link.assigned", "link.changed", "link.released"]
    other = insert_booking(conn, payment_status="paid", status="confirmed", time="18:00")
    conn.run("UPDATE bookings SET needs_manual_link = true WHERE id = CAST(:b AS uuid)", b=other["id"])
    assert events(conn, other["id"]) == ["link.waiting"]
    payload = conn.run("SELECT link_event_payload_v1(e) FROM link_events e"
                       " WHERE e.booking_id = CAST(:b AS uuid) AND e.type = 'link.changed'", b=b["id"])[0][0]
    assert payload["data"]["meetingLink"] == seed_links[1]["meeting_link"]
    assert payload["data"]["previousMeetingLink"] == seed_links[0]["meeting_link"]
    assert payload["data"]["source"] == "pool" and payload["data"]["orderId"] == b["order_id"]
    with pytest.raises(Exception, match="append-only"):
        conn.run("UPDATE link_events SET type = 'link.assigned'")
    with pytest.raises(Exception, match="append-only"):
        conn.run("DELETE FROM link_events")


def test_a_payment_delivers_the_assignment_to_the_app_without_waiting_for_it(conn, app_env, receiver, seed_links):
    receiver.delay_s = 1.5  # a slow app
    app_env(LINK_EVENTS_URL=receiver.url, LINK_EVENTS_SECRET=SECRET, ASSIGN_MEETING_LINK_URL=None)
    import os

    from support import INTERNAL_TOKEN as token
    from support import FunctionServer
    assign = FunctionServer("assign_meeting_link", {"DATABASE_URL": os.environ["DATABASE_URL"],
                                                    "INTERNAL_API_TOKEN": token}).start()
    try:
        os.environ["ASSIGN_MEETING_LINK_URL"] = assign.url
        from meeting_links import config
        config.settings.cache_clear()
        b = insert_booking(conn)
        started = time.monotonic()
        r = make_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
        answered = time.monotonic() - started
        assert r.status_code == 200 and answered < 1.0  # the app's 1.5 s did not hold the answer
        delivered = receiver.wait_for(1)
    finally:
        assign.stop()
        os.environ.pop("ASSIGN_MEETING_LINK_URL", None)
    assert receiver.bad == 0 and len(delivered) == 1
    event = delivered[0]
    assert event["type"] == "link.assigned" and event["data"]["bookingId"] == b["id"]
    assert event["data"]["meetingLink"] == r.get_json()["meetingLink"]
    assert event["id"] == conn.run("SELECT 'evt_' || id FROM link_events WHERE booking_id = CAST(:b AS uuid)",
                                   b=b["id"])[0][0]


def test_failed_deliveries_are_retried_in_order_per_booking(conn, db, receiver, seed_links, monkeypatch):
    """The app is down for the first three attempts: nothing is lost, the booking's events
    arrive in the order they happened, each attempt waits longer, and the same webhook-id is
    kept across attempts."""
    from meeting_links import config, link_events
    settings = config.from_environment({"DATABASE_URL": "postgresql://x/y", "LINK_EVENTS_URL": receiver.url,
                                        "LINK_EVENTS_SECRET": SECRET})
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = CAST(:b AS uuid)", b=b["id"])
    receiver.fail = 3
    waits = []
    for _ in range(4):
        link_events.deliver(db, settings, time.monotonic() + 5)
        due = conn.run("SELECT extract(epoch FROM next_attempt_at - now()) FROM link_event_deliveries"
                       " WHERE delivered_at IS NULL ORDER BY event_id LIMIT 1")
        if due:
            waits.append(round(float(due[0][0])))
        conn.run("UPDATE link_event_deliveries SET next_attempt_at = now() WHERE delivered_at IS NULL")
    assert [e["type"] for e in receiver.events] == ["link.assigned", "link.released"]
    assert receiver.deliveries == 5 and receiver.bad == 0
    assert waits[:3] == [5, 10, 20]  # exponential backoff between the failed attempts
    ids = conn.run("SELECT 'evt_' || id FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id", b=b["id"])
    assert [e["id"] for e in receiver.events] == [r[0] for r in ids]


def test_the_sweep_delivers_what_is_left(conn, receiver, seed_links, app_env):
    app_env(LINK_EVENTS_URL=receiver.url, LINK_EVENTS_SECRET=SECRET)
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)",
             l=seed_links[0]["id"], b=b["id"])  # a change in psql: nobody woke a deliverer
    from support import INTERNAL_TOKEN
    swept = make_client("assign_meeting_link").post("/", json={"sweep": True},
                                                    headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}).get_json()
    assert swept["eventsDelivered"] == 1 and [e["type"] for e in receiver.events] == ["link.assigned"]


def test_link_events_need_a_secret():
    from meeting_links import config
    from meeting_links.errors import ConfigurationError
    with pytest.raises(ConfigurationError, match="LINK_EVENTS_SECRET"):
        config.from_environment({"LINK_EVENTS_URL": "https://app.example.com/hooks"})
