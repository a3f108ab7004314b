"""Helpers the tests share: bookings, signed notifications, function servers and stand-ins
for outside systems."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import requests

from meeting_links.db import embedded
from meeting_links.midtrans import formats, signature
from meeting_links.support.local_http import LocalHTTPServer
from meeting_links.support.local_stack import stop_function

REPO = Path(__file__).resolve().parents[1]
SERVER_KEY = "SB-Mid-server-TEST-KEY-0123456789"
INTERNAL_TOKEN = "internal-test-token-7f3a"
CLI = str(Path(sys.executable).parent / "meeting-links")


def connect(url: str):
    """A direct connection (outside the pool) in UTC, for setting up and checking state."""
    from meeting_links import config
    from meeting_links.db.connect import connector_for
    conn = connector_for(config.from_environment({"DATABASE_URL": url}))()
    conn.execute_simple("SET TIME ZONE 'UTC'")
    return conn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_order_id(prefix: str = "ORDER") -> str:
    """A unique order_id that ends in a letter: one that ends in a status code's digits
    ("...200") can be split another way, and must not be by accident."""
    return f"{prefix}-{uuid.uuid4()}-x"


def insert_booking(conn, *, date="2030-01-07", time="14:00", duration=60, price=100000,
                   payment_status="pending", status="pending", order_id=None, expert_email=None,
                   customer_email=None) -> dict:
    order_id = order_id or new_order_id()
    row = conn.run(
        "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
        " duration, price, payment_status, status, order_id, expert_email, customer_email) VALUES ('user', 'expert',"
        " 'Konsultasi', :d, :t, :m, :p, :ps, :s, :o, :ee, :ce) RETURNING id",
        d=date, t=time, m=duration, p=price, ps=payment_status, s=status, o=order_id, ee=expert_email,
        ce=customer_email)
    return {"id": str(row[0][0]), "order_id": order_id}


def paid(conn, **kw) -> dict:
    """A booking paid and confirmed (as the webhook leaves one), without a link yet."""
    return insert_booking(conn, payment_status="paid", status="confirmed", **kw)


def open_payment(conn, minutes_old: int, **kw) -> dict:
    """A booking created minutes_old minutes ago and not paid yet (the sweep's status checks)."""
    b = insert_booking(conn, **kw)
    conn.run("UPDATE bookings SET created_at = now() - make_interval(mins => :m) WHERE id = :i",
             m=minutes_old, i=b["id"])
    return b


def local_time_ago(conn, minutes: int) -> dict:
    """{"date", "time"} of the business time zone that many minutes ago (whatever the hour)."""
    return dict(zip(("date", "time"), conn.run(
        "SELECT to_char(t, 'YYYY-MM-DD'), to_char(t, 'HH24:MI') FROM"
        " (SELECT now() AT TIME ZONE 'Asia/Jakarta' - make_interval(mins => :m) AS t) x", m=minutes)[0]))


def booking(conn, booking_id: str) -> dict:
    rows = conn.run(
        "SELECT b.payment_status, b.status, b.meeting_link_id::text AS link_id, l.meeting_link,"
        " b.needs_manual_link, b.paid_at FROM bookings b LEFT JOIN meeting_links_pool l"
        " ON l.id = b.meeting_link_id WHERE b.id = :i", i=booking_id)
    names = [c["name"] for c in conn.columns]
    return dict(zip(names, rows[0]))


def status_code(status: str) -> str:
    """The status_code Midtrans sends with a transaction_status (the first it documents)."""
    return formats.status_codes_for(status)[0]


def notification(order_id: str, status: str = "settlement", *, amount="100000.00",
                 fraud_status: str | None = "accept", transaction_id: str | None = None,
                 status_code: str | None = None, key: str = SERVER_KEY, payment_type="bank_transfer") -> dict:
    body = {
        "transaction_time": "2030-01-01 10:00:00",
        "transaction_status": status,
        "transaction_id": transaction_id or str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)),
        "status_message": "midtrans payment notification",
        "status_code": status_code or formats.status_codes_for(status)[0],
        "payment_type": payment_type,
        "order_id": order_id,
        "merchant_id": "G000000000",
        "gross_amount": amount,
        "currency": "IDR",
    }
    if fraud_status is not None:
        body["fraud_status"] = fraud_status
    return signature.signed(body, key)


_started: list[subprocess.Popen] = []


def stop_everything_started() -> None:
    """Whatever a test started and did not stop (it failed, or timed out): stopped, with its group."""
    while _started:
        stop_function(_started.pop(), wait_s=2)


class FunctionServer:
    """A function served by functions-framework (gunicorn) in its own process group."""

    def __init__(self, target: str, env: dict, source: Path | None = None, cwd: Path | None = None,
                 command: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        source = source or REPO / "functions" / target / "main.py"
        self.command = command or [sys.executable, "-m", "functions_framework", "--source", str(source),
                                   "--target", target, "--host", "127.0.0.1"]
        self.command = self.command + ["--port", str(self.port)]
        self.env = {**os.environ, **env}
        self.cwd = cwd or REPO
        self.proc = None
        self.log_path = None

    def start(self) -> FunctionServer:
        import tempfile
        with tempfile.NamedTemporaryFile(prefix="fnserver-", suffix=".log", delete=False) as log:
            self.log_path = log.name
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _started.append(self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            if embedded.answers(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.output()}")

    def output(self) -> str:
        return Path(self.log_path).read_text() if self.log_path else ""

    def log_entries(self) -> list[dict]:
        return json_lines(self.output())

    def stop(self) -> None:
        if self.proc is not None:
            stop_function(self.proc)
            if self.proc in _started:
                _started.remove(self.proc)

    def post(self, body, **kwargs) -> requests.Response:
        return requests.post(self.url, json=body, timeout=20, **kwargs)


def wait_until_blocked_by(blocker, observer, timeout_s: float = 60) -> None:
    """Returns once PostgreSQL shows a session waiting for a lock the connection `blocker`
    holds (pg_blocking_pids, asked on `observer`, outside any transaction): what a test means
    by "the other one now waits", which a sleep only hopes for on a busy machine."""
    pid = blocker.run("SELECT pg_backend_pid()")[0][0]
    deadline = time.monotonic() + timeout_s
    while not observer.run("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE CAST(:p AS int) = ANY "
                           "(pg_blocking_pids(pid)))", p=pid)[0][0]:
        if time.monotonic() > deadline:
            raise AssertionError(f"no session waited on backend {pid} within {timeout_s} s")
        time.sleep(0.01)


def json_lines(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class FakeServer(LocalHTTPServer):
    """A tiny threaded HTTP server; handler(method, path, headers, body) -> (status, payload, headers)."""

    def __init__(self, handler):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers), "body": body})
                status, payload, headers = handler(self.command, self.path, self.headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                if not isinstance(payload, bytes):
                    headers = {"Content-Type": "application/json", **(headers or {})}
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client gave up waiting (what a slow answer is for): nobody to answer

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass

        super().__init__(Handler, name="fake-server")


@contextmanager
def running(*servers):
    started = []
    try:
        for s in servers:
            started.append(s.start())
        yield started
    finally:
        for s in started:
            s.stop()


# --- a reference model of the payment state machine, written apart from the SQL ---------

_NOT_PAID_YET, _ENDED = {"pending", "review"}, {"failed", "cancelled", "expired"}
_MAY_FOLLOW = {  # for each target state, the states a notification may move a booking from
    "paid": _NOT_PAID_YET | _ENDED, "review": {"pending"}, "pending": set(),
    "failed-by-deny": _NOT_PAID_YET | {"paid"}, "failed": _NOT_PAID_YET,
    "cancelled": _NOT_PAID_YET | {"paid"}, "expired": _NOT_PAID_YET,
    "refunded": _NOT_PAID_YET | _ENDED | {"paid"},
}


def _reference_target(status, fraud):
    status, fraud = status.lower(), (fraud or "").lower() or None
    if status in ("settlement", "capture", "partial_refund", "partial_chargeback"):
        if status.startswith("partial") or fraud in (None, "", "accept"):
            return "paid"
        return "review" if fraud == "challenge" else "failed-by-deny"
    return {"pending": "pending", "authorize": "pending", "deny": "failed-by-deny", "failure": "failed",
            "cancel": "cancelled", "expire": "expired", "refund": "refunded", "chargeback": "refunded"}[status]


def reference_intent(status: str, fraud: str | None):
    """(payment state asked for, the states it may come from), or None for one not acted on."""
    try:
        target = _reference_target(status, fraud)
    except KeyError:
        return None
    if status.lower() in ("settlement", "capture") and (fraud or "").lower() not in ("", "accept", "challenge", "deny"):
        return None
    return ("failed" if target == "failed-by-deny" else target), _MAY_FOLLOW[target]


def expected_payment_status(notifications) -> str:
    """The payment state a booking should end in after these (transaction_status,
    fraud_status, transaction_id) notifications, in the order they were processed."""
    current, seen = "pending", set()
    for status, fraud, txn in notifications:
        if (status, fraud, txn) in seen:
            continue
        seen.add((status, fraud, txn))
        target = _reference_target(status, fraud)
        if current in _MAY_FOLLOW[target]:
            current = "failed" if target == "failed-by-deny" else target
    return current


class FakeMidtrans:
    """Midtrans's GET /v2/{order_id or transaction_id}/status, answering from `statuses`
    (order_id -> body) and 404 for others. by_transaction_id: orders (DANA's, BI-SNAP's)
    that, as Midtrans documents, can be asked about only by their transaction id and with the
    header `transaction-source: SNAP_API` (asked otherwise: 404); `fail` makes every call a
    500, `failing` the calls for those orders."""

    def __init__(self):
        self.statuses, self.fail, self.failing, self.by_transaction_id = {}, False, set(), set()
        self.server = FakeServer(self._handle)

    def _handle(self, method, path, headers, body):
        ref = path.split("/")[2]
        if self.fail or ref in self.failing:
            return 500, {"status_code": "500", "status_message": "internal error"}, {}
        for order_id, status in self.statuses.items():
            if order_id in self.by_transaction_id:
                found = ref == status.get("transaction_id") and headers.get("transaction-source") == "SNAP_API"
            else:
                found = ref in (order_id, status.get("transaction_id"))
            if found:
                return 200, status, {}
        return 404, {"status_code": "404", "status_message": "Transaction doesn't exist."}, {}

    def settle(self, order_id, amount="100000.00", status="settlement", transaction_id=None, payment_type=None):
        self.statuses[order_id] = {
            "status_code": "201" if status.lower() == "pending" else "200",
            "status_message": "Success, transaction is found",
            "transaction_id": transaction_id or f"tx-{order_id}", "order_id": order_id, "gross_amount": amount,
            "transaction_status": status, "fraud_status": "accept", "signature_key": "f" * 128}
        if payment_type:
            self.statuses[order_id]["payment_type"] = payment_type

    def orders_asked(self):
        return [r["path"].split("/")[2] for r in self.server.requests]
