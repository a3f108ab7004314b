"""Helpers the tests share: bookings, signed notifications, and function servers."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from meeting_links import signature

REPO = Path(__file__).resolve().parents[1]
SERVER_KEY = "SB-Mid-server-TEST-KEY-0123456789"
INTERNAL_TOKEN = "internal-test-token-7f3a"


def connect(url: str):
    """A direct connection (outside the pool) in UTC, for setting up and checking state."""
    from meeting_links import config, db
    conn = db.connector_for(config.from_environment({"DATABASE_URL": url}))()
    conn.execute_simple("SET TIME ZONE 'UTC'")
    return conn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_order_id(prefix: str = "ORDER") -> str:
    """A unique order_id that ends in a letter: one that ends in a status code's digits
    ("...200") makes its signature ambiguous, and the webhook then confirms it with the
    status API, which most tests do not serve."""
    return f"{prefix}-{uuid.uuid4()}-x"


def insert_booking(conn, *, date="2030-01-07", time="14:00", duration=60, price=100000,
                   payment_status="pending", status="pending", order_id=None) -> dict:
    order_id = order_id or new_order_id()
    row = conn.run(
        "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
        " duration, price, payment_status, status, order_id) VALUES ('user', 'expert',"
        " 'Konsultasi', :d, :t, :m, :p, :ps, :s, :o) RETURNING id",
        d=date, t=time, m=duration, p=price, ps=payment_status, s=status, o=order_id)
    return {"id": str(row[0][0]), "order_id": order_id}


def booking(conn, booking_id: str) -> dict:
    rows = conn.run(
        "SELECT b.payment_status, b.status, b.meeting_link_id::text AS link_id, l.meeting_link,"
        " b.needs_manual_link, b.paid_at FROM bookings b LEFT JOIN meeting_links_pool l"
        " ON l.id = b.meeting_link_id WHERE b.id = :i", i=booking_id)
    names = [c["name"] for c in conn.columns]
    return dict(zip(names, rows[0]))


# The status_code Midtrans sends with each transaction_status (the first it documents).
MIDTRANS_STATUS_CODE = {"settlement": "200", "capture": "200", "pending": "201", "authorize": "201",
                        "refund": "200", "partial_refund": "200", "chargeback": "200",
                        "partial_chargeback": "200", "cancel": "202", "deny": "202", "expire": "202",
                        "failure": "202"}


def notification(order_id: str, status: str = "settlement", *, amount="100000.00",
                 fraud_status: str | None = "accept", transaction_id: str | None = None,
                 status_code: str | None = None, key: str = SERVER_KEY) -> dict:
    body = {
        "transaction_time": "2030-01-01 10:00:00",
        "transaction_status": status,
        "transaction_id": transaction_id or str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)),
        "status_message": "midtrans payment notification",
        "status_code": status_code or MIDTRANS_STATUS_CODE.get(status, "202"),
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "merchant_id": "G000000000",
        "gross_amount": amount,
        "currency": "IDR",
    }
    if fraud_status is not None:
        body["fraud_status"] = fraud_status
    return signature.signed(body, key)


class FunctionServer:
    """A function served by functions-framework (gunicorn) in its own process."""

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
            # Its own process group, so that stop() reaches gunicorn's workers too.
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.output()}")

    def output(self) -> str:
        return Path(self.log_path).read_text() if self.log_path else ""

    def log_entries(self) -> list[dict]:
        entries = []
        for line in self.output().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def stop(self) -> None:
        """Stops the server now: SIGINT is gunicorn's quick shutdown (SIGTERM would wait for
        keep-alive clients, and its workers would go on serving meanwhile)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                self.proc.wait()

    def post(self, body, **kwargs) -> requests.Response:
        return requests.post(self.url, json=body, timeout=20, **kwargs)


class FakeServer:
    """A tiny threaded HTTP server; handler(method, path, headers, body) -> (status, dict)."""

    def __init__(self, handler):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers), "body": body})
                status, payload, headers = handler(self.command, self.path, self.headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                if not isinstance(payload, bytes):
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


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


# --- a reference model of the payment state machine, written apart from payments.py --------

_NOT_PAID_YET, _ENDED = {"pending", "review"}, {"failed", "cancelled", "expired"}
_MAY_FOLLOW = {  # for each target state, the states a notification may move a booking from
    "paid": _NOT_PAID_YET | _ENDED, "review": {"pending"}, "pending": set(),
    "failed-by-deny": _NOT_PAID_YET | {"paid"}, "failed": _NOT_PAID_YET,
    "cancelled": _NOT_PAID_YET | {"paid"}, "expired": _NOT_PAID_YET,
    "refunded": _NOT_PAID_YET | _ENDED | {"paid"},
}


def _reference_target(status, fraud):
    if status in ("settlement", "capture", "partial_refund", "partial_chargeback"):
        if status.startswith("partial") or fraud in (None, "", "accept"):
            return "paid"
        return "review" if fraud == "challenge" else "failed-by-deny"
    return {"pending": "pending", "authorize": "pending", "deny": "failed-by-deny", "failure": "failed",
            "cancel": "cancelled", "expire": "expired", "refund": "refunded", "chargeback": "refunded"}[status]


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
