"""meeting-links: the command line for developers and the support team.

Every booking is named by its order id or its booking id. Output is a table (times in the
business time zone), or JSON with --json. Exit codes: 0 done; 2 bad arguments or input;
3 not found; 4 refused by the rules (a conflict, an unpaid booking, a full pool); 5 a
service unavailable (try again); 6 misconfigured; 1 anything else.
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
from datetime import UTC, datetime
from importlib import metadata
from zoneinfo import ZoneInfo

from .. import config, link_events, logs
from ..db import Database, migrations, schema
from ..errors import (
    BadRequest,
    ConfigurationError,
    MeetingLinksError,
    MeetUnavailable,
    NotFound,
    PoolExhausted,
    Refused,
    TransientError,
)
from ..midtrans import formats, signature
from ..web import outbound
from . import admin, local_stack
from .tables import Table, as_json

# First match wins: subclasses before their bases.
EXIT_CODES = ((BadRequest, 2), (NotFound, 3), (Refused, 4), (TransientError, 5), (ConfigurationError, 6),
              (MeetingLinksError, 1))


def _version() -> str:
    try:
        return metadata.version("meeting-links")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---- commands: (args, db, settings) -> (rows, title) ----------------------------------------

def _one(title):
    return lambda row: ([row], title)


def _booking_show(args, db, s):
    row = admin.booking(db, args.booking)
    return [row], f"Booking {row['order_id']}"


def _create(args, db, s):
    row = admin.create_booking(db, when=f"{args.date} {args.time}", duration=args.duration, price=args.price,
                               order_id=args.order_id, expert_email=args.expert_email,
                               customer_email=args.customer_email)
    hint = (f"\nPay it: meeting-links sign {row['order_id']} --status settlement --send "
            f"http://127.0.0.1:{local_stack.port('WEBHOOK_PORT', 8080)}/")
    return [row], f"Booking {row['order_id']} created (pending payment){hint}"


def _move(args, db, s):
    row = admin.move_booking(db, s, args.booking, args.to, args.duration)
    if row["waiting"]:
        title = "Moved; no link is free at the new time: it waits for one (support has been told)"
    elif row["meeting_link"] == row["previous_link"]:
        title = "Moved; it keeps its link"
    else:
        title = "Moved; it has another link at the new time"
    return [row], title


def _pool_status(args, db, s):
    rows = admin.pool_status(db)
    enabled = sum(r["enabled"] for r in rows)
    busy = sum(r["in_use_now"] for r in rows)
    return rows, f"{len(rows)} links: {enabled} enabled, {busy} in use now, {len(rows) - enabled} disabled"


def _configure(args, db, s):
    row = admin.configure(db, args.time_zone, args.buffer_minutes, apply=not args.dry_run)
    verb = {"changed": "Changed", "unchanged": "Nothing to change", "would_change": "Would change (--dry-run)"}
    return [row], (f"{verb[row['outcome']]}: time zone {row['time_zone_before']} -> {row['time_zone']}, "
                   f"buffer {row['buffer_minutes_before']} -> {row['buffer_minutes']} min; "
                   f"{row['sessions_affected']} upcoming session(s) re-derived")


def _disable(args, db, s):
    row = admin.disable_link(db, args.link)
    sessions = row.pop("upcoming_sessions")
    title = "Link disabled"
    if sessions:
        title += (f"; {len(sessions)} upcoming session(s) still hold it: move each with "
                  "`meeting-links bookings assign ORDER_ID` (the first free link) or `--link OTHER`")
    else:
        title += "; no upcoming session holds it"
    return [{**row, "upcoming_sessions": sessions}], title


def _links_create(args, db, s):
    rows, stopped = admin.create_links(db, s, args.count)
    if stopped and not rows:
        raise MeetUnavailable(stopped)
    if stopped:
        print(f"warning: stopped: {stopped}", file=sys.stderr)
    return rows, f"{len(rows)} link(s) created through the Meet API"


def _check(args, db, s):
    rows = admin.check_links(db, s)
    unchecked = sum(r["api_says"] in ("not ours", "not a Meet link") for r in rows)
    bad = sum(r["api_says"] in ("missing", "moved") for r in rows)
    title = f"{len(rows)} links: {bad} missing or moved, {unchecked} the API cannot check"
    if unchecked:
        title += " (made by hand, not by this app: open them in a browser to check)"
    return rows, title


def _waiting(args, db, s):
    rows = admin.waiting(db, args.all)
    return rows, f"{len(rows)} paid booking(s) without a link{'' if args.all else ' whose session has not ended'}"


def _assign(args, db, s):
    row = admin.assign(db, s, args.booking, args.link)
    return [row], "Unchanged: it holds that link already" if row["unchanged"] else "Assigned"


def _tail(args, db, s):
    """Prints each new event and each delivery as it happens, until Ctrl-C."""
    after = max([r["id"] for r in db.rows("link_events", booking_id=None, limit=1)] or [0])
    since = db.one("now")["now"]
    table = Table(_zone(db))
    seen: dict[int, str] = {}
    print(f"watching link events after #{after} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            for r in db.rows("link_events_after", after=after, since=since):
                state = admin._event_row(r)["delivery"]
                if seen.get(r["id"]) != state:
                    seen[r["id"]] = state
                    print(f"#{r['id']} {r['type']:<17} {r['order_id'] or '-':<24} {state:<9} "
                          f"{table.when(r['created_at'])} {r['last_error'] or ''}".rstrip(), flush=True)
            clock.sleep(args.interval)
    except KeyboardInterrupt:
        return None, None


COMMANDS = {
    ("pool", "status"): _pool_status,
    ("pool", "capacity"): lambda a, db, s: (admin.capacity(db, a.days, a.start),
                                            f"Peak concurrent paid sessions for {a.days} days from {a.start or 'today'}"),
    ("pool", "configure"): _configure,
    ("links", "add"): lambda a, db, s: _one("Link added")(admin.add_link(db, s, a.url, a.notes, a.any_provider)),
    ("links", "remove"): lambda a, db, s: _one("Link removed")(admin.remove_link(db, a.link)),
    ("links", "disable"): _disable,
    ("links", "enable"): lambda a, db, s: _one("Link enabled")(admin.enable_link(db, s, a.link)),
    ("links", "create"): _links_create,
    ("links", "check"): _check,
    ("links", "usage"): lambda a, db, s: (admin.link_usage(db), "Bookings per link"),
    ("links", "free"): lambda a, db, s: (admin.free_links(db, a.date, a.time, a.duration),
                                         f"Links free on {a.date} at {a.time} for {a.duration} min"),
    ("spaces", "list"): lambda a, db, s: (admin.private_spaces(db), "Private Meet spaces, newest first"),
    ("bookings", "show"): _booking_show,
    ("bookings", "create"): _create,
    ("bookings", "move"): _move,
    ("bookings", "waiting"): _waiting,
    ("bookings", "assign"): _assign,
    ("bookings", "cancel"): lambda a, db, s: _one("Booking cancelled")(admin.cancel(db, s, a.booking)),
    ("events", "list"): lambda a, db, s: (admin.events(db, a.booking, a.limit), "Link events, newest first"),
    ("events", "show"): lambda a, db, s: _one("Link event")(admin.event(db, a.event)),
    ("events", "resend"): lambda a, db, s: _one("Link event sent again")(admin.resend(db, s, a.event)),
    ("events", "replay"): lambda a, db, s: _one("Link events due again")(admin.replay(db, a.since)),
    ("events", "resume"): lambda a, db, s: _one("Link events resumed")(admin.resume(db)),
    ("events", "tail"): _tail,
    ("sweep", None): lambda a, db, s: _one("Sweep")(admin.run_sweep(db, s)),
}
_SHOW = {("bookings", "show"), ("events", "show")}


def _zone(db: Database) -> ZoneInfo:
    return ZoneInfo(db.one("pool_settings")["time_zone"])


def run_command(args, settings) -> int:
    db = Database(settings)
    try:
        try:
            rows, title = COMMANDS[(args.command, getattr(args, "action", None))](args, db, settings)
        except PoolExhausted as exc:
            exc.zone = _zone(db)  # its times are told in the business time zone
            raise
        if rows is None:
            return 0
        # A command-line process ends here: deliver what it changed now, not in the background.
        link_events.deliver(db, settings, clock.monotonic() + 5)
        if args.json:
            print(as_json(rows[0] if (args.command, args.action) in _SHOW else rows))
            return 0
        table = Table(_zone(db))
        if title:
            print(title)
        if (args.command, getattr(args, "action", None)) in _SHOW or args.command == "sweep":
            print(table.record(rows[0]))
        else:
            nested = [(k, v) for r in rows for k, v in r.items() if isinstance(v, list) and v]
            print(table.render([{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows]))
            for key, items in nested:
                print(f"\n{key.replace('_', ' ')}:\n{table.render(items)}")
        return 0
    finally:
        db.close()


def cmd_sign(args, settings) -> int:
    if not settings.midtrans_server_key:
        # The key `meeting-links local` serves with when none is set; never a real one.
        print("MIDTRANS_SERVER_KEY is not set: signing with the local development key", file=sys.stderr)
        settings = replace(settings, midtrans_server_key=local_stack.LOCAL_SERVER_KEY)
    amount = args.amount
    if amount is None:
        db = Database(settings)
        try:
            amount = f"{admin.booking(db, args.order_id)['price']:.2f}"
        finally:
            db.close()
    body = {
        "transaction_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "transaction_status": args.status,
        "transaction_id": args.transaction_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"midtrans:{args.order_id}")),
        "status_message": "midtrans payment notification",
        "status_code": args.status_code or formats.status_codes_for(args.status)[0],
        "payment_type": args.payment_type,
        "order_id": args.order_id,
        "merchant_id": "LOCAL",
        "gross_amount": amount,
        "currency": "IDR",
    }
    if args.fraud_status:
        body["fraud_status"] = args.fraud_status
    body = signature.signed(body, settings.midtrans_server_key)
    if not args.send:
        print(json.dumps(body, indent=2))
        return 0
    try:
        answer = outbound.call("POST", args.send, deadline=clock.monotonic() + 15, body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    except outbound.Unreachable as exc:
        raise TransientError(f"could not reach {args.send}: {exc}") from None
    print(f"HTTP {answer.status}")
    print(answer.body.decode("utf-8", "replace"))
    return 0 if 200 <= answer.status < 300 else 1


def cmd_config_check(args) -> int:
    found = config.problems(os.environ, args.function)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        print("settings are good")
    return 6 if found else 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON (camelCase keys) instead of a table; errors as JSON on stderr")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show INFO log lines (on stderr)")
    p = argparse.ArgumentParser(prog="meeting-links", description=__doc__, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"meeting-links {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(parent, name, help, **kwargs):
        return parent.add_parser(name, help=help, parents=[common], **kwargs)

    command(sub, "migrate", "apply the migrations in sql/ (never changes the pool's settings)")
    local = command(sub, "local", "create the database, migrate, serve both functions (make run)")
    local.add_argument("--webhook-port", type=int, default=None, help="default: WEBHOOK_PORT, else 8080")
    local.add_argument("--assign-port", type=int, default=None, help="default: ASSIGN_PORT, else 8081")
    local.add_argument("--fake-meet", action="store_true",
                       help="private Meet spaces from a local stand-in for Google (MEET_FAKE_PORT, else 8083)")
    conf = command(sub, "config", "check the functions' settings in the environment")
    conf_sub = conf.add_subparsers(dest="action", required=True)
    check = command(conf_sub, "check", "every problem with the settings, one line each (exit 6 if any)")
    check.add_argument("--function", choices=config.FUNCTIONS, default=None,
                       help="also what this function cannot work without")
    command(sub, "schema", "print the current schema, as sql/schema.sql holds it")
    command(sub, "sweep", "run the sweep now, in this process (what the scheduler asks every 10 minutes)")

    sign = command(sub, "sign", "a correctly signed Midtrans notification for an order (printed, or --send)")
    sign.add_argument("order_id")
    sign.add_argument("--status", default="settlement", choices=formats.TRANSACTION_STATUSES,
                      help="transaction_status (default settlement)")
    sign.add_argument("--fraud-status", default=None, choices=("accept", "challenge", "deny"))
    sign.add_argument("--amount", default=None, help="gross_amount as sent (default: the booking's price)")
    sign.add_argument("--status-code", default=None, help="status_code (default: Midtrans's for the status)")
    sign.add_argument("--transaction-id", default=None)
    sign.add_argument("--payment-type", default="bank_transfer")
    sign.add_argument("--send", metavar="URL", default=None, help="POST it to this webhook URL")

    login = command(sub, "meet-login", "get the Meet owner account's refresh token once (opens a URL)")
    login.add_argument("--client-secrets", required=True, metavar="FILE",
                       help="the OAuth client JSON of a Desktop app client, from the Cloud console")
    login.add_argument("--out", required=True, metavar="FILE",
                       help="where to write the authorized-user JSON for MEET_CREDENTIALS (mode 0600)")
    login.add_argument("--port", type=int, default=0, help="loopback port for the redirect (default: any)")

    pool = command(sub, "pool", "pool status, capacity and settings")
    pool_sub = pool.add_subparsers(dest="action", required=True)
    command(pool_sub, "status", "every link: enabled, in use now, next free time")
    capacity = command(pool_sub, "capacity", "peak overlapping paid sessions per day vs pool size")
    capacity.add_argument("--days", type=int, default=14)
    capacity.add_argument("--from", dest="start", default=None, metavar="DATE",
                          help="first day, YYYY-MM-DD in the business time zone (default: today)")
    configure = command(pool_sub, "configure", "change the business time zone or the buffer after each session")
    configure.add_argument("--time-zone", default=None, help="e.g. Asia/Jakarta (default: as it is)")
    configure.add_argument("--buffer-minutes", type=int, default=None, help="minutes kept free after each session")
    configure.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")

    links = command(sub, "links", "add, remove, disable, enable, create, check, usage, free for a slot")
    links_sub = links.add_subparsers(dest="action", required=True)
    add = command(links_sub, "add", "add a Google Meet link to the pool (waiting bookings get it at once)")
    add.add_argument("url")
    add.add_argument("--notes", default=None)
    add.add_argument("--any-provider", action="store_true", help="accept a link that is not Google Meet")
    for action, text in (("remove", "remove a link added by mistake (one that never served a session)"),
                         ("disable", "disable a link (lists the upcoming sessions it holds)"),
                         ("enable", "enable a link (waiting bookings get it at once)")):
        command(links_sub, action, f"{text}; by id or URL").add_argument("link")
    create = command(links_sub, "create", "grow the pool with N spaces made through the Meet API")
    create.add_argument("count", type=int, metavar="N")
    command(links_sub, "check", "ask the Meet API whether each pool link still exists at its URL")
    command(links_sub, "usage", "bookings per link, total and upcoming")
    free = command(links_sub, "free", "links free for a local date, time and duration")
    free.add_argument("--date", required=True, help="YYYY-MM-DD, in the business time zone")
    free.add_argument("--time", required=True, help="HH:MM")
    free.add_argument("--duration", type=int, required=True, help="minutes")

    spaces = command(sub, "spaces", "private Meet spaces per booking, with their state")
    spaces_sub = spaces.add_subparsers(dest="action")
    spaces.set_defaults(action="list")
    command(spaces_sub, "list", "(the default)")

    bookings = command(sub, "bookings", "find, create, move, assign, cancel bookings (by order id or booking id)")
    bookings_sub = bookings.add_subparsers(dest="action", required=True)
    command(bookings_sub, "show", "a booking, its payment, its link and its people").add_argument("booking")
    new = command(bookings_sub, "create", "a booking to try things with (pending payment)")
    new.add_argument("--date", required=True, help="YYYY-MM-DD, in the business time zone")
    new.add_argument("--time", required=True, help="HH:MM")
    new.add_argument("--duration", type=int, default=60)
    new.add_argument("--price", default="100000")
    new.add_argument("--order-id", default=None, help="default: TEST-<random>")
    new.add_argument("--expert-email", default=None)
    new.add_argument("--customer-email", default=None)
    move = command(bookings_sub, "move", "reschedule a booking (its link follows, as for the app's UPDATE)")
    move.add_argument("booking")
    move.add_argument("--to", required=True, metavar="'YYYY-MM-DD HH:MM'", help="the new local start")
    move.add_argument("--duration", type=int, default=None, help="minutes (default: as it is)")
    waiting_cmd = command(bookings_sub, "waiting", "paid bookings without a link whose session has not ended")
    waiting_cmd.add_argument("--all", action="store_true", help="include sessions that have ended")
    assign = command(bookings_sub, "assign", "give a booking a link: the first free one, or --link")
    assign.add_argument("booking")
    assign.add_argument("--link", default=None, help="link id or URL (default: the first free enabled one)")
    command(bookings_sub, "cancel", "cancel a booking for good and release its link").add_argument("booking")

    ev = command(sub, "events", "link events sent to the app: list, show, resend, replay, resume, tail")
    ev_sub = ev.add_subparsers(dest="action", required=True)
    listing = command(ev_sub, "list", "the newest events with their delivery")
    listing.add_argument("--booking", default=None, help="one booking's (order id or booking id)")
    listing.add_argument("--limit", type=int, default=50)
    command(ev_sub, "show", "one event, with the JSON the app receives").add_argument("event")
    command(ev_sub, "resend", "send one event again now").add_argument("event")
    replay = command(ev_sub, "replay", "send every event since a time again (in order per booking)")
    replay.add_argument("--since", required=True)
    command(ev_sub, "resume", "send events again after the app answered 410 Gone")
    tail = command(ev_sub, "tail", "print each event and delivery as it happens, until Ctrl-C")
    tail.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    return p


def _exit_code(exc: Exception) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def _say_error(exc: Exception, as_json_output: bool) -> None:
    if isinstance(exc, PoolExhausted):
        table = Table(getattr(exc, "zone", None) or ZoneInfo("UTC"))
        # The customer's text is for the customer; support needs what to do.
        message = (f"no link is free for booking {exc.order_id or exc.booking_id} at "
                   f"{table.when(exc.starts_at)}-{table.when(exc.ends_at)}: every enabled link is busy then. "
                   "Add one (`links add`, `links create`), enable one, or move a booking to another link "
                   "(`bookings assign ORDER --link`)")
    else:
        message = str(exc)
    if as_json_output:
        print(json.dumps({"error": {"kind": type(exc).__name__, "message": message}}), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    args.verbose = getattr(args, "verbose", False)
    # Tables on stdout, warnings and errors on stderr; INFO only when asked for.
    ours = logging.getLogger("meeting_links")
    previous = ours.level
    logs.setup(logging.INFO if args.verbose else logging.WARNING, log_format="text")
    try:
        return _run(args)
    finally:
        ours.setLevel(previous)  # main() also runs in-process (tests)


def _run(args) -> int:
    try:
        if args.command == "config":
            return cmd_config_check(args)
        if args.command == "local":
            return local_stack.run(args.webhook_port, args.assign_port, fake_meet=args.fake_meet)
        settings = local_stack.resolve(config.from_environment())
        if args.command == "migrate":
            migrations.migrate(settings)
            return 0
        if args.command == "schema":
            print(schema.dump(settings), end="")
            return 0
        if args.command == "sign":
            return cmd_sign(args, settings)
        if args.command == "meet-login":
            from ..meet import login
            login.login(args.client_secrets, args.out, args.port, show=lambda m: print(m, file=sys.stderr))
            print(f"wrote {args.out}; store it: gcloud secrets versions add MEET_SECRET --data-file={args.out}",
                  file=sys.stderr)
            return 0
        return run_command(args, settings)
    except MeetingLinksError as exc:
        _say_error(exc, args.json)
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
