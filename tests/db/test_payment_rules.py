"""The payment state machine as a table of vectors, decided in one place: payment_intent_v1
and booking_status_after_v1 (sql/0012), and applied by record_payment_v2."""
import pytest

from meeting_links.notifications import Notification, record
from support import insert_booking
from support import notification as notification_body

ALL = ["pending", "review", "paid", "failed", "cancelled", "expired", "refunded"]


def target_for(conn, status, fraud):
    return conn.run("SELECT target FROM payment_intent_v1(:s, :f)", s=status, f=fraud)[0][0]

# notification -> {current payment_status: outcome}; states not listed are "stale".
TABLE = {
    ("settlement", None): ("paid", {"pending": "applied", "review": "applied", "failed": "applied",
                                     "cancelled": "applied", "expired": "applied", "paid": "unchanged"}),
    ("capture", "challenge"): ("review", {"pending": "applied", "review": "unchanged"}),
    ("pending", None): ("pending", {"pending": "unchanged"}),
    ("deny", None): ("failed", {"pending": "applied", "review": "applied", "paid": "applied", "failed": "unchanged"}),
    ("failure", None): ("failed", {"pending": "applied", "review": "applied", "failed": "unchanged"}),
    ("cancel", None): ("cancelled", {"pending": "applied", "review": "applied", "paid": "applied",
                                     "cancelled": "unchanged"}),
    ("expire", None): ("expired", {"pending": "applied", "review": "applied", "expired": "unchanged"}),
    ("refund", None): ("refunded", {s: "applied" for s in ALL if s != "refunded"} | {"refunded": "unchanged"}),
    ("partial_refund", None): ("paid", {"pending": "applied", "review": "applied", "failed": "applied",
                                        "cancelled": "applied", "expired": "applied", "paid": "unchanged"}),
}


@pytest.mark.parametrize("notification", list(TABLE))
def test_outcomes_from_every_state(notification, conn, db):
    """The intent, applied by record_payment_v2 to a booking in every state."""
    target_status, outcomes = TABLE[notification]
    assert target_for(conn, *notification) == target_status
    for current in ALL:
        status = "confirmed" if current == "paid" else "pending" if current in ("pending", "review") else "cancelled"
        b = insert_booking(conn, payment_status=current, status=status)
        n = Notification.from_body(notification_body(b["order_id"], notification[0], fraud_status=notification[1]))
        assert record(db, n, confirmed=False).outcome == outcomes.get(current, "stale"), current


@pytest.mark.parametrize("status,fraud,expected", [
    ("settlement", "accept", "paid"), ("capture", "accept", "paid"), ("capture", None, "paid"),
    ("capture", "", "paid"), ("capture", "challenge", "review"), ("capture", "deny", "failed"),
    ("settlement", "deny", "failed"), ("authorize", None, "pending"), ("chargeback", None, "refunded"),
    ("partial_chargeback", None, "paid"),
])
def test_fraud_status_decides_capture_and_settlement(conn, status, fraud, expected):
    assert target_for(conn, status, fraud) == expected
    assert target_for(conn, status.upper(), fraud and fraud.upper()) == expected  # DANA writes PENDING


@pytest.mark.parametrize("status,fraud", [("teleported", None), ("capture", "maybe"), ("", None)])
def test_statuses_we_do_not_act_on(conn, status, fraud):
    assert target_for(conn, status, fraud) is None


@pytest.mark.parametrize("payment_status,admin,expected", [
    ("paid", False, "confirmed"), ("pending", False, "pending"), ("review", False, "pending"),
    ("failed", False, "cancelled"), ("refunded", False, "cancelled"), ("paid", True, "cancelled"),
    ("pending", True, "cancelled"),
])
def test_booking_status(conn, payment_status, admin, expected):
    assert conn.run("SELECT booking_status_after_v1(:p, :a)", p=payment_status, a=admin)[0][0] == expected
