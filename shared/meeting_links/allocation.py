"""Giving a booking a link of the shared pool, and handing a range that was just left free to
the bookings waiting for it.

The exclusion constraint bookings_no_overlapping_link_use is what makes a double booking
impossible. The choice of a link is one SQL function, assign_link_v2 (sql/0011), which locks
the time the booking needs rather than the links and settles its own races; this module calls
it and turns its outcome into a domain value or a domain error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from . import logs, waiting
from .db import Database
from .errors import BookingCancelled, BookingNotFound, BookingNotPaid, PoolExhausted


@dataclass(frozen=True)
class Hold:
    """The range a link was held for, [start, until): what a release leaves free."""
    start: datetime
    until: datetime


@dataclass(frozen=True)
class Assignment:
    """A booking holds this link."""
    booking_id: str
    link_id: str
    meeting_link: str
    already_assigned: bool
    source: str = "pool"  # "meet": a private space created for this booking


@dataclass(frozen=True)
class Waiting:
    """No link is free for the booking's time: it waits, and a person has been told."""
    booking_id: str


class Outcome(StrEnum):
    """What assign_link_v2 did (sql/0011)."""
    ASSIGNED = "assigned"
    ALREADY_ASSIGNED = "already_assigned"
    EXHAUSTED = "exhausted"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    NOT_PAID = "not_paid"


def refusal(outcome: str, booking_id: str, cancelled_at: datetime | None = None, payment_status: str | None = None,
            status: str | None = None) -> Exception | None:
    """The domain error for an outcome every link operation shares, or None (one wording)."""
    if outcome == Outcome.NOT_FOUND:
        return BookingNotFound(f"booking {booking_id} not found")
    if outcome == Outcome.CANCELLED:
        when = f" at {cancelled_at.isoformat(timespec='seconds')}" if cancelled_at else ""
        return BookingCancelled(f"booking {booking_id} was cancelled by support{when}; it gets no link")
    if outcome == Outcome.NOT_PAID:
        state = f" (payment_status={payment_status}, status={status})" if payment_status else ""
        return BookingNotPaid(f"booking {booking_id} is not paid and confirmed{state}")
    return None


def report_exhausted(db: Database, exhausted: PoolExhausted, *, due: bool | None = None) -> None:
    """The ERROR line support is alerted by, once per wait of a booking, whoever flagged it
    (due: assign_link_v2 already said whether it is; else report_waiting_v1 is asked)."""
    if due is None:
        due = db.one("report_waiting", booking_id=exhausted.booking_id)["report"]
    if due:
        logs.alert("pool_exhausted", "meeting link pool exhausted: booking needs manual assignment",
                   booking_id=exhausted.booking_id, order_id=exhausted.order_id,
                   starts_at=exhausted.starts_at.isoformat(), ends_at=exhausted.ends_at.isoformat())


def assign(db: Database, booking_id: str, *, report: bool = True) -> Assignment:
    """Gives the booking the first free link of the shared pool for its range, or returns the
    link (or private space) it holds. One statement (assign_link_v2).

    Raises BookingNotFound, BookingNotPaid (BookingCancelled when support cancelled it), or
    PoolExhausted after flagging the booking as waiting (reported unless report is False:
    for a caller that will try a private space first, and reports only if that fails too)."""
    row = db.one("assign_link", booking_id=booking_id, report=report)
    outcome = Outcome(row["outcome"])
    if outcome in (Outcome.ASSIGNED, Outcome.ALREADY_ASSIGNED):
        if outcome is Outcome.ASSIGNED:
            logs.info("meeting link assigned", booking_id=booking_id, meeting_link_id=row["link_id"])
        return Assignment(booking_id, row["link_id"], row["meeting_link"], outcome is Outcome.ALREADY_ASSIGNED,
                          row["source"])
    error = refusal(outcome, booking_id, row["cancelled_by_admin_at"], row["payment_status"], row["status"])
    if error:
        raise error
    exhausted = PoolExhausted(booking_id, row["starts_at"], row["ends_at"], row["order_id"])
    if report:
        report_exhausted(db, exhausted, due=row["report_waiting"])
    raise exhausted


@dataclass(frozen=True)
class Served:
    given: tuple[Assignment, ...]  # links this call gave (not ones another caller gave meanwhile)
    waiting: int                   # bookings it tried that are still waiting
    complete: bool = True          # False when the time budget ran out first

    @property
    def assigned(self) -> int:
        return len(self.given)


def hand_over(db: Database, hold: Hold | None = None, *, budget_s: float) -> Served:
    """Offers links of the pool to the paid bookings waiting for one, oldest payment first:
    those whose range overlaps `hold` (a range a released link just left free), or every one
    (a link was added or enabled). Each booking is its own transaction, so this is safe beside
    live traffic and can stop at any point; the sweep does whatever it leaves."""
    deadline = time.monotonic() + budget_s
    given, still_waiting, complete = [], 0, True
    for booking in waiting.bookings(db, hold=hold):
        if time.monotonic() > deadline:
            complete = False
            break
        try:
            assignment = assign(db, booking.id)
            if not assignment.already_assigned:
                given.append(assignment)
        except PoolExhausted:
            still_waiting += 1
        except (BookingNotFound, BookingNotPaid):
            pass  # changed since it was listed: no longer waiting
    if given or still_waiting:
        logs.info("waiting bookings served", assigned=len(given), still_waiting=still_waiting, complete=complete)
    return Served(tuple(given), still_waiting, complete)
