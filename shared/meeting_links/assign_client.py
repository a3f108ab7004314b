"""The webhook's call to assign_meeting_link over HTTP."""
from __future__ import annotations

import threading

import requests

from . import logs
from .config import Settings
from .errors import AssignUnavailable, ConfigurationError
from .internal_auth import IdTokens

_session: requests.Session | None = None
_tokens: IdTokens | None = None
_lock = threading.Lock()


def _clients(settings: Settings) -> tuple[requests.Session, IdTokens]:
    global _session, _tokens
    with _lock:
        if _session is None:
            _session = requests.Session()
            # No proxy or netrc lookups from the environment on every call: the callee is a
            # Cloud Run URL reached directly.
            _session.trust_env = False
            _tokens = IdTokens(settings.assign_meeting_link_url)
        return _session, _tokens


def request_assignment(settings: Settings, booking_id: str, order_id: str) -> dict:
    """Asks assign_meeting_link for a link. Returns its JSON answer when the booking has a
    link or is marked as waiting for one; raises AssignUnavailable when it should be retried."""
    url = settings.assign_meeting_link_url
    if not url:
        raise ConfigurationError("ASSIGN_MEETING_LINK_URL is not set")
    session, tokens = _clients(settings)
    token = settings.internal_api_token or tokens.token()
    try:
        response = session.post(url, json={"bookingId": booking_id},
                                headers={"Authorization": f"Bearer {token}"},
                                timeout=(min(1.0, settings.assign_call_timeout_s), settings.assign_call_timeout_s),
                                allow_redirects=False)
    except requests.RequestException as exc:
        raise AssignUnavailable(f"assign_meeting_link unreachable ({type(exc).__name__})") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        return body
    if response.status_code == 409:
        # Pool exhausted (the booking now waits for manual assignment) or no longer paid:
        # either way the payment is recorded and there is nothing to retry.
        logs.warning("assign_meeting_link could not assign a link", booking_id=booking_id,
                     order_id=order_id, reason=body.get("error"),
                     requires_manual_assignment=body.get("requiresManualAssignment", False))
        return body
    raise AssignUnavailable(f"assign_meeting_link answered {response.status_code}")
