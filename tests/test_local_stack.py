"""The README's run command: `meeting-links local` creates the database, migrates, serves both
functions wired to each other, and prints curl commands that work."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pg8000.native
import pytest
import requests

from support import REPO, free_port, notification

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http

LOCAL_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"


def wait_for(port, proc, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "local stack exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("local stack did not start")


def test_local_stack_from_nothing_to_an_assigned_link(database_url, tmp_path):
    name = f"meeting_links_local_{uuid.uuid4().hex[:8]}"
    url = database_url.rsplit("/", 1)[0] + "/" + name
    webhook_port, assign_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MIDTRANS_SERVER_KEY", "INTERNAL_API_TOKEN")}
    env["DATABASE_URL"] = url
    log = tmp_path / "local.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "meeting-links"), "local",
                                 "--webhook-port", str(webhook_port), "--assign-port", str(assign_port)],
                                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(webhook_port, proc)
        wait_for(assign_port, proc)
        admin = pg8000.native.Connection("postgres", host="127.0.0.1", database=name)
        admin.run("INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                  " duration, price, order_id) VALUES ('u1','e1','Konsultasi','2030-01-06','14:00',60,100000,'ORDER-1')")
        r = requests.post(f"http://127.0.0.1:{webhook_port}/", json=notification("ORDER-1", key=LOCAL_KEY), timeout=10)
        assert r.status_code == 200 and r.json()["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu", r.text
        admin.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        output = log.read_text()
        conn = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
        conn.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
    assert f"created database {name}" in output and "applied 0001_pool_and_bookings.sql" in output
    assert f"meeting-links sign ORDER-1 --status settlement --send http://127.0.0.1:{webhook_port}/" in output
