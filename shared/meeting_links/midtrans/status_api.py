"""Midtrans's GET Status API: `GET {api}/v2/{order_id or transaction_id}/status`, Basic auth
with the server key as user and no password.

Asked by order_id, except where Midtrans requires the transaction_id: it documents that DANA
and BI-SNAP payments can be looked up by transaction id only ("If you're using BI SNAP and
DANA payment methods, please only use Transaction ID to get status"), with the header
`transaction-source: SNAP_API` (docs.midtrans.com, DANA). A BI-SNAP transaction id is not a
UUID (A120240830074017NP16XMU4JTID), so that is how one is told. The answer is input like any
other: a JSON object with the fields in Midtrans's formats, naming the order we asked about,
or it counts as unavailable."""
from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

from ..config import Settings
from ..errors import PaymentGatewayUnavailable, PaymentNotFound
from ..web import outbound
from .formats import GROSS_AMOUNT, USUAL_STATUS_CODES

_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Statuses are words (DANA's answers write them in capitals).
_STATUS = re.compile(r"[A-Za-z_]{1,40}")


@dataclass(frozen=True)
class StatusReport:
    """What Midtrans says of an order's transaction now."""
    order_id: str
    transaction_id: str | None
    transaction_status: str
    fraud_status: str | None
    gross_amount: str
    status_code: str
    payment_type: str | None
    body: dict


def by_transaction_id(transaction_id: str | None, payment_type: str | None) -> bool:
    """Whether Midtrans can answer for this payment by its transaction id only."""
    return bool(transaction_id) and ((payment_type or "").lower() == "dana" or not _UUID.fullmatch(transaction_id))


def transaction_status(settings: Settings, *, order_id: str, transaction_id: str | None = None,
                       payment_type: str | None = None, deadline: float | None = None) -> StatusReport:
    """Midtrans's report of the order's transaction. PaymentNotFound when it knows none;
    PaymentGatewayUnavailable when it cannot be asked or answers outside its protocol."""
    deadline = deadline if deadline is not None else time.monotonic() + settings.midtrans_api_timeout_s
    snap = by_transaction_id(transaction_id, payment_type)
    ref = transaction_id if snap else order_id
    auth = base64.b64encode(f"{settings.midtrans_server_key}:".encode()).decode()
    headers = {"Accept": "application/json", "Authorization": f"Basic {auth}"}
    if snap:
        headers["transaction-source"] = "SNAP_API"
    try:
        answer = outbound.call("GET", f"{settings.midtrans_api}/v2/{quote(ref, safe='')}/status",
                               deadline=deadline, headers=headers)
        body = answer.json_object()
    except (outbound.Unreachable, outbound.NotUnderstood) as exc:
        raise PaymentGatewayUnavailable(f"Midtrans status API: {exc}") from None
    code = body.get("status_code")
    if answer.status == 404 or code == "404":
        raise PaymentNotFound(f"Midtrans knows no transaction for order {order_id!r}")
    # Midtrans also reports errors inside a 200 body, as status_code.
    if answer.status != 200 or code not in USUAL_STATUS_CODES:
        raise PaymentGatewayUnavailable(f"Midtrans status API answered {answer.status}/{str(code)[:10]!r}")
    if body.get("order_id") != order_id:
        raise PaymentGatewayUnavailable("Midtrans status API answered for another order (or named none)")
    status, fraud, amount = body.get("transaction_status"), body.get("fraud_status"), body.get("gross_amount")
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        raise PaymentGatewayUnavailable("Midtrans status API answered without a transaction_status")
    if fraud not in (None, "") and not (isinstance(fraud, str) and _STATUS.fullmatch(fraud)):
        raise PaymentGatewayUnavailable("Midtrans status API answered a malformed fraud_status")
    if not isinstance(amount, str) or not GROSS_AMOUNT.fullmatch(amount):
        raise PaymentGatewayUnavailable("Midtrans status API answered a gross_amount not in its format")
    reported_id = body.get("transaction_id")
    if snap and reported_id not in (None, transaction_id):
        raise PaymentGatewayUnavailable("Midtrans status API answered for another transaction")
    kind = body.get("payment_type")
    return StatusReport(order_id=order_id,
                        transaction_id=reported_id if isinstance(reported_id, str) and reported_id else transaction_id,
                        transaction_status=status, fraud_status=fraud or None, gross_amount=amount, status_code=code,
                        payment_type=kind if isinstance(kind, str) and kind else payment_type, body=body)
