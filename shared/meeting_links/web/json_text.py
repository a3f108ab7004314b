"""JSON we accept, from a caller or from an outside system's answer: an object, nested no
deeper than a limit, with finite numbers only, and text PostgreSQL can store (no NUL
characters, no lone surrogates). One rule for both directions."""
from __future__ import annotations

import json


class NotAcceptable(ValueError):
    """Why a body is not JSON we accept (safe to show: it names no content)."""


def parse_object(raw: bytes | str, *, max_depth: int) -> dict:
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotAcceptable("not JSON") from None
    if not isinstance(value, dict):
        raise NotAcceptable("not a JSON object")
    _check(value, max_depth)
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON does not


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")  # 1e400: PostgreSQL's jsonb cannot hold it
    return value


def _check(body: dict, max_depth: int) -> None:
    """Iterative, with a depth limit, so that no nesting reaches the recursion limit."""
    pending = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise NotAcceptable(f"nested deeper than {max_depth} levels")
            items = [x for pair in value.items() for x in pair] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise NotAcceptable("holds invalid Unicode") from None
            if "\x00" in value:
                raise NotAcceptable("holds a NUL character")
