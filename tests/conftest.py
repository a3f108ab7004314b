"""A fresh PostgreSQL database per test run (created here, migrated with our own migration
command, dropped at the end whatever happened), a clean slate per test, and the functions
served for real.

The server: TEST_POSTGRES_URL; else the embedded PostgreSQL with DATABASE_URL=embedded, or
when nothing answers at 127.0.0.1:5432 (started for the run, stopped after it if it was
started here); else 127.0.0.1:5432.

Layers, by folder: tests/unit (no database), tests/db (a real PostgreSQL, in-process),
tests/http (real HTTP servers and processes), tests/e2e (the whole system, long runs)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from meeting_links import clients, config
from meeting_links.db import Database, embedded, migrations
from meeting_links.db.connect import connector_for
from meeting_links.support import cli
from meeting_links.support.fake_google import FakeGoogle
from support import INTERNAL_TOKEN, SERVER_KEY, FakeMidtrans, FunctionServer, connect, stop_everything_started

SEED_LINKS_SQL = (Path(__file__).parents[1] / "sql" / "0002_seed_links.sql").read_text()
LAYERS = ("unit", "db", "http", "e2e")

hypothesis_settings.register_profile("default", max_examples=40, deadline=None)
hypothesis_settings.register_profile("drill", max_examples=1000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _server_url() -> str:
    if os.environ.get("TEST_POSTGRES_URL", "").strip():
        return os.environ["TEST_POSTGRES_URL"].strip()
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if database_url == config.EMBEDDED or (not database_url and not embedded.answers(5432)):
        return embedded.server().url("postgres")  # stopped at exit if started here
    return "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_conn(url: str):
    return connector_for(config.from_environment({"DATABASE_URL": url}))()


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url):
    name = f"meeting_links_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_conn(server_url)
    admin.execute_simple(f"CREATE DATABASE {name}")
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrations.migrate(config.from_environment({"DATABASE_URL": url}), echo=lambda *_: None)
        yield url
    finally:
        stop_everything_started()
        clients.reset()
        admin.execute_unnamed("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", (name,))
        admin.execute_simple(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def conn(database_url):
    """A raw connection with a clean slate: no bookings or notifications, the three seed
    links enabled, default zone and buffer, link events sent from the beginning."""
    c = connect(database_url)
    # The logs refuse deletes by trigger; replica mode skips triggers, for tests only.
    # (DELETE: on a few rows it is some 20 times quicker than TRUNCATE.)
    c.run("SET session_replication_role = replica")
    for table in ("payment_notifications", "meet_space_requests", "meet_orphaned_spaces", "space_members",
                  "link_event_deliveries", "link_events", "bookings", "meeting_links_pool"):
        c.run(f"DELETE FROM {table}")
    c.run("SET session_replication_role = DEFAULT")
    c.run("UPDATE sweep_progress SET resume_after_paid_at = NULL, resume_after_id = NULL")
    c.run("UPDATE link_event_delivery_state SET started_at = now() - interval '1 day', gone_url = NULL,"
          " gone_at = NULL, gone_detail = NULL")
    c.run(SEED_LINKS_SQL)
    c.run("SELECT configure_pool_v2('Asia/Jakarta', 0, true)")
    yield c
    c.close()


@pytest.fixture
def seed_links(conn) -> list[dict]:
    rows = conn.run("SELECT id::text, meeting_link FROM meeting_links_pool ORDER BY created_at, id")
    return [{"id": r[0], "meeting_link": r[1]} for r in rows]


@pytest.fixture
def db(conn, database_url):
    d = Database(config.from_environment({"DATABASE_URL": database_url, "DB_POOL_SIZE": "8"}))
    yield d
    d.close()


@pytest.fixture
def settings_for(database_url):
    """Settings as the functions would read them from an environment (database filled in)."""
    def make(**env) -> config.Settings:
        return config.from_environment({"DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                        "INTERNAL_API_TOKEN": INTERNAL_TOKEN, **env})
    return make


@pytest.fixture
def admin(database_url, monkeypatch, capsys):
    """Runs `meeting-links ARGS` in-process: (exit code, stdout, stderr); .json(ARGS) parses --json."""
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    def as_json(*argv):
        code, out, err = run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)
    run.json = as_json
    return run


@pytest.fixture
def set_links(conn):
    """Replaces the pool with n fresh links (ordered link-01, link-02, ...)."""
    def make(n: int) -> list[str]:
        conn.run("DELETE FROM meeting_links_pool")
        ids = []
        for i in range(n):
            ids.append(str(conn.run(
                "INSERT INTO meeting_links_pool (meeting_link, notes, created_at)"
                " VALUES (:u, 'test', now() + make_interval(secs => :i)) RETURNING id",
                u=f"https://meet.google.com/test-link-{i + 1:02d}", i=i)[0][0]))
        return ids
    return make


_APP_ENV = ("DATABASE_URL", "MIDTRANS_SERVER_KEY", "INTERNAL_API_TOKEN", "ASSIGN_MEETING_LINK_URL",
            "TRUST_CLOUD_RUN_IAM", "K_SERVICE", "MIDTRANS_VERIFY_WITH_STATUS_API", "MIDTRANS_API_BASE_URL",
            "LINK_SOURCE", "MEET_CREDENTIALS", "MEET_API_BASE_URL", "LINK_EVENTS_URL", "LINK_EVENTS_SECRET",
            "MEET_ACCESS_TYPE", "GCE_METADATA_HOST", "GOOGLE_APPLICATION_CREDENTIALS")


@pytest.fixture
def app_env(monkeypatch, database_url):
    """Environment for functions built in-process with create_app; returns a setter."""
    def apply(**env):
        base = {"DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY, "INTERNAL_API_TOKEN": INTERNAL_TOKEN}
        base.update(env)
        for key in _APP_ENV:
            monkeypatch.delenv(key, raising=False)
        for key, value in base.items():
            if value is not None:
                monkeypatch.setenv(key, value)
        _reset_process_state()
    yield apply
    _reset_process_state()


def _reset_process_state():
    config.settings.cache_clear()
    clients.reset()


def function_client(target: str):
    """The function as functions_framework.create_app builds it, with Flask's test client."""
    from functions_framework import _function_registry, create_app
    _function_registry.REGISTRY_MAP.clear()
    source = Path(__file__).parents[1] / "functions" / target / "main.py"
    return create_app(target, str(source)).test_client()


@pytest.fixture
def folder():
    """folder(mode): a new folder in /tmp with that mode, removed afterwards. Not pytest's
    tmp_path, whose parents are 0700: as root the embedded PostgreSQL runs as nobody."""
    made = []

    def make(mode):
        made.append(Path(tempfile.mkdtemp(prefix="ml-embedded-")))
        made[-1].chmod(mode)
        return made[-1]
    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def midtrans():
    """The fake Midtrans status API for one test."""
    fake = FakeMidtrans()
    with fake.server:
        yield fake


@pytest.fixture
def google():
    """The fake Google (OAuth token endpoint and Meet API) for one test."""
    with FakeGoogle() as fake:
        yield fake


@pytest.fixture
def meet_env(app_env, google):
    """app_env with the Meet settings pointing at the fake Google; returns the assign test client."""
    def apply(source="meet_then_pool", **extra):
        app_env(**{"LINK_SOURCE": source, "MEET_API_BASE_URL": google.url,
                   "MEET_CREDENTIALS": google.authorized_user(), **extra})
        return function_client("assign_meeting_link")
    return apply


@pytest.fixture(scope="session")
def assign_server(database_url):
    server = FunctionServer("assign_meeting_link", {
        "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN, "DB_POOL_SIZE": "8"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def webhook_server(database_url, assign_server):
    server = FunctionServer("midtrans_webhook", {
        "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "MIDTRANS_SERVER_KEY": SERVER_KEY, "ASSIGN_MEETING_LINK_URL": assign_server.url,
        "DB_POOL_SIZE": "8"}).start()
    yield server
    server.stop()


def pytest_collection_modifyitems(items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        layer = next((p for p in parts if p in LAYERS), "unit")
        item.add_marker(getattr(pytest.mark, "http" if layer == "e2e" else layer))
        if layer == "e2e":
            item.add_marker(pytest.mark.e2e)


def pytest_sessionfinish(session, exitstatus):
    stop_everything_started()
