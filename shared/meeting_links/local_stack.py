"""`meeting-links local`: create the database if missing, migrate, and serve both functions
wired to each other (webhook on 8080, assign on 8081), until Ctrl-C."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pg8000.native

from . import migrations
from .config import from_environment

REPO = Path(__file__).resolve().parents[2]
LOCAL_SERVER_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"


def ensure_database(database_url: str) -> bool:
    """Creates the database named in the URL if it does not exist; True if it did."""
    url = urlparse(database_url)
    name = url.path.lstrip("/") or "postgres"
    conn = pg8000.native.Connection(url.username or "postgres", host=url.hostname or "127.0.0.1",
                                    port=url.port or 5432, password=url.password,
                                    database="postgres", timeout=10)
    try:
        if conn.run("SELECT 1 FROM pg_database WHERE datname = :n", n=name):
            return False
        conn.run(f"CREATE DATABASE {pg8000.native.identifier(name)}")
        return True
    finally:
        conn.close()


def function_command(name: str, port: int) -> list[str]:
    return [sys.executable, "-m", "functions_framework", "--source", str(REPO / "functions" / name / "main.py"),
            "--target", name, "--port", str(port), "--host", "127.0.0.1"]


def _wait_until_listening(ports: list[int], procs: list[subprocess.Popen], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a function failed to start; see its output above")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f}s") from None
                time.sleep(0.1)


def _banner(settings, webhook_port: int, assign_port: int) -> str:
    url = urlparse(settings.database_url)
    shown_url = urlunparse(url._replace(netloc=url.hostname or ""))  # no password on screen
    key = "the development key" if settings.midtrans_server_key == LOCAL_SERVER_KEY else "from your environment"
    return f"""
Serving against {shown_url}
  midtrans_webhook     http://127.0.0.1:{webhook_port}/
  assign_meeting_link  http://127.0.0.1:{assign_port}/   (needs Authorization: Bearer $INTERNAL_API_TOKEN;
                       set INTERNAL_API_TOKEN yourself to call it directly)

Try it (in another shell, with the same DATABASE_URL and MIDTRANS_SERVER_KEY):
  psql "$DATABASE_URL" -c "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date,
      scheduled_time, duration, price, order_id) VALUES ('u1','e1','Konsultasi','2030-01-06','14:00',60,100000,'ORDER-1')"
  .venv/bin/meeting-links sign ORDER-1 --status settlement --send http://127.0.0.1:{webhook_port}/
  .venv/bin/meeting-links pool status
Local MIDTRANS_SERVER_KEY is {key}.
Ctrl-C stops both functions."""


def run(webhook_port: int = 8080, assign_port: int = 8081) -> int:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/meeting_links")
    env.setdefault("MIDTRANS_SERVER_KEY", LOCAL_SERVER_KEY)
    env.setdefault("INTERNAL_API_TOKEN", secrets.token_urlsafe(24))
    env["ASSIGN_MEETING_LINK_URL"] = f"http://127.0.0.1:{assign_port}/"
    settings = from_environment(env)
    if ensure_database(settings.database_url):
        print(f"created database {urlparse(settings.database_url).path.lstrip('/')}")
    migrations.migrate(settings)

    procs: list[subprocess.Popen] = []

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # gunicorn's quick shutdown; SIGTERM waits for clients
    signal.signal(signal.SIGTERM, stop)
    try:
        procs.append(subprocess.Popen(function_command("assign_meeting_link", assign_port), env=env))
        procs.append(subprocess.Popen(function_command("midtrans_webhook", webhook_port), env=env))
        _wait_until_listening([assign_port, webhook_port], procs)
        print(_banner(settings, webhook_port, assign_port), flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # gunicorn waits for keep-alive clients
                p.kill()
                p.wait()
    return 0
