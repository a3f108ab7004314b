"""Standard Webhooks signatures (https://www.standardwebhooks.com/), for the link events the
app receives: HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}", sent as
"v1,<base64>". Pure functions; the tests hold them against the official `standardwebhooks`
library.

The secret is read as the official libraries read it: an optional "whsec_" prefix, then
base64, padded or not. A secret they would refuse, or one that would sign with an empty or
weak key, is refused here, so that it is never used."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

PREFIX = "whsec_"
# The spec: "Random. At least 24 bytes (192 bits, 512 maximum)".
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class BadSecret(ValueError):
    """Why a secret cannot sign link events (the message names no part of it)."""


def signing_key(secret: str) -> bytes:
    """The key a Standard Webhooks receiver derives from the secret, or BadSecret."""
    encoded = secret.removeprefix(PREFIX)
    # The official library ignores characters outside base64's alphabet; other libraries
    # refuse them. Refusing them here keeps every receiver's key the same as ours.
    if not _BASE64.fullmatch(encoded):
        raise BadSecret("is not base64 after its whsec_ prefix")
    try:
        key = base64.b64decode(encoded + "==")  # exactly as the official library decodes it
    except binascii.Error:
        raise BadSecret("is not valid base64 (a character too many or too few)") from None
    if not key:
        raise BadSecret("decodes to an empty key")
    if len(key) < MIN_KEY_BYTES:
        raise BadSecret(f"decodes to {len(key)} bytes; Standard Webhooks secrets are {MIN_KEY_BYTES} "
                        f"to {MAX_KEY_BYTES} random bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header for one attempt."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
