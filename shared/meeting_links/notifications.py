"""A verified Midtrans notification, from receipt to its effect, exactly once.

One statement records it (record_payment_v2, sql/0012): lock the booking by order_id, refuse
an order id Midtrans would never send, check the amount, drop duplicates, move the payment
state or call it stale, release the link, and append the notification to
payment_notifications. The same statement says when the notification must first be
confirmed with Midtrans's GET Status API: always when MIDTRANS_VERIFY_WITH_STATUS_API asks
for it, and otherwise only when another split of its signed fields names a booking that
exists with exactly that amount (the signature alone then does not tell which order it was
made for). Then process() hands a released link to waiting bookings and asks for a link for
a booking that became paid, whether the payment came from a notification or from the sweep.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from . import allocation, link_events, logs
from .allocation import Assignment, Hold, Waiting
from .config import Settings
from .db import Database
from .errors import AmountMismatch, BadRequest, MalformedNotification, MeetingLinksError
from .midtrans import formats, status_api

NOTIFICATION, STATUS_API = "notification", "status_api"
_LOGGED_FIELDS = ("order_id", "status_code", "gross_amount", "transaction_status", "fraud_status",
                  "transaction_id", "payment_type")


@dataclass(frozen=True)
class Notification:
    order_id: str
    status_code: str
    gross_amount: str
    transaction_status: str
    fraud_status: str | None
    transaction_id: str | None
    payment_type: str | None
    body: dict
    source: str = NOTIFICATION

    @classmethod
    def from_body(cls, body: dict) -> Notification:
        """The notification Midtrans sent; its signed fields must be in Midtrans's formats
        (MalformedNotification, logged, if not)."""
        def text(name, required):
            value = body.get(name)
            # Midtrans leaves out fields it has no value for; an empty optional one means the same.
            if not required and (value is None or value == ""):
                return None
            value = formats.field_text(value)
            if value is None or not value.strip():
                raise BadRequest(f"notification field {name} must be a non-empty string")
            return value
        n = cls(order_id=text("order_id", True), status_code=text("status_code", True),
                gross_amount=text("gross_amount", True), transaction_status=text("transaction_status", True),
                fraud_status=text("fraud_status", False), transaction_id=text("transaction_id", False),
                payment_type=text("payment_type", False),
                # A signature at rest could be replayed by anyone who reads the table.
                body={k: v for k, v in body.items() if k != "signature_key"})
        problems = formats.format_problems(n.status_code, n.gross_amount, n.transaction_status)
        if problems:
            n.refuse(problems)
        return n

    @classmethod
    def from_report(cls, report: status_api.StatusReport) -> Notification:
        """What Midtrans's GET Status API reports, recorded like a notification (the sweep)."""
        return cls(report.order_id, report.status_code, report.gross_amount, report.transaction_status,
                   report.fraud_status, report.transaction_id, report.payment_type,
                   {k: v for k, v in report.body.items() if k != "signature_key"}, STATUS_API)

    def as_reported(self, report: status_api.StatusReport) -> Notification:
        """This notification with what Midtrans's GET Status API says instead."""
        return replace(self, transaction_status=report.transaction_status, fraud_status=report.fraud_status,
                       transaction_id=report.transaction_id or self.transaction_id,
                       payment_type=report.payment_type or self.payment_type, gross_amount=report.gross_amount,
                       status_code=report.status_code)

    def refuse(self, problems: list[str]):
        # ERROR: if Midtrans ever sends a format we do not expect, a payment waits for the
        # sweep's status check; someone should look.
        logs.error("notification refused: fields not in Midtrans's formats", problems=problems,
                   **{name: _clip(getattr(self, name)) for name in _LOGGED_FIELDS})
        raise MalformedNotification("notification refused: " + "; ".join(problems))


def _clip(value: str | None) -> str | None:
    return value if value is None or len(value) <= 100 else value[:100] + "..."


class Outcome(StrEnum):
    """What recording a notification did (record_payment_v2; payment_notifications.outcome)."""
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"
    MALFORMED = "malformed"
    NEEDS_CONFIRMATION = "needs_confirmation"


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    order_id: str
    booking_id: str | None = None
    payment_status: str | None = None
    status: str | None = None
    needs_link: bool = False     # paid and confirmed, holding no link
    released: Hold | None = None  # a link hold this notification freed
    detail: str = ""
    meeting_link: str | None = None  # the link the booking holds afterwards


def record(db: Database, n: Notification, *, confirmed: bool, confirm_always: bool = False) -> Recorded:
    """One statement (record_payment_v2)."""
    row = db.one("record_payment", order_id=n.order_id, transaction_id=n.transaction_id,
                 transaction_status=n.transaction_status, fraud_status=n.fraud_status, gross_amount=n.gross_amount,
                 payment_type=n.payment_type, body=json.dumps(n.body), source=n.source, confirmed=confirmed,
                 confirm_always=confirm_always,
                 alternatives=json.dumps([] if confirmed else formats.other_splits(n.order_id, n.status_code,
                                                                                    n.gross_amount)))
    released = Hold(row["released_from"], row["released_until"]) if row["released_from"] else None
    recorded = Recorded(Outcome(row["outcome"]), n.order_id, row["booking_id"] and str(row["booking_id"]),
                        row["payment_status"],
                        row["status"], row["needs_link"], released, row["detail"] or "", row["meeting_link"])
    fields = dict(order_id=n.order_id, booking_id=recorded.booking_id, transaction_status=n.transaction_status,
                  fraud_status=n.fraud_status, outcome=recorded.outcome, payment_status=recorded.payment_status,
                  source=n.source)
    if recorded.outcome is Outcome.MALFORMED:
        n.refuse([recorded.detail])
    elif recorded.outcome is Outcome.NEEDS_CONFIRMATION:
        logs.info("confirming the notification with Midtrans's status API", reason=recorded.detail, **fields)
    elif recorded.outcome is Outcome.IGNORED and recorded.booking_id is None:
        logs.warning("notification for an unknown order_id ignored", **fields)
    elif recorded.outcome is Outcome.REJECTED:
        logs.error("notification rejected: amount mismatch", detail=recorded.detail, **fields)
    else:
        logs.info("notification recorded", released_link=recorded.released is not None, **fields)
    return recorded


@dataclass(frozen=True)
class Processed:
    """What a notification did: as recorded, and the link (or the wait) it led to."""
    recorded: Recorded
    link: Assignment | Waiting | None = None


LinkRequest = Callable[[str, str], Assignment | Waiting | None]


def process(db: Database, settings: Settings, recorded: Recorded, request_link: LinkRequest) -> Processed:
    """Hands a link the notification released to waiting bookings, and asks
    request_link(booking_id, order_id) for a link when the booking is paid without one.

    Raises AmountMismatch (recorded as rejected) and whatever request_link raises; a failed
    hand-over is logged and left to the sweep, since the release is committed."""
    try:
        if recorded.outcome is Outcome.REJECTED:
            raise AmountMismatch(recorded.detail)
        if recorded.released:
            try:
                allocation.hand_over(db, recorded.released, budget_s=settings.handover_time_budget_s)
            except MeetingLinksError as exc:
                logs.error("handing a released link to waiting bookings failed",
                           booking_id=recorded.booking_id, error=type(exc).__name__)
        if not recorded.needs_link:
            return Processed(recorded)
        return Processed(recorded, request_link(recorded.booking_id, recorded.order_id))
    finally:
        # Whatever this changed (a release, a link assign gave) is delivered to the app in the
        # background: the answer to Midtrans never waits for it.
        link_events.deliver_soon(db, settings)


def receive(db: Database, settings: Settings, body: dict, request_link: LinkRequest) -> Processed:
    """A notification Midtrans sent, whose signature the caller verified: check its formats,
    record it (confirming it with the status API first where that is needed), and process it."""
    n = Notification.from_body(body)
    recorded = record(db, n, confirmed=False, confirm_always=settings.midtrans_verify_with_status_api)
    if recorded.outcome is Outcome.NEEDS_CONFIRMATION:
        report = status_api.transaction_status(
            settings, order_id=n.order_id, transaction_id=n.transaction_id, payment_type=n.payment_type,
            deadline=time.monotonic() + settings.midtrans_api_timeout_s)
        recorded = record(db, n.as_reported(report), confirmed=True)
    return process(db, settings, recorded, request_link)
