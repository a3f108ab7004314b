"""The database layer: reuse, recovery after the server drops connections, clear failures."""
from urllib.parse import urlparse

import pytest

from meeting_links import config
from meeting_links.db import Database, queries
from meeting_links.errors import DatabaseUnavailable, SqlError
from support import insert_booking


def backend_pids(conn, application_name="meeting-links"):
    return [r[0] for r in conn.run(
        "SELECT pid FROM pg_stat_activity WHERE application_name = :a AND datname = current_database()"
        " AND pid <> pg_backend_pid()", a=application_name)]


def test_connections_are_reused_across_transactions(db, conn):
    pids = {db.run(lambda tx: tx.one("now")) and db.run(lambda tx: tx.rows("pool_links")) and
            tuple(backend_pids(conn)) for _ in range(5)}
    assert len(pids) == 1


def test_recovers_after_the_server_terminates_its_connections(db, conn):
    db.run(lambda tx: tx.one("now"))
    conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'meeting-links'"
             " AND datname = current_database() AND pid <> pg_backend_pid()")
    assert db.run(lambda tx: tx.one("now"))["now"] is not None


def test_unreachable_database_is_database_unavailable():
    d = Database(config.from_environment({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}))
    with pytest.raises(DatabaseUnavailable):
        d.run(lambda tx: tx.one("now"))


def test_a_refused_statement_is_a_sql_error_and_the_connection_stays_usable(db, conn):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    queries.all_queries()["link_to_nothing"] = (
        "UPDATE bookings SET meeting_link_id = '00000000-0000-0000-0000-000000000000' WHERE id = :booking_id")
    try:
        with pytest.raises(SqlError) as refused:
            db.run(lambda tx: tx.rows("link_to_nothing", booking_id=b["id"]))
    finally:
        del queries.all_queries()["link_to_nothing"]
    assert refused.value.sqlstate == "23503"  # no such link: not a domain rule, stays an SqlError
    assert db.run(lambda tx: tx.one("now"))["now"] is not None


def test_constraint_violations_come_out_as_domain_errors_by_constraint_name(db, conn, seed_links):
    """db.py is the one place that reads constraint names: the overlap rule, a disabled link and
    an unpaid booking holding a link come out as LinkConflict, whoever wrote the statement."""
    from meeting_links.errors import LinkConflict
    link = seed_links[0]["id"]
    held = insert_booking(conn, payment_status="paid", status="confirmed")
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=held["id"])
    rival = insert_booking(conn, payment_status="paid", status="confirmed")  # same slot
    unpaid = insert_booking(conn, date="2031-01-01")
    queries.all_queries()["give_link"] = (
        "UPDATE bookings SET meeting_link_id = CAST(:link AS uuid) WHERE id = :booking_id")
    try:
        for booking, expected in ((rival, "overlapping booking"), (unpaid, "paid, confirmed")):
            with pytest.raises(LinkConflict, match=expected):
                db.run(lambda tx, b=booking: tx.rows("give_link", booking_id=b["id"], link=link))
        conn.run("UPDATE meeting_links_pool SET is_available = false WHERE id = CAST(:l AS uuid)", l=seed_links[1]["id"])
        with pytest.raises(LinkConflict, match="disabled"):
            db.run(lambda tx: tx.rows("give_link", booking_id=rival["id"], link=seed_links[1]["id"]))
    finally:
        del queries.all_queries()["give_link"]
    assert conn.run("SELECT count(*) FROM bookings WHERE meeting_link_id IS NOT NULL")[0][0] == 1


def test_session_settings_arrive_with_the_connection(database_url):
    """Pooled connections get their settings in the startup packet: no SET round trip."""
    d = Database(config.from_environment({"DATABASE_URL": database_url, "DB_STATEMENT_TIMEOUT_MS": "1234",
                                          "DB_LOCK_TIMEOUT_MS": "567"}))
    queries.all_queries()["session_probe"] = (
        "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt,"
        " current_setting('TimeZone') AS tz")
    try:
        row = d.run(lambda tx: tx.one("session_probe"))
    finally:
        del queries.all_queries()["session_probe"]
        d.close()
    assert row == {"st": "1234ms", "lt": "567ms", "tz": "UTC"}


def test_one_tls_decision_per_process(database_url, monkeypatch):
    """The local server declines TLS: the first connection asks, no SSL context is ever built,
    and later connections do not ask again. sslmode=require refuses such a server."""
    import ssl

    from meeting_links.db import connect as db_module
    built = []
    def counting(real):
        return lambda *a, **k: built.append(1) or real(*a, **k)
    for name in ("SSLContext", "create_default_context"):  # what db.py and pg8000 call
        monkeypatch.setattr(ssl, name, counting(getattr(ssl, name)))
    connect = db_module.connector_for(config.from_environment({"DATABASE_URL": database_url}))
    assert connect.tls.mode == "prefer"
    for _ in range(3):
        connect().close()
    assert built == [] and connect.tls.connect_kwargs() == {"ssl_context": False}

    monkeypatch.undo()
    strict = db_module.connector_for(config.from_environment({"DATABASE_URL": database_url + "?sslmode=require"}))
    with pytest.raises(Exception, match="refuses SSL"):
        strict()
    with pytest.raises(Exception, match="sslmode"):
        db_module.connector_for(config.from_environment({"DATABASE_URL": database_url + "?sslmode=sometimes"}))


def test_a_statement_timeout_is_database_unavailable_without_a_retry(database_url, conn):
    d = Database(config.from_environment({"DATABASE_URL": database_url, "DB_STATEMENT_TIMEOUT_MS": "50"}))
    calls = []

    def slow(tx):
        calls.append(1)
        return tx.one("slow_probe")

    queries.all_queries()["slow_probe"] = "SELECT pg_sleep(1)"
    try:
        with pytest.raises(DatabaseUnavailable, match="57014"):
            d.run(slow)
    finally:
        del queries.all_queries()["slow_probe"]
        d.close()
    assert calls == [1]


def test_a_pooled_connection_has_every_session_setting(database_url):
    d = Database(config.from_environment({"DATABASE_URL": database_url, "DB_STATEMENT_TIMEOUT_MS": "1234",
                                          "DB_LOCK_TIMEOUT_MS": "567"}))
    try:
        with d.transaction() as tx:
            conn = tx._conn
            shown = [conn.run(f"SHOW {name}")[0][0] for name in
                     ("TimeZone", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")]
    finally:
        d.close()
    assert shown == ["UTC", "1234ms", "567ms", "30s"]


def test_the_connector_path_works_over_the_dbapi_connection_it_returns(monkeypatch, database_url, conn):
    """The Cloud SQL connector returns a pg8000.dbapi.Connection, not the native one used with
    DATABASE_URL: allocate a link over such a connection, to the real server."""
    import google.cloud.sql.connector as connector_module
    import pg8000.dbapi

    from meeting_links import allocation
    from support import insert_booking

    database = database_url.rsplit("/", 1)[1]
    server = urlparse(database_url)

    class LocalConnector:
        def __init__(self, **kwargs):
            pass

        def connect(self, instance, driver, **kwargs):
            assert driver == "pg8000" and kwargs["db"] == database
            return pg8000.dbapi.connect(user=kwargs["user"], host=server.hostname, port=server.port, database=kwargs["db"])

    monkeypatch.setattr(connector_module, "Connector", LocalConnector)
    settings = config.from_environment({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "postgres",
                                        "DB_NAME": database})
    d = Database(settings)
    try:
        b = insert_booking(conn, payment_status="paid", status="confirmed")
        first = allocation.assign(d, b["id"])
        assert first.meeting_link == "https://meet.google.com/kcw-ebey-pqu"
        assert allocation.assign(d, b["id"]).already_assigned is True
    finally:
        d.close()


@pytest.mark.parametrize("sqlstate", ["53200", "53400", "53300"])  # out of shared memory, config limit, too many
def test_postgres_running_out_of_memory_or_slots_is_database_unavailable(database_url, sqlstate):
    """Issue 17.15: 53200 (out of shared memory, e.g. the lock table full) is PostgreSQL saying
    "not now": a 503 that makes the caller retry, not a 500."""
    d = Database(config.from_environment({"DATABASE_URL": database_url}))
    queries.all_queries()["overloaded_probe"] = (
        f"DO $$BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{sqlstate}'; END$$")
    try:
        with pytest.raises(DatabaseUnavailable, match=sqlstate):
            d.run(lambda tx: tx.one("overloaded_probe"))
    finally:
        del queries.all_queries()["overloaded_probe"]
        d.close()
