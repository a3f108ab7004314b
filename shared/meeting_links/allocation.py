"""Giving links to bookings, and handing freed links to bookings that wait for one.

The exclusion constraint bookings_no_overlapping_link_use is what makes a double booking
impossible; this module only picks a good candidate and retries when the constraint (or a
deadlock) says another transaction got there first.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import logs, payments
from .db import DEADLOCK, EXCLUSION_VIOLATION, SERIALIZATION_FAILURE, Database, Transaction
from .errors import BookingNotFound, BookingNotPaid, PoolExhausted

ALLOCATION_RETRY = frozenset({EXCLUSION_VIOLATION, DEADLOCK, SERIALIZATION_FAILURE})


@dataclass(frozen=True)
class Assignment:
    booking_id: str
    link_id: str
    meeting_link: str
    already_assigned: bool


@dataclass(frozen=True)
class _Exhausted:
    booking: dict
    newly_flagged: bool


def _claim(tx: Transaction, booking_id: str):
    booking = tx.one("lock_booking", booking_id=booking_id)
    if booking is None:
        raise BookingNotFound(f"booking {booking_id} not found")
    if booking["meeting_link_id"] is not None:
        return Assignment(booking_id, str(booking["meeting_link_id"]), booking["meeting_link"], True)
    if not payments.may_hold_link(booking["payment_status"], booking["status"]):
        raise BookingNotPaid(
            f"booking {booking_id} is not paid and confirmed "
            f"(payment_status={booking['payment_status']}, status={booking['status']})")
    link = (tx.one("claim_free_link", booking_id=booking_id)
            or tx.one("claim_free_link_waiting", booking_id=booking_id))
    if link is None:
        tx.rows("mark_needs_manual_link", booking_id=booking_id)
        return _Exhausted(booking, newly_flagged=not booking["needs_manual_link"])
    tx.rows("set_booking_link", booking_id=booking_id, link_id=str(link["id"]))
    return Assignment(booking_id, str(link["id"]), link["meeting_link"], False)


def assign(db: Database, booking_id: str) -> Assignment:
    """Gives the booking the first free link for its range, or returns the one it holds.

    Raises BookingNotFound, BookingNotPaid, or PoolExhausted (after marking the booking as
    waiting for manual assignment, which is committed).
    """
    result = db.run(lambda tx: _claim(tx, booking_id), retry_on=ALLOCATION_RETRY)
    if isinstance(result, _Exhausted):
        b = result.booking
        if result.newly_flagged:
            logs.error("meeting link pool exhausted: booking needs manual assignment",
                       booking_id=booking_id, order_id=b["order_id"],
                       starts_at=b["starts_at"].isoformat(), ends_at=b["ends_at"].isoformat())
        raise PoolExhausted(booking_id, b["starts_at"], b["ends_at"])
    if not result.already_assigned:
        logs.info("meeting link assigned", booking_id=booking_id, meeting_link_id=result.link_id)
    return result


@dataclass(frozen=True)
class SweepResult:
    assigned: int
    waiting: int


def serve_waiting(db: Database, hold_from=None, hold_until=None, max_bookings: int = 500) -> SweepResult:
    """Gives links to paid bookings that have none, oldest payment first; with a range, only
    to those overlapping it (the range a released link just left free).

    Each booking is its own transaction, so this is safe beside normal traffic and can be
    stopped at any point; running it again does only what is left.
    """
    waiting = db.run(lambda tx: tx.rows("waiting_bookings", hold_from=hold_from,
                                        hold_until=hold_until, max_bookings=max_bookings))
    assigned = still_waiting = 0
    for row in waiting:
        try:
            assign(db, str(row["id"]))
            assigned += 1
        except PoolExhausted:
            still_waiting += 1
        except (BookingNotFound, BookingNotPaid):
            pass  # changed since we listed it: no longer waiting
    if waiting:
        logs.info("waiting bookings served", assigned=assigned, still_waiting=still_waiting)
    return SweepResult(assigned, still_waiting)
