"""No input gives a 500 or a memory spike: chunked bodies are read only up to the limit,
deep nesting and infinite numbers are 400, a booking at 24:00 is refused by the schema, and
a malformed setting answers the JSON error body."""
import io
import select
import socket

import pg8000.exceptions
import pytest
import requests
from werkzeug.test import create_environ, run_wsgi_app

from conftest import function_client
from meeting_links.web import inbound as web
from support import INTERNAL_TOKEN, SERVER_KEY, FunctionServer, booking, insert_booking, notification

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


# --- 6. chunked bodies ---------------------------------------------------------------------

class EndlessBody(io.RawIOBase):
    """A request body that never ends, counting what was read of it."""

    def __init__(self):
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.read_bytes > 16 * 1024 * 1024:  # a stand-in for the 1 GiB that filled a worker
            raise OSError("the whole body is being read")
        n = min(len(buffer), 8192)
        buffer[:n] = b" " * n
        self.read_bytes += n
        return n


@pytest.mark.parametrize("target,auth,status", [("midtrans_webhook", AUTH, "413"),
                                                ("assign_meeting_link", AUTH, "413"),
                                                ("assign_meeting_link", {}, "401")])
def test_a_body_without_length_is_read_only_up_to_the_limit(app_env, target, auth, status):
    """Neither our code nor functions-framework (which reads what is left of every body
    after the response) reads a refused body whole."""
    app_env()
    body = EndlessBody()
    environ = create_environ("/", method="POST", headers={**auth, "Transfer-Encoding": "chunked",
                                                          "Content-Type": "application/json"})
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": body, "wsgi.input_terminated": True})
    app = function_client(target).application
    iterable, answer, headers = run_wsgi_app(app, environ, buffered=True)
    assert answer.startswith(status) and b'"success": false' in b"".join(iterable)
    assert body.read_bytes <= web.MAX_BODY_BYTES + 8192


def chunked_upload(port: int, most: int) -> tuple[bytes, int]:
    """Streams a chunked body of up to `most` bytes (never ending it) until an answer comes;
    returns the answer and how much had been sent when it came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + INTERNAL_TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk, sent = b" " * 4096, 0
        while sent < most:
            if select.select([s], [], [], 0)[0]:
                return s.recv(4096), sent
            try:
                s.sendall(b"1000\r\n" + chunk + b"\r\n")
            except OSError:  # the server answered and closed: read what it said
                break
            sent += len(chunk)
        if select.select([s], [], [], 3)[0]:
            return s.recv(4096), sent
        return b"", sent


@pytest.mark.parametrize("server", ["webhook_server", "assign_server"])
def test_a_chunked_body_over_the_limit_is_413_before_the_body_ends(request, server):
    port = request.getfixturevalue(server).port
    # The body never ends (no last chunk): a server that reads it whole never answers.
    answer, sent = chunked_upload(port, 4 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), (answer[:100], sent)


# --- 7. nesting and numbers ------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000,
                                 "[" * 40 + "]" * 40, '{"order_id": 1e400}', '{"bookingId": -1e400}'])
def test_deep_nesting_and_infinite_numbers_are_400_on_both_functions(conn, webhook_server, assign_server, raw):
    for server in (webhook_server, assign_server):
        r = requests.post(server.url, data=raw, headers={**AUTH, "Content-Type": "application/json"}, timeout=20)
        assert r.status_code == 400, (server.url, r.text)
        assert r.json()["success"] is False


def test_an_infinite_number_in_a_signed_notification_is_400_and_writes_nothing(conn, webhook_server):
    b = insert_booking(conn)
    body = notification(b["order_id"])
    raw = requests.models.complexjson.dumps(body)[:-1] + ', "extra": 1e400}'
    r = requests.post(webhook_server.url, data=raw, headers={"Content-Type": "application/json"}, timeout=20)
    assert r.status_code == 400
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]


# --- 9. 24:00 --------------------------------------------------------------------------------

def test_a_booking_at_24_00_is_refused_by_the_schema_with_a_clear_error(conn):
    with pytest.raises(pg8000.exceptions.DatabaseError) as refused:
        insert_booking(conn, time="24:00")
    assert "scheduled_time must be before 24:00 (write 00:00 of the next day)" in str(refused.value)
    b = insert_booking(conn)
    with pytest.raises(pg8000.exceptions.DatabaseError):
        conn.run("UPDATE bookings SET scheduled_time = '24:00' WHERE id = :i", i=b["id"])


# --- 10. configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("setting", [{"TRUST_CLOUD_RUN_IAM": "yes please"}, {"DB_POOL_SIZE": "x"},
                                     {"DB_TIMEOUT_S": "nan"}])
@pytest.mark.parametrize("target", ["midtrans_webhook", "assign_meeting_link"])
def test_a_malformed_setting_answers_the_json_error_body(app_env, target, setting):
    app_env(**setting)
    r = function_client(target).post("/", json={"bookingId": "x"}, headers=AUTH)
    assert r.status_code == 500 and r.is_json
    assert r.get_json() == {"success": False, "error": "Service misconfigured"}


def test_a_malformed_setting_over_http_is_json_and_logged(database_url):
    server = FunctionServer("assign_meeting_link", {"DATABASE_URL": database_url, "DB_POOL_SIZE": "x",
                                                    "INTERNAL_API_TOKEN": INTERNAL_TOKEN}).start()
    try:
        r = server.post({"sweep": True}, headers=AUTH)
        entries = server.log_entries()
    finally:
        server.stop()
    assert r.status_code == 500 and r.headers["Content-Type"] == "application/json"
    assert r.json()["error"] == "Service misconfigured"
    assert any(e.get("error") == "ConfigurationError" and "DB_POOL_SIZE" in e.get("detail", "") for e in entries)


def test_secrets_from_the_environment_are_stripped_of_surrounding_whitespace(conn, app_env):
    app_env(MIDTRANS_SERVER_KEY=SERVER_KEY + "\n", INTERNAL_API_TOKEN=f"  {INTERNAL_TOKEN}\r\n",
            ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    r = function_client("assign_meeting_link").post("/", json={"bookingId": b["id"]}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    pending = insert_booking(conn)
    r = function_client("midtrans_webhook").post("/", json=notification(pending["order_id"], "pending"))
    assert r.status_code == 200, r.get_json()
    assert booking(conn, pending["id"])["payment_status"] == "pending"
    assert r.get_json()["outcome"] == "unchanged"


def test_13_a_database_outage_tells_the_public_caller_to_retry_and_nothing_more(app_env, capfd):
    """Issue 18.13: the public webhook's 503 names no host, port or database; the log does."""
    app_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/secret_db_name", ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")
    capfd.readouterr()
    r = function_client("midtrans_webhook").post("/", json=notification("ORDER-OUTAGE-1"))
    assert r.status_code == 503 and r.get_json() == {"success": False, "error": "Temporarily unavailable; retry later"}
    assert r.headers["Retry-After"] == "60"
    assert not any(s in r.get_data(as_text=True) for s in ("127.0.0.1", ":1", "secret_db_name", "PostgreSQL"))
    logged = capfd.readouterr().err
    assert "secret_db_name" in logged and "127.0.0.1:1" in logged
