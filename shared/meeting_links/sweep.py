"""The sweep (POST {"sweep": true}, every 10 minutes once deployed) catches up on whatever
was left behind: payments whose notification never arrived, then paid bookings still
without a link; then it ends the Meet calls of sessions that are over, and delivers the
link events the app has not received yet. Everything it does is safe beside live traffic and safe to repeat."""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import allocation, link_events, logs, midtrans_api, payments, spaces
from .config import Settings
from .db import Database
from .errors import (
    AmountMismatch,
    BadRequest,
    BookingNotPaid,
    PaymentGatewayUnavailable,
    PaymentNotFound,
    PoolExhausted,
)
from .notifications import STATUS_API, Notification, process


@dataclass(frozen=True)
class Swept:
    assigned: int
    waiting: int
    complete: bool
    payments_checked: int
    payments_recorded: int
    calls_ended: int = 0
    events_delivered: int = 0

    def answer(self) -> dict:
        """assign_meeting_link's JSON answer to {"sweep": true}."""
        return {"success": True, "assigned": self.assigned, "waiting": self.waiting,
                "complete": self.complete, "paymentsChecked": self.payments_checked,
                "paymentsRecorded": self.payments_recorded, "callsEnded": self.calls_ended,
                "eventsDelivered": self.events_delivered}


def _assign_here(db: Database, settings: Settings):
    """The sweep runs inside assign_meeting_link: it assigns directly, not over HTTP."""
    def request_link(booking_id: str, order_id: str) -> dict:
        try:
            return spaces.give_link(db, settings, booking_id).answer()
        except PoolExhausted:
            return {"requiresManualAssignment": True}
        except BookingNotPaid:
            return {}
    return request_link


def check_open_payments(db: Database, settings: Settings, deadline: float) -> tuple[int, int]:
    """Asks Midtrans's GET Status API about bookings whose payment is still open some minutes
    after they were made (a notification may have been lost after Midtrans's last retry) and
    records what it reports through the same path as a notification, marked as coming from
    the status API. At most RECONCILE_MAX_CALLS calls; the first failing call ends the round
    and leaves the rest as they are. Returns (asked, recorded)."""
    if not settings.midtrans_server_key or not settings.reconcile_max_calls:
        return 0, 0
    open_payments = db.rows(
        "payments_to_check", after_minutes=settings.reconcile_after_minutes,
        window_hours=settings.reconcile_window_hours, max_calls=settings.reconcile_max_calls)
    asked = recorded = 0
    for row in open_payments:
        if time.monotonic() > deadline:
            break
        try:
            status = midtrans_api.transaction_status(settings, row["order_id"])
        except PaymentNotFound:
            status = None  # no payment started yet
        except PaymentGatewayUnavailable as exc:
            logs.warning("Midtrans status API failed; open payments are checked next sweep", detail=str(exc))
            break
        asked += 1
        db.rows("mark_payment_checked", booking_id=str(row["id"]))
        if status is None:
            continue
        try:
            n = Notification.from_body(status, source=STATUS_API)
        except BadRequest as exc:
            logs.warning("Midtrans status API answer not understood", order_id=row["order_id"], detail=str(exc))
            continue
        target = payments.target_for(n.transaction_status, n.fraud_status)
        if target is None or target.payment_status == row["payment_status"]:
            continue  # nothing new: no log row every sweep for a payment still pending
        try:
            process(db, settings, n, _assign_here(db, settings))
        except AmountMismatch:
            continue  # recorded as rejected and logged
        recorded += 1
    return asked, recorded


def run(db: Database, settings: Settings) -> Swept:
    deadline = time.monotonic() + settings.sweep_time_budget_s
    asked, recorded = check_open_payments(db, settings, deadline)
    waiting = allocation.sweep_waiting(db, budget_s=max(0.0, deadline - time.monotonic()),
                                       give=lambda db, booking_id: spaces.give_link(db, settings, booking_id))
    if asked:
        logs.info("open payments checked with Midtrans", asked=asked, recorded=recorded)
    ended = spaces.end_finished_calls(db, settings, deadline)
    delivered = link_events.deliver(db, settings, deadline)
    return Swept(waiting.assigned, waiting.waiting, waiting.complete, asked, recorded, ended, delivered)
