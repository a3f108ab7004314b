"""Giving links to bookings, and handing freed links to bookings that wait for one.

The exclusion constraint bookings_no_overlapping_link_use is what makes a double booking
impossible. The choice of a link is one SQL function, assign_link_v1, which locks the time
the booking needs rather than the links and settles its own races; this module calls it
and turns its outcome into a result or a domain error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from . import logs
from .db import Database
from .errors import BookingCancelled, BookingNotFound, BookingNotPaid, PoolExhausted

PAGE_SIZE = 200
# Before every booking a keyset walk has passed: the smallest (paid_at, id).
_START = (datetime.min.isoformat() + "+00:00", "00000000-0000-0000-0000-000000000000")


@dataclass(frozen=True)
class Hold:
    """The range a link was held for, [start, until): what a release leaves free."""
    start: datetime
    until: datetime


class Outcome(StrEnum):
    """What assign_link_v1 did (sql/0005)."""
    ASSIGNED = "assigned"
    ALREADY_ASSIGNED = "already_assigned"
    EXHAUSTED = "exhausted"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    NOT_PAID = "not_paid"


@dataclass(frozen=True)
class Assignment:
    booking_id: str
    link_id: str
    meeting_link: str
    already_assigned: bool
    source: str = "pool"  # "meet": a private space created for this booking

    def answer(self) -> dict:
        """assign_meeting_link's JSON answer (see docs/openapi.json)."""
        answer = {"success": True, "meetingLink": self.meeting_link, "meetingLinkId": self.link_id,
                  "source": self.source}
        if self.already_assigned:
            answer["alreadyAssigned"] = True
        return answer


def report_exhausted(exhausted: PoolExhausted) -> None:
    """The ERROR line support is alerted by, once per booking that starts waiting."""
    if exhausted.newly_flagged:
        logs.error("meeting link pool exhausted: booking needs manual assignment",
                   booking_id=exhausted.booking_id, order_id=exhausted.order_id,
                   starts_at=exhausted.starts_at.isoformat(), ends_at=exhausted.ends_at.isoformat())


def assign(db: Database, booking_id: str, *, report: bool = True) -> Assignment:
    """Gives the booking the first free link of the shared pool for its range, or returns the
    link (or private space) it holds.

    One statement (assign_link_v1). Raises BookingNotFound, BookingNotPaid (BookingCancelled
    when support cancelled it), or PoolExhausted (after marking the booking as waiting for
    manual assignment, committed; logged unless report is False, for a caller that will try
    a Meet space first).
    """
    row = db.one("assign_link", booking_id=booking_id)
    outcome = Outcome(row["outcome"])
    if outcome in (Outcome.ASSIGNED, Outcome.ALREADY_ASSIGNED):
        if outcome is Outcome.ASSIGNED:
            logs.info("meeting link assigned", booking_id=booking_id, meeting_link_id=row["link_id"])
        return Assignment(booking_id, row["link_id"], row["meeting_link"], outcome is Outcome.ALREADY_ASSIGNED,
                          "meet" if row["private_space"] else "pool")
    if outcome is Outcome.NOT_FOUND:
        raise BookingNotFound(f"booking {booking_id} not found")
    if outcome is Outcome.CANCELLED:
        raise BookingCancelled(
            f"booking {booking_id} was cancelled by support at "
            f"{row['cancelled_by_admin_at'].isoformat(timespec='seconds')}; it gets no link")
    if outcome is Outcome.NOT_PAID:
        raise BookingNotPaid(
            f"booking {booking_id} is not paid and confirmed "
            f"(payment_status={row['payment_status']}, status={row['status']})")
    exhausted = PoolExhausted(booking_id, row["starts_at"], row["ends_at"], row["newly_flagged"], row["order_id"])
    if report:
        report_exhausted(exhausted)
    raise exhausted


@dataclass(frozen=True)
class SweepResult:
    assigned: int        # links this call gave (not ones another caller gave meanwhile)
    waiting: int         # bookings it tried that are still waiting
    complete: bool = True  # False when the time budget ran out first
    last: tuple | None = None  # (paid_at, id) of the last booking it reached


def _serve(db: Database, hold: Hold | None, after: tuple, until: tuple | None,
           deadline: float, give=assign) -> SweepResult:
    """Tries every waiting booking after the keyset position `after` (up to `until`),
    overlapping `hold` if given, page by page, until none is left or the deadline passes."""
    assigned = still_waiting = 0
    last = None
    while True:
        page = db.rows(
            "waiting_bookings_page", hold_from=hold and hold.start, hold_until=hold and hold.until,
            after_paid_at=after[0], after_id=after[1], until_paid_at=until and until[0],
            until_id=until and until[1], page_size=PAGE_SIZE)
        for row in page:
            if time.monotonic() > deadline:
                return SweepResult(assigned, still_waiting, False, last)
            last = after = (row["paid_at"], str(row["id"]))
            try:
                if not give(db, str(row["id"])).already_assigned:
                    assigned += 1
            except PoolExhausted:
                still_waiting += 1
            except (BookingNotFound, BookingNotPaid):
                pass  # changed since we listed it: no longer waiting
        if len(page) < PAGE_SIZE:
            return SweepResult(assigned, still_waiting, True, last)


def hand_over(db: Database, hold: Hold | None = None, *, budget_s: float) -> SweepResult:
    """Offers links to the paid bookings waiting for one, oldest payment first: those whose
    range overlaps `hold` (a range a released link just left free), or every one (a link
    was added or enabled). Each booking is its own transaction, so this is safe beside live
    traffic and can stop at any point; the sweep does whatever it leaves."""
    result = _serve(db, hold, _START, None, time.monotonic() + budget_s)
    if result.assigned or result.waiting:
        logs.info("waiting bookings served", assigned=result.assigned, still_waiting=result.waiting,
                  complete=result.complete)
    return result


def sweep_waiting(db: Database, *, budget_s: float, give=assign) -> SweepResult:
    """Tries every waiting booking within the time budget, with give(db, booking_id) (the
    pool, or the link source configured). A sweep that runs out of time records where it
    stopped and the next one goes on from there (then wraps around), so bookings behind a
    long queue of ones that cannot be placed are still reached."""
    deadline = time.monotonic() + budget_s
    point = db.one("sweep_resume_point")
    resume = (point["paid_at"], str(point["id"])) if point and point["paid_at"] else None
    result = _serve(db, None, resume or _START, None, deadline, give)
    if result.complete and resume:
        wrapped = _serve(db, None, _START, resume, deadline, give)
        result = SweepResult(result.assigned + wrapped.assigned, result.waiting + wrapped.waiting,
                             wrapped.complete, wrapped.last)
    stop = None if result.complete else (result.last or resume)
    db.rows("set_sweep_resume_point", paid_at=stop and stop[0], booking_id=stop and stop[1])
    logs.info("sweep of waiting bookings", assigned=result.assigned, still_waiting=result.waiting,
              complete=result.complete)
    return result
