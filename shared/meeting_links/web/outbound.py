"""One rule for every call to a system outside ours: Google's token endpoint and Meet API,
Midtrans's status API, the app's receiver of link events, the metadata server, and the
webhook's call to assign.

- One deadline for the whole call: connecting, sending, waiting for the answer and reading
  it. A watchdog shuts the connection down when the deadline passes, so an answer that
  trickles in a byte at a time holds nobody longer than that (a socket timeout alone applies
  to each read, not to the call).
- At most `max_bytes` of an answer are read; a larger one is refused, not buffered.
- No redirects, no proxies from the environment, no retries: a caller that retries decides
  so itself, within its own deadline.
- Connections are kept alive and reused per host (a reused one that the server closed is
  replaced once, at no cost to the deadline's correctness).

What comes back is an Answer; answer.json_object() accepts only JSON we can store (see
json_text). Anything else (unreachable, too slow, too large, not JSON) is Unreachable or
NotUnderstood, which each caller turns into its own "unavailable" with its own fallback.
"""
from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .json_text import NotAcceptable, parse_object

DEFAULT_MAX_BYTES = 256 * 1024
_CHUNK = 64 * 1024


class Unreachable(Exception):
    """No usable answer: the message says why, in words fit for a log line."""


class NotUnderstood(Exception):
    """An answer arrived, but it is not what the protocol says."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json_object(self, max_depth: int = 32) -> dict:
        try:
            return parse_object(self.body, max_depth=max_depth)
        except NotAcceptable as exc:
            raise NotUnderstood(f"the answer is {exc}") from None


_pools: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
_pools_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    with _pools_lock:
        if _tls is None:
            try:
                import certifi  # the bundle requests uses; present wherever google-auth is
                _tls = ssl.create_default_context(cafile=certifi.where())
            except ImportError:
                _tls = ssl.create_default_context()
        return _tls


def _idle(key) -> http.client.HTTPConnection | None:
    with _pools_lock:
        pool = _pools.get(key) or []
        while pool:
            conn = pool.pop()
            sock = conn.sock
            # A kept-alive connection the server has closed reads as readable (EOF).
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conn
            conn.close()
    return None


def _keep(key, conn: http.client.HTTPConnection) -> None:
    with _pools_lock:
        pool = _pools.setdefault(key, [])
        if len(pool) < 8:
            pool.append(conn)
            return
    conn.close()


def reset() -> None:
    """Close every kept connection (tests, and the process's clients being reset)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        for conn in pool:
            conn.close()


def call(method: str, url: str, *, deadline: float, body: bytes | None = None,
         headers: dict[str, str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Answer:
    """One HTTP exchange that ends by `deadline` (time.monotonic()) whatever the other side does."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unreachable(f"not an http(s) URL: {url[:100]!r}")
    key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _idle(key)
    for _ in range(2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if conn is not None:
                conn.close()
            raise Unreachable("no time left before the deadline")
        if conn is None:
            conn = (http.client.HTTPSConnection(key[1], key[2], timeout=remaining, context=_tls_context())
                    if key[0] == "https" else http.client.HTTPConnection(key[1], key[2], timeout=remaining))
        try:
            return _exchange(conn, key, method, target, body, headers or {}, deadline, max_bytes)
        except _StaleConnection:
            conn.close()
            conn = None  # once more, on a fresh connection
        except BaseException:
            conn.close()
            raise
    raise Unreachable("the connection was closed twice before an answer")


class _StaleConnection(Exception):
    pass


def _exchange(conn, key, method, target, body, headers, deadline, max_bytes) -> Answer:
    expired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (conn, expired))
    watchdog.daemon = True
    reused = conn.sock is not None
    watchdog.start()
    try:
        try:
            if conn.sock is None:
                conn.connect()
            conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            if reused and not expired.is_set():
                raise _StaleConnection() from exc
            raise
        chunks, size = [], 0
        while True:
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise Unreachable(f"the answer is larger than {max_bytes} bytes")
            chunks.append(chunk)
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, b"".join(chunks))
        # Read to the end: closing the response frees the connection for the next request
        # (the socket stays open for keep-alive unless the server said otherwise).
        will_close = response.will_close
        response.close()
    except (OSError, http.client.HTTPException, ssl.SSLError, ValueError) as exc:
        if expired.is_set():
            raise Unreachable("no complete answer before the deadline") from None
        raise Unreachable(f"{type(exc).__name__} talking to {key[1]}") from None
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise Unreachable("no complete answer before the deadline")
    if will_close:
        conn.close()
    else:
        _keep(key, conn)
    return answer


def _shut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline passed: wake whatever read or write is blocked on this connection."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
