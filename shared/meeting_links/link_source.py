"""Where a paid booking's link comes from (LINK_SOURCE):

    pool            the shared pool only (the default)
    pool_then_meet  the pool; a private space when the pool has nothing free for the range
    meet_then_pool  a private space for every booking; the pool when the Meet API fails, is
                    rate-limited, answers nonsense or is not configured
"""
from __future__ import annotations

from . import allocation, link_events, logs, spaces
from .allocation import Assignment, Waiting
from .config import Settings
from .db import Database
from .errors import BookingNotPaid, MeetCredentialsError, MeetUnavailable, PoolExhausted


def give_link(db: Database, settings: Settings, booking_id: str) -> Assignment:
    """A link for the paid booking, from the source LINK_SOURCE names. Raises what
    allocation.assign raises; PoolExhausted (reported) only when no source could give one.
    The link event it causes goes to the app in the background."""
    try:
        return _give(db, settings, booking_id)
    finally:
        link_events.deliver_soon(db, settings)


def link_or_wait(db: Database, settings: Settings, booking_id: str) -> Assignment | Waiting | None:
    """give_link as a value: the link, Waiting (a person has been told), or None for a booking
    that may hold no link any more."""
    try:
        return give_link(db, settings, booking_id)
    except PoolExhausted:
        return Waiting(booking_id)
    except BookingNotPaid:
        return None


def _give(db: Database, settings: Settings, booking_id: str) -> Assignment:
    if settings.link_source == "pool":
        return allocation.assign(db, booking_id)
    if settings.link_source == "pool_then_meet":
        try:
            return allocation.assign(db, booking_id, report=False)
        except PoolExhausted as exhausted:
            try:
                return spaces.private_space(db, settings, booking_id)
            except (MeetUnavailable, MeetCredentialsError) as exc:
                _log_fallback(exc, booking_id, "the booking waits for a person")
                allocation.report_exhausted(db, exhausted)
                raise exhausted from None
    try:
        return spaces.private_space(db, settings, booking_id)
    except (MeetUnavailable, MeetCredentialsError) as exc:
        _log_fallback(exc, booking_id, "the booking gets a pool link")
        return allocation.assign(db, booking_id)


def _log_fallback(exc: Exception, booking_id: str, fallback: str) -> None:
    if isinstance(exc, MeetCredentialsError):  # an operator must act: ERROR, naming the setting
        logs.error(f"Meet API credentials not usable (check MEET_CREDENTIALS); {fallback}",
                   booking_id=booking_id, detail=str(exc))
    else:  # rate-limited, down, slow or talking nonsense: the fallback serves, nobody needs to act
        logs.warning(f"no private space this time; {fallback}", booking_id=booking_id,
                     error=type(exc).__name__, detail=str(exc))
