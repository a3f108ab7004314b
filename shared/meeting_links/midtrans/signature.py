"""Midtrans notification signatures: SHA512(order_id + status_code + gross_amount + server
key), lowercase hex, over the fields exactly as received (../shared/research/midtrans.md §2).
Pure functions, checked against fixed vectors and against Midtrans's published bodies."""
from __future__ import annotations

import hashlib
import hmac

from ..errors import ConfigurationError, InvalidSignature
from .formats import field_text

SIGNED_FIELDS = ("order_id", "status_code", "gross_amount")


def signature_for(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    if not server_key:
        # An empty key would make every signature forgeable; refuse to compute one.
        raise ConfigurationError("MIDTRANS_SERVER_KEY is not set")
    return hashlib.sha512((order_id + status_code + gross_amount + server_key).encode()).hexdigest()


def verify(body: dict, server_key: str) -> None:
    """Returns if body's signature_key is right for its fields, raises InvalidSignature if not."""
    given = body.get("signature_key")
    fields = [field_text(body.get(name)) for name in SIGNED_FIELDS]
    if not isinstance(given, str) or None in fields:
        raise InvalidSignature("missing or malformed signature_key")
    expected = signature_for(*fields, server_key)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise InvalidSignature("invalid signature_key")


def signed(body: dict, server_key: str) -> dict:
    """A copy of a notification body with its signature_key set (for tools and tests)."""
    out = dict(body)
    out["signature_key"] = signature_for(*(field_text(out[name]) or str(out[name]) for name in SIGNED_FIELDS),
                                         server_key)
    return out
