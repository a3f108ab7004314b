"""A fresh PostgreSQL database per test run (created here, migrated with our own migration
command, dropped at the end), a clean slate per test, and the two functions served for real."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from meeting_links import cli, config, migrations
from meeting_links import db as db_module
from meeting_links.db import Database
from support import INTERNAL_TOKEN, SERVER_KEY, FunctionServer, connect

SEED_LINKS_SQL = (Path(__file__).parents[1] / "sql" / "0002_seed_links.sql").read_text()
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_conn():
    s = config.from_environment({"DATABASE_URL": ADMIN_URL})
    return db_module.connector_for(s)()


@pytest.fixture(scope="session")
def database_url():
    name = f"meeting_links_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_conn()
    admin.execute_simple(f"CREATE DATABASE {name}")
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrations.migrate(config.from_environment({"DATABASE_URL": url}), echo=lambda *_: None)
    yield url
    admin.execute_unnamed("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", (name,))
    admin.execute_simple(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


@pytest.fixture
def conn(database_url):
    """A raw connection with a clean slate: no bookings or notifications, the three seed
    links enabled, default zone and buffer."""
    c = connect(database_url)
    # The notification log refuses TRUNCATE by trigger; replica mode skips triggers, for tests only.
    c.run("SET session_replication_role = replica")
    c.run("TRUNCATE payment_notifications, meet_space_requests, meet_orphaned_spaces, link_event_deliveries, link_events, bookings, meeting_links_pool")
    c.run("SET session_replication_role = DEFAULT")
    c.run("UPDATE sweep_progress SET resume_after_paid_at = NULL, resume_after_id = NULL")
    c.run("DELETE FROM meeting_links_pool")
    c.run(SEED_LINKS_SQL)
    c.run("SELECT configure_pool('Asia/Jakarta', 0)")
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


@pytest.fixture
def app_env(monkeypatch, database_url):
    """Environment for functions built in-process with create_app; returns a setter."""
    def apply(**env):
        base = {"DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                "INTERNAL_API_TOKEN": INTERNAL_TOKEN}
        base.update(env)
        for key in ("DATABASE_URL", "MIDTRANS_SERVER_KEY", "INTERNAL_API_TOKEN",
                    "ASSIGN_MEETING_LINK_URL", "TRUST_CLOUD_RUN_IAM", "K_SERVICE",
                    "MIDTRANS_VERIFY_WITH_STATUS_API", "MIDTRANS_API_BASE_URL"):
            monkeypatch.delenv(key, raising=False)
        for key, value in base.items():
            if value is not None:
                monkeypatch.setenv(key, value)
        _reset_process_state()
    yield apply
    _reset_process_state()


def _reset_process_state():
    from meeting_links import assign_client, link_events
    link_events.reset()
    config.settings.cache_clear()
    if db_module._database is not None:
        db_module._database.close()
    db_module._database = None
    assign_client._session = None
    assign_client._tokens = None


def make_client(target: str):
    from functions_framework import _function_registry, create_app
    _function_registry.REGISTRY_MAP.clear()
    source = os.path.join(os.path.dirname(__file__), "..", "functions", target, "main.py")
    return create_app(target, source).test_client()


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


from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("default", max_examples=40)
_hypothesis_settings.register_profile("drill", max_examples=1000)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# Test layers, for a fast run while developing (README, "Tests"):
#   unit  no database;  db  a real PostgreSQL, in-process;  http  real servers, processes, long runs.
# A module that starts servers or processes itself says so with `pytestmark = pytest.mark.http`.
_HTTP_FIXTURES = frozenset({"assign_server", "webhook_server"})


def pytest_collection_modifyitems(items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("http") or names & _HTTP_FIXTURES:
            item.add_marker(pytest.mark.http)
        elif "database_url" in names:
            item.add_marker(pytest.mark.db)
        else:
            item.add_marker(pytest.mark.unit)
