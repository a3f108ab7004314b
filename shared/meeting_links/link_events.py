"""Delivering link events to the app (LINK_EVENTS_URL) in the Standard Webhooks format.

The database writes an event for every change of a booking's link, in the same transaction
as the change (sql/0009). Delivery is at least once and in order per booking: each round
claims only the earliest undelivered event of each booking, leased so that two deliverers do
not send it at once; a failure is tried again with exponential backoff. A request that
changed a link wakes the process's delivery worker and answers at once (the webhook never
waits for the app); the sweep delivers whatever is left.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import requests

from . import logs
from .config import Settings
from .db import Database
from .errors import MeetingLinksError

LEASE_S = 30
MAX_BACKOFF_S = 3600


def signing_key(secret: str) -> bytes:
    """A Standard Webhooks secret is `whsec_` and base64; anything else is used as it is."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: `v1,` and the base64 HMAC-SHA256 of id.timestamp.body."""
    message = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), message, hashlib.sha256).digest()).decode()


def backoff_s(attempts: int) -> int:
    return min(MAX_BACKOFF_S, 5 * 2 ** max(0, attempts - 1))


def deliver(db: Database, settings: Settings, deadline: float, booking_id: str | None = None) -> int:
    """Delivers what is due (for one booking, or all) until nothing is or the deadline
    passes; returns how many events were delivered."""
    if not settings.link_events_url:
        return 0
    session = _session()
    delivered = 0
    while time.monotonic() < deadline:
        batch = db.rows("claim_link_events", limit=20, lease_seconds=LEASE_S, booking_id=booking_id)
        if not batch:
            return delivered
        for event in batch:
            body = json.dumps(event["payload"], separators=(",", ":")).encode()
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", "webhook-id": event["event_id"],
                       "webhook-timestamp": str(timestamp),
                       "webhook-signature": sign(settings.link_events_secret, event["event_id"], timestamp, body)}
            error = None
            try:
                timeout = max(0.1, min(settings.link_events_timeout_s, deadline - time.monotonic()))
                response = session.post(settings.link_events_url, data=body, headers=headers,
                                        timeout=timeout, allow_redirects=False)
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = type(exc).__name__
            retry = backoff_s(event["attempts"])
            db.rows("finish_link_event", id=event["id"], delivered=error is None, retry_seconds=retry, error=error)
            if error is None:
                delivered += 1
            else:
                logs.warning("link event not delivered; will retry", event_id=event["event_id"],
                             booking_id=str(event["booking_id"]), attempts=event["attempts"], error=error,
                             retry_in_s=retry)
    return delivered


_session_lock = threading.Lock()
_http: requests.Session | None = None


def _session() -> requests.Session:
    global _http
    with _session_lock:
        if _http is None:
            _http = requests.Session()
            _http.trust_env = False
        return _http


class _Worker:
    """One background thread per process that delivers when a request woke it."""

    def __init__(self):
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._target: tuple[Database, Settings] | None = None
        self._lock = threading.Lock()

    def kick(self, db: Database, settings: Settings) -> None:
        with self._lock:
            self._target = (db, settings)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="link-events")
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                target = self._target
            if target is None:
                continue
            try:
                deliver(*target, time.monotonic() + 20)
            except MeetingLinksError as exc:  # the database: the sweep delivers later
                logs.warning("link event delivery paused", error=type(exc).__name__, detail=str(exc))
            except Exception as exc:  # a bug must not kill the worker silently
                logs.error("link event delivery failed", exc_info=exc, error=type(exc).__name__)

    def forget(self) -> None:
        with self._lock:
            self._target = None


_worker = _Worker()


def deliver_soon(db: Database, settings: Settings) -> None:
    """Wakes the delivery worker; returns at once. No-op without LINK_EVENTS_URL."""
    if settings.link_events_url:
        _worker.kick(db, settings)


def reset() -> None:
    """Forget the database and settings the worker delivers with (tests)."""
    _worker.forget()
