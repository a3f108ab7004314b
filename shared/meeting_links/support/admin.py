"""The support team's operations: bookings (find, create for a test, move, assign, cancel),
the pool (look, add, remove, disable, create through the Meet API, check, configure), link
events (list, show, resend, replay, resume) and the sweep. Every write goes through the same
constraints and SQL functions as the functions, so a mistake is refused, not stored. Each
returns plain data; cli.py prints it."""
from __future__ import annotations

import re
import secrets
import time as clock
from datetime import date, datetime, time

from .. import allocation, clients, link_events, logs, sweep
from ..allocation import Hold
from ..config import Settings
from ..db import Database
from ..errors import (
    BadRequest,
    BookingNotFound,
    EventNotFound,
    LinkConflict,
    LinkNotFound,
    MeetUnavailable,
    PoolExhausted,
    Refused,
)
from ..ids import as_uuid
from ..meet.api import Space

NEARLY_FULL = 0.8
MEET_LINK = re.compile(r"https://meet\.google\.com/[a-z0-9][a-z0-9-]{2,60}")


# ---- bookings ------------------------------------------------------------------------------

def booking(db: Database, ref: str) -> dict:
    """A booking by its id or its order id, with its link and its space's members."""
    found = db.one("booking_by_ref", ref=ref)
    if found is None:
        raise BookingNotFound(f"no booking with id or order id {ref!r}")
    return {**found, "id": str(found["id"]), "link_id": found["link_id"] and str(found["link_id"])}


def _parse_when(value: str) -> tuple[date, time]:
    try:
        when = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise BadRequest(f"a time must be 'YYYY-MM-DD HH:MM' in the business time zone, got {value!r}") from None
    return when.date(), when.time()


def create_booking(db: Database, *, when: str, duration: int, price: str, order_id: str | None,
                   expert_email: str | None, customer_email: str | None) -> dict:
    """A booking as the app writes one (pending payment), for trying the system out."""
    day, start = _parse_when(when)
    order_id = order_id or f"TEST-{secrets.token_hex(4).upper()}"
    row = db.one("create_booking", user_id="support", expert_id="support", session_type="Konsultasi",
                 scheduled_date=day.isoformat(), scheduled_time=start.isoformat(), duration=duration,
                 price=price, order_id=order_id, expert_email=expert_email, customer_email=customer_email)
    return booking(db, str(row["id"]))


def move_booking(db: Database, settings: Settings, ref: str, to: str, duration: int | None) -> dict:
    """What the app's UPDATE of scheduled_date/scheduled_time/duration does (sql/0014): the
    booking keeps its link if free then, else takes another, else waits (reported)."""
    before = booking(db, ref)
    day, start = _parse_when(to)
    db.one("move_booking", booking_id=before["id"], scheduled_date=day.isoformat(), scheduled_time=start.isoformat(),
           duration=duration or before["duration"])
    after = booking(db, before["id"])
    if before["meeting_link"]:
        allocation.hand_over(db, Hold(before["starts_at"], before["ends_at"]), budget_s=settings.sweep_time_budget_s)
    waiting = after["payment_status"] == "paid" and after["status"] == "confirmed" and not after["meeting_link"]
    if waiting:
        try:
            allocation.assign(db, after["id"])
        except PoolExhausted:
            pass  # reported: the pool exhausted line names it
        after = booking(db, after["id"])
    return {"booking_id": after["id"], "order_id": after["order_id"], "starts_at": after["starts_at"],
            "ends_at": after["ends_at"], "meeting_link": after["meeting_link"], "previous_link": before["meeting_link"],
            "waiting": after["meeting_link"] is None and waiting}


def assign(db: Database, settings: Settings, ref: str, link: str | None) -> dict:
    """Gives the booking the chosen link, or the first free one (moving it off a disabled
    link); the link it leaves is handed to waiting bookings as any release is. A busy chosen
    link is refused naming the session that holds it."""
    b = booking(db, ref)
    try:
        row = db.one("assign_link_by_hand", booking_id=b["id"], link=link)
    except LinkConflict as exc:
        chosen = db.one("find_link", ref=link) if link else None
        holders = db.rows("holders_of_link", booking_id=b["id"], link_id=str(chosen["id"])) if chosen else []
        if holders:
            names = ", ".join(f"{h['order_id']} ({h['starts_at']:%Y-%m-%d %H:%M}-{h['ends_at']:%H:%M} UTC)"
                              for h in holders)
            raise LinkConflict(f"refused: {link} is already used by {names} at that time") from None
        raise exc
    outcome = row["outcome"]
    if outcome == "link_not_found":
        raise LinkNotFound(f"no link in the pool with id or URL {link!r}")
    error = allocation.refusal(outcome, b["id"])
    if error:
        raise error
    if outcome == "exhausted":
        raise PoolExhausted(b["id"], b["starts_at"], b["ends_at"], b["order_id"])
    if outcome == "assigned":
        logs.info("meeting link assigned by support", booking_id=b["id"], meeting_link_id=row["link_id"],
                  moved_from=row["previous_link"])
    handed = None
    if row["released_from"] is not None:
        handed = allocation.hand_over(db, Hold(row["released_from"], row["released_until"]),
                                      budget_s=settings.sweep_time_budget_s)
    return {"booking_id": b["id"], "order_id": b["order_id"], "meeting_link": row["meeting_link"],
            "link_id": row["link_id"], "moved_from": row["previous_link"], "unchanged": outcome == "unchanged",
            "waiting_bookings_served": _served(handed)}


def _served(handed: allocation.Served | None) -> list[dict]:
    return [{"booking_id": a.booking_id, "meeting_link": a.meeting_link} for a in (handed.given if handed else ())]


def cancel(db: Database, settings: Settings, ref: str) -> dict:
    """Cancels the booking for good (cancel_booking_v1) and hands the link it held over."""
    b = booking(db, ref)
    row = db.one("cancel_booking", booking_id=b["id"])
    handed = None
    if row["released_from"] is not None:
        handed = allocation.hand_over(db, Hold(row["released_from"], row["released_until"]),
                                      budget_s=settings.sweep_time_budget_s)
    return {"booking_id": b["id"], "order_id": b["order_id"], "released_link": row["released_link"],
            "waiting_bookings_served": _served(handed)}


def waiting(db: Database, include_ended: bool) -> list[dict]:
    return [{**r, "id": str(r["id"])} for r in db.rows("bookings_waiting_for_link", include_ended=include_ended)]


# ---- the pool ------------------------------------------------------------------------------

def _link(db: Database, ref: str) -> dict:
    link = db.one("find_link", ref=ref)
    if link is None:
        raise LinkNotFound(f"no link in the pool with id or URL {ref!r}")
    return link


def next_free(holds: list[dict], now: datetime) -> datetime:
    """The first instant from now at which the link holds nothing."""
    free_at = now
    for h in holds:  # ordered by start
        if h["hold_from"] > free_at:
            break
        free_at = max(free_at, h["hold_until"])
    return free_at


def pool_status(db: Database) -> list[dict]:
    """Every link: enabled, in use now, when it is next free, upcoming sessions."""
    def work(tx):
        now = tx.one("now")["now"]
        rows = []
        for link in tx.rows("pool_links"):
            holds = tx.rows("upcoming_holds_of_link", link_id=str(link["id"]))
            rows.append({"id": str(link["id"]), "meeting_link": link["meeting_link"],
                         "enabled": link["is_available"], "in_use_now": link["in_use_now"],
                         "next_free_at": next_free(holds, now) if link["is_available"] else None,
                         "upcoming_sessions": len(holds)})
        return rows
    return db.run(work)


def capacity(db: Database, days: int, start: str | None = None) -> list[dict]:
    """Per day from `start` (default today, in the business time zone): paid sessions, their
    peak overlap, the pool size, and a warning."""
    if not 1 <= days <= 366:
        raise BadRequest("--days must be between 1 and 366")
    if start is not None:
        try:
            start = date.fromisoformat(start).isoformat()
        except ValueError:
            raise BadRequest(f"--from must be a date, YYYY-MM-DD, got {start!r}") from None
    rows = []
    for day in db.rows("capacity_by_day", days=days, start=start):
        peak, size = day["peak"], day["pool_size"]
        warning = ""
        if peak > size:
            warning = f"OVER: {peak - size} paid session(s) cannot get a link"
        elif size and peak == size:
            warning = "FULL"
        elif size and peak >= NEARLY_FULL * size:
            warning = "nearly full"
        rows.append({"day": day["day"], "sessions": day["sessions"], "peak_concurrent": peak,
                     "pool_size": size, "warning": warning})
    return rows


def configure(db: Database, time_zone: str | None, buffer_minutes: int | None, apply: bool) -> dict:
    """The business time zone and buffer: what they are, what a change would re-derive, and
    (with apply) the change itself; refused as a whole, naming the sessions, when it would
    make two of them overlap on one link."""
    current = db.one("pool_settings")
    zone = time_zone or current["time_zone"]
    buffer = current["buffer_minutes"] if buffer_minutes is None else buffer_minutes
    if not 0 <= buffer <= 1440:
        raise BadRequest("--buffer-minutes must be between 0 and 1440")
    try:
        row = db.one("configure_pool", time_zone=zone, buffer_minutes=buffer, apply=apply)
    except BadRequest:
        raise
    except Exception as exc:  # a zone PostgreSQL does not know
        if "time zone" in str(exc):
            raise BadRequest(f"--time-zone {zone!r} is not a time zone PostgreSQL knows") from None
        raise
    result = {"outcome": row["outcome"], "time_zone": zone, "buffer_minutes": buffer,
              "time_zone_before": row["time_zone_before"], "buffer_minutes_before": row["buffer_minutes_before"],
              "sessions_affected": row["affected"]}
    if row["outcome"] == "conflict":
        pairs = "; ".join(f"{a} and {b}" for a, b in row["conflicts"][:10])
        raise Refused(f"refused: with a {buffer}-minute buffer in {zone}, these sessions would overlap on their "
                      f"link: {pairs}. Move one of each pair to another link (`bookings assign ORDER --link ...`) "
                      "first")
    return result


def add_link(db: Database, settings: Settings, url: str, notes: str | None, any_provider: bool = False) -> dict:
    """Adds a link (a duplicate or a non-https URL is refused; so is a URL that is not a Meet
    link, unless any_provider) and hands it to waiting bookings."""
    if not any_provider and not MEET_LINK.fullmatch(url):
        raise BadRequest(f"refused: {url!r} is not a Google Meet link (https://meet.google.com/abc-defg-hij); "
                         "add --any-provider to add another kind")
    link = db.one("add_link", meeting_link=url, notes=notes)
    return {**_link_row(link), "waiting_bookings_served": _served(allocation.hand_over(
        db, budget_s=settings.sweep_time_budget_s))}


def remove_link(db: Database, ref: str) -> dict:
    """Removes a link added by mistake: only one that never served a session."""
    link = _link(db, ref)
    row = db.one("remove_link", link_id=str(link["id"]))
    if row is None:
        raise Refused(f"refused: {link['meeting_link']} has served sessions (or is a private space); "
                      "disable it instead (`links disable`)")
    return {"id": str(row["id"]), "meeting_link": row["meeting_link"], "removed": True}


def _link_row(link: dict) -> dict:
    return {"id": str(link["id"]), "meeting_link": link["meeting_link"], "enabled": link["is_available"]}


def enable_link(db: Database, settings: Settings, ref: str) -> dict:
    link = db.one("set_link_available", link_id=str(_link(db, ref)["id"]), available=True)
    return {**_link_row(link), "waiting_bookings_served": _served(allocation.hand_over(
        db, budget_s=settings.sweep_time_budget_s))}


def disable_link(db: Database, ref: str) -> dict:
    """Disables the link and lists every upcoming session it still holds (support moves
    them): the UPDATE waits for an assignment to it in flight, which the trigger makes hold
    the link FOR SHARE, so none can slip in unlisted."""
    def work(tx):
        link = tx.one("find_link", ref=ref)
        if link is None:
            raise LinkNotFound(f"no link in the pool with id or URL {ref!r}")
        tx.one("set_link_available", link_id=str(link["id"]), available=False)
        return link, tx.rows("upcoming_holds_of_link", link_id=str(link["id"]))
    link, holds = db.run(work)
    sessions = [{"booking_id": str(h["booking_id"]), "order_id": h["order_id"], "starts_at": h["starts_at"],
                 "ends_at": h["ends_at"]} for h in holds]
    return {**_link_row({**link, "is_available": False}), "upcoming_sessions": sessions}


def create_links(db: Database, settings: Settings, count: int) -> tuple[list[dict], str | None]:
    """Grows the pool with `count` spaces created through the Meet API (owned by the app, so
    the sweep can end their calls), then hands them to waiting bookings. Stops at the first
    failure: returns the links made and why it stopped (None when all were made)."""
    if not 1 <= count <= 50:
        raise BadRequest("N must be between 1 and 50 (the Meet API creates at most 10 spaces a minute per user)")
    meet = clients.meet(settings)
    made, stopped = [], None
    for _ in range(count):
        try:
            # A shared link: whoever holds it now may walk in (it has no members).
            space = meet.create_space("OPEN", clock.monotonic() + max(settings.meet_api_timeout_s, 5.0))
            made.append(db.one("add_api_link", meeting_link=space.meeting_uri, space_name=space.name,
                               meeting_code=space.meeting_code))
        except MeetUnavailable as exc:
            stopped = f"{exc} after {len(made)} of {count}; run it again in a minute for the rest"
            break
        except (BadRequest, LinkConflict) as exc:  # the database refused what Google answered
            stopped = f"Google answered a space the pool refuses ({exc}) after {len(made)} of {count}"
            break
    handed = allocation.hand_over(db, budget_s=settings.sweep_time_budget_s) if made else None
    return [{**_link_row(link), "waiting_bookings_served": _served(handed)} for link in made], stopped


def check_links(db: Database, settings: Settings) -> list[dict]:
    """For each shared link: what the Meet API says of it: "exists" (and still at this URL),
    "moved" (its code now opens another space: Google reuses codes unused for 365 days),
    "missing", or why it cannot tell ("not ours": a code made by hand, which the app's scope
    cannot read; "not a Meet link")."""
    meet = clients.meet(settings)
    rows = []
    for link in db.rows("pool_links"):
        ref = link["space_name"] or _meet_code(link["meeting_link"])
        if ref is None:
            result = "not a Meet link"
        else:
            found = meet.get_space(ref, clock.monotonic() + max(settings.meet_api_timeout_s, 5.0))
            if isinstance(found, Space):
                result = "exists" if found.meeting_uri.rstrip("/") == link["meeting_link"].rstrip("/") else "moved"
            else:
                result = found
        rows.append({"id": str(link["id"]), "meeting_link": link["meeting_link"], "enabled": link["is_available"],
                     "created_by_app": link["space_name"] is not None, "api_says": result})
    return rows


def _meet_code(url: str) -> str | None:
    prefix = "https://meet.google.com/"
    code = url[len(prefix):].split("?", 1)[0] if url.startswith(prefix) else ""
    return code if code and "/" not in code else None


def private_spaces(db: Database) -> list[dict]:
    """Per-booking spaces with their state (held, ended, released, orphaned), newest first."""
    return [{**r, "booking_id": r["booking_id"] and str(r["booking_id"])} for r in db.rows("private_spaces")]


def link_usage(db: Database) -> list[dict]:
    return [{**r, "id": str(r["id"])} for r in db.rows("link_usage")]


def free_links(db: Database, on_date: str, at_time: str, duration: int) -> list[dict]:
    """Links free for a session at a local date and time (business time zone)."""
    try:
        day, start = date.fromisoformat(on_date), time.fromisoformat(at_time)
    except ValueError:
        raise BadRequest("--date must be YYYY-MM-DD and --time HH:MM") from None
    if not 1 <= duration <= 1440:
        raise BadRequest("--duration must be between 1 and 1440 minutes")
    rows = db.rows("free_links_for_slot", on_date=day.isoformat(), at_time=start.isoformat(), duration=duration)
    return [{"id": str(r["id"]), "meeting_link": r["meeting_link"]} for r in rows]


# ---- link events and the sweep -------------------------------------------------------------

def events(db: Database, ref: str | None, limit: int) -> list[dict]:
    booking_id = booking(db, ref)["id"] if ref else None
    return [_event_row(r) for r in db.rows("link_events", booking_id=booking_id, limit=limit)]


def _event_row(r: dict) -> dict:
    state = ("skipped" if r.get("skipped") else "delivered" if r["delivered_at"] else
             "failing" if r["last_error"] else "due")
    row = {k: v for k, v in r.items() if k not in ("skipped",)}
    row["delivery"] = state
    if "booking_id" in row and row["booking_id"] is not None:
        row["booking_id"] = str(row["booking_id"])
    return row


def event(db: Database, ref: str) -> dict:
    found = db.one("link_event", id=int(ref) if ref.isdigit() else None, ref=ref)
    if found is None:
        raise EventNotFound(f"no link event {ref!r} (an event number, or a webhook-id evt_...)")
    return _event_row(found)


def resend(db: Database, settings: Settings, ref: str) -> dict:
    found = event(db, ref)
    db.one("resend_link_event", id=found["id"])
    delivered = link_events.deliver(db, settings, clock.monotonic() + settings.link_events_timeout_s + 1)
    return {**event(db, str(found["id"])), "delivered_now": delivered.count}


def replay(db: Database, since: str) -> dict:
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise BadRequest(f"--since must be an ISO date or time (2030-01-07, 2030-01-07T08:00+07:00), got {since!r}") \
            from None
    return {"since": when, "events_due_again": db.one("replay_link_events", since=when.isoformat())["events"]}


def resume(db: Database) -> dict:
    url = db.one("resume_link_events")["url"]
    return {"resumed_url": url, "was_stopped": url is not None}


def run_sweep(db: Database, settings: Settings) -> dict:
    swept = sweep.run(db, settings)
    logs.info("sweep run by hand", complete=swept.complete)
    return {"assigned": swept.assigned, "waiting": swept.waiting, "complete": swept.complete,
            "incomplete": ", ".join(swept.incomplete), "payments_checked": swept.payments_checked,
            "payments_recorded": swept.payments_recorded, "members_added": swept.members_added,
            "spaces_opened": swept.spaces_opened, "calls_ended": swept.calls_ended,
            "events_delivered": swept.events_delivered}


def ref_or_uuid(value: str) -> str:
    return as_uuid(value) or value
