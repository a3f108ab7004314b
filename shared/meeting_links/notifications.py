"""Recording a verified Midtrans notification on its booking, exactly once, and what follows.

One statement per notification (record_payment_v1, sql/0006): lock the booking by order_id
(so two notifications for one order take turns), check the amount, drop duplicates, apply
the intent payments.py derives, and append the notification with what it did to
payment_notifications. Then process() hands a released link to waiting bookings and asks
for a link for a booking that became paid, whether the payment came from a notification or
from the status API. receive() is the whole flow for a notification Midtrans sent.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from . import allocation, link_events, logs, midtrans_api, payments, signature
from .config import Settings
from .db import Database, Transaction
from .errors import AmountMismatch, BadRequest, MalformedNotification, MeetingLinksError

NOTIFICATION, STATUS_API = "notification", "status_api"


@dataclass(frozen=True)
class Notification:
    order_id: str
    status_code: str
    gross_amount: str
    transaction_status: str
    fraud_status: str | None
    transaction_id: str | None
    body: dict
    source: str = NOTIFICATION

    @classmethod
    def from_body(cls, body: dict, source: str = NOTIFICATION) -> Notification:
        """The notification in body; one from Midtrans's notification engine must have its
        signed fields in Midtrans's formats (MalformedNotification, logged, if not)."""
        def text(name, required):
            value = body.get(name)
            # Midtrans leaves out fields it has no value for; an empty optional one means the same.
            if not required and (value is None or value == ""):
                return None
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"notification field {name} must be a non-empty string")
            return value
        n = cls(order_id=text("order_id", True), status_code=text("status_code", True),
                gross_amount=text("gross_amount", True),
                transaction_status=text("transaction_status", True),
                fraud_status=text("fraud_status", False),
                transaction_id=text("transaction_id", False),
                # A signature at rest could be replayed by anyone who reads the table.
                body={k: v for k, v in body.items() if k != "signature_key"}, source=source)
        if source == NOTIFICATION:
            problems = signature.format_problems(n.order_id, n.status_code, n.gross_amount,
                                                 n.transaction_status)
            if problems:
                # ERROR: if Midtrans ever sends a format we do not expect, a payment waits for
                # the sweep's status check; someone should look.
                logs.error("notification refused: fields not in Midtrans's formats", problems=problems,
                           **{name: _clip(getattr(n, name)) for name in _LOGGED_FIELDS})
                raise MalformedNotification("notification refused: " + "; ".join(problems))
        return n

    def as_reported_by(self, status: dict) -> Notification:
        """This notification with what Midtrans's GET Status API reports instead."""
        amount = status.get("gross_amount")
        return replace(self, transaction_status=str(status.get("transaction_status") or ""),
                       fraud_status=status.get("fraud_status") or None,
                       transaction_id=status.get("transaction_id") or self.transaction_id,
                       gross_amount=amount if isinstance(amount, str) else self.gross_amount)


_LOGGED_FIELDS = ("order_id", "status_code", "gross_amount", "transaction_status", "fraud_status",
                  "transaction_id")


def _clip(value: str | None) -> str | None:
    return value if value is None or len(value) <= 100 else value[:100] + "..."


class Outcome(StrEnum):
    """What recording a notification did (record_payment_v1; payment_notifications.outcome)."""
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    booking_id: str | None = None
    payment_status: str | None = None
    status: str | None = None
    needs_link: bool = False     # paid and confirmed, holding no link
    released: allocation.Hold | None = None  # a link hold this notification freed
    detail: str = ""
    meeting_link: str | None = None  # the link the booking holds afterwards


def _record(tx: Transaction, n: Notification) -> Recorded:
    """One statement: record_payment_v1 applies the intent payments.py derives (sql/0006)."""
    target = payments.target_for(n.transaction_status, n.fraud_status)
    row = tx.one(
        "record_payment", order_id=n.order_id, transaction_id=n.transaction_id,
        transaction_status=n.transaction_status, fraud_status=n.fraud_status, gross_amount=n.gross_amount,
        body=json.dumps(n.body), source=n.source,
        target=target.payment_status if target else None,
        may_follow=sorted(target.may_follow) if target else [],
        status_for_target=payments.booking_status_for(target.payment_status, False) if target else None,
        status_if_cancelled_by_admin=payments.booking_status_for(target.payment_status, True) if target else None,
        note=target.note if target else "")
    if row["booking_id"] is None:
        return Recorded(Outcome.IGNORED, detail=row["detail"])
    released = allocation.Hold(row["released_from"], row["released_until"]) if row["released_from"] else None
    outcome, payment_status, status = Outcome(row["outcome"]), row["payment_status"], row["status"]
    holds_link = row["meeting_link"] is not None
    rejected = outcome is Outcome.REJECTED
    return Recorded(outcome, str(row["booking_id"]), payment_status, status,
                    needs_link=(not rejected and payments.may_hold_link(payment_status, status)
                                and not holds_link),
                    released=released, detail=row["detail"] or "",
                    meeting_link=None if rejected else row["meeting_link"])


def record(db: Database, n: Notification) -> Recorded:
    recorded = db.run(lambda tx: _record(tx, n), single_statement=True)
    fields = dict(order_id=n.order_id, booking_id=recorded.booking_id,
                  transaction_status=n.transaction_status, fraud_status=n.fraud_status,
                  outcome=recorded.outcome, payment_status=recorded.payment_status, source=n.source)
    if recorded.outcome is Outcome.IGNORED and recorded.booking_id is None:
        logs.warning("notification for an unknown order_id ignored", **fields)
    elif recorded.outcome is Outcome.REJECTED:
        logs.error("notification rejected: amount mismatch", detail=recorded.detail, **fields)
    else:
        logs.info("notification recorded", released_link=recorded.released is not None, **fields)
    return recorded


def confirmed(settings: Settings, n: Notification) -> Notification:
    """The notification to act on: as received, or as Midtrans's GET Status API reports it
    when configured to ask, or when its signed fields could be split another way (the
    signature alone then does not tell which order it was made for)."""
    others = signature.other_splits(n.order_id, n.status_code, n.gross_amount)
    if not (settings.midtrans_verify_with_status_api or others):
        return n
    if others:
        logs.warning("signed fields admit another split; confirming with the status API",
                     order_id=n.order_id, other_splits=len(others))
    return n.as_reported_by(midtrans_api.transaction_status(settings, n.order_id))


@dataclass(frozen=True)
class Processed:
    recorded: Recorded
    meeting_link: str | None = None
    requires_manual_assignment: bool = False
    source: str | None = None  # "pool" | "meet", when this notification's call gave a link

    def answer(self) -> dict:
        """The webhook's JSON answer (see docs/openapi.json)."""
        r = self.recorded
        if r.booking_id is None:
            return {"success": True, "ignored": True, "reason": r.detail}
        answer = {"success": True, "outcome": str(r.outcome), "bookingId": r.booking_id,
                  "paymentStatus": r.payment_status, "status": r.status}
        if self.meeting_link or r.needs_link:
            answer["meetingLink"] = self.meeting_link
        if self.source:
            answer["source"] = self.source
        if r.needs_link:
            answer["requiresManualAssignment"] = self.requires_manual_assignment
        return answer


def process(db: Database, settings: Settings, n: Notification,
            request_link: Callable[[str, str], dict]) -> Processed:
    """Records the notification, hands a link it released to waiting bookings, and asks
    request_link(booking_id, order_id) for a link when the booking is paid without one.

    Raises AmountMismatch (recorded as rejected) and whatever request_link raises; a failed
    hand-over is logged and left to the sweep, since the release is committed.
    """
    recorded = record(db, n)
    # Whatever this changed (a release, an assignment by assign) is delivered to the app in
    # the background: the answer to Midtrans never waits for it.
    link_events.deliver_soon(db, settings)
    if recorded.outcome is Outcome.REJECTED:
        raise AmountMismatch(recorded.detail)
    if recorded.released:
        try:
            allocation.hand_over(db, recorded.released, budget_s=settings.handover_time_budget_s)
        except MeetingLinksError as exc:
            logs.error("handing a released link to waiting bookings failed",
                       booking_id=recorded.booking_id, error=type(exc).__name__)
    if not recorded.needs_link:
        return Processed(recorded, recorded.meeting_link)
    answer = request_link(recorded.booking_id, n.order_id)
    return Processed(recorded, answer.get("meetingLink"), bool(answer.get("requiresManualAssignment")),
                     answer.get("source"))


def receive(db: Database, settings: Settings, body: dict,
            request_link: Callable[[str, str], dict]) -> Processed:
    """A notification Midtrans sent, whose signature the caller verified: check its formats,
    confirm it with the status API where needed, and process it."""
    return process(db, settings, confirmed(settings, Notification.from_body(body)), request_link)
