"""The support team's operations: look at the pool, add and disable links, assign by hand,
cancel bookings, and see whether the pool will be enough. Every write goes through the same
constraints as the functions, so a mistake is refused, not stored. The command line that
calls these (arguments, tables) is cli.py."""
from __future__ import annotations

import re
import time as clock
from datetime import date, datetime, time

from . import allocation, meet_api
from .config import Settings
from .db import Database
from .errors import BadRequest, BookingCancelled, BookingNotFound, LinkNotFound, MeetUnavailable

NEARLY_FULL = 0.8


def _uuid(value: str, what: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value or ""):
        raise BadRequest(f"{what} must be a UUID, got {value!r}")
    return value.lower()


def _link(tx, ref: str) -> dict:
    link = tx.one("find_link", ref=ref)
    if link is None:
        raise LinkNotFound(f"no link in the pool with id or URL {ref!r}")
    return link


def _link_row(link: dict, handed_over: allocation.SweepResult | None = None) -> dict:
    row = {"id": str(link["id"]), "meeting_link": link["meeting_link"], "enabled": link["is_available"]}
    if handed_over is not None:
        row["waiting_bookings_assigned"] = handed_over.assigned
    return row


def booking_by_order(db: Database, order_id: str) -> dict:
    booking = db.one("booking_by_order_id", order_id=order_id)
    if booking is None:
        raise BookingNotFound(f"no booking with order_id {order_id!r}")
    return booking


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


def add_link(db: Database, settings: Settings, url: str, notes: str | None) -> dict:
    """Adds a link (a duplicate or a non-https URL is refused) and hands it to waiting bookings."""
    link = db.one("add_link", meeting_link=url, notes=notes)
    return _link_row(link, allocation.hand_over(db, budget_s=settings.sweep_time_budget_s))


def enable_link(db: Database, settings: Settings, ref: str) -> dict:
    link = db.run(lambda tx: tx.one("set_link_available", link_id=str(_link(tx, ref)["id"]), available=True))
    return _link_row(link, allocation.hand_over(db, budget_s=settings.sweep_time_budget_s))


def disable_link(db: Database, ref: str) -> dict:
    """Disables the link and lists every upcoming session it still holds (support moves
    them): the UPDATE waits for an assignment to it in flight, which the trigger makes
    hold the link FOR SHARE, so none can slip in unlisted."""
    def work(tx):
        link = _link(tx, ref)
        tx.one("set_link_available", link_id=str(link["id"]), available=False)
        return link, tx.rows("upcoming_holds_of_link", link_id=str(link["id"]))
    link, holds = db.run(work)
    sessions = [{"booking_id": str(h["booking_id"]), "order_id": h["order_id"], "starts_at": h["starts_at"],
                 "ends_at": h["ends_at"]} for h in holds]
    return {**_link_row({**link, "is_available": False}), "upcoming_sessions": sessions}


def create_links(db: Database, settings: Settings, count: int) -> tuple[list[dict], str | None]:
    """Grows the pool with `count` spaces created through the Meet API (owned by the app, so
    the sweep can end their calls), then hands them to waiting bookings. Stops at the first
    failure: returns the links made and why it stopped (None when all were made).
    MeetCredentialsError when the credentials are missing or refused."""
    if not 1 <= count <= 50:
        raise BadRequest("N must be between 1 and 50 (the Meet API creates at most 10 spaces a minute per user)")
    client = meet_api.client(settings)
    made, stopped = [], None
    for _ in range(count):
        try:
            space = client.create_space(clock.monotonic() + max(settings.meet_api_timeout_s, 5.0))
        except MeetUnavailable as exc:
            stopped = f"{exc} after {len(made)} of {count}; run it again in a minute for the rest"
            break
        made.append(db.one("add_api_link", meeting_link=space.meeting_uri, space_name=space.name,
                           meeting_code=space.meeting_code))
    handed = allocation.hand_over(db, budget_s=settings.sweep_time_budget_s) if made else None
    rows = [_link_row(link, handed) for link in made]
    return rows, stopped


def check_links(db: Database, settings: Settings) -> list[dict]:
    """For each shared link: whether the Meet API still knows it ("exists", "missing"), or
    why it cannot tell ("not ours": a code made by hand, which the app's scope cannot read;
    "not a Meet link")."""
    client = meet_api.client(settings)
    rows = []
    for link in db.rows("pool_links"):
        ref = link["space_name"] or _meet_code(link["meeting_link"])
        if ref is None:
            result = "not a Meet link"
        else:
            result = client.lookup(ref, clock.monotonic() + max(settings.meet_api_timeout_s, 5.0))
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
    rows = db.rows("free_links_for_slot", on_date=day.isoformat(),
                                     at_time=start.isoformat(), duration=duration)
    return [{"id": str(r["id"]), "meeting_link": r["meeting_link"]} for r in rows]


def waiting(db: Database, include_ended: bool) -> list[dict]:
    rows = db.rows("bookings_waiting_for_link", include_ended=include_ended)
    return [{**r, "id": str(r["id"])} for r in rows]


def assign_first_free(db: Database, booking_id: str) -> dict:
    booking_id = _uuid(booking_id, "booking id")
    a = allocation.assign(db, booking_id)
    return {"booking_id": booking_id, "meeting_link": a.meeting_link, "link_id": a.link_id,
            "already_assigned": a.already_assigned}


def assign_chosen(db: Database, settings: Settings, booking_id: str, ref: str) -> dict:
    """Gives the booking the chosen link (assign_link_by_hand_v1, sql/0007); a link it leaves
    is handed to waiting bookings as any release is. The constraints refuse a busy or
    disabled link and an unpaid booking (LinkConflict, from db.py)."""
    booking_id = _uuid(booking_id, "booking id")
    row = db.one("assign_link_by_hand", booking_id=booking_id, link=ref)
    outcome = row["outcome"]
    if outcome == "link_not_found":
        raise LinkNotFound(f"no link in the pool with id or URL {ref!r}")
    if outcome == "not_found":
        raise BookingNotFound(f"booking {booking_id} not found")
    if outcome == "cancelled":
        raise BookingCancelled(f"booking {booking_id} was cancelled by support; it gets no link")
    assigned = 0
    if row["released_from"] is not None:
        assigned = allocation.hand_over(db, allocation.Hold(row["released_from"], row["released_until"]),
                                        budget_s=settings.sweep_time_budget_s).assigned
    return {"booking_id": booking_id, "meeting_link": row["meeting_link"], "link_id": row["link_id"],
            "moved_from": row["previous_link"], "waiting_bookings_assigned": assigned}


def cancel(db: Database, settings: Settings, booking_id: str) -> dict:
    """Cancels the booking for good (cancel_booking_v1) and hands the link it held over."""
    booking_id = _uuid(booking_id, "booking id")
    row = db.one("cancel_booking", booking_id=booking_id)
    if row["outcome"] == "not_found":
        raise BookingNotFound(f"booking {booking_id} not found")
    assigned = 0
    if row["released_from"] is not None:
        assigned = allocation.hand_over(db, allocation.Hold(row["released_from"], row["released_until"]),
                                        budget_s=settings.sweep_time_budget_s).assigned
    return {"booking_id": booking_id, "released_link": row["released_link"],
            "waiting_bookings_assigned": assigned}
