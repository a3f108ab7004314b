"""Midtrans's own published bodies as test vectors (tests/vectors/midtrans_published.json:
each with its source, and what was fixed where the published text is not valid JSON). Each is
sent exactly as published, re-signed with the test key (bodies published without a signature
get one), to the webhook as functions_framework serves it, and must have the outcome
Midtrans documents for its status; GET Status answers are also served by a status API fake
the webhook asks, with verification on. Not found published, so not here: a card capture
notification under challenge, and cancel, refund and chargeback notifications (only API
answers are published), Kredivo, the BSI, CIMB and Danamon virtual accounts."""
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import function_client
from meeting_links.midtrans import signature
from support import SERVER_KEY, booking, insert_booking, notification

CORPUS = json.loads((Path(__file__).parents[1] / "vectors" / "midtrans_published.json").read_text())
PAYMENTS = [v for v in CORPUS if v["kind"] != "non_payment"]
STATUS_ANSWERS = [v for v in CORPUS if v["kind"] == "status_answer"]
NOT_PAYMENTS = [v for v in CORPUS if v["kind"] == "non_payment"]


def published(name: str) -> dict:
    return next(v for v in CORPUS if v["name"] == name)


def resigned(vector: dict) -> dict:
    """The body as published, parsed as JSON (strings stay strings, numbers numbers), with a
    signature_key the test key makes (none where the body names no order)."""
    body = json.loads(vector["body"])
    return signature.signed(body, SERVER_KEY) if "order_id" in body else body


def booking_for(conn, body: dict) -> dict:
    return insert_booking(conn, order_id=body["order_id"], price=Decimal(body["gross_amount"]))


def send(client, body: dict):
    return client.post("/", data=json.dumps(body), content_type="application/json")


def test_the_corpus_is_what_the_issue_asked_for():
    assert len(CORPUS) >= 50 and len({v["name"] for v in CORPUS}) == len(CORPUS)
    assert all(v["source"] and v["expect"] for v in CORPUS)
    kinds = {json.loads(v["body"]).get("payment_type") for v in PAYMENTS}
    assert {"credit_card", "gopay", "qris", "shopeepay", "bank_transfer", "echannel", "cstore", "akulaku",
            "dana", "ovo", "bca_klikpay", "cimb_clicks", "bri_epay"} <= kinds
    statuses = {json.loads(v["body"])["transaction_status"].lower() for v in PAYMENTS}
    assert {"capture", "settlement", "pending", "deny", "expire", "partial_refund"} <= statuses


@pytest.mark.parametrize("vector", PAYMENTS, ids=[v["name"] for v in PAYMENTS])
def test_each_published_body_has_the_outcome_midtrans_documents_and_twice_the_same(
        vector, conn, app_env, assign_server):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url)
    body = resigned(vector)
    client = function_client("midtrans_webhook")
    if "answer" in vector["expect"]:  # refused as published (the file says why)
        assert send(client, body).status_code == vector["expect"]["answer"]
        assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]
        return
    b = booking_for(conn, body)
    first = send(client, body)
    assert first.status_code == 200, first.get_json()
    state = booking(conn, b["id"])
    assert state["payment_status"] == vector["expect"]["payment_status"]
    assert (state["link_id"] is not None) == vector["expect"]["link"]
    again = send(client, body)  # Midtrans sends the same notification again
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    assert booking(conn, b["id"]) == state
    assert conn.run("SELECT count(*) FROM payment_notifications WHERE order_id = :o", o=body["order_id"]) == [[2]]


@pytest.mark.parametrize("vector", NOT_PAYMENTS, ids=[v["name"] for v in NOT_PAYMENTS])
def test_published_bodies_that_are_not_payments_are_answered_200_and_change_nothing(vector, conn, app_env):
    app_env()
    before = insert_booking(conn)
    r = send(function_client("midtrans_webhook"), json.loads(vector["body"]))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["ignored"] is True and "not a payment notification" in r.get_json()["reason"]
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]
    assert booking(conn, before["id"])["payment_status"] == "pending"


@pytest.mark.parametrize("later,earlier", [("credit-card-settlement-status", "card-capture"),
                                           ("card-partial-refund-status", "card-capture-status")])
def test_published_bodies_of_one_order_out_of_order_end_where_midtrans_says(
        later, earlier, conn, app_env, assign_server):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url)
    first, second = resigned(published(later)), resigned(published(earlier))
    assert first["order_id"] == second["order_id"]
    b = booking_for(conn, first)
    client = function_client("midtrans_webhook")
    assert send(client, first).status_code == 200
    assert send(client, second).status_code == 200  # arrives late: the booking stays paid, with its link
    state = booking(conn, b["id"])
    assert state["payment_status"] == "paid" and state["link_id"] is not None


@pytest.mark.parametrize("vector", STATUS_ANSWERS, ids=[v["name"] for v in STATUS_ANSWERS])
def test_published_status_answers_decide_what_a_notification_means(vector, conn, app_env, assign_server, midtrans):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url, MIDTRANS_VERIFY_WITH_STATUS_API="true",
            MIDTRANS_API_BASE_URL=midtrans.server.url)
    answer = json.loads(vector["body"])
    midtrans.statuses[answer["order_id"]] = answer
    if answer.get("payment_type") == "dana":
        midtrans.by_transaction_id.add(answer["order_id"])
    b = booking_for(conn, answer)
    # The notification claims a settlement; what counts is what the status API answers.
    claim = notification(answer["order_id"], "settlement", amount=answer["gross_amount"],
                         transaction_id=answer["transaction_id"], payment_type=answer.get("payment_type"))
    r = send(function_client("midtrans_webhook"), claim)
    assert r.status_code == 200, r.get_json()
    state = booking(conn, b["id"])
    assert state["payment_status"] == vector["expect"]["payment_status"]
    assert (state["link_id"] is not None) == vector["expect"]["link"]


def test_a_dana_settlement_is_confirmed_by_transaction_id_with_verification_on(conn, app_env, assign_server, midtrans):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url, MIDTRANS_VERIFY_WITH_STATUS_API="true",
            MIDTRANS_API_BASE_URL=midtrans.server.url)
    answer = json.loads(published("dana-settlement-status")["body"])
    midtrans.statuses[answer["order_id"]] = answer
    midtrans.by_transaction_id.add(answer["order_id"])  # asked by order id, Midtrans knows nothing
    b = booking_for(conn, answer)
    r = send(function_client("midtrans_webhook"), resigned(published("dana-settlement-status")))
    assert r.status_code == 200, r.get_json()
    assert booking(conn, b["id"])["payment_status"] == "paid" and booking(conn, b["id"])["link_id"]
    asked = midtrans.server.requests[-1]
    assert asked["path"] == "/v2/A120240830074017NP16XMU4JTID/status"
    assert asked["headers"].get("transaction-source") == "SNAP_API"


# --- prices that end in 2000: ambiguous only when the other reading names a real booking -----

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens: a status API call would be a 503


def test_the_alfamart_sample_counts_at_once_with_the_status_api_unreachable(conn, app_env, assign_server):
    # "alfamart-01" + "200" + "662000.00" also reads "alfamart-0120066" + "200" + "0.00".
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url, MIDTRANS_API_BASE_URL=UNREACHABLE)
    body = resigned(published("alfamart-settlement"))
    b = booking_for(conn, body)
    r = send(function_client("midtrans_webhook"), body)
    assert r.status_code == 200 and r.get_json()["paymentStatus"] == "paid", r.get_json()
    assert booking(conn, b["id"])["link_id"] is not None


def test_a_real_booking_behind_the_other_reading_still_makes_it_ambiguous(conn, app_env, assign_server):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url, MIDTRANS_API_BASE_URL=UNREACHABLE)
    body = resigned(published("alfamart-settlement"))
    b = booking_for(conn, body)
    other = insert_booking(conn, order_id="alfamart-0120066", price=0)  # a free session: it exists
    r = send(function_client("midtrans_webhook"), body)
    assert r.status_code == 503  # Midtrans retries; the status API must say which one was paid
    assert booking(conn, b["id"])["payment_status"] == "pending"
    assert booking(conn, other["id"])["payment_status"] == "pending"


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.~-]{0,30}", fullmatch=True),
       thousands=st.integers(min_value=1, max_value=10_000))
def test_any_price_and_order_id_count_at_once_when_only_their_booking_exists(
        order_id, thousands, conn, app_env, assign_server):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url, MIDTRANS_API_BASE_URL=UNREACHABLE)
    conn.run("SET session_replication_role = replica")  # each example starts from no bookings
    conn.run("DELETE FROM payment_notifications")
    conn.run("DELETE FROM bookings")
    conn.run("SET session_replication_role = DEFAULT")
    b = insert_booking(conn, order_id=order_id, price=thousands * 1000)
    r = send(function_client("midtrans_webhook"), notification(order_id, amount=f"{thousands * 1000}.00"))
    assert r.status_code == 200, (r.get_json(), order_id, thousands)
    assert booking(conn, b["id"])["payment_status"] == "paid"
