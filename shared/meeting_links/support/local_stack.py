"""`meeting-links local` (`make run`): the whole system on one machine, until Ctrl-C.

It finds a PostgreSQL (DATABASE_URL; or, with DATABASE_URL unset and nothing at
127.0.0.1:5432, or DATABASE_URL=embedded, the embedded one, started for this run), creates
the database if missing, migrates it, and serves both functions wired to each other
(webhook on WEBHOOK_PORT, default 8080; assign on ASSIGN_PORT, default 8081). Beside them: a
stand-in for the app that receives the link events and prints them (EVENTS_PORT, default
8082), the sweep every LOCAL_SWEEP_INTERVAL_S seconds (600, as deployed), and with
--fake-meet a stand-in for Google's token endpoint and Meet API (MEET_FAKE_PORT, 8083).

Each function runs in a process group of its own, so a terminal's Ctrl-C reaches only this
process, which stops each gunicorn master once (its workers follow), then whatever is left
of its group; a stop by signal (SIGTERM, `timeout`) is an ordinary stop, exit 0.
"""
from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from ..config import DEFAULT_DATABASE, EMBEDDED, Settings, from_environment
from ..db import embedded, migrations
from ..db.errors import connect_failure
from ..errors import ConfigurationError
from ..web import outbound

REPO = Path(__file__).resolve().parents[3]
LOCAL_SERVER_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"
_said_embedded = False


def port(name: str, default: int, env=None) -> int:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"{name} must be a port number, got {raw!r}")
    return int(raw)


def resolve(settings: Settings, env=None, *, stop_at_exit: bool = True) -> Settings:
    """The settings with DATABASE_URL made concrete: the embedded server's URL (started if
    need be) for DATABASE_URL=embedded, or for no DATABASE_URL with nothing at 127.0.0.1:5432."""
    global _said_embedded
    env = os.environ if env is None else env
    if settings.instance_connection_name:
        return settings
    unset = not env.get("DATABASE_URL", "").strip()
    if settings.database_url != EMBEDDED and not (unset and not embedded.answers(5432)):
        return settings
    server = embedded.server(stop_at_exit=stop_at_exit)
    if not _said_embedded:
        _said_embedded = True
        print(f"using the embedded PostgreSQL in {server.directory} at 127.0.0.1:{server.port()}"
              f"{' (started now)' if server.started_here else ''}; remove it with `make clean-db`", file=sys.stderr)
    return replace(settings, database_url=server.url(settings.db_name or DEFAULT_DATABASE))


def ensure_database(settings: Settings) -> bool:
    """Creates the database named in the URL if it does not exist; True if it did. An
    unreachable or refusing server is one DatabaseUnavailable line, not a traceback."""
    url = urlparse(settings.database_url)
    name = url.path.lstrip("/") or DEFAULT_DATABASE
    try:
        conn = pg8000.native.Connection(url.username or "postgres", host=url.hostname or "127.0.0.1",
                                        port=url.port or 5432, password=url.password,
                                        database="postgres", timeout=10, ssl_context=False)
    except (InterfaceError, OSError, DatabaseError) as exc:
        raise connect_failure(settings, exc) from None
    try:
        if conn.run("SELECT 1 FROM pg_database WHERE datname = :n", n=name):
            return False
        conn.run(f"CREATE DATABASE {pg8000.native.identifier(name)}")
        return True
    finally:
        conn.close()


def function_command(name: str, port_: int) -> list[str]:
    return [sys.executable, "-m", "functions_framework", "--source", str(REPO / "functions" / name / "main.py"),
            "--target", name, "--port", str(port_), "--host", "127.0.0.1"]


def _die_with_parent() -> None:
    """Linux: the function gets SIGKILL if the stack itself dies without cleaning up (kill -9)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_function(name: str, port_: int, env: dict) -> subprocess.Popen:
    # Its own process group: the terminal's Ctrl-C reaches it only through stop_function.
    return subprocess.Popen(function_command(name, port_), env=env, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def stop_function(proc: subprocess.Popen, wait_s: float = 5) -> None:
    """SIGINT to the gunicorn master alone (its quick shutdown; it stops its workers), then,
    whatever happened, SIGKILL to what is left of its process group: nothing outlives it."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_until_listening(ports: list[int], procs: list[subprocess.Popen], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for p in ports:
        while not embedded.answers(p):
            if any(proc.poll() is not None for proc in procs):
                raise ConfigurationError("a function failed to start; see its output above")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"nothing listens on port {p} after {timeout:.0f}s")
            time.sleep(0.1)


def port_in_use(port_: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port the last run left in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port_))
        except OSError:
            return True
    return False


def _banner(settings: Settings, ports: dict, token_generated: bool, key_local: bool, events_local: bool,
            fake_meet: bool) -> str:
    url = urlparse(settings.database_url)
    shown = urlunparse(url._replace(netloc=f"{url.hostname or ''}:{url.port or 5432}"))  # no password on screen
    key = "the development key (MIDTRANS_SERVER_KEY was not set)" if key_local else "from your environment"
    token = f"generated for this run: {settings.internal_api_token}" if token_generated else \
        "from your environment (INTERNAL_API_TOKEN)"
    lines = [
        "",
        f"Serving against {shown}",
        f"  midtrans_webhook     http://127.0.0.1:{ports['webhook']}/",
        f"  assign_meeting_link  http://127.0.0.1:{ports['assign']}/   (private: needs the internal token)",
    ]
    if events_local:
        lines.append(f"  link events          printed here, as the app would receive them (port {ports['events']})")
    if fake_meet:
        lines.append(f"  Google (stand-in)    {settings.meet_api_base_url}  LINK_SOURCE={settings.link_source}")
    lines += [
        f"Internal token {token}. Local MIDTRANS_SERVER_KEY is {key}.",
        "",
        "Try it, in another shell (same DATABASE_URL and MIDTRANS_SERVER_KEY as this one):",
        "  .venv/bin/meeting-links bookings create --date 2030-01-06 --time 14:00 --order-id ORDER-1",
        f"  .venv/bin/meeting-links sign ORDER-1 --status settlement --send http://127.0.0.1:{ports['webhook']}/",
        "  .venv/bin/meeting-links bookings show ORDER-1",
        "  .venv/bin/meeting-links events tail        # every link event and its delivery, as it happens",
        "  .venv/bin/meeting-links sweep              # what the scheduler runs every 10 minutes",
        f"  curl -H 'Authorization: Bearer {settings.internal_api_token}' -d '{{\"sweep\": true}}' "
        f"http://127.0.0.1:{ports['assign']}/",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


class _Stop(Exception):
    pass


def _sweep_every(interval_s: float, url: str, token: str, done: threading.Event) -> None:
    while not done.wait(interval_s):
        try:
            answer = outbound.call("POST", url, deadline=time.monotonic() + 30, body=b'{"sweep": true}',
                                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            print(f"sweep: HTTP {answer.status} {answer.body.decode('utf-8', 'replace')[:300]}", flush=True)
        except outbound.Unreachable as exc:
            print(f"sweep: {exc}", file=sys.stderr, flush=True)


def run(webhook_port: int | None = None, assign_port: int | None = None, *, fake_meet: bool = False) -> int:
    ports = {"webhook": webhook_port or port("WEBHOOK_PORT", 8080), "assign": assign_port or port("ASSIGN_PORT", 8081),
             "events": port("EVENTS_PORT", 8082), "meet": port("MEET_FAKE_PORT", 8083)}
    env = dict(os.environ)
    events_local = not env.get("LINK_EVENTS_URL", "").strip()
    wanted = [("WEBHOOK_PORT", "webhook"), ("ASSIGN_PORT", "assign")] + \
        ([("EVENTS_PORT", "events")] if events_local else []) + ([("MEET_FAKE_PORT", "meet")] if fake_meet else [])
    for name, key in wanted:
        if port_in_use(ports[key]):
            raise ConfigurationError(f"port {ports[key]} is already in use (another server?): stop it, or choose "
                                     f"another port, e.g. {name}={ports[key] + 10} make run")
    key_local = not env.get("MIDTRANS_SERVER_KEY", "").strip()
    if key_local:
        env["MIDTRANS_SERVER_KEY"] = LOCAL_SERVER_KEY
    token_generated = not env.get("INTERNAL_API_TOKEN", "").strip()
    if token_generated:
        env["INTERNAL_API_TOKEN"] = secrets.token_urlsafe(24)
    env["ASSIGN_MEETING_LINK_URL"] = f"http://127.0.0.1:{ports['assign']}/"
    env.setdefault("LOG_FORMAT", "text")
    if events_local:
        env["LINK_EVENTS_URL"] = f"http://127.0.0.1:{ports['events']}/"
        env["LINK_EVENTS_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    helpers = []
    if fake_meet:
        from .fake_google import FakeGoogle
        google = FakeGoogle(port=ports["meet"]).start()
        helpers.append(google)
        env["MEET_API_BASE_URL"] = google.url
        env["MEET_CREDENTIALS"] = google.authorized_user()
        env.setdefault("LINK_SOURCE", "meet_then_pool")
    if events_local:
        from .app_receiver import AppReceiver
        helpers.append(AppReceiver(ports["events"], env["LINK_EVENTS_SECRET"]).start())

    procs: list[subprocess.Popen] = []
    sweeping = threading.Event()
    started_db = None

    def stop_by_signal(*_):
        raise _Stop()
    previous = signal.signal(signal.SIGTERM, stop_by_signal)
    code = 0
    try:
        settings = resolve(from_environment(env), env, stop_at_exit=False)
        if settings.database_url != env.get("DATABASE_URL"):
            env["DATABASE_URL"] = settings.database_url
            started_db = embedded.server(stop_at_exit=False)
            started_db = started_db if started_db.started_here else None
        if ensure_database(settings):
            print(f"created database {urlparse(settings.database_url).path.lstrip('/')}")
        migrations.migrate(settings)
        procs.append(start_function("assign_meeting_link", ports["assign"], env))
        procs.append(start_function("midtrans_webhook", ports["webhook"], env))
        _wait_until_listening([ports["assign"], ports["webhook"]], procs)
        print(_banner(from_environment(env), ports, token_generated, key_local, events_local, fake_meet), flush=True)
        threading.Thread(target=_sweep_every, daemon=True, name="local-sweep",
                         args=(float(env.get("LOCAL_SWEEP_INTERVAL_S") or 600), env["ASSIGN_MEETING_LINK_URL"],
                               env["INTERNAL_API_TOKEN"], sweeping)).start()
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("error: a function stopped unexpectedly; see its output above", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sweeping.set()
        for proc in procs:
            stop_function(proc)
        for helper in helpers:
            helper.stop()
        if started_db is not None:
            started_db.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if code == 0:
        print("stopped", file=sys.stderr)
    return code
