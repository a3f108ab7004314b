"""The support team's commands: look at the pool, add and disable links, assign by hand,
cancel bookings, and see whether the pool will be enough. Every write goes through the
same constraints as the functions, so a mistake is refused, not stored."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timezone

from . import allocation
from .config import Settings
from .db import EXCLUSION_VIOLATION, Database, SqlError
from .errors import BadRequest, BookingCancelled, BookingNotFound, LinkConflict, LinkNotFound

NEARLY_FULL = 0.8


def add_commands(sub) -> None:
    pool = sub.add_parser("pool", help="pool status and capacity")
    pool_sub = pool.add_subparsers(dest="action", required=True)
    _json(pool_sub.add_parser("status", help="every link: enabled, in use now, next free time"))
    capacity = _json(pool_sub.add_parser("capacity", help="peak overlapping paid sessions per day vs pool size"))
    capacity.add_argument("--days", type=int, default=14)

    links = sub.add_parser("links", help="add, disable, enable, usage, free for a slot")
    links_sub = links.add_subparsers(dest="action", required=True)
    add = _json(links_sub.add_parser("add", help="add a link to the pool"))
    add.add_argument("url")
    add.add_argument("--notes", default=None)
    for action in ("disable", "enable"):
        p = _json(links_sub.add_parser(action, help=f"{action} a link (by id or URL)"))
        p.add_argument("link")
    _json(links_sub.add_parser("usage", help="bookings per link, total and upcoming"))
    free = _json(links_sub.add_parser("free", help="links free for a local date, time and duration"))
    free.add_argument("--date", required=True, help="YYYY-MM-DD, in the business time zone")
    free.add_argument("--time", required=True, help="HH:MM")
    free.add_argument("--duration", type=int, required=True, help="minutes")

    bookings = sub.add_parser("bookings", help="waiting bookings, manual assignment, cancellation")
    bookings_sub = bookings.add_subparsers(dest="action", required=True)
    waiting_cmd = _json(bookings_sub.add_parser(
        "waiting", help="paid bookings without a link whose session has not ended"))
    waiting_cmd.add_argument("--all", action="store_true", help="include sessions that have ended")
    assign = _json(bookings_sub.add_parser("assign", help="give a booking a link (chosen or first free)"))
    assign.add_argument("booking_id")
    assign.add_argument("--link", default=None, help="link id or URL (default: the first free one)")
    cancel = _json(bookings_sub.add_parser("cancel", help="cancel a booking and release its link"))
    cancel.add_argument("booking_id")


def _json(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args, settings: Settings) -> int:
    db = Database(settings)
    try:
        handler = HANDLERS[(args.command, args.action)]
        rows, title = handler(db, args, settings)
        if args.json:
            print(json.dumps(rows, indent=2, default=_plain))
        else:
            if title:
                print(title)
            print(table(rows))
        return 0
    finally:
        db.close()


def _plain(value):
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    # A list in a row (sessions a disabled link holds) is printed by its command, not here.
    heads = [h for h, v in rows[0].items() if not isinstance(v, list)]
    cells = [[_cell(r[h]) for h in heads] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
    return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _plain(value)


def _uuid(value: str, what: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value or ""):
        raise BadRequest(f"{what} must be a UUID, got {value!r}")
    return value.lower()


def _link(tx, ref: str) -> dict:
    link = tx.one("find_link", ref=ref)
    if link is None:
        raise LinkNotFound(f"no link in the pool with id or URL {ref!r}")
    return link


def booking_by_order(db: Database, order_id: str) -> dict:
    booking = db.run(lambda tx: tx.one("booking_by_order_id", order_id=order_id))
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


def pool_status(db, args, settings):
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
    rows = db.run(work)
    enabled = sum(r["enabled"] for r in rows)
    busy = sum(r["in_use_now"] for r in rows)
    title = f"{len(rows)} links: {enabled} enabled, {busy} in use now, {len(rows) - enabled} disabled"
    return rows, title


def capacity(db, args, settings):
    if not 1 <= args.days <= 366:
        raise BadRequest("--days must be between 1 and 366")
    rows = []
    for day in db.run(lambda tx: tx.rows("capacity_by_day", days=args.days)):
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
    return rows, f"Peak concurrent paid sessions for the next {args.days} days"


def link_add(db, args, settings):
    try:
        link = db.run(lambda tx: tx.one("add_link", meeting_link=args.url, notes=args.notes))
    except SqlError as error:
        if error.sqlstate == "23505":
            raise LinkConflict(f"{args.url} is already in the pool") from None
        if error.sqlstate == "23514":
            raise BadRequest(f"{args.url!r} is not an https:// URL") from None
        raise
    swept = allocation.hand_over(db, budget_s=settings.sweep_time_budget_s)
    return [_link_row(link, swept)], "Link added"


def _link_row(link, swept=None):
    row = {"id": str(link["id"]), "meeting_link": link["meeting_link"], "enabled": link["is_available"]}
    if swept is not None:
        row["waiting_bookings_assigned"] = swept.assigned
    return row


def link_enable(db, args, settings, available=True):
    def work(tx):
        link = _link(tx, args.link)
        return tx.one("set_link_available", link_id=str(link["id"]), available=available)
    link = db.run(work)
    swept = allocation.hand_over(db, budget_s=settings.sweep_time_budget_s) if available else None
    return [_link_row(link, swept)], f"Link {'enabled' if available else 'disabled'}"


def link_disable(db, args, settings):
    """Disables the link and lists every upcoming session it still holds (support moves
    them): the UPDATE waits for an assignment to it in flight, which the trigger makes
    hold the link FOR SHARE, so none can slip in unlisted."""
    def work(tx):
        link = _link(tx, args.link)
        tx.one("set_link_available", link_id=str(link["id"]), available=False)
        return link, tx.rows("upcoming_holds_of_link", link_id=str(link["id"]))
    link, holds = db.run(work)
    sessions = [{"booking_id": str(h["booking_id"]), "order_id": h["order_id"], "starts_at": h["starts_at"],
                 "ends_at": h["ends_at"]} for h in holds]
    title = "Link disabled"
    if sessions:
        title += (f"; {len(sessions)} upcoming session(s) still hold it: move each with "
                  "`meeting-links bookings assign BOOKING --link OTHER`\n" + table(sessions) + "\n")
    else:
        title += "; no upcoming session holds it"
    row = {**_link_row({**link, "is_available": False}), "upcoming_sessions": sessions}
    return [row], title


def link_usage(db, args, settings):
    rows = db.run(lambda tx: tx.rows("link_usage"))
    return [{**r, "id": str(r["id"])} for r in rows], "Bookings per link"


def free_links(db, args, settings):
    try:
        on_date = date.fromisoformat(args.date)
        at_time = time.fromisoformat(args.time)
    except ValueError:
        raise BadRequest("--date must be YYYY-MM-DD and --time HH:MM") from None
    if not 1 <= args.duration <= 1440:
        raise BadRequest("--duration must be between 1 and 1440 minutes")
    rows = db.run(lambda tx: tx.rows("free_links_for_slot", on_date=on_date.isoformat(),
                                     at_time=at_time.isoformat(), duration=args.duration))
    return ([{"id": str(r["id"]), "meeting_link": r["meeting_link"]} for r in rows],
            f"Links free on {on_date} at {at_time:%H:%M} for {args.duration} min")


def waiting(db, args, settings):
    rows = db.run(lambda tx: tx.rows("bookings_waiting_for_link", include_ended=args.all))
    which = "" if args.all else " whose session has not ended"
    return [{**r, "id": str(r["id"])} for r in rows], f"{len(rows)} paid booking(s) without a link{which}"


def assign_by_hand(db, args, settings):
    booking_id = _uuid(args.booking_id, "booking id")
    if args.link is None:
        a = allocation.assign(db, booking_id)
        return [{"booking_id": booking_id, "meeting_link": a.meeting_link, "link_id": a.link_id,
                 "already_assigned": a.already_assigned}], "Assigned"

    def work(tx):
        link = _link(tx, args.link)
        before = tx.one("lock_booking", booking_id=booking_id)
        if before is None:
            raise BookingNotFound(f"booking {booking_id} not found")
        if before["cancelled_by_admin_at"] is not None:
            raise BookingCancelled(f"booking {booking_id} was cancelled by support; it gets no link")
        tx.one("set_link_by_hand", booking_id=booking_id, link_id=str(link["id"]))
        return link, before
    try:
        link, before = db.run(work)
    except SqlError as error:
        raise LinkConflict(_refusal(error, args.link)) from None
    moved = before["meeting_link_id"] is not None and str(before["meeting_link_id"]) != str(link["id"])
    assigned = 0
    if moved:
        # The link it left is free for that range now: offer it as any release does.
        assigned = allocation.hand_over(db, allocation.Hold(before["hold_from"], before["hold_until"]),
                                        budget_s=settings.sweep_time_budget_s).assigned
    return [{"booking_id": booking_id, "meeting_link": link["meeting_link"], "link_id": str(link["id"]),
             "moved_from": before["meeting_link"] if moved else None,
             "waiting_bookings_assigned": assigned}], "Assigned by hand"


def _refusal(error: SqlError, link: str) -> str:
    if error.sqlstate == EXCLUSION_VIOLATION:
        return f"refused: {link} is already used by an overlapping booking at that time"
    if error.constraint == "bookings_link_requires_active_booking":
        return "refused: only a paid, confirmed booking can hold a link"
    if error.constraint == "bookings_link_must_be_enabled":
        return f"refused: {link} is disabled"
    return f"refused by the database: {error}"


def cancel(db, args, settings):
    booking_id = _uuid(args.booking_id, "booking id")

    def work(tx):
        booking = tx.one("lock_booking", booking_id=booking_id)
        if booking is None:
            raise BookingNotFound(f"booking {booking_id} not found")
        tx.rows("cancel_booking", booking_id=booking_id)
        return booking
    booking = db.run(work)
    swept = None
    if booking["meeting_link_id"] is not None:
        swept = allocation.hand_over(db, allocation.Hold(booking["hold_from"], booking["hold_until"]),
                                     budget_s=settings.sweep_time_budget_s)
    return [{"booking_id": booking_id, "released_link": booking["meeting_link"],
             "waiting_bookings_assigned": swept.assigned if swept else 0}], "Booking cancelled"


HANDLERS = {
    ("pool", "status"): pool_status,
    ("pool", "capacity"): capacity,
    ("links", "add"): link_add,
    ("links", "disable"): link_disable,
    ("links", "enable"): link_enable,
    ("links", "usage"): link_usage,
    ("links", "free"): free_links,
    ("bookings", "waiting"): waiting,
    ("bookings", "assign"): assign_by_hand,
    ("bookings", "cancel"): cancel,
}
