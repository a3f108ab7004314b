"""Midtrans notification signatures: SHA512(order_id + status_code + gross_amount + server key),
lowercase hex, over the fields exactly as received (see ../shared/research/midtrans.md §2).

The three fields are joined with no separator, so one signed string can be split into
fields in more than one way: a settlement signed for order "X-1" with status_code "200"
also signs order "X-12" with status_code "00". The formats below (Midtrans's own) leave
almost every signed string one split; other_splits() names the rare ones they do not, which
are confirmed with Midtrans before they have any effect.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from .errors import ConfigurationError, InvalidSignature, MalformedNotification

SIGNED_FIELDS = ("order_id", "status_code", "gross_amount")

# Midtrans's order_id: at most 50 of letters, digits, "-", "_", "~" and ".".
ORDER_ID = re.compile(r"[A-Za-z0-9_~.\-]{1,50}")
# gross_amount as Midtrans sends it: two decimals, no sign, no leading zeros, ASCII digits.
GROSS_AMOUNT = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")
USUAL_STATUS_CODES = frozenset({"200", "201", "202", "407"})
# The status_code Midtrans documents with each transaction_status (midtrans.md §1.3, §3.4):
# settlement 200; pending 201; a card capture 200, or 201 when challenged; deny 202 (and 200
# for a settlement reversed); cancel 200 for a card, 202 otherwise; expire 202 in
# notifications, 407 in the API; refunds 200. Where the documentation leaves doubt, every
# usual code is accepted: refusing a real notification would cost a payment.
STATUS_CODES = {
    "settlement": frozenset({"200"}),
    "capture": frozenset({"200", "201"}),
    "pending": frozenset({"201"}),
    "deny": frozenset({"200", "202"}),
    "cancel": frozenset({"200", "202"}),
    "expire": frozenset({"202", "407"}),
    "refund": frozenset({"200"}),
    "partial_refund": frozenset({"200"}),
}


def signature_for(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    if not server_key:
        # An empty key would make every signature forgeable; refuse to compute one.
        raise ConfigurationError("MIDTRANS_SERVER_KEY is not set")
    return hashlib.sha512((order_id + status_code + gross_amount + server_key).encode()).hexdigest()


def verify(body: dict, server_key: str) -> None:
    """Returns if body's signature_key is right for its fields, raises InvalidSignature if not."""
    given = body.get("signature_key")
    fields = [body.get(name) for name in SIGNED_FIELDS]
    if not isinstance(given, str) or not all(isinstance(f, str) for f in fields):
        raise InvalidSignature("missing or malformed signature_key")
    expected = signature_for(*fields, server_key)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise InvalidSignature("invalid signature_key")


def format_problems(order_id: str, status_code: str, gross_amount: str, transaction_status: str) -> list[str]:
    """What in a notification's fields is not in Midtrans's formats (empty when all is)."""
    problems = []
    if not ORDER_ID.fullmatch(order_id):
        problems.append("order_id must be 1 to 50 letters, digits, '-', '_', '~' or '.'")
    codes = STATUS_CODES.get(transaction_status, USUAL_STATUS_CODES)
    if status_code not in codes:
        problems.append(f"status_code {status_code[:10]!r} is not one Midtrans sends with "
                        f"transaction_status {transaction_status[:30]!r} ({', '.join(sorted(codes))})")
    if not GROSS_AMOUNT.fullmatch(gross_amount):
        problems.append("gross_amount must be digits with two decimals, like 100000.00")
    return problems


def check_formats(order_id: str, status_code: str, gross_amount: str, transaction_status: str) -> None:
    problems = format_problems(order_id, status_code, gross_amount, transaction_status)
    if problems:
        raise MalformedNotification("notification refused: " + "; ".join(problems))


def other_splits(order_id: str, status_code: str, gross_amount: str) -> list[tuple[str, str, str]]:
    """Every other (order_id, status_code, gross_amount) that the same signature signs and
    that is in Midtrans's formats for some transaction_status (which is not signed)."""
    signed = order_id + status_code + gross_amount
    found = []
    for cut in range(1, min(len(signed) - 3, 50) + 1):
        split = (signed[:cut], signed[cut:cut + 3], signed[cut + 3:])
        if (split != (order_id, status_code, gross_amount) and split[1] in USUAL_STATUS_CODES
                and ORDER_ID.fullmatch(split[0]) and GROSS_AMOUNT.fullmatch(split[2])):
            found.append(split)
    return found


def signed(body: dict, server_key: str) -> dict:
    """A copy of a notification body with its signature_key set (for tools and tests)."""
    out = dict(body)
    out["signature_key"] = signature_for(*(str(out[name]) for name in SIGNED_FIELDS), server_key)
    return out
