"""The process's long-lived clients, made on first use and shared by every request that
follows (nothing slow happens at import): the database pool, the Meet client, the ID-token
source, and the kept-alive connections of outbound calls. reset() forgets them all, in one
place (tests, and the local stack when its settings change)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from .config import Settings

T = TypeVar("T")
_made: dict[str, object] = {}
_lock = threading.Lock()


def _get(name: str, make: Callable[[], T]) -> T:
    with _lock:
        if name not in _made:
            _made[name] = make()
        return _made[name]


def database(settings: Settings):
    from .db import Database
    return _get("database", lambda: Database(settings))


def meet(settings: Settings):
    """MeetCredentialsError (and nothing kept) when the credentials cannot be read."""
    from .meet.api import MeetClient
    return _get("meet", lambda: MeetClient(settings))


def id_tokens(settings: Settings):
    from .web.internal_auth import IdTokens
    return _get("id_tokens", lambda: IdTokens(settings))


def reset() -> None:
    from . import link_events
    from .web import outbound
    with _lock:
        made = list(_made.values())
        _made.clear()
    for client in made:
        close = getattr(client, "close", None)
        if close:
            close()
    link_events.forget()
    outbound.reset()
