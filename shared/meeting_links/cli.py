"""meeting-links: the command line for developers and the support team.

  meeting-links migrate                 apply sql/ migrations and the pool settings
  meeting-links local                   migrate and serve both functions locally
  meeting-links sign ORDER_ID ...       print (or --send) a correctly signed notification
  meeting-links pool|links|bookings|... the admin commands (see --help)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time as clock
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import requests

from . import admin, link_events, local_stack, logs, migrations, signature
from .config import from_environment
from .db import Database
from .errors import MeetingLinksError, MeetUnavailable, PoolExhausted

STATUS_CODES = {"settlement": "200", "capture": "200", "pending": "201", "authorize": "201",
                "deny": "202", "cancel": "202", "expire": "202", "failure": "202",
                "refund": "200", "partial_refund": "200", "chargeback": "200",
                "partial_chargeback": "200"}


def _notification(args, settings) -> dict:
    amount = args.amount
    if amount is None:
        db = Database(settings)
        try:
            booking = admin.booking_by_order(db, args.order_id)
        finally:
            db.close()
        amount = f"{booking['price']:.2f}"
    body = {
        "transaction_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "transaction_status": args.status,
        "transaction_id": args.transaction_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"midtrans:{args.order_id}")),
        "status_message": "midtrans payment notification",
        "status_code": args.status_code or STATUS_CODES.get(args.status, "200"),
        "payment_type": "bank_transfer",
        "order_id": args.order_id,
        "merchant_id": "LOCAL",
        "gross_amount": amount,
        "currency": "IDR",
    }
    if args.fraud_status:
        body["fraud_status"] = args.fraud_status
    return signature.signed(body, settings.midtrans_server_key)


def cmd_sign(args, settings) -> int:
    if not settings.midtrans_server_key:
        # The key `meeting-links local` serves with when none is set; never a real one.
        print("MIDTRANS_SERVER_KEY is not set: signing with the local development key", file=sys.stderr)
        settings = replace(settings, midtrans_server_key=local_stack.LOCAL_SERVER_KEY)
    body = _notification(args, settings)
    if not args.send:
        print(json.dumps(body, indent=2))
        return 0
    try:
        response = requests.post(args.send, json=body, timeout=15)
    except requests.RequestException as exc:
        print(f"could not reach {args.send}: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code}")
    print(response.text)
    return 0 if response.ok else 1


def _json_option(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def add_admin_commands(sub) -> None:
    pool = sub.add_parser("pool", help="pool status and capacity")
    pool_sub = pool.add_subparsers(dest="action", required=True)
    _json_option(pool_sub.add_parser("status", help="every link: enabled, in use now, next free time"))
    capacity = _json_option(pool_sub.add_parser(
        "capacity", help="peak overlapping paid sessions per day vs pool size"))
    capacity.add_argument("--days", type=int, default=14)
    capacity.add_argument("--from", dest="start", default=None, metavar="DATE",
                          help="first day, YYYY-MM-DD in the business time zone (default: today)")

    links = sub.add_parser("links", help="add, disable, enable, usage, free for a slot")
    links_sub = links.add_subparsers(dest="action", required=True)
    add = _json_option(links_sub.add_parser("add", help="add a link to the pool"))
    add.add_argument("url")
    add.add_argument("--notes", default=None)
    for action in ("disable", "enable"):
        p = _json_option(links_sub.add_parser(action, help=f"{action} a link (by id or URL)"))
        p.add_argument("link")
    create = _json_option(links_sub.add_parser(
        "create", help="grow the pool with N spaces created through the Meet API (needs MEET_CREDENTIALS)"))
    create.add_argument("count", type=int, metavar="N")
    _json_option(links_sub.add_parser("check", help="ask the Meet API whether each pool link still exists"))
    _json_option(links_sub.add_parser("usage", help="bookings per link, total and upcoming"))
    free = _json_option(links_sub.add_parser("free", help="links free for a local date, time and duration"))
    free.add_argument("--date", required=True, help="YYYY-MM-DD, in the business time zone")
    free.add_argument("--time", required=True, help="HH:MM")
    free.add_argument("--duration", type=int, required=True, help="minutes")

    spaces = sub.add_parser("spaces", help="private Meet spaces per booking, with their state")
    spaces_sub = spaces.add_subparsers(dest="action")
    spaces.set_defaults(action="list")
    _json_option(spaces)
    _json_option(spaces_sub.add_parser("list", help="(the default)"))

    bookings = sub.add_parser("bookings", help="waiting bookings, manual assignment, cancellation")
    bookings_sub = bookings.add_subparsers(dest="action", required=True)
    waiting_cmd = _json_option(bookings_sub.add_parser(
        "waiting", help="paid bookings without a link whose session has not ended"))
    waiting_cmd.add_argument("--all", action="store_true", help="include sessions that have ended")
    assign = _json_option(bookings_sub.add_parser("assign", help="give a booking a link (chosen or first free)"))
    assign.add_argument("booking_id")
    assign.add_argument("--link", default=None, help="link id or URL (default: the first free one)")
    cancel = _json_option(bookings_sub.add_parser("cancel", help="cancel a booking and release its link"))
    cancel.add_argument("booking_id")


# Each admin command: (args, db, settings) -> (rows, title).
def _pool_status(args, db, settings):
    rows = admin.pool_status(db)
    enabled = sum(r["enabled"] for r in rows)
    busy = sum(r["in_use_now"] for r in rows)
    return rows, f"{len(rows)} links: {enabled} enabled, {busy} in use now, {len(rows) - enabled} disabled"


def _disable(args, db, settings):
    row = admin.disable_link(db, args.link)
    sessions = row["upcoming_sessions"]
    title = "Link disabled"
    if sessions:
        title += (f"; {len(sessions)} upcoming session(s) still hold it: move each with "
                  "`meeting-links bookings assign BOOKING --link OTHER`\n" + table(sessions) + "\n")
    else:
        title += "; no upcoming session holds it"
    return [row], title


def _create(args, db, settings):
    rows, stopped = admin.create_links(db, settings, args.count)
    if stopped and not rows:
        raise MeetUnavailable(stopped)
    if stopped:
        print(f"warning: stopped: {stopped}", file=sys.stderr)
    return rows, f"{len(rows)} link(s) created through the Meet API"


def _check(args, db, settings):
    rows = admin.check_links(db, settings)
    unchecked = sum(r["api_says"] not in ("exists", "missing") for r in rows)
    missing = sum(r["api_says"] == "missing" for r in rows)
    title = f"{len(rows)} links: {missing} missing, {unchecked} the API cannot check"
    if unchecked:
        title += " (made by hand, not by this app: open them in a browser to check)"
    return rows, title


def _waiting(args, db, settings):
    rows = admin.waiting(db, args.all)
    which = "" if args.all else " whose session has not ended"
    return rows, f"{len(rows)} paid booking(s) without a link{which}"


def _assign(args, db, settings):
    if args.link is None:
        return [admin.assign_first_free(db, args.booking_id)], "Assigned"
    return [admin.assign_chosen(db, settings, args.booking_id, args.link)], "Assigned by hand"


ADMIN_COMMANDS = {
    ("pool", "status"): _pool_status,
    ("pool", "capacity"): lambda args, db, s: (
        admin.capacity(db, args.days, args.start),
        f"Peak concurrent paid sessions for {args.days} days from {args.start or 'today'}"),
    ("links", "add"): lambda args, db, s: ([admin.add_link(db, s, args.url, args.notes)], "Link added"),
    ("links", "disable"): _disable,
    ("links", "enable"): lambda args, db, s: ([admin.enable_link(db, s, args.link)], "Link enabled"),
    ("links", "create"): _create,
    ("links", "check"): _check,
    ("links", "usage"): lambda args, db, s: (admin.link_usage(db), "Bookings per link"),
    ("spaces", "list"): lambda args, db, s: (admin.private_spaces(db), "Private Meet spaces, newest first"),
    ("links", "free"): lambda args, db, s: (
        admin.free_links(db, args.date, args.time, args.duration),
        f"Links free on {args.date} at {args.time} for {args.duration} min"),
    ("bookings", "waiting"): _waiting,
    ("bookings", "assign"): _assign,
    ("bookings", "cancel"): lambda args, db, s: ([admin.cancel(db, s, args.booking_id)], "Booking cancelled"),
}


_zone: ZoneInfo | None = None  # the business time zone, for times in tables


def run_admin(args, settings) -> int:
    global _zone
    db = Database(settings)
    try:
        rows, title = ADMIN_COMMANDS[(args.command, args.action)](args, db, settings)
        # A command-line process ends here: deliver what it changed now, not in the background.
        link_events.deliver(db, settings, clock.monotonic() + 5)
        if args.json:
            print(json.dumps(rows, indent=2, default=_plain))
        else:
            # The zone the database reads scheduled times in (pool_settings), named in every time.
            _zone = ZoneInfo(db.one("business_time_zone")["time_zone"])
            if title:
                print(title)
            print(table(rows))
        return 0
    finally:
        db.close()


def _when(value) -> str:
    if not isinstance(value, datetime):
        return str(value)
    zone = _zone or ZoneInfo(from_environment().business_time_zone)
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or zone.key)


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
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return _when(value)
    return _plain(value)


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"error: {name} must be a port number, got {raw!r}")
    return int(raw)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meeting-links", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="also show INFO log lines (on stderr)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply the migrations in sql/ and the pool settings")

    local = sub.add_parser("local", help="create the database, migrate, serve both functions")
    local.add_argument("--webhook-port", type=int, default=_port("WEBHOOK_PORT", 8080),
                       help="default: WEBHOOK_PORT, else 8080")
    local.add_argument("--assign-port", type=int, default=_port("ASSIGN_PORT", 8081),
                       help="default: ASSIGN_PORT, else 8081")

    sign = sub.add_parser("sign", help="a correctly signed Midtrans notification for an order")
    sign.add_argument("order_id")
    sign.add_argument("--status", default="settlement", help="transaction_status (default settlement)")
    sign.add_argument("--fraud-status", default=None, help="fraud_status, e.g. accept or challenge")
    sign.add_argument("--amount", default=None, help="gross_amount as sent (default: the booking's price)")
    sign.add_argument("--status-code", default=None, help="status_code (default: Midtrans's for the status)")
    sign.add_argument("--transaction-id", default=None)
    sign.add_argument("--send", metavar="URL", default=None, help="POST it to this webhook URL")

    login = sub.add_parser("meet-login", help="get the Meet owner account's refresh token once (opens a URL)")
    login.add_argument("--client-secrets", required=True, metavar="FILE",
                       help="the OAuth client JSON of a Desktop app client, from the Cloud console")
    login.add_argument("--out", required=True, metavar="FILE",
                       help="where to write the authorized-user JSON for MEET_CREDENTIALS (mode 0600)")
    login.add_argument("--port", type=int, default=0, help="loopback port for the redirect (default: any)")

    add_admin_commands(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    # Tables on stdout, warnings and errors on stderr; INFO only when asked for.
    ours = logging.getLogger("meeting_links")
    previous = ours.level
    logs.setup(logging.INFO if args.verbose else logging.WARNING)
    try:
        return _run(args)
    finally:
        ours.setLevel(previous)  # main() also runs in-process (tests)


def _run(args) -> int:
    try:
        settings = from_environment()
        if args.command == "migrate":
            migrations.migrate(settings)
            return 0
        if args.command == "local":
            return local_stack.run(args.webhook_port, args.assign_port)
        if args.command == "sign":
            return cmd_sign(args, settings)
        if args.command == "meet-login":
            from . import meet_login
            meet_login.login(args.client_secrets, args.out, args.port, show=lambda m: print(m, file=sys.stderr))
            print(f"wrote {args.out}; store it: gcloud secrets versions add MEET_SECRET --data-file={args.out}",
                  file=sys.stderr)
            return 0
        return run_admin(args, settings)
    except PoolExhausted as exc:
        # The exception's own message is the customer's text; support needs what to do.
        print(f"error: no link is free for booking {exc.booking_id} at {_when(exc.starts_at)}–{_when(exc.ends_at)}: "
              "every enabled link is busy then. Add one (`links add`, `links create`), enable one, or "
              "move a booking to another link (`bookings assign ID --link`)", file=sys.stderr)
        return 2
    except (MeetingLinksError, migrations.MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
