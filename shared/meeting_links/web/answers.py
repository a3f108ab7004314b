"""Every HTTP answer both functions give, in one place: the domain's values rendered as the
JSON docs/openapi.json describes, and the one table from failure kind to status, public
message, headers and extra fields. A 5xx tells the caller only to retry; what went wrong
goes to the log."""
from __future__ import annotations

import json
from collections.abc import Callable

from .. import logs
from ..allocation import Assignment, Waiting
from ..config import settings
from ..errors import (
    AmountMismatch,
    BadRequest,
    BookingNotFound,
    BookingNotPaid,
    ConfigurationError,
    MeetingLinksError,
    MethodNotAllowed,
    PayloadTooLarge,
    PoolExhausted,
    TransientError,
    Unauthorized,
)
from ..notifications import Processed
from ..sweep import Swept
from .inbound import forget_unread_body

# First match wins, so subclasses come before their bases. message None: the exception's own
# (it describes the caller's request); otherwise this text, whatever happened inside.
ERRORS: tuple[tuple[type[Exception], int, str | None, dict, dict], ...] = (
    (PayloadTooLarge, 413, None, {}, {}),
    (AmountMismatch, 400, None, {}, {}),
    (BadRequest, 400, None, {}, {}),
    (Unauthorized, 401, None, {}, {}),
    (BookingNotFound, 404, None, {}, {}),
    (MethodNotAllowed, 405, None, {"Allow": "POST"}, {}),
    (PoolExhausted, 409, "No available meeting links at this time. Please contact support.", {},
     {"requiresManualAssignment": True}),
    (BookingNotPaid, 409, None, {}, {}),
    (TransientError, 503, "Temporarily unavailable; retry later", {"Retry-After": "60"}, {}),
    (ConfigurationError, 500, "Service misconfigured", {}, {}),
)
UNEXPECTED = (Exception, 500, "Internal error", {}, {})
JSON = {"Content-Type": "application/json"}


def _response(body: dict, status: int = 200, headers: dict | None = None):
    return json.dumps(body), status, {**JSON, **(headers or {})}


def error(exc: Exception):
    kind, status, message, headers, extra = next((row for row in ERRORS if isinstance(exc, row[0])), UNEXPECTED)
    return _response({"success": False, "error": str(exc) if message is None else message, **extra}, status, headers)


def handle(request, work: Callable[[object], tuple]):
    """Runs work(request), which returns (body, status) from a renderer below; every failure
    becomes its row of ERRORS, logged with its details."""
    try:
        try:
            # Inside the try: a malformed setting is a ConfigurationError like any other.
            config = settings()
            logs.setup(log_format=config.log_format)
            logs.bind_trace(request.headers.get("X-Cloud-Trace-Context"), config.google_cloud_project)
            body, status = work(request)
            return _response(body, status)
        except MeetingLinksError as exc:
            response = error(exc)
            if response[1] >= 500:
                logs.error("request failed", error=type(exc).__name__, detail=str(exc))
            elif response[1] in (401, 413):
                logs.warning("request refused", error=type(exc).__name__, detail=str(exc))
            return response
        except Exception as exc:  # a bug: log it, answer 500, keep the instance serving
            logs.error("unexpected error", exc_info=exc, error=type(exc).__name__, detail=str(exc))
            return error(exc)
    finally:
        forget_unread_body(request)


def assignment(a: Assignment) -> tuple[dict, int]:
    body = {"success": True, "meetingLink": a.meeting_link, "meetingLinkId": a.link_id, "source": a.source}
    if a.already_assigned:
        body["alreadyAssigned"] = True
    return body, 200


def notification(p: Processed) -> tuple[dict, int]:
    r = p.recorded
    if r.booking_id is None:
        return {"success": True, "ignored": True, "reason": r.detail}, 200
    body = {"success": True, "outcome": str(r.outcome), "bookingId": r.booking_id,
            "paymentStatus": r.payment_status, "status": r.status}
    link = p.link.meeting_link if isinstance(p.link, Assignment) else r.meeting_link
    if link or r.needs_link:
        body["meetingLink"] = link
    if isinstance(p.link, Assignment):
        body["source"] = p.link.source
    if r.needs_link:
        body["requiresManualAssignment"] = isinstance(p.link, Waiting)
    return body, 200


def not_a_payment(kind: str) -> tuple[dict, int]:
    """A body Midtrans sends to the same URL that is not a payment: acknowledged, no effect."""
    logs.info("not a payment notification; ignored", kind=kind)
    return {"success": True, "ignored": True, "reason": f"not a payment notification ({kind})"}, 200


def sweep(s: Swept) -> tuple[dict, int]:
    return {"success": True, "assigned": s.assigned, "waiting": s.waiting, "complete": s.complete,
            "incomplete": list(s.incomplete), "paymentsChecked": s.payments_checked,
            "paymentsRecorded": s.payments_recorded, "membersAdded": s.members_added,
            "spacesOpened": s.spaces_opened, "callsEnded": s.calls_ended,
            "eventsDelivered": s.events_delivered}, 200
