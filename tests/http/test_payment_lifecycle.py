"""The payment lifecycle: every status, duplicates, reordering, and links following the money."""
import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import function_client
from meeting_links.support import cli
from support import (
    INTERNAL_TOKEN,
    SERVER_KEY,
    FakeServer,
    booking,
    expected_payment_status,
    insert_booking,
    notification,
)

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def send(server, order_id, status, fraud=None, **kw):
    r = server.post(notification(order_id, status, fraud_status=fraud, **kw))
    assert r.status_code == 200, r.text
    return r.json()


def state(conn, b):
    s = booking(conn, b["id"])
    return s["payment_status"], s["status"], s["link_id"] is not None


# (sequence of (transaction_status, fraud_status), expected payment_status, status, holds link)
SEQUENCES = [
    ([("settlement", None)], "paid", "confirmed", True),
    ([("capture", "accept")], "paid", "confirmed", True),
    ([("capture", None)], "paid", "confirmed", True),
    ([("capture", "challenge")], "review", "pending", False),
    ([("capture", "challenge"), ("capture", "accept")], "paid", "confirmed", True),
    ([("capture", "challenge"), ("settlement", None)], "paid", "confirmed", True),
    ([("capture", "challenge"), ("deny", None)], "failed", "cancelled", False),
    ([("pending", None)], "pending", "pending", False),
    ([("authorize", None)], "pending", "pending", False),
    ([("pending", None), ("expire", None)], "expired", "cancelled", False),
    ([("pending", None), ("cancel", None)], "cancelled", "cancelled", False),
    ([("pending", None), ("failure", None)], "failed", "cancelled", False),
    ([("pending", None), ("deny", None), ("settlement", None)], "paid", "confirmed", True),
    ([("settlement", None), ("refund", None)], "refunded", "cancelled", False),
    ([("settlement", None), ("chargeback", None)], "refunded", "cancelled", False),
    ([("settlement", None), ("partial_refund", None)], "paid", "confirmed", True),
    ([("settlement", None), ("partial_chargeback", None)], "paid", "confirmed", True),
    ([("settlement", None), ("pending", None)], "paid", "confirmed", True),
    ([("settlement", None), ("expire", None)], "paid", "confirmed", True),
    ([("settlement", None), ("capture", "challenge")], "paid", "confirmed", True),
    ([("settlement", None), ("deny", None)], "failed", "cancelled", False),
    ([("capture", "accept"), ("cancel", None)], "cancelled", "cancelled", False),
    ([("settlement", None), ("refund", None), ("settlement", None)], "refunded", "cancelled", False),
    ([("capture", "deny")], "failed", "cancelled", False),
]


@pytest.mark.parametrize("sequence,payment_status,status,holds", SEQUENCES,
                         ids=["+".join(f"{t}/{f}" if f else t for t, f in s[0]) for s in SEQUENCES])
def test_each_transition(conn, webhook_server, sequence, payment_status, status, holds):
    b = insert_booking(conn)
    for transaction_status, fraud in sequence:  # one Midtrans transaction per order, as in practice
        send(webhook_server, b["order_id"], transaction_status, fraud)
    assert state(conn, b) == (payment_status, status, holds)


def test_stale_notifications_are_logged_with_why(conn, webhook_server):
    b = insert_booking(conn)
    send(webhook_server, b["order_id"], "settlement")
    answer = send(webhook_server, b["order_id"], "pending")
    assert answer["outcome"] == "stale"
    rows = conn.run("SELECT transaction_status, outcome, payment_status_before, payment_status_after, body->>'order_id'"
                    " FROM payment_notifications WHERE order_id = :o ORDER BY id", o=b["order_id"])
    assert rows == [["settlement", "applied", "pending", "paid", b["order_id"]],
                    ["pending", "stale", "paid", "paid", b["order_id"]]]


def test_a_duplicate_has_no_second_effect(conn, webhook_server, set_links):
    set_links(1)
    b = insert_booking(conn)
    first = send(webhook_server, b["order_id"], "settlement")
    link = booking(conn, b["id"])["link_id"]
    again = send(webhook_server, b["order_id"], "settlement")
    assert (first["outcome"], again["outcome"]) == ("applied", "duplicate")
    assert booking(conn, b["id"])["link_id"] == link
    # A duplicated settlement after a reversal must not re-pay the booking.
    send(webhook_server, b["order_id"], "deny")
    assert send(webhook_server, b["order_id"], "settlement")["outcome"] == "duplicate"
    assert state(conn, b) == ("failed", "cancelled", False)


def test_unknown_transaction_status_is_ignored(conn, webhook_server):
    b = insert_booking(conn)
    assert send(webhook_server, b["order_id"], "teleported")["outcome"] == "ignored"
    assert state(conn, b) == ("pending", "pending", False)


def test_status_code_is_checked_but_not_used_for_decisions(conn, webhook_server):
    b = insert_booking(conn)
    # A card cancel is documented with 200 as well as 202: both are a cancel.
    send(webhook_server, b["order_id"], "settlement")
    send(webhook_server, b["order_id"], "cancel", status_code="200")
    assert state(conn, b) == ("cancelled", "cancelled", False)
    # A settlement never comes with 202: refused before any effect.
    other = insert_booking(conn)
    r = webhook_server.post(notification(other["order_id"], "settlement", status_code="202"))
    assert r.status_code == 400 and "status_code" in r.json()["error"]
    assert state(conn, other) == ("pending", "pending", False)


def test_a_refund_frees_the_link_for_a_waiting_booking(conn, webhook_server, set_links):
    set_links(1)
    holder, waiting = insert_booking(conn), insert_booking(conn, time="14:30")
    send(webhook_server, holder["order_id"], "settlement")
    assert send(webhook_server, waiting["order_id"], "settlement")["requiresManualAssignment"] is True
    send(webhook_server, holder["order_id"], "refund")
    assert state(conn, holder) == ("refunded", "cancelled", False)
    assert state(conn, waiting) == ("paid", "confirmed", True)
    assert booking(conn, waiting["id"])["needs_manual_link"] is False


def test_reversal_hands_the_link_over_oldest_payment_first(conn, webhook_server, set_links):
    set_links(1)
    holder = insert_booking(conn)
    older, newer = insert_booking(conn), insert_booking(conn)
    send(webhook_server, holder["order_id"], "settlement")
    send(webhook_server, older["order_id"], "settlement")
    send(webhook_server, newer["order_id"], "settlement")
    send(webhook_server, holder["order_id"], "deny")
    assert state(conn, older)[2] is True and state(conn, newer)[2] is False


def test_a_link_added_to_a_full_pool_goes_to_the_oldest_waiting_booking(conn, webhook_server, set_links,
                                                                      database_url, monkeypatch, capsys):
    set_links(1)
    bookings = [insert_booking(conn) for _ in range(3)]
    for b in bookings:
        send(webhook_server, b["order_id"], "settlement")
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["links", "add", "https://meet.google.com/new-link-1", "--notes", "Expansion"]) == 0
    assert [state(conn, b)[2] for b in bookings] == [True, True, False]
    assert "new-link-1" in capsys.readouterr().out


def test_re_enabling_a_link_serves_waiting_bookings(conn, webhook_server, set_links, database_url, monkeypatch):
    links = set_links(2)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["links", "disable", links[1]]) == 0
    a, b = insert_booking(conn), insert_booking(conn)
    send(webhook_server, a["order_id"], "settlement")
    send(webhook_server, b["order_id"], "settlement")
    assert state(conn, b)[2] is False
    assert cli.main(["links", "enable", links[1]]) == 0
    assert booking(conn, b["id"])["link_id"] == links[1]


def test_an_admin_cancellation_releases_the_link_to_a_waiting_booking(conn, webhook_server, set_links,
                                                                    database_url, monkeypatch):
    set_links(1)
    holder, waiting = insert_booking(conn), insert_booking(conn)
    send(webhook_server, holder["order_id"], "settlement")
    send(webhook_server, waiting["order_id"], "settlement")
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["bookings", "cancel", holder["id"]]) == 0
    assert state(conn, holder) == ("paid", "cancelled", False)
    assert state(conn, waiting) == ("paid", "confirmed", True)
    # The cancellation stands when a late notification arrives.
    send(webhook_server, holder["order_id"], "settlement", transaction_id="another-transaction")
    assert state(conn, holder) == ("paid", "cancelled", False)


def test_a_payment_after_an_admin_cancellation_is_recorded_and_the_booking_stays_cancelled(
        conn, webhook_server, admin):
    b = insert_booking(conn)
    assert admin("bookings", "cancel", b["id"])[0] == 0
    answer = send(webhook_server, b["order_id"], "settlement")
    assert (answer["outcome"], answer["paymentStatus"], answer["status"]) == ("applied", "paid", "cancelled")
    assert state(conn, b) == ("paid", "cancelled", False)


def test_sweep_assigns_paid_bookings_the_webhook_could_not(conn, assign_server, set_links):
    set_links(2)
    missed = [insert_booking(conn, payment_status="paid", status="confirmed") for _ in range(3)]
    r = assign_server.post({"sweep": True}, headers=AUTH)
    counts = {"complete": True, "incomplete": [], "paymentsChecked": 0, "paymentsRecorded": 0, "membersAdded": 0,
              "spacesOpened": 0, "callsEnded": 0, "eventsDelivered": 0}
    assert r.status_code == 200 and r.json() == {"success": True, "assigned": 2, "waiting": 1, **counts}
    assert assign_server.post({"sweep": True}, headers=AUTH).json() == {
        "success": True, "assigned": 0, "waiting": 1, **counts}
    assert assign_server.post({"sweep": True}).status_code == 401
    assert sum(state(conn, b)[2] for b in missed) == 2


def test_sweep_while_notifications_arrive(conn, assign_server, webhook_server, set_links):
    links = set_links(4)
    for _ in range(10):  # paid, but the webhook's call to assign never happened
        insert_booking(conn, payment_status="paid", status="confirmed")
    incoming = [insert_booking(conn) for _ in range(20)]
    with ThreadPoolExecutor(12) as pool:
        sweeps = [pool.submit(assign_server.post, {"sweep": True}, headers=AUTH) for _ in range(4)]
        notes = list(pool.map(lambda b: webhook_server.post(notification(b["order_id"])), incoming))
        assert all(s.result().status_code == 200 for s in sweeps)
    assert all(n.status_code == 200 for n in notes)
    held = [r[0] for r in conn.run("SELECT meeting_link_id::text FROM bookings WHERE meeting_link_id IS NOT NULL")]
    assert sorted(held) == sorted(links)
    assert conn.run("SELECT count(*) FROM bookings WHERE payment_status = 'paid'") == [[30]]


# --- property: any sequence of notifications for one order ---------------------------------

EVENTS = [("settlement", None), ("capture", "accept"), ("capture", "challenge"), ("capture", "deny"),
          ("pending", None), ("authorize", None), ("deny", None), ("cancel", None), ("expire", None),
          ("failure", None), ("refund", None), ("chargeback", None), ("partial_refund", None),
          ("partial_chargeback", None)]

@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest.mark.drill
@given(st.lists(st.tuples(st.sampled_from(EVENTS), st.sampled_from(["t1", "t2"])), min_size=1, max_size=7))
def test_any_sequence_ends_in_the_state_its_effective_notifications_imply(conn, webhook_server, steps):
    b = insert_booking(conn)
    sequence = [(status, fraud, txn) for (status, fraud), txn in steps]
    for status, fraud, txn in sequence:
        r = webhook_server.post(notification(b["order_id"], status, fraud_status=fraud, transaction_id=txn))
        assert r.status_code == 200
    final = expected_payment_status(sequence)
    payment_status, status, holds = state(conn, b)
    assert payment_status == final
    assert holds == (final == "paid")  # a paid booking holds a link (the slot has room), nothing else does
    assert status == {"paid": "confirmed", "pending": "pending", "review": "pending"}.get(final, "cancelled")
    logged = conn.run("SELECT count(*) FROM payment_notifications WHERE order_id = :o", o=b["order_id"])
    assert logged == [[len(sequence)]]
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = :i", i=b["id"])


# --- the optional second check against Midtrans's GET Status API ---------------------------

def status_api(answers):
    def handler(method, path, headers, body):
        order_id = path.split("/")[2]
        answer = answers.get(order_id, (404, {"status_code": "404", "status_message": "not found"}))
        return answer[0], answer[1], {"Content-Type": "application/json"}
    return handler


def test_status_api_decides_what_the_notification_means(conn, app_env, assign_server):
    claims_paid, really_paid = insert_booking(conn), insert_booking(conn)
    answers = {claims_paid["order_id"]: (200, {"status_code": "201", "transaction_status": "pending",
                                               "order_id": claims_paid["order_id"], "gross_amount": "100000.00"}),
               really_paid["order_id"]: (200, {"status_code": "200", "transaction_status": "settlement",
                                               "fraud_status": "accept", "order_id": really_paid["order_id"],
                                               "gross_amount": "100000.00"})}
    with FakeServer(status_api(answers)) as midtrans:
        app_env(MIDTRANS_VERIFY_WITH_STATUS_API="true", MIDTRANS_API_BASE_URL=midtrans.url,
                ASSIGN_MEETING_LINK_URL=assign_server.url)
        client = function_client("midtrans_webhook")
        assert client.post("/", json=notification(claims_paid["order_id"])).status_code == 200
        assert client.post("/", json=notification(really_paid["order_id"], "pending")).status_code == 200
    assert state(conn, claims_paid) == ("pending", "pending", False)
    assert state(conn, really_paid) == ("paid", "confirmed", True)
    request = midtrans.requests[0]
    assert request["path"] == f"/v2/{claims_paid['order_id']}/status"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(f"{SERVER_KEY}:".encode()).decode()


@pytest.mark.parametrize("answer", [(500, {"status_code": "500"}), (404, {"status_code": "404"}), None])
def test_status_api_failing_is_503_and_records_nothing(conn, app_env, answer):
    b = insert_booking(conn)
    if answer is None:
        app_env(MIDTRANS_VERIFY_WITH_STATUS_API="true", MIDTRANS_API_BASE_URL="http://127.0.0.1:9")
        r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    else:
        with FakeServer(status_api({b["order_id"]: answer})) as midtrans:
            app_env(MIDTRANS_VERIFY_WITH_STATUS_API="true", MIDTRANS_API_BASE_URL=midtrans.url)
            r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    assert r.status_code == 503
    assert state(conn, b) == ("pending", "pending", False)
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]
