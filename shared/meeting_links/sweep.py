"""The sweep ({"sweep": true}, every 10 minutes once deployed): catches up on whatever was
left behind, in stages, each with its own share of SWEEP_TIME_BUDGET_S so that a slow one
never starves the others (a stage also gets what the stages before it left unused):

    payments   30 %  ask Midtrans's GET Status API about payments still open some minutes
                     after the booking was made (a notification lost after Midtrans's last
                     retry, or one the webhook refused), and record what changed
    waiting    30 %  give a link to every paid booking still without one
    spaces     10 %  the private spaces' members and access before their sessions
    calls      10 %  end the calls of sessions that are over
    events     20 %  deliver the link events the app has not received yet

Nothing one booking, order, space or event does stops the others: a failure marks that item
(it goes to the back, with its own backoff) and the stage goes on with the next. Everything
is safe beside live traffic and safe to repeat. A sweep that could not finish a stage says
which (and writes the `sweep_incomplete` alert line).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from . import link_events, link_source, logs, spaces
from .allocation import Served
from .config import Settings
from .db import Database
from .errors import (
    AmountMismatch,
    BadRequest,
    BookingNotFound,
    BookingNotPaid,
    DatabaseUnavailable,
    MeetingLinksError,
    PaymentGatewayUnavailable,
    PaymentNotFound,
    PoolExhausted,
)
from .midtrans import status_api
from .notifications import Notification, Outcome, process, record
from .waiting import START, Position, bookings

SHARES = (("payments", 0.30), ("waiting", 0.30), ("spaces", 0.10), ("calls", 0.10), ("events", 0.20))
_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class Swept:
    assigned: int = 0            # links this sweep gave (not ones another caller gave meanwhile)
    waiting: int = 0             # bookings it tried that still wait for a person
    payments_checked: int = 0
    payments_recorded: int = 0
    members_added: int = 0
    spaces_opened: int = 0
    calls_ended: int = 0
    events_delivered: int = 0
    incomplete: tuple[str, ...] = field(default=())  # the stages that ran out of time or stopped

    @property
    def complete(self) -> bool:
        return not self.incomplete


def check_open_payments(db: Database, settings: Settings, deadline: float) -> tuple[int, int, bool]:
    """Asks Midtrans about bookings whose payment is still open some minutes after they were
    made (at most RECONCILE_MAX_CALLS, least recently asked first), by their last transaction
    id where one is known, and records what changed as the status API's. A payment whose check
    fails is marked asked all the same (it goes to the back of the queue); three failures in a
    row end the round (Midtrans is down). Returns (asked, recorded, complete)."""
    if not settings.midtrans_server_key or not settings.reconcile_max_calls:
        return 0, 0, True
    open_payments = db.rows(
        "payments_to_check", after_minutes=settings.reconcile_after_minutes,
        window_hours=settings.reconcile_window_hours, max_calls=settings.reconcile_max_calls)
    asked = recorded = failures = 0
    for row in open_payments:
        if time.monotonic() > deadline:
            return asked, recorded, False
        report = None
        try:
            report = status_api.transaction_status(
                settings, order_id=row["order_id"], transaction_id=row["last_transaction_id"],
                payment_type=row["last_payment_type"],
                deadline=min(deadline, time.monotonic() + settings.midtrans_api_timeout_s))
            failures = 0
        except PaymentNotFound:
            failures = 0  # no payment started yet
        except PaymentGatewayUnavailable as exc:
            failures += 1
            logs.warning("Midtrans status API failed for this payment; it is asked again later",
                         order_id=row["order_id"], detail=str(exc))
        asked += 1
        db.rows("mark_payment_checked", booking_id=str(row["id"]))
        if failures >= _CONSECUTIVE_FAILURES:
            return asked, recorded, False
        if report is None:
            continue
        try:
            n = Notification.from_report(report)
            done = record(db, n, confirmed=True)
            if done.outcome is Outcome.APPLIED:
                process(db, settings, done, lambda booking_id, _: link_source.link_or_wait(db, settings, booking_id))
                recorded += 1
        except (AmountMismatch, BadRequest):
            continue  # recorded as rejected, or not understood: logged
    if asked:
        logs.info("open payments checked with Midtrans", asked=asked, recorded=recorded)
    return asked, recorded, True


def serve_waiting(db: Database, settings: Settings, deadline: float) -> Served:
    """Tries every waiting booking with the link source configured. A sweep that runs out of
    time records where it stopped and the next one goes on from there (then wraps around), so
    bookings behind a long queue of ones that cannot be placed are still reached. A booking
    that cannot be placed for any other reason is skipped, logged, and tried next time."""
    point = db.one("sweep_resume_point")
    resume = Position(point["paid_at"], str(point["id"])) if point and point["paid_at"] else None
    given, still_waiting, last = [], 0, None
    walks = [(resume, None), (START, resume)] if resume else [(START, None)]
    for after, until in walks:
        for position in bookings(db, after=after, until=until):
            if time.monotonic() > deadline:
                stop = last or resume
                db.rows("set_sweep_resume_point", paid_at=stop and stop.paid_at, booking_id=stop and stop.id)
                return Served(tuple(given), still_waiting, False)
            last = position
            try:
                link = link_source.give_link(db, settings, position.id)
            except PoolExhausted:
                still_waiting += 1
                continue
            except (BookingNotFound, BookingNotPaid):
                continue  # changed since it was listed: no longer waiting
            except DatabaseUnavailable:
                raise
            except MeetingLinksError as exc:
                logs.warning("a waiting booking could not be placed; the next sweep tries again",
                             booking_id=position.id, error=type(exc).__name__, detail=str(exc))
                continue
            if not link.already_assigned:
                given.append(link)
    db.rows("set_sweep_resume_point", paid_at=None, booking_id=None)
    logs.info("sweep of waiting bookings", assigned=len(given), still_waiting=still_waiting)
    return Served(tuple(given), still_waiting, True)


def run(db: Database, settings: Settings) -> Swept:
    start = time.monotonic()
    allotted, incomplete, results = 0.0, [], {}
    for name, share in SHARES:
        # Deadlines add up: a stage gets its share plus what the stages before it left unused,
        # and can never take a later stage's share.
        allotted += share * settings.sweep_time_budget_s
        deadline = start + allotted
        if name == "payments":
            *results[name], done = check_open_payments(db, settings, deadline)
        elif name == "waiting":
            served = serve_waiting(db, settings, deadline)
            results[name], done = (served.assigned, served.waiting), served.complete
        elif name == "spaces":
            tended = spaces.tend(db, settings, deadline)
            results[name], done = (tended.members_added, tended.opened), tended.complete
        elif name == "calls":
            ended, done = spaces.end_finished_calls(db, settings, deadline)
            results[name] = (ended,)
        else:
            delivered = link_events.deliver(db, settings, deadline)
            results[name], done = (delivered.count,), delivered.complete
        if not done:
            incomplete.append(name)
    swept = Swept(assigned=results["waiting"][0], waiting=results["waiting"][1],
                  payments_checked=results["payments"][0], payments_recorded=results["payments"][1],
                  members_added=results["spaces"][0], spaces_opened=results["spaces"][1],
                  calls_ended=results["calls"][0], events_delivered=results["events"][0], incomplete=tuple(incomplete))
    fields = dict(assigned=swept.assigned, still_waiting=swept.waiting, payments_checked=swept.payments_checked,
                  calls_ended=swept.calls_ended, events_delivered=swept.events_delivered,
                  seconds=round(time.monotonic() - start, 3))
    if incomplete:
        logs.alert("sweep_incomplete", "sweep could not finish every stage; the next sweep goes on",
                   level=logging.WARNING, incomplete=incomplete, **fields)
    logs.alert("sweep_ran", "sweep finished", level=logging.INFO, **fields)
    return swept
