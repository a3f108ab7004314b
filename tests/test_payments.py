"""The payment state machine as a table of vectors: pure where it is Python, and applied by
record_payment_v1 against the database where the outcome is decided."""
import pytest

from meeting_links import payments
from meeting_links.notifications import Notification, record
from support import insert_booking
from support import notification as notification_body

ALL = ["pending", "review", "paid", "failed", "cancelled", "expired", "refunded"]

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
    """payments.py's intent, applied by record_payment_v1 to a booking in every state."""
    target_status, outcomes = TABLE[notification]
    target = payments.target_for(*notification)
    assert target.payment_status == target_status
    for current in ALL:
        status = "confirmed" if current == "paid" else "pending" if current in ("pending", "review") else "cancelled"
        b = insert_booking(conn, payment_status=current, status=status)
        n = Notification.from_body(notification_body(b["order_id"], notification[0], fraud_status=notification[1]))
        assert record(db, n).outcome == outcomes.get(current, "stale"), current


@pytest.mark.parametrize("status,fraud,expected", [
    ("settlement", "accept", "paid"), ("capture", "accept", "paid"), ("capture", None, "paid"),
    ("capture", "", "paid"), ("capture", "challenge", "review"), ("capture", "deny", "failed"),
    ("settlement", "deny", "failed"), ("authorize", None, "pending"), ("chargeback", None, "refunded"),
    ("partial_chargeback", None, "paid"),
])
def test_fraud_status_decides_capture_and_settlement(status, fraud, expected):
    assert payments.target_for(status, fraud).payment_status == expected


@pytest.mark.parametrize("status,fraud", [("teleported", None), ("capture", "maybe"), ("", None)])
def test_statuses_we_do_not_act_on(status, fraud):
    assert payments.target_for(status, fraud) is None


@pytest.mark.parametrize("payment_status,admin,expected", [
    ("paid", False, "confirmed"), ("pending", False, "pending"), ("review", False, "pending"),
    ("failed", False, "cancelled"), ("refunded", False, "cancelled"), ("paid", True, "cancelled"),
    ("pending", True, "cancelled"),
])
def test_booking_status(payment_status, admin, expected):
    assert payments.booking_status_for(payment_status, admin) == expected
