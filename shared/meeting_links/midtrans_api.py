"""Midtrans's GET Status API, for the optional second check of a notification
(MIDTRANS_VERIFY_WITH_STATUS_API). Basic auth with the server key as user, no password."""
from __future__ import annotations

import threading
from urllib.parse import quote

import requests

from .config import Settings
from .errors import PaymentGatewayUnavailable, PaymentNotFound

_session: requests.Session | None = None
_lock = threading.Lock()


def _http() -> requests.Session:
    global _session
    with _lock:
        if _session is None:
            _session = requests.Session()
        return _session


def transaction_status(settings: Settings, order_id: str) -> dict:
    url = f"{settings.midtrans_api}/v2/{quote(order_id, safe='')}/status"
    try:
        response = _http().get(url, auth=(settings.midtrans_server_key, ""),
                               headers={"Accept": "application/json"},
                               timeout=settings.midtrans_api_timeout_s, allow_redirects=False)
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
    except (requests.RequestException, ValueError) as exc:
        raise PaymentGatewayUnavailable(f"Midtrans status API unreachable ({type(exc).__name__})") from exc
    if response.status_code == 404 or str(body.get("status_code")) == "404":
        raise PaymentNotFound(f"Midtrans knows no transaction for order {order_id!r}")
    # Midtrans also reports errors inside a 200 body, as status_code.
    if response.status_code != 200 or str(body.get("status_code", "200")) not in ("200", "201", "202", "407"):
        raise PaymentGatewayUnavailable(
            f"Midtrans status API answered {response.status_code}/{body.get('status_code')}")
    if body.get("order_id") not in (None, order_id):
        raise PaymentGatewayUnavailable("Midtrans status API answered for another order")
    return body
