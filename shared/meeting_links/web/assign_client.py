"""The webhook's call to assign_meeting_link over HTTP, within ASSIGN_CALL_TIMEOUT_S (the ID
token included), its answer read as the domain values it stands for."""
from __future__ import annotations

import json
import time

from .. import clients, logs
from ..allocation import Assignment, Waiting
from ..config import Settings
from ..errors import AssignUnavailable, ConfigurationError
from . import outbound


def request_link(settings: Settings, booking_id: str, order_id: str) -> Assignment | Waiting | None:
    """The link assign gave, Waiting (no link free: the booking is flagged and a person told),
    or None (the booking may hold no link now). AssignUnavailable when it should be retried."""
    url = settings.assign_meeting_link_url
    if not url:
        raise ConfigurationError("ASSIGN_MEETING_LINK_URL is not set")
    deadline = time.monotonic() + settings.assign_call_timeout_s
    token = settings.internal_api_token or clients.id_tokens(settings).token(deadline)
    try:
        answer = outbound.call("POST", url, deadline=deadline, body=json.dumps({"bookingId": booking_id}).encode(),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                               max_bytes=64 * 1024)
        body = answer.json_object()
    except outbound.Unreachable as exc:
        raise AssignUnavailable(f"assign_meeting_link: {exc}") from None
    except outbound.NotUnderstood:
        raise AssignUnavailable(f"assign_meeting_link answered {answer.status} without JSON") from None
    if answer.status == 200 and isinstance(body.get("meetingLink"), str) and isinstance(body.get("meetingLinkId"), str):
        return Assignment(booking_id, body["meetingLinkId"], body["meetingLink"], bool(body.get("alreadyAssigned")),
                          body.get("source") if body.get("source") in ("pool", "meet") else "pool")
    if answer.status == 409:
        # Pool exhausted (the booking now waits for manual assignment) or no longer paid:
        # either way the payment is recorded and there is nothing to retry.
        logs.warning("assign_meeting_link could not assign a link", booking_id=booking_id, order_id=order_id,
                     reason=str(body.get("error"))[:200],
                     requires_manual_assignment=body.get("requiresManualAssignment") is True)
        return Waiting(booking_id) if body.get("requiresManualAssignment") is True else None
    raise AssignUnavailable(f"assign_meeting_link answered {answer.status}")
