"""`meeting-links local`: create the database if missing, migrate, and serve both functions
wired to each other (webhook on WEBHOOK_PORT, default 8080; assign on ASSIGN_PORT, default
8081), until Ctrl-C."""
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
from pg8000.exceptions import DatabaseError, InterfaceError

from . import migrations
from .config import DEFAULT_DATABASE_URL, from_environment
from .db import connect_failure
from .errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]
LOCAL_SERVER_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"


def ensure_database(database_url: str) -> bool:
    """Creates the database named in the URL if it does not exist; True if it did. An
    unreachable or refusing server is one DatabaseUnavailable line, not a traceback."""
    url = urlparse(database_url)
    name = url.path.lstrip("/") or "meeting_links"
    try:
        conn = pg8000.native.Connection(url.username or "postgres", host=url.hostname or "127.0.0.1",
                                        port=url.port or 5432, password=url.password,
                                        database="postgres", timeout=10, ssl_context=False)
    except (InterfaceError, OSError, DatabaseError) as exc:
        raise connect_failure(from_environment({"DATABASE_URL": database_url}), exc) from None
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


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _banner(settings, webhook_port: int, assign_port: int, token_generated: bool) -> str:
    url = urlparse(settings.database_url)
    shown_url = urlunparse(url._replace(netloc=f"{url.hostname or ''}:{url.port or 5432}"))  # no password on screen
    key = ("the development key (MIDTRANS_SERVER_KEY was not set)" if settings.midtrans_server_key == LOCAL_SERVER_KEY
           else "from your environment")
    token = (f"generated for this run: {settings.internal_api_token}" if token_generated
             else "from your environment (INTERNAL_API_TOKEN)")
    return f"""
Serving against {shown_url}
  midtrans_webhook     http://127.0.0.1:{webhook_port}/
  assign_meeting_link  http://127.0.0.1:{assign_port}/   (private: needs the internal token)
Internal token {token}. Call assign directly, no restart needed:
  curl -H "Authorization: Bearer {settings.internal_api_token}" -d '{{"sweep": true}}' http://127.0.0.1:{assign_port}/

Try it (in another shell, with the same DATABASE_URL and MIDTRANS_SERVER_KEY):
  psql "$DATABASE_URL" -c "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date,
      scheduled_time, duration, price, order_id) VALUES ('u1','e1','Konsultasi','2030-01-06','14:00',60,100000,'ORDER-1')"
  .venv/bin/meeting-links sign ORDER-1 --status settlement --send http://127.0.0.1:{webhook_port}/
  .venv/bin/meeting-links pool status
Local MIDTRANS_SERVER_KEY is {key}.
Ctrl-C stops both functions."""


def run(webhook_port: int = 8080, assign_port: int = 8081) -> int:
    for name, port in (("WEBHOOK_PORT", webhook_port), ("ASSIGN_PORT", assign_port)):
        if port_in_use(port):
            raise ConfigurationError(f"port {port} is already in use (another server?): stop it, or choose "
                                     f"another port, e.g. {name}={port + 10} make run")
    env = dict(os.environ)
    # Blank means unset, as everywhere else.
    if not env.get("DATABASE_URL", "").strip():
        env["DATABASE_URL"] = DEFAULT_DATABASE_URL
    if not env.get("MIDTRANS_SERVER_KEY", "").strip():
        env["MIDTRANS_SERVER_KEY"] = LOCAL_SERVER_KEY
    token_generated = not env.get("INTERNAL_API_TOKEN", "").strip()
    if token_generated:
        env["INTERNAL_API_TOKEN"] = secrets.token_urlsafe(24)
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
        print(_banner(settings, webhook_port, assign_port, token_generated), flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("error: a function stopped; see its output above", file=sys.stderr)
        return 1
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
