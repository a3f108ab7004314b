"""Local use without traps: ports that are taken, one default database, database errors that
say where and what to do (with an exit code a script can tell apart), a blank key meaning
unset, and a support tool whose tables show local times and no log lines."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from meeting_links import config
from meeting_links.support.local_stack import port_in_use
from support import REPO, SERVER_KEY, booking, connect, free_port, insert_booking, notification

pytestmark = pytest.mark.http

CLI = str(Path(sys.executable).parent / "meeting-links")
LOCAL_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"


def cli(*args, env=None, timeout=60):
    # Ports of its own for every helper the stack may serve: tests run in parallel.
    ports = {"EVENTS_PORT": str(free_port()), "MEET_FAKE_PORT": str(free_port())}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **ports, **(env or {})})


@pytest.fixture
def server(server_url):
    """host:port of the test run's PostgreSQL (127.0.0.1:5432, or the embedded one)."""
    url = urlparse(server_url)
    return f"{url.hostname}:{url.port or 5432}"


@pytest.fixture
def scratch_database(server_url):
    """A database name that exists for the test only (created by whoever needs it)."""
    name = f"meeting_links_scratch_{uuid.uuid4().hex[:8]}"
    try:
        yield name, server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = connect(server_url)
        conn.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def test_a_taken_port_is_a_clear_failure_not_someone_elses_server(database_url):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = cli("local", env={"DATABASE_URL": database_url, "WEBHOOK_PORT": str(port),
                                   "ASSIGN_PORT": str(free_port())})
    finally:
        busy.close()
    assert result.returncode == 6 and "Serving" not in result.stdout  # 6: misconfigured
    assert result.stderr.strip() == (f"error: port {port} is already in use (another server?): stop it, or "
                                     f"choose another port, e.g. WEBHOOK_PORT={port + 10} make run")


def test_a_port_left_in_time_wait_by_the_last_run_is_free():
    """Ctrl-C, then `make run` again at once: the servers closed their connections first, so
    their ports sit in TIME_WAIT for a minute. The servers bind them (SO_REUSEADDR); the check
    before them must not call them taken."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first, as our servers do: TIME_WAIT on `port`
    client.recv(1)
    client.close()
    listener.close()
    with socket.socket() as plain, pytest.raises(OSError):  # the precondition: a plain bind is refused
        plain.bind(("127.0.0.1", port))
    assert port_in_use(port) is False


def test_one_default_database_everywhere():
    assert config.from_environment({}).database_url == "postgresql://postgres@127.0.0.1:5432/meeting_links"
    assert config.from_environment({}).db_name == "meeting_links"
    from meeting_links.support import local_stack
    assert local_stack.DEFAULT_DATABASE == config.from_environment({}).db_name


def test_a_database_never_migrated_says_to_migrate_it(scratch_database, server_url, server):
    name, url = scratch_database
    conn = connect(server_url)
    conn.run(f"CREATE DATABASE {name}")
    conn.close()
    result = cli("pool", "status", env={"DATABASE_URL": url})
    assert result.returncode == 5 and result.stdout == ""  # 5: unavailable (until someone migrates)
    assert result.stderr.startswith(f"error: PostgreSQL at {server}, database {name} is not migrated")
    assert "run `meeting-links migrate` with DATABASE_URL pointing at it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url,expected", [
    ("postgresql://postgres@127.0.0.1:1/meeting_links",
     "error: cannot reach PostgreSQL at 127.0.0.1:1, database meeting_links: is PostgreSQL running there?"),
    ("postgresql://postgres@{server}/no_such_database_here",
     "error: PostgreSQL at {server}, database no_such_database_here: that database does not exist"),
    ("postgresql://nobody_at_all@{server}/postgres",
     "error: PostgreSQL at {server}, database postgres: user nobody_at_all may not connect"),
])
def test_database_errors_name_the_server_and_say_what_to_do(url, expected, server):
    url, expected = url.format(server=server), expected.format(server=server)
    for args, code in ((("pool", "status"), 5), (("migrate",), 1)):
        result = cli(*args, env={"DATABASE_URL": url})
        assert result.returncode == code, result
        assert result.stderr.startswith(expected) and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_make_run_against_an_unreachable_server_is_one_line():
    result = cli("local", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/meeting_links",
                               "WEBHOOK_PORT": str(free_port()), "ASSIGN_PORT": str(free_port())})
    assert result.returncode == 5 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: cannot reach PostgreSQL at 127.0.0.1:1, database meeting_links: is PostgreSQL running there? "
        "(check DATABASE_URL, or INSTANCE_CONNECTION_NAME)"]


def test_a_blank_key_is_unset_and_the_banner_tells_the_truth_about_the_token(scratch_database, tmp_path):
    name, url = scratch_database
    webhook_port, assign_port = free_port(), free_port()
    log = tmp_path / "local.log"
    env = {**os.environ, "DATABASE_URL": url, "MIDTRANS_SERVER_KEY": "", "INTERNAL_API_TOKEN": " ",
           "WEBHOOK_PORT": str(webhook_port), "ASSIGN_PORT": str(assign_port), "EVENTS_PORT": str(free_port())}
    with log.open("w") as out:
        proc = subprocess.Popen([CLI, "local"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        while "Ctrl-C stops" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        banner = log.read_text()
        assert "Local MIDTRANS_SERVER_KEY is the development key (MIDTRANS_SERVER_KEY was not set)." in banner
        token = re.search(r"Internal token generated for this run: (\S+)\.", banner).group(1)
        # The printed command works as printed.
        curl = re.search(r"curl -H 'Authorization: Bearer (\S+)' -d '(\{.*\})' (\S+)", banner)
        assert curl.group(1) == token
        swept = requests.post(curl.group(3), data=curl.group(2), timeout=10,
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert swept.status_code == 200 and swept.json()["success"] is True
        conn = connect(url)
        b = insert_booking(conn)
        conn.close()
        r = requests.post(f"http://127.0.0.1:{webhook_port}/", json=notification(b["order_id"], key=LOCAL_KEY),
                          timeout=10)
        assert r.status_code == 200 and r.json()["meetingLink"].startswith("https://"), r.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0 and "stopped" in log.read_text()


def test_support_tables_show_local_times_and_no_log_lines(admin, conn):
    b = insert_booking(conn, date="2030-01-07", time="14:00", payment_status="paid", status="confirmed")
    code, out, err = admin("bookings", "assign", b["id"])
    assert code == 0 and err == ""  # no INFO line mixed in
    code, out, _ = admin("links", "disable", "https://meet.google.com/kcw-ebey-pqu")
    assert "2030-01-07 14:00 WIB" in out and "UTC" not in out
    other = insert_booking(conn, date="2030-01-08", time="09:00", payment_status="paid", status="confirmed")
    code, out, err = admin("-v", "bookings", "assign", other["id"])
    lines = err.splitlines()
    assert code == 0 and len(lines) == 1 and " INFO    meeting link assigned by support" in lines[0]  # readable


def test_capacity_from_a_given_day(admin, conn):
    for t in ("10:00", "10:30"):
        insert_booking(conn, date="2031-03-02", time=t, payment_status="paid", status="confirmed")
    rows = admin.json("pool", "capacity", "--from", "2031-03-01", "--days", "3")
    assert [(r["day"], r["sessions"], r["peakConcurrent"]) for r in rows] == [
        ("2031-03-01", 0, 0), ("2031-03-02", 2, 2), ("2031-03-03", 0, 0)]
    code, _, err = admin("pool", "capacity", "--from", "March")
    assert code == 2 and err == "error: --from must be a date, YYYY-MM-DD, got 'March'\n"


def test_a_full_pool_is_explained_to_support_not_to_the_customer(admin, conn, set_links):
    set_links(1)
    first, second = (insert_booking(conn, payment_status="paid", status="confirmed") for _ in range(2))
    assert admin("bookings", "assign", first["id"])[0] == 0
    code, out, err = admin("bookings", "assign", second["order_id"])
    assert code == 4 and "Please contact support" not in err
    assert err.splitlines()[-1].startswith(
        f"error: no link is free for booking {second['order_id']} at 2030-01-07 14:00 WIB-2030-01-07 15:00 WIB")
    assert "`links add`" in err


def test_a_bad_password_is_named_as_such():
    """The local server trusts every login, so the refusal is built as pg8000 reports it."""
    from pg8000.exceptions import DatabaseError

    from meeting_links.db import errors as db
    settings = config.from_environment({"DATABASE_URL": "postgresql://app:wrong@db.internal:6432/bookings"})
    refused = DatabaseError({"S": "FATAL", "C": "28P01", "M": 'password authentication failed for user "app"'})
    assert str(db.connect_failure(settings, refused)) == (
        "PostgreSQL at db.internal:6432, database bookings: password authentication failed for user app; "
        "check the password (DATABASE_URL or DB_PASS)")
    cloud = config.from_environment({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "app"})
    assert str(db.connect_failure(cloud, OSError("timed out"))).startswith(
        "cannot reach Cloud SQL instance p:r:i, database meeting_links")


# Issue 18.10: the Stripe-CLI-like loop, with no psql and no curl.
def test_the_local_loop_create_pay_see_the_events_and_sweep(admin, conn, webhook_server, monkeypatch):
    monkeypatch.setenv("MIDTRANS_SERVER_KEY", SERVER_KEY)  # the key the test webhook checks with
    [created] = admin.json("bookings", "create", "--date", "2030-03-03", "--time", "10:00", "--price", "150000")
    assert created["paymentStatus"] == "pending" and created["orderId"].startswith("TEST-")
    code, out, err = admin("sign", created["orderId"], "--send", webhook_server.url)
    assert code == 0 and "HTTP 200" in out, out + err
    assert booking(conn, created["id"])["payment_status"] == "paid"
    listed = admin.json("events", "list", "--booking", created["orderId"])
    assert [e["type"] for e in listed] == ["link.assigned"]
    shown = admin.json("events", "show", str(listed[0]["id"]))
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["payload"]["data"]["orderId"] == created["orderId"]
    code, out, _ = admin("sweep")
    assert code == 0 and "assigned" in out
