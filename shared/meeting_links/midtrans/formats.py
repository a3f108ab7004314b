"""Midtrans's vocabulary and formats, as its documentation and published bodies show them
(../shared/research/midtrans.md §1.3, §3.4): the status_code sent with each
transaction_status, the form of gross_amount, the other ways a signed string can be split
into fields, and the bodies Midtrans sends to the same URL that are not payments.

The order_id rule lives in the database (is_midtrans_order_id, sql/0011), which refuses such
a booking and such a notification alike."""
from __future__ import annotations

import re

# gross_amount as Midtrans sends it: ASCII digits, no sign, no leading zeros, two decimals
# (and without them in some published bodies: Payment Link's notification "10000", the PHP
# library's capture "2700"; tests/vectors/midtrans_published.json).
GROSS_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{2})?")
USUAL_STATUS_CODES = ("200", "201", "202", "407")
# The status_code Midtrans documents with each transaction_status, the usual one first:
# settlement 200; pending 201 (200 in the published DANA and ShopeePay GET Status answer);
# a card capture 200, or 201 when challenged; deny 202 (and 200
# for a settlement reversed); cancel 202 (200 for a card); expire 202 in notifications, 407
# in the API; refunds 200. Where the documentation leaves doubt (failure, authorize,
# chargebacks) every usual code is accepted: refusing a real notification would cost a
# payment. Any other status: the usual codes. The command line signs with the first; the
# tests send the first.
STATUS_CODES = {
    "settlement": ("200",),
    "capture": ("200", "201"),
    "pending": ("201", "200"),
    "authorize": ("201", "200", "202", "407"),
    "deny": ("202", "200"),
    "cancel": ("202", "200"),
    "expire": ("202", "407"),
    "failure": ("202",) + tuple(c for c in USUAL_STATUS_CODES if c != "202"),
    "refund": ("200",),
    "partial_refund": ("200",),
    "chargeback": ("200", "201", "202", "407"),
    "partial_chargeback": ("200", "201", "202", "407"),
}
TRANSACTION_STATUSES = tuple(STATUS_CODES)


def field_text(value) -> str | None:
    """A notification field as the text Midtrans signs: a JSON string, or a whole number
    (Payment Link's published notification sends status_code 201 and gross_amount 10000 as
    numbers); anything else (a fraction, true, an object) is not a form Midtrans uses."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def status_codes_for(transaction_status: str) -> tuple[str, ...]:
    return STATUS_CODES.get(transaction_status.lower(), USUAL_STATUS_CODES)


def format_problems(status_code: str, gross_amount: str, transaction_status: str) -> list[str]:
    """What in a notification's signed fields is not in Midtrans's formats (empty when all is)."""
    problems = []
    codes = status_codes_for(transaction_status)
    if status_code not in codes:
        problems.append(f"status_code {status_code[:10]!r} is not one Midtrans sends with "
                        f"transaction_status {transaction_status[:30]!r} ({', '.join(sorted(codes))})")
    if not GROSS_AMOUNT.fullmatch(gross_amount):
        problems.append("gross_amount must be digits, with two decimals or none, like 100000.00")
    return problems


def other_splits(order_id: str, status_code: str, gross_amount: str) -> list[tuple[str, str]]:
    """Every other (order_id, gross_amount) that the same signature signs, with a status code
    Midtrans uses and an amount in its format. The three signed fields are joined without a
    separator, so a signature for order "X-1" with status_code "200" also signs "X-12" with
    "00...". Whether such an order exists with that amount is the database's question."""
    signed = order_id + status_code + gross_amount
    found = []
    for cut in range(1, min(len(signed) - 3, 50) + 1):
        split = (signed[:cut], signed[cut:cut + 3], signed[cut + 3:])
        if (split != (order_id, status_code, gross_amount) and split[1] in USUAL_STATUS_CODES
                and GROSS_AMOUNT.fullmatch(split[2])):
            found.append((split[0], split[2]))
    return found


def non_payment_kind(body: dict) -> str | None:
    """The kind of a body Midtrans sends to the notification URL that is not a payment
    notification (no order_id nor transaction_status), or None: account linking and unlinking
    (SNAP's additionalInfo.accountStatus, or Core API's account_id/account_status), and
    subscriptions (the subscription object: schedule, status, token; or a charge of one:
    {"transaction": ..., "subscription": ..., "event_name": "subscription.charge"})."""
    if "order_id" in body or "transaction_status" in body:
        return None
    info = body.get("additionalInfo")
    if isinstance(info, dict) and "accountStatus" in info:
        return "account linking"
    if "account_id" in body and "account_status" in body:
        return "account linking"
    if isinstance(body.get("schedule"), dict) and "status" in body and ("token" in body or "id" in body):
        return "subscription"
    if isinstance(body.get("subscription"), dict) and str(body.get("event_name", "")).startswith("subscription."):
        return "subscription"
    return None
