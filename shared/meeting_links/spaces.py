"""Where a paid booking's link comes from (LINK_SOURCE), and private Meet spaces.

    pool            the shared pool only (the default)
    pool_then_meet  the pool; a private space when the pool has nothing free for the range
    meet_then_pool  a private space for every booking; the pool when the Meet API fails, is
                    rate-limited or is not configured

A private space is created at most once per booking, whatever the retries: claim_space_v1
lets exactly one caller call the API (the others wait for its result), the call runs outside
any transaction, and attach_space_v1 stores the space as a link only that booking may hold
(sql/0008). A caller that dies between the call and the write leaves a request whose lease
runs out; the next attempt (Midtrans's redelivery, the sweep) takes it over.
"""
from __future__ import annotations

import time

from . import allocation, link_events, logs, meet_api
from .allocation import Assignment
from .config import Settings
from .db import Database
from .errors import BookingCancelled, BookingNotFound, BookingNotPaid, MeetCredentialsError, MeetUnavailable, PoolExhausted

_POLL_S = 0.05


def give_link(db: Database, settings: Settings, booking_id: str) -> Assignment:
    """A link for the paid booking, from the source LINK_SOURCE names. Raises what
    allocation.assign raises; PoolExhausted only when no source could give one. The link
    event it causes goes to the app in the background."""
    try:
        return _give_link(db, settings, booking_id)
    finally:
        link_events.deliver_soon(db, settings)


def _give_link(db: Database, settings: Settings, booking_id: str) -> Assignment:
    if settings.link_source == "pool":
        return allocation.assign(db, booking_id)
    if settings.link_source == "pool_then_meet":
        try:
            return allocation.assign(db, booking_id, report=False)
        except PoolExhausted as exhausted:
            try:
                return private_space(db, settings, booking_id)
            except (MeetUnavailable, MeetCredentialsError) as exc:
                _log_failure(exc, booking_id, "the booking waits for a person")
                allocation.report_exhausted(exhausted)
                raise exhausted from None
    try:
        return private_space(db, settings, booking_id)
    except (MeetUnavailable, MeetCredentialsError) as exc:
        _log_failure(exc, booking_id, "the booking gets a pool link")
        return allocation.assign(db, booking_id)


def _log_failure(exc: Exception, booking_id: str, fallback: str) -> None:
    if isinstance(exc, MeetCredentialsError):  # an operator must act: ERROR, naming the setting
        logs.error(f"Meet API credentials not usable (check MEET_CREDENTIALS); {fallback}",
                   booking_id=booking_id, detail=str(exc))
    else:  # rate-limited, down or slow: the fallback serves, nobody needs to act
        logs.warning(f"no private space this time; {fallback}", booking_id=booking_id,
                     error=type(exc).__name__, detail=str(exc))


def private_space(db: Database, settings: Settings, booking_id: str) -> Assignment:
    """The booking's own Meet space: created now (at most once), or the one it has.

    Raises BookingNotFound / BookingNotPaid / BookingCancelled like allocation.assign, and
    MeetUnavailable or MeetCredentialsError when no space could be had in time (for the
    caller to fall back)."""
    deadline = time.monotonic() + settings.meet_api_timeout_s
    while True:
        claim = db.one("claim_space", booking_id=booking_id, lease_seconds=settings.meet_space_lease_s)
        outcome = claim["outcome"]
        if outcome in ("assigned", "already_assigned"):
            # Whatever it holds: its own space, or a shared link it got before.
            return Assignment(booking_id, claim["link_id"], claim["meeting_link"], outcome == "already_assigned",
                              "meet" if claim["private_space"] else "pool")
        if outcome == "not_found":
            raise BookingNotFound(f"booking {booking_id} not found")
        if outcome == "cancelled":
            raise BookingCancelled(f"booking {booking_id} was cancelled by support; it gets no link")
        if outcome == "not_paid":
            raise BookingNotPaid(f"booking {booking_id} is not paid and confirmed")
        if outcome == "claimed":
            return _create(db, settings, booking_id, deadline)
        # busy: another caller is creating it; its result is ours too.
        if time.monotonic() + _POLL_S > deadline:
            raise MeetUnavailable("the booking's space is still being created by another request")
        time.sleep(_POLL_S)


def _create(db: Database, settings: Settings, booking_id: str, deadline: float) -> Assignment:
    try:
        space = meet_api.client(settings).create_space(deadline)
    except (MeetUnavailable, MeetCredentialsError) as exc:
        db.rows("fail_space", booking_id=booking_id, error=f"{type(exc).__name__}: {exc}")
        raise
    try:
        row = db.one("attach_space", booking_id=booking_id, space_name=space.name,
                     meeting_uri=space.meeting_uri, meeting_code=space.meeting_code)
    except Exception:
        # Not stored: say which space it was, so that it is not lost without a trace.
        logs.error("Meet space created but not recorded", booking_id=booking_id, space_name=space.name,
                   meeting_uri=space.meeting_uri)
        raise
    if row["outcome"] == "orphaned":
        logs.error("Meet space orphaned: the booking already has its own", booking_id=booking_id,
                   space_name=space.name)
    if row["outcome"] != "assigned":
        # The booking changed meanwhile (refunded, cancelled, or given a link): what it holds now.
        return allocation.assign(db, booking_id)
    logs.info("private Meet space created", booking_id=booking_id, space_name=space.name)
    return Assignment(booking_id, row["link_id"], row["meeting_link"], False, "meet")


def end_finished_calls(db: Database, settings: Settings, deadline: float) -> int:
    """Ends the calls in API-created links whose session ended more than
    MEET_END_GRACE_MINUTES ago, so the next customer never finds the previous one still in
    the room; records what it did per session. A call on a shared link is left alone while
    the link's next session runs. Returns how many calls it ended; the first failing call
    ends the round (the next sweep goes on)."""
    if not settings.meet_credentials:
        return 0
    rows = db.rows("calls_to_end", grace_minutes=settings.meet_end_grace_minutes)
    ended = 0
    for row in rows:
        if time.monotonic() > deadline:
            break
        outcome = "next session running"
        if not row["next_session_running"]:
            try:
                call_deadline = min(deadline, time.monotonic() + settings.meet_api_timeout_s)
                running = meet_api.client(settings).end_active_conference(row["space_name"], call_deadline)
            except MeetUnavailable as exc:
                logs.warning("ending calls after their sessions stopped; the next sweep goes on", detail=str(exc))
                break
            except MeetCredentialsError as exc:
                logs.error("Meet API credentials not usable (check MEET_CREDENTIALS); calls are not ended",
                           detail=str(exc))
                break
            outcome = "ended" if running else "none running"
            ended += running
        db.rows("mark_call_ended", booking_id=str(row["id"]), outcome=outcome)
    if ended:
        logs.info("calls ended after their sessions", ended=ended)
    return ended
