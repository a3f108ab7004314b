"""Private Meet spaces: one per booking, its two people made members, its call ended after
the session.

A space is created at most once per booking, whatever the retries: claim_space_v2 lets one
caller call the API (the others wait for its result), the call runs outside any transaction,
and attach_space_v2 stores the space as a link only that booking may hold (sql/0015). A
caller that dies between the call and the write leaves a request whose lease runs out; the
next attempt (Midtrans's redelivery, the sweep) takes it over.

The booking's people (expert_email, customer_email) are made members right after, within
the same deadline and outside any transaction: the expert as COHOST, the customer as a
member, so both join without knocking. What does not make it in time, the sweep adds before
the session; if they are still not members when it is about to start, the space is opened
to anyone with the link, so that nobody is shut out (WARNING, and a link.opened event).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import allocation, clients, logs
from .allocation import Assignment
from .config import Settings
from .db import Database
from .errors import MeetCredentialsError, MeetUnavailable

_POLL_S = 0.05
_CONSECUTIVE_FAILURES = 3  # a round stops here: Google is down, not one space


def access_for(settings: Settings, expert_email: str | None, customer_email: str | None) -> str:
    """The access a new space gets: MEET_ACCESS_TYPE, or with AUTO, RESTRICTED when both people
    are known (they are members; anyone else knocks and the expert decides), else OPEN (nobody
    could admit anyone: the link is known only to its booking's people)."""
    if settings.meet_access_type != "AUTO":
        return settings.meet_access_type
    return "RESTRICTED" if expert_email and customer_email else "OPEN"


def wanted_members(expert_email: str | None, customer_email: str | None) -> dict[str, str]:
    """email -> role: the expert may admit others and manage the call."""
    wanted = {}
    if customer_email:
        wanted[customer_email.lower()] = "MEMBER"
    if expert_email:
        wanted[expert_email.lower()] = "COHOST"
    return wanted


def private_space(db: Database, settings: Settings, booking_id: str) -> Assignment:
    """The booking's own Meet space: created now (at most once), or the one it has.

    Raises what allocation.assign raises for a booking that may hold no link, and
    MeetUnavailable or MeetCredentialsError when no space could be had in time (for the
    caller to fall back)."""
    deadline = time.monotonic() + settings.meet_api_timeout_s
    while True:
        claim = db.one("claim_space", booking_id=booking_id, lease_seconds=settings.meet_space_lease_s)
        outcome = claim["outcome"]
        if outcome in ("assigned", "already_assigned"):
            # Whatever it holds: its own space, or a shared link it got before.
            return Assignment(booking_id, claim["link_id"], claim["meeting_link"], outcome == "already_assigned",
                              claim["source"])
        error = allocation.refusal(outcome, booking_id)
        if error:
            raise error
        if outcome == "space_disabled":
            raise MeetUnavailable("the booking's private space was disabled by support")
        if outcome == "claimed":
            return _create(db, settings, booking_id, claim, deadline)
        # busy: another caller is creating it; its result is ours too.
        if time.monotonic() + _POLL_S > deadline:
            raise MeetUnavailable("the booking's space is still being created by another request")
        time.sleep(_POLL_S)


def _create(db: Database, settings: Settings, booking_id: str, claim: dict, deadline: float) -> Assignment:
    access = access_for(settings, claim["expert_email"], claim["customer_email"])
    try:
        space = clients.meet(settings).create_space(access, deadline)
    except (MeetUnavailable, MeetCredentialsError) as exc:
        db.rows("fail_space", booking_id=booking_id, error=f"{type(exc).__name__}: {exc}")
        raise
    try:
        row = db.one("attach_space", booking_id=booking_id, space_name=space.name, meeting_uri=space.meeting_uri,
                     meeting_code=space.meeting_code, access_type=access)
    except Exception:
        # Not stored: say which space it was, so that it is not lost without a trace.
        logs.error("Meet space created but not recorded", booking_id=booking_id, space_name=space.name,
                   meeting_uri=space.meeting_uri)
        raise
    if row["outcome"] == "refused":
        logs.error("Meet space refused by the database; the booking falls back", booking_id=booking_id,
                   space_name=space.name[:200], meeting_uri=space.meeting_uri[:200], detail=row["detail"])
        raise MeetUnavailable(f"the space Google made was refused by the database ({row['detail']})")
    if row["outcome"] == "orphaned":
        logs.error("Meet space orphaned: the booking already has its own", booking_id=booking_id,
                   space_name=space.name)
    if row["outcome"] != "assigned":
        # The booking changed meanwhile (refunded, cancelled, or given a link): what it holds now.
        return allocation.assign(db, booking_id)
    logs.info("private Meet space created", booking_id=booking_id, space_name=space.name, access_type=access)
    add_members(db, settings, row["link_id"], space.name, wanted_members(claim["expert_email"], claim["customer_email"]),
                deadline, booking_id)
    return Assignment(booking_id, row["link_id"], row["meeting_link"], False, "meet")


def add_members(db: Database, settings: Settings, link_id: str, space_name: str, wanted: dict[str, str],
                deadline: float, booking_id: str) -> bool:
    """Makes each wanted person a member, recording each one Google confirms; True when all
    are. A failure is logged and left to the sweep: the booking keeps its space."""
    made = []
    try:
        for email, role in wanted.items():
            member = clients.meet(settings).add_member(space_name, email, role, deadline)
            made.append({"email": email, "role": role, "name": member.name if member else None})
    except (MeetUnavailable, MeetCredentialsError) as exc:
        logs.warning("space members not added yet; the sweep adds them before the session", booking_id=booking_id,
                     space_name=space_name, error=type(exc).__name__, detail=str(exc))
    if made:
        db.rows("record_space_members", link_id=link_id, members=made)
    return len(made) == len(wanted)


@dataclass(frozen=True)
class Tended:
    members_added: int = 0
    opened: int = 0
    complete: bool = True


def tend(db: Database, settings: Settings, deadline: float) -> Tended:
    """The sweep's care of private spaces whose session has not ended: members added for the
    booking's people (and removed for an email the app changed), a space opened to anyone
    with the link when its people are still not members shortly before the session, and a
    space made with no people known restricted once both are members. One space's failure
    is its own; the round goes on."""
    if not settings.meet_credentials:
        return Tended()
    added = opened = failures = 0
    for row in db.rows("spaces_to_tend", open_before_minutes=settings.meet_open_before_minutes):
        if time.monotonic() > deadline:
            return Tended(added, opened, False)
        call_deadline = min(deadline, time.monotonic() + settings.meet_api_timeout_s)
        try:
            added_now, opened_now, failure = _tend_one(db, settings, row, call_deadline)
            added, opened = added + added_now, opened + opened_now
            if failure:
                raise failure
        except MeetCredentialsError as exc:
            logs.error("Meet API credentials not usable (check MEET_CREDENTIALS); space members are not added",
                       detail=str(exc))
            return Tended(added, opened, False)
        except MeetUnavailable as exc:
            failures += 1
            logs.warning("a private space could not be tended; the next sweep tries again", space_name=row["space_name"],
                         booking_id=str(row["booking_id"]), detail=str(exc))
            if failures >= _CONSECUTIVE_FAILURES:
                return Tended(added, opened, False)
            continue
        failures = 0
    return Tended(added, opened, True)


def _tend_one(db: Database, settings: Settings, row: dict, deadline: float) -> tuple[int, int, Exception | None]:
    """(members added, spaces opened, the failure that left some member out or None)."""
    meet = clients.meet(settings)
    link_id = str(row["link_id"])
    wanted = wanted_members(row["expert_email"], row["customer_email"])
    have = {m["email"]: m for m in row["members"] or []}
    added, missing, failure = 0, [], None
    for email, role in wanted.items():
        if email in have:
            continue
        try:
            member = meet.add_member(row["space_name"], email, role, deadline)
        except MeetUnavailable as exc:
            missing.append(email)
            failure = exc
            continue
        db.rows("record_space_members", link_id=link_id,
                members=[{"email": email, "role": role, "name": member.name if member else None}])
        added += 1
    for email, member in have.items():
        if email not in wanted:  # the app changed the booking's people
            if member.get("name"):
                meet.remove_member(member["name"], deadline)
            db.rows("forget_space_member", link_id=link_id, email=email)
    if missing and row["starts_soon"] and row["access_type"] != "OPEN":
        meet.set_access(row["space_name"], "OPEN", deadline)
        db.rows("record_space_access", link_id=link_id, access_type="OPEN", opened=True)
        logs.warning("private space opened to anyone with the link: its people are not all members and the "
                     "session starts soon", booking_id=str(row["booking_id"]), space_name=row["space_name"],
                     missing=len(missing))
        return added, 1, None
    if failure:
        return added, 0, failure
    if (settings.meet_access_type == "AUTO" and len(wanted) == 2 and row["access_type"] == "OPEN"
            and row["opened_at"] is None):
        meet.set_access(row["space_name"], "RESTRICTED", deadline)
        db.rows("record_space_access", link_id=link_id, access_type="RESTRICTED", opened=False)
    return added, 0, None


def end_finished_calls(db: Database, settings: Settings, deadline: float) -> tuple[int, bool]:
    """Ends the calls in API-created links whose session ended more than
    MEET_END_GRACE_MINUTES ago, so the next customer never finds the previous one still in the
    room, and records what it did per session. A call on a shared link is left alone while the
    link's next session runs. One space that fails is tried again after its own backoff; the
    round goes on. Returns (calls ended, whether every due call was handled)."""
    if not settings.meet_credentials:
        return 0, True
    ended = failures = 0
    for row in db.rows("calls_to_end", grace_minutes=settings.meet_end_grace_minutes):
        if time.monotonic() > deadline:
            return ended, False
        outcome = "next session running"
        if not row["next_session_running"]:
            try:
                call_deadline = min(deadline, time.monotonic() + settings.meet_api_timeout_s)
                outcome = clients.meet(settings).end_active_conference(row["space_name"], call_deadline)
            except MeetCredentialsError as exc:
                logs.error("Meet API credentials not usable (check MEET_CREDENTIALS); calls are not ended",
                           detail=str(exc))
                return ended, False
            except MeetUnavailable as exc:
                failures += 1
                db.rows("delay_call_end", booking_id=str(row["id"]))
                logs.warning("a call could not be ended; tried again later", space_name=row["space_name"],
                             booking_id=str(row["id"]), detail=str(exc))
                if failures >= _CONSECUTIVE_FAILURES:
                    return ended, False
                continue
        failures = 0
        if outcome == "refused":
            logs.warning("Google refused to end the call of this space (403): it is not managed by the app",
                         space_name=row["space_name"], booking_id=str(row["id"]))
        db.rows("mark_call_ended", booking_id=str(row["id"]), outcome=outcome)
        ended += outcome == "ended"
    if ended:
        logs.info("calls ended after their sessions", ended=ended)
    return ended, True
