"""midtrans_webhook over real HTTP, calling assign_meeting_link over real HTTP."""
import json

import pytest
import requests

from conftest import function_client
from support import (
    INTERNAL_TOKEN,
    SERVER_KEY,
    FakeServer,
    FunctionServer,
    booking,
    insert_booking,
    notification,
    paid,
    running,
)

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def notifications_logged(conn, order_id=None):
    if order_id:
        return conn.run("SELECT outcome FROM payment_notifications WHERE order_id = :o ORDER BY id", o=order_id)
    return conn.run("SELECT outcome FROM payment_notifications ORDER BY id")


def test_settlement_pays_the_booking_and_gets_it_a_link(conn, webhook_server):
    b = insert_booking(conn)
    r = webhook_server.post(notification(b["order_id"]))
    assert r.status_code == 200, r.text
    assert r.json()["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu"
    state = booking(conn, b["id"])
    assert (state["payment_status"], state["status"], state["meeting_link"]) == (
        "paid", "confirmed", "https://meet.google.com/kcw-ebey-pqu")
    assert notifications_logged(conn, b["order_id"]) == [["applied"]]


@pytest.mark.parametrize("tamper", [
    lambda n: n.pop("signature_key"),
    lambda n: n.update(signature_key="0" * 128),
    lambda n: n.update(gross_amount="1.00"),
    lambda n: n.update(order_id=n["order_id"] + "x"),
    lambda n: n.update(status_code="201"),
    lambda n: n.update(signature_key=notification("x", key="another-key")["signature_key"]),
])
def test_a_missing_or_wrong_signature_is_401_and_writes_nothing(conn, webhook_server, tamper):
    b = insert_booking(conn)
    body = notification(b["order_id"])
    tamper(body)
    r = webhook_server.post(body)
    assert r.status_code == 401 and r.json()["success"] is False
    assert booking(conn, b["id"])["payment_status"] == "pending"
    assert notifications_logged(conn) == []


def test_the_signature_does_not_leak_into_logs(conn, webhook_server):
    b = insert_booking(conn)
    body = notification(b["order_id"])
    webhook_server.post(body)
    bad = dict(body, signature_key="f" * 128)
    webhook_server.post(bad)
    out = webhook_server.output()
    assert body["signature_key"] not in out and "f" * 128 not in out and SERVER_KEY not in out
    assert INTERNAL_TOKEN not in out


def test_pending_leaves_it_pending_and_asks_for_no_link(conn, webhook_server):
    b = insert_booking(conn)
    r = webhook_server.post(notification(b["order_id"], "pending", fraud_status=None))
    assert r.status_code == 200 and "meetingLink" not in r.json()
    assert booking(conn, b["id"])["payment_status"] == "pending"


@pytest.mark.parametrize("status,payment_status", [("deny", "failed"), ("cancel", "cancelled"),
                                                   ("expire", "expired"), ("failure", "failed")])
def test_failures_leave_it_unpaid_and_free_its_link(conn, webhook_server, status, payment_status):
    b = insert_booking(conn)
    webhook_server.post(notification(b["order_id"]))
    assert booking(conn, b["id"])["link_id"]
    r = webhook_server.post(notification(b["order_id"], status, fraud_status=None))
    assert r.status_code == 200
    state = booking(conn, b["id"])
    if status in ("deny", "cancel"):  # may follow a settlement (reversal, cancelled capture)
        assert (state["payment_status"], state["status"], state["link_id"]) == (payment_status, "cancelled", None)
    else:  # expire and failure cannot undo a settlement
        assert state["payment_status"] == "paid" and state["link_id"]
        fresh = insert_booking(conn)
        webhook_server.post(notification(fresh["order_id"], status, fraud_status=None))
        fresh_state = booking(conn, fresh["id"])
        assert (fresh_state["payment_status"], fresh_state["status"]) == (payment_status, "cancelled")


def test_amount_mismatch_is_rejected_logged_and_changes_nothing(conn, webhook_server):
    b = insert_booking(conn, price=150000)
    r = webhook_server.post(notification(b["order_id"], amount="100000.00"))
    assert r.status_code == 400 and "does not match" in r.json()["error"]
    assert booking(conn, b["id"])["payment_status"] == "pending"
    assert notifications_logged(conn, b["order_id"]) == [["rejected"]]
    assert any(e.get("severity") == "ERROR" and e.get("order_id") == b["order_id"]
               for e in webhook_server.log_entries())


def test_amounts_compare_as_decimals(conn, webhook_server):
    b = insert_booking(conn, price=100000)
    assert webhook_server.post(notification(b["order_id"], amount="100000.00")).status_code == 200
    assert booking(conn, b["id"])["payment_status"] == "paid"


def test_unknown_order_is_200_ignored_with_a_warning(conn, webhook_server):
    r = webhook_server.post(notification("NOT-OURS-123"))
    assert r.status_code == 200 and r.json() == {"success": True, "ignored": True, "reason": "unknown order_id"}
    assert notifications_logged(conn) == [["ignored"]]
    assert any(e.get("severity") == "WARNING" and e.get("order_id") == "NOT-OURS-123"
               for e in webhook_server.log_entries())


@pytest.mark.parametrize("body", [None, "[]", "{bad json", json.dumps({"order_id": 1})])
def test_malformed_bodies(webhook_server, body, conn):
    r = requests.post(webhook_server.url, data=body or "", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 401) and r.json()["success"] is False
    assert notifications_logged(conn) == []


def test_an_empty_fraud_status_counts_as_absent(conn, webhook_server):
    b = insert_booking(conn)
    assert webhook_server.post(notification(b["order_id"], fraud_status="")).status_code == 200
    assert booking(conn, b["id"])["payment_status"] == "paid"


def test_a_signed_body_without_transaction_status_is_400(conn, webhook_server):
    b = insert_booking(conn)
    body = notification(b["order_id"])
    del body["transaction_status"]
    assert webhook_server.post(body).status_code == 400
    assert notifications_logged(conn) == []


def test_pool_exhausted_still_records_payment_and_answers_200(conn, webhook_server):
    for _ in range(3):
        webhook_server.post(notification(insert_booking(conn)["order_id"]))
    fourth = insert_booking(conn)
    r = webhook_server.post(notification(fourth["order_id"]))
    assert r.status_code == 200 and r.json()["requiresManualAssignment"] is True
    state = booking(conn, fourth["id"])
    assert (state["payment_status"], state["status"], state["link_id"], state["needs_manual_link"]) == (
        "paid", "confirmed", None, True)


def test_seed_tests_1_to_4_through_the_functions(conn, webhook_server, assign_server):
    auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    # Test 1: a paid booking gets a link from assign_meeting_link.
    t1 = insert_booking(conn, date="2025-12-01", time="14:00", payment_status="paid", status="confirmed")
    r = assign_server.post({"bookingId": t1["id"]}, headers=auth)
    assert r.status_code == 200 and r.json()["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu"
    # Test 2: via the payment webhook.
    t2 = insert_booking(conn, date="2025-12-01", time="20:00")
    assert webhook_server.post(notification(t2["order_id"])).json()["meetingLink"]
    # Test 3: two bookings at the same time get different links.
    t3 = [insert_booking(conn, date="2025-12-01", time="10:00", payment_status="paid", status="confirmed")
          for _ in range(2)]
    links3 = {assign_server.post({"bookingId": b["id"]}, headers=auth).json()["meetingLinkId"] for b in t3}
    assert len(links3) == 2
    # Test 4: two bookings at different times may reuse a link.
    t4 = [insert_booking(conn, date="2025-12-01", time=t, payment_status="paid", status="confirmed")
          for t in ("14:00", "16:00")]
    got4 = [assign_server.post({"bookingId": b["id"]}, headers=auth).json() for b in t4]
    assert got4[1]["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu"  # first link free again at 16:00
    assert got4[0]["meetingLink"] == "https://meet.google.com/ppt-myeq-puu"  # 14:00 overlaps Test 1


def test_assign_unreachable_is_503_but_the_payment_is_recorded_and_retry_completes(conn, app_env, assign_server):
    app_env(ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")  # nothing listens there
    b = insert_booking(conn)
    body = notification(b["order_id"])
    r = function_client("midtrans_webhook").post("/", json=body)
    assert r.status_code == 503 and r.headers["Retry-After"]
    state = booking(conn, b["id"])
    assert (state["payment_status"], state["link_id"]) == ("paid", None)
    # Midtrans redelivers the same notification once assign is back: no second effect on the
    # payment, but the link is asked for again.
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url)
    r = function_client("midtrans_webhook").post("/", json=body)
    assert r.status_code == 200 and r.get_json()["outcome"] == "duplicate" and r.get_json()["meetingLink"]
    assert notifications_logged(conn, b["order_id"]) == [["applied"], ["duplicate"]]


def test_assign_answering_500_is_503(conn, app_env):
    with FakeServer(lambda *a: (500, {"success": False}, {})) as broken:
        app_env(ASSIGN_MEETING_LINK_URL=broken.url + "/")
        r = function_client("midtrans_webhook").post("/", json=notification(insert_booking(conn)["order_id"]))
    assert r.status_code == 503


def test_database_unreachable_is_503_and_never_200(app_env):
    app_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/none", ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")
    r = function_client("midtrans_webhook").post("/", json=notification("ORDER-X"))
    assert r.status_code == 503 and r.get_json()["success"] is False


def test_missing_server_key_refuses_instead_of_accepting(conn, app_env):
    app_env(MIDTRANS_SERVER_KEY=None)
    b = insert_booking(conn)
    r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    assert r.status_code == 500
    assert booking(conn, b["id"])["payment_status"] == "pending"


def test_webhook_with_wrong_internal_token_gets_503_not_a_silent_200(conn, database_url, assign_server):
    server = FunctionServer("midtrans_webhook", {
        "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": "not-the-token",
        "MIDTRANS_SERVER_KEY": SERVER_KEY, "ASSIGN_MEETING_LINK_URL": assign_server.url})
    with running(server):
        b = insert_booking(conn)
        r = server.post(notification(b["order_id"]))
    assert r.status_code == 503
    assert booking(conn, b["id"])["link_id"] is None and booking(conn, b["id"])["payment_status"] == "paid"


def test_the_call_to_assign_ignores_proxy_settings_in_the_environment(conn, app_env, assign_server, monkeypatch):
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    b = insert_booking(conn)
    r = function_client("midtrans_webhook").post("/", json=notification(b["order_id"]))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu"


def test_a_duplicate_or_unchanged_notification_answers_the_link_the_booking_holds(conn, webhook_server):
    b = insert_booking(conn)
    first = webhook_server.post(notification(b["order_id"])).json()
    duplicate = webhook_server.post(notification(b["order_id"])).json()
    unchanged = webhook_server.post(notification(b["order_id"], "capture", transaction_id="other")).json()
    assert first["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu"
    assert (duplicate["outcome"], duplicate["meetingLink"]) == ("duplicate", first["meetingLink"])
    assert (unchanged["outcome"], unchanged["meetingLink"]) == ("unchanged", first["meetingLink"])


def test_assigning_a_booking_support_cancelled_says_so(conn, assign_server, admin):
    b = paid(conn)
    assert admin("bookings", "cancel", b["id"])[0] == 0
    r = assign_server.post({"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 409 and "cancelled by support" in r.json()["error"]
    for argv in (("bookings", "assign", b["id"]), ("bookings", "assign", b["id"], "--link",
                                                    "https://meet.google.com/kcw-ebey-pqu")):
        code, _, err = admin(*argv)
        assert code == 4 and "cancelled by support" in err and "not paid" not in err  # 4: refused by the rules


def test_sign_and_send_to_the_webhook(admin, conn, webhook_server, monkeypatch):
    from support import SERVER_KEY
    monkeypatch.setenv("MIDTRANS_SERVER_KEY", SERVER_KEY)
    b = insert_booking(conn)
    code, out, _ = admin("sign", b["order_id"], "--send", webhook_server.url)
    assert code == 0 and "HTTP 200" in out
    assert booking(conn, b["id"])["link_id"]
