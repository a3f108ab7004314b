"""From a Midtrans (transaction_status, fraud_status) to the booking's payment state.

Decisions use transaction_status and fraud_status, never status_code (midtrans.md §3.4).
Notifications can arrive twice or out of order, so each one names the payment states it
may move a booking *from*; from any other state it is stale and changes nothing (already in
the target state: unchanged). This module decides the intent; record_payment_v1 (sql/0006)
applies it under the booking's lock. README.md has this table in prose.
"""
from __future__ import annotations

from dataclasses import dataclass

ACTIVE_PAYMENT = "paid"
NOT_YET_PAID = frozenset({"pending", "review"})
ENDED_UNPAID = frozenset({"failed", "cancelled", "expired"})


@dataclass(frozen=True)
class Target:
    payment_status: str
    may_follow: frozenset[str]
    note: str = ""


# Money that arrived wins over an earlier failure (a denied card may be retried and then
# succeed), but never over a refund that came later.
_PAID = Target("paid", NOT_YET_PAID | ENDED_UNPAID)
_REVIEW = Target("review", frozenset({"pending"}))
_PENDING = Target("pending", frozenset())
_FAILED = Target("failed", NOT_YET_PAID)
# deny after settlement is the documented reversal (Permata, Mandiri bill, Indomaret):
# the booking is un-paid and its link released.
_DENIED = Target("failed", NOT_YET_PAID | {"paid"})
# A capture can be cancelled before it settles.
_CANCELLED = Target("cancelled", NOT_YET_PAID | {"paid"})
_EXPIRED = Target("expired", NOT_YET_PAID)
_REFUNDED = Target("refunded", NOT_YET_PAID | ENDED_UNPAID | {"paid"})
# Part of the money stays with us, so the session still happens: paid, link kept.
_PARTIAL = Target("paid", NOT_YET_PAID | ENDED_UNPAID, note="partial refund or chargeback; link kept")


def target_for(transaction_status: str, fraud_status: str | None) -> Target | None:
    """The state a notification asks for, or None for a status we do not act on."""
    if transaction_status in ("settlement", "capture"):
        if fraud_status in (None, "", "accept"):
            return _PAID
        if fraud_status == "challenge":
            return _REVIEW
        if fraud_status == "deny":
            return _DENIED
        return None
    return {
        "pending": _PENDING,
        "authorize": _PENDING,
        "deny": _DENIED,
        "failure": _FAILED,
        "cancel": _CANCELLED,
        "expire": _EXPIRED,
        "refund": _REFUNDED,
        "chargeback": _REFUNDED,
        "partial_refund": _PARTIAL,
        "partial_chargeback": _PARTIAL,
    }.get(transaction_status)


def may_hold_link(payment_status: str, status: str) -> bool:
    """Whether a booking in this state may hold a link: the CHECK constraint
    bookings_link_requires_active_booking says the same in the database."""
    return payment_status == ACTIVE_PAYMENT and status == "confirmed"


def booking_status_for(payment_status: str, cancelled_by_admin: bool) -> str:
    """The booking's status once its payment is in payment_status. An admin's cancellation
    stands whatever the payment does later."""
    if cancelled_by_admin or payment_status not in NOT_YET_PAID | {ACTIVE_PAYMENT}:
        return "cancelled"
    return "confirmed" if payment_status == ACTIVE_PAYMENT else "pending"
