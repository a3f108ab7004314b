"""Bad input, property-based, against both functions over HTTP: never a 5xx, and never a
write without a valid signature or credentials. `--hypothesis-profile=drill` runs many more
examples (python -m benchmarks.drill does not; `make drill` does both)."""
import json
import re

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meeting_links.midtrans import signature
from support import INTERNAL_TOKEN, SERVER_KEY, insert_booking, notification, reference_intent, status_code

# Properties: `make drill` runs them at 1,000 examples each.
pytestmark = pytest.mark.drill

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SQL_INJECTION = st.sampled_from([
    "'; DROP TABLE bookings; --", "1 OR 1=1", "\" OR \"\"=\"", "x'); DELETE FROM meeting_links_pool; --",
    "$1", ":booking_id", "%s", "\x00", "🙂", "a" * 5000, "00000000-0000-0000-0000-00000000000g"])
TEXT = st.one_of(st.text(max_size=60), SQL_INJECTION)
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
                    max_leaves=12)
FIELDS = ["order_id", "status_code", "gross_amount", "signature_key", "transaction_status",
          "fraud_status", "transaction_id"]


def fingerprint(conn):
    return conn.run("SELECT (SELECT count(*) FROM bookings), (SELECT max(updated_at) FROM bookings),"
                    " (SELECT count(*) FROM payment_notifications),"
                    " (SELECT count(*) FROM meeting_links_pool WHERE is_available)")


@pytest.fixture
def target(conn):
    return insert_booking(conn)


@SETTINGS
@given(body=st.one_of(JSON.map(json.dumps), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_webhook_arbitrary_bodies(conn, webhook_server, body):
    before = fingerprint(conn)
    r = requests.post(webhook_server.url, data=body.encode("utf-8", "surrogatepass"), timeout=20,
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 401), r.text
    assert r.json()["success"] is False
    assert fingerprint(conn) == before


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_webhook_tampered_after_signing(conn, webhook_server, target, field, value):
    body = notification(target["order_id"])
    if body.get(field) == value or field in ("transaction_status", "fraud_status", "transaction_id"):
        return  # fields the signature does not cover are the next test's subject
    body[field] = value
    before = fingerprint(conn)
    r = webhook_server.post(body)
    assert r.status_code in (400, 401), r.text
    assert fingerprint(conn) == before


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


STATUSES = st.sampled_from(["settlement", "capture", "pending", "deny", "cancel", "expire", "refund",
                            "partial_refund", "chargeback", "authorize", "failure"])


@SETTINGS
@given(status=st.one_of(TEXT, STATUSES), fraud=st.one_of(st.none(), TEXT, st.sampled_from(["accept", "challenge", "deny"])),
       unknown_order=st.one_of(st.none(), TEXT.filter(bool)))
def test_webhook_signed_but_strange(conn, webhook_server, status, fraud, unknown_order):
    """Signed with the real key (only Midtrans could send these): never a 5xx, and the booking
    changes only as the state machine says."""
    target = insert_booking(conn)
    body = notification(unknown_order or target["order_id"], fraud_status=None)
    body["transaction_status"] = status
    body["status_code"] = status_code(status)
    if fraud is not None:
        body["fraud_status"] = fraud
    r = webhook_server.post(signature.signed(body, SERVER_KEY))
    # Refused at the edge: text PostgreSQL cannot store, required fields that are blank, and
    # order ids Midtrans would never send.
    refused = (any("\x00" in text or not _encodable(text) for text in (status, fraud or "", unknown_order or ""))
               or not status.strip() or (unknown_order is not None and not unknown_order.strip())
               # an empty fraud_status counts as absent; a present but blank one is refused
               or (fraud is not None and fraud != "" and not fraud.strip())
               or (unknown_order is not None and not re.fullmatch(r"[A-Za-z0-9_~.\-]{1,50}", unknown_order)))
    assert r.status_code == (400 if refused else 200), r.text
    rule = reference_intent(status, fraud or None)  # the state machine, written apart from the SQL
    applies = (not refused and unknown_order is None and rule is not None
               and "pending" in rule[1])  # from pending, the notification applies
    state = conn.run("SELECT payment_status FROM bookings WHERE id = :i", i=target["id"])[0][0]
    assert state == (rule[0] if applies else "pending")
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = :i", i=target["id"])


@SETTINGS
@given(body=JSON, auth=st.one_of(st.none(), TEXT.map(lambda t: "Bearer " + t), st.just("Basic " + INTERNAL_TOKEN)))
def test_assign_without_credentials_never_writes(conn, assign_server, body, auth):
    paid = insert_booking(conn, payment_status="paid", status="confirmed")
    before = fingerprint(conn)
    # Only header values HTTP allows (visible ASCII and space); others never reach the function.
    headers = {"Authorization": auth} if auth and all(32 <= ord(c) < 127 for c in auth) else {}
    r = assign_server.post(body, headers=headers)
    assert r.status_code == 401
    assert fingerprint(conn) == before
    assert conn.run("SELECT meeting_link_id FROM bookings WHERE id = :i", i=paid["id"]) == [[None]]


@SETTINGS
@given(body=st.one_of(JSON, st.fixed_dictionaries({"bookingId": st.one_of(TEXT, JSON)})))
def test_assign_with_credentials_and_bad_bodies(conn, assign_server, body):
    if isinstance(body, dict) and body.get("sweep") is True:
        return
    before = fingerprint(conn)
    r = assign_server.post(body, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
    assert r.status_code in (400, 404), r.text
    assert fingerprint(conn) == before


@pytest.mark.parametrize("raw", ['{"order_id": NaN}', '{"order_id": "1", "x": Infinity}', '{"a": -Infinity}'])
def test_non_standard_json_constants_are_400(conn, webhook_server, raw):
    r = requests.post(webhook_server.url, data=raw, timeout=10, headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_oversized_bodies_are_413_for_both(conn, webhook_server, assign_server):
    big = {"order_id": "x" * (65 * 1024)}
    assert webhook_server.post(big).status_code == 413
    assert assign_server.post(big, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}).status_code == 413
