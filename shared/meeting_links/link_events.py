"""Delivering link events to the app (LINK_EVENTS_URL) in the Standard Webhooks format.

The database writes an event for every change of a booking's link, in the same transaction
as the change (sql/0013). Delivery is at least once and in order per booking: each round
claims only the earliest undelivered event of each booking, leased so that two deliverers do
not send it at once. A failure is tried again after the spec's example schedule (5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 14 h, 20 h, then every 24 h), or later when the receiver's
Retry-After asks; 410 Gone stops every delivery to that URL until support resumes it.

When: a request that changed a link wakes this process's worker and answers at once (the
webhook never waits for the app); deployed, an instance gets CPU only while it serves a
request, so what is due after that goes out with the next request or the sweep (every 10
minutes): the schedule above is the earliest a retry happens, not a promise of when.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from . import logs, standard_webhooks
from .config import Settings
from .db import Database
from .errors import MeetingLinksError
from .web import outbound

LEASE_S = 60
BATCH = 20
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_RETRY_AFTER_S = 86400
_CONSECUTIVE_FAILURES = 3  # then the receiver is down, not one event: the next round goes on


def retry_in_s(attempts: int, retry_after: str | None = None) -> int:
    """When to try again after `attempts` failed attempts: the schedule, with a little jitter,
    or the receiver's Retry-After (seconds or an HTTP date) when that is later."""
    base = SCHEDULE_S[min(max(attempts, 1), len(SCHEDULE_S)) - 1]
    delay = math.ceil(base * random.uniform(0.9, 1.1))
    asked = _retry_after_s(retry_after)
    return max(delay, min(asked, MAX_RETRY_AFTER_S)) if asked else delay


def _retry_after_s(value: str | None) -> int:
    if not value:
        return 0
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        return max(0, int(parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass(frozen=True)
class Delivered:
    count: int
    complete: bool = True  # False: out of time, or the receiver failed repeatedly


def deliver(db: Database, settings: Settings, deadline: float, booking_id: str | None = None) -> Delivered:
    """Delivers what is due (for one booking, or all) until nothing is or the deadline passes."""
    if not settings.link_events_url:
        return Delivered(0)
    state = db.one("link_event_state")
    if state["gone_url"] == settings.link_events_url:
        logs.warning("link events are not sent: the app answered 410 Gone (resume with "
                     "`meeting-links events resume`)", url=settings.link_events_url, since=state["gone_at"])
        return Delivered(0)
    delivered = failures = 0
    while time.monotonic() < deadline:
        batch = db.rows("claim_link_events", url=settings.link_events_url, limit=BATCH, lease_seconds=LEASE_S,
                        booking_id=booking_id)
        if not batch:
            return Delivered(delivered)
        for event in batch:
            if time.monotonic() >= deadline:
                # Leased but not sent: its lease runs out and the next round takes it.
                return Delivered(delivered, False)
            result = _send(db, settings, event, deadline)
            if result is _GONE:  # due again the moment support resumes deliveries
                db.rows("finish_link_event", id=event["id"], delivered=False, retry_seconds=0, error="HTTP 410 Gone")
                return Delivered(delivered, False)
            if result is None:
                db.rows("finish_link_event", id=event["id"], delivered=True, retry_seconds=0, error=None)
                delivered += 1
                failures = 0
                continue
            error, retry_after = result
            retry = retry_in_s(event["attempts"], retry_after)
            db.rows("finish_link_event", id=event["id"], delivered=False, retry_seconds=retry, error=error)
            logs.warning("link event not delivered; will retry", webhook_id=event["webhook_id"],
                         booking_id=str(event["booking_id"]), attempts=event["attempts"], error=error,
                         retry_in_s=retry)
            failures += 1
            if failures >= _CONSECUTIVE_FAILURES:
                return Delivered(delivered, False)
    return Delivered(delivered, False)


_GONE = object()


def _send(db: Database, settings: Settings, event: dict, deadline: float):
    """None when delivered; _GONE after a 410; else (error, Retry-After)."""
    body = json.dumps(event["payload"], separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "webhook-id": event["webhook_id"],
               "webhook-timestamp": str(timestamp),
               "webhook-signature": standard_webhooks.sign(settings.link_events_secret, event["webhook_id"],
                                                           timestamp, body)}
    try:
        answer = outbound.call("POST", settings.link_events_url, body=body, headers=headers, max_bytes=64 * 1024,
                               deadline=min(deadline, time.monotonic() + settings.link_events_timeout_s))
    except outbound.Unreachable as exc:
        return str(exc), None
    if 200 <= answer.status < 300:
        return None
    if answer.status == 410:
        if db.one("mark_link_events_gone", url=settings.link_events_url, detail="HTTP 410")["first"]:
            logs.alert("link_events_gone", "the app's receiver answered 410 Gone: no more link events are sent to "
                       "it until `meeting-links events resume`", url=settings.link_events_url)
        return _GONE
    return f"HTTP {answer.status}", answer.headers.get("retry-after")


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
                deliver(*target, time.monotonic() + 30)
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


def forget() -> None:
    """Forget the database and settings the worker delivers with (clients.reset)."""
    _worker.forget()
