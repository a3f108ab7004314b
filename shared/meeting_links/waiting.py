"""The paid bookings waiting for a link whose session has not ended, oldest payment first,
read page by page by keyset: bookings that stay waiting never hide the ones behind them,
and a walk can start after any position and stop at any other."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from .db import Database

PAGE_SIZE = 200


@dataclass(frozen=True)
class Position:
    """A place in the queue: a booking's (paid_at, id)."""
    paid_at: datetime | str
    id: str


# Before every booking: the smallest (paid_at, id).
START = Position(datetime.min.isoformat() + "+00:00", "00000000-0000-0000-0000-000000000000")


def bookings(db: Database, *, hold=None, after: Position = START, until: Position | None = None) -> Iterator[Position]:
    """The waiting bookings after `after` (up to and including `until`), overlapping `hold`
    (an allocation.Hold) if given. Each page is read when the walk reaches it."""
    while True:
        page = db.rows(
            "waiting_bookings_page", hold_from=hold and hold.start, hold_until=hold and hold.until,
            after_paid_at=after.paid_at, after_id=after.id, until_paid_at=until and until.paid_at,
            until_id=until and until.id, page_size=PAGE_SIZE)
        for row in page:
            after = Position(row["paid_at"], str(row["id"]))
            yield after
        if len(page) < PAGE_SIZE:
            return
