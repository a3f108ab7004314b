"""The HTTP edge shared by both functions: parsing requests and the one table that turns
each failure kind into a status code and a JSON body."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from . import logs
from .config import settings
from .errors import (
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

MAX_BODY_BYTES = 64 * 1024
# Deeper than any notification or request we serve; deep enough nesting would otherwise
# exhaust the interpreter's recursion limit.
MAX_DEPTH = 32

# First match wins, so subclasses come before their bases.
STATUS_FOR = (
    (PayloadTooLarge, 413),
    (AmountMismatch, 400),
    (BadRequest, 400),
    (Unauthorized, 401),
    (BookingNotFound, 404),
    (MethodNotAllowed, 405),
    (PoolExhausted, 409),
    (BookingNotPaid, 409),
    (TransientError, 503),
    (ConfigurationError, 500),
)

JSON = {"Content-Type": "application/json"}

# Both functions import this module first: from here on, every library's log lines are JSON.
logs.setup()


def _response(body: dict, status: int, headers: dict | None = None):
    return json.dumps(body), status, {**JSON, **(headers or {})}


def error_response(exc: Exception):
    status = next((status for kind, status in STATUS_FOR if isinstance(exc, kind)), 500)
    body = {"success": False, "error": str(exc) if status != 500 else "Internal error"}
    if status == 500 and isinstance(exc, ConfigurationError):
        body["error"] = "Service misconfigured"
    if isinstance(exc, PoolExhausted):
        body["requiresManualAssignment"] = True
    headers = {}
    if status == 405:
        headers["Allow"] = "POST"
    if status == 503:
        headers["Retry-After"] = "60"
    return _response(body, status, headers)


def handle(request, work: Callable[[object], tuple[dict, int]]):
    """Runs work(request) and answers JSON; every failure becomes its mapped status."""
    try:
        return _answer(request, work)
    finally:
        _forget_unread_body(request)


def _forget_unread_body(request) -> None:
    """functions-framework reads whatever is left of every request body after the response
    (request.get_data() in an after_request hook), whole and into memory. Marking the body
    as read keeps a refused 1 GiB upload out of memory; the server discards the rest."""
    if getattr(request, "_cached_data", None) is None:
        request._cached_data = b""


def _answer(request, work):
    try:
        # Inside the try: a malformed setting is a ConfigurationError like any other.
        logs.bind_trace(request.headers.get("X-Cloud-Trace-Context"), settings().google_cloud_project)
        body, status = work(request)
        return _response(body, status)
    except MeetingLinksError as exc:
        response = error_response(exc)
        if response[1] >= 500:
            logs.error("request failed", error=type(exc).__name__, detail=str(exc))
        elif response[1] in (401, 413):
            logs.warning("request refused", error=type(exc).__name__, detail=str(exc))
        return response
    except Exception as exc:  # a bug: log it, answer 500, keep the instance serving
        logs.error("unexpected error", exc_info=exc, error=type(exc).__name__, detail=str(exc))
        return error_response(exc)


def require_post(request) -> None:
    if request.method != "POST":
        raise MethodNotAllowed(f"method {request.method} not allowed; use POST")


def _body_bytes(request) -> bytes:
    """The body, reading at most one byte past the limit: a chunked body has no
    Content-Length, and reading it whole first would let one request fill the memory."""
    too_large = PayloadTooLarge(f"body larger than {MAX_BODY_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    while size <= MAX_BODY_BYTES:
        chunk = request.stream.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY_BYTES:
        raise too_large
    request._cached_data = body = b"".join(chunks)
    return body


def json_object(request) -> dict:
    raw = _body_bytes(request)
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    _check_text(body)
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON does not


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")  # 1e400: PostgreSQL's jsonb cannot hold it
    return value


def _check_text(body) -> None:
    """PostgreSQL stores neither NUL characters nor lone surrogates, in text or jsonb:
    refuse them here as bad input rather than fail later as a server error. Iterative,
    with a depth limit, so that no nesting reaches the recursion limit."""
    pending = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadRequest(f"body nested deeper than {MAX_DEPTH} levels")
            items = [x for pair in value.items() for x in pair] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("body holds invalid Unicode") from None
            if "\x00" in value:
                raise BadRequest("body holds a NUL character")


def uuid_field(body: dict, name: str) -> str:
    value = body.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{name} must be a UUID string") from None
