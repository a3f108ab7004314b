"""What both functions accept: POST, a JSON object of at most 64 KiB (read no further than
that, chunked or not), nested no deeper than 32 levels, text PostgreSQL can store."""
from __future__ import annotations

from ..errors import BadRequest, MethodNotAllowed, PayloadTooLarge
from ..ids import as_uuid
from .json_text import NotAcceptable, parse_object

MAX_BODY_BYTES = 64 * 1024
# Deeper than any notification or request we serve; deep enough nesting would otherwise
# exhaust the interpreter's recursion limit.
MAX_DEPTH = 32


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
    try:
        return parse_object(_body_bytes(request), max_depth=MAX_DEPTH)
    except NotAcceptable as exc:
        raise BadRequest(f"body must be a JSON object ({exc})") from None


def uuid_field(body: dict, name: str) -> str:
    value = as_uuid(body.get(name))
    if value is None:
        raise BadRequest(f"{name} must be a UUID string")
    return value


def forget_unread_body(request) -> None:
    """functions-framework reads whatever is left of every request body after the response
    (request.get_data() in an after_request hook), whole and into memory. Marking the body
    as read keeps a refused 1 GiB upload out of memory; the server discards the rest."""
    if getattr(request, "_cached_data", None) is None:
        request._cached_data = b""
