"""The database layer: reuse, recovery after the server drops connections, clear failures."""
import pytest

from meeting_links import config
from meeting_links.db import Database, SqlError
from meeting_links.errors import DatabaseUnavailable

from support import INTERNAL_TOKEN, insert_booking


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


def test_function_recovers_after_its_connections_are_terminated(conn, assign_server):
    auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    b1 = insert_booking(conn, payment_status="paid", status="confirmed")
    assert assign_server.post({"bookingId": b1["id"]}, headers=auth).status_code == 200
    conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'meeting-links'"
             " AND datname = current_database() AND pid <> pg_backend_pid()")
    b2 = insert_booking(conn, payment_status="paid", status="confirmed")
    assert assign_server.post({"bookingId": b2["id"]}, headers=auth).status_code == 200


def test_unreachable_database_is_database_unavailable():
    d = Database(config.from_environment({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}))
    with pytest.raises(DatabaseUnavailable):
        d.run(lambda tx: tx.one("now"))


def test_a_refused_statement_is_a_sql_error_and_the_connection_stays_usable(db, conn):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    with pytest.raises(SqlError) as refused:
        db.run(lambda tx: tx.rows("set_link_by_hand", booking_id=b["id"],
                                  link_id="00000000-0000-0000-0000-000000000000"))
    assert refused.value.sqlstate == "23503"  # no such link
    assert db.run(lambda tx: tx.one("now"))["now"] is not None


def test_a_statement_timeout_is_database_unavailable_without_a_retry(database_url, conn):
    d = Database(config.from_environment({"DATABASE_URL": database_url, "DB_STATEMENT_TIMEOUT_MS": "50"}))
    calls = []

    def slow(tx):
        calls.append(1)
        return tx.one("slow_probe")

    from meeting_links import queries
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
