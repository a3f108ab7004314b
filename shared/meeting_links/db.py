"""PostgreSQL access: connections, a small pool, transactions, and what may be retried.

Two ways to connect, chosen by configuration: DATABASE_URL for any PostgreSQL, or the
Cloud SQL Python Connector (pg8000) when INSTANCE_CONNECTION_NAME is set. Both give a
pg8000 connection; everything above this module sees only Database and Transaction.
"""
from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar
from urllib.parse import unquote, urlparse

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import logs
from .config import Settings
from .errors import ConfigurationError, DatabaseUnavailable, MeetingLinksError
from .queries import query

T = TypeVar("T")

# What PostgreSQL itself says is worth retrying from the start of the transaction.
SERIALIZATION_FAILURE, DEADLOCK, EXCLUSION_VIOLATION = "40001", "40P01", "23P01"
RETRY_CONFLICTS = frozenset({SERIALIZATION_FAILURE, DEADLOCK})
# The connection is gone (server shutting down, restarting, or the link broke): worth one
# immediate retry on a fresh connection.
CONNECTION_GONE = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006"})
# Overloaded or too slow (too many connections, statement or lock timeout): retrying at once
# would only add load and time; the caller retries later.
OVERLOADED = frozenset({"53300", "57014", "55P03"})


class SqlError(MeetingLinksError):
    """PostgreSQL refused a statement for a reason we do not retry."""

    def __init__(self, sqlstate: str, message: str, constraint: str | None, detail: str | None):
        super().__init__(message)
        self.sqlstate, self.constraint, self.detail = sqlstate, constraint, detail


class _ConnectionLost(Exception):
    pass


def sql_error(exc: DatabaseError) -> SqlError:
    """The SQLSTATE, message, constraint and detail of a pg8000 DatabaseError."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return SqlError(fields.get("C", ""), fields.get("M", str(exc)), fields.get("n"), fields.get("D"))


class Transaction:
    """Runs named queries on one connection inside one transaction."""

    def __init__(self, conn):
        self._conn = conn

    def rows(self, name: str, **params) -> list[dict]:
        # Prepared once per connection: parsing and planning each time cost more than
        # running these short queries.
        prepared = getattr(self._conn, "_meeting_links_prepared", None)
        if prepared is None:
            prepared = self._conn._meeting_links_prepared = {}
        if name not in prepared:
            prepared[name] = pg8000.native.PreparedStatement(self._conn, query(name))
        statement = prepared[name]
        found = statement.run(**params)
        if found is None:
            return []
        names = [c["name"] for c in statement.columns]
        return [dict(zip(names, row)) for row in found]

    def one(self, name: str, **params) -> dict | None:
        found = self.rows(name, **params)
        return found[0] if found else None


def _url_connector(settings: Settings) -> Callable[[], object]:
    url = urlparse(settings.database_url)
    if url.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError("DATABASE_URL must start with postgresql://")
    params = dict(
        user=unquote(url.username or "postgres"),
        password=unquote(url.password) if url.password else None,
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        database=unquote(url.path.lstrip("/")) or "postgres",
        timeout=settings.db_timeout_s,
        application_name="meeting-links",
    )
    return lambda: pg8000.native.Connection(**params)


def _cloud_sql_connector(settings: Settings) -> Callable[[], object]:
    # Imported here: the connector is heavy and only needed on Google Cloud.
    from google.cloud.sql.connector import Connector

    connector = None
    lock = threading.Lock()

    def connect():
        nonlocal connector
        with lock:
            # Created inside a request, not at import: outside a request Cloud Run
            # throttles the CPU, and "lazy" refreshes certificates only when connecting.
            if connector is None:
                connector = Connector(refresh_strategy="lazy", ip_type=settings.db_ip_type,
                                      enable_iam_auth=settings.db_iam_auth)
        kwargs = dict(user=settings.db_user, db=settings.db_name)
        if not settings.db_iam_auth:
            kwargs["password"] = settings.db_password
        conn = connector.connect(settings.instance_connection_name, "pg8000", **kwargs)
        conn.autocommit = True  # we issue BEGIN/COMMIT ourselves
        return conn

    return connect


def connector_for(settings: Settings) -> Callable[[], object]:
    if settings.instance_connection_name:
        return _cloud_sql_connector(settings)
    return _url_connector(settings)


class Database:
    """A lazily filled pool of at most db_pool_size connections, shared by threads."""

    def __init__(self, settings: Settings, connect: Callable[[], object] | None = None):
        self._settings = settings
        self._connect = connect or connector_for(settings)
        self._idle: list = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.db_pool_size)

    def _open(self):
        try:
            conn = self._connect()
            s = self._settings
            # One round trip: the simple query protocol takes several statements at once.
            conn.execute_simple(
                "SET TIME ZONE 'UTC'; "
                f"SET statement_timeout = {int(s.db_statement_timeout_ms)}; "
                f"SET lock_timeout = {int(s.db_lock_timeout_ms)}; "
                "SET idle_in_transaction_session_timeout = 30000")
            return conn
        except (InterfaceError, OSError) as exc:
            raise DatabaseUnavailable("database unreachable") from exc
        except DatabaseError as exc:
            raise DatabaseUnavailable(f"database refused the connection ({sql_error(exc).sqlstate})") from exc

    @contextmanager
    def _connection(self) -> Iterator[object]:
        if not self._slots.acquire(timeout=self._settings.db_timeout_s):
            raise DatabaseUnavailable("all database connections are busy")
        conn, healthy = None, True
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._open()
            yield conn
        except _ConnectionLost:
            healthy = False
            # Connections die together (a restart, a failover, an idle timeout on the way):
            # drop the idle ones too, so the retry opens a fresh connection.
            with self._lock:
                idle, self._idle = self._idle, []
            for stale in idle:
                _close_quietly(stale)
            raise
        finally:
            if conn is not None:
                if healthy:
                    with self._lock:
                        self._idle.append(conn)
                else:
                    _close_quietly(conn)
            self._slots.release()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction; pg8000 and server errors come out as SqlError or DatabaseUnavailable,
        and a dropped connection as _ConnectionLost (which run() retries)."""
        with self._connection() as conn:
            try:
                conn.execute_simple("BEGIN")
                yield Transaction(conn)
                conn.execute_simple("COMMIT")
            except (InterfaceError, OSError) as exc:
                raise _ConnectionLost() from exc
            except DatabaseError as exc:
                error = sql_error(exc)
                _rollback(conn)
                if error.sqlstate in CONNECTION_GONE:
                    raise _ConnectionLost() from error
                if error.sqlstate in OVERLOADED:
                    raise DatabaseUnavailable(f"database busy ({error.sqlstate}: {error})") from error
                raise error from exc
            except BaseException:
                _rollback(conn)
                raise

    def run(self, work: Callable[[Transaction], T], *, retry_on: frozenset[str] = RETRY_CONFLICTS,
            attempts: int = 30) -> T:
        """Runs work in a transaction, from the start again (fresh snapshot) when PostgreSQL
        reports one of retry_on, or the connection dropped. Work must be safe to repeat."""
        lost = 0
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as tx:
                    return work(tx)
            except SqlError as error:
                if error.sqlstate not in retry_on or attempt == attempts:
                    if error.sqlstate in retry_on:
                        raise DatabaseUnavailable(f"gave up after {attempts} conflicting attempts") from error
                    raise
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** attempt)))
            except _ConnectionLost as lost_error:
                lost += 1
                cause = lost_error.__cause__
                logs.warning("database connection lost; retrying", attempt=attempt, error=type(cause).__name__)
                # A dropped connection usually means a restart or failover: one quick
                # retry on a new connection, then let the caller retry later.
                if lost >= 2:
                    raise DatabaseUnavailable("database connection lost") from cause
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)


def _rollback(conn) -> None:
    try:
        conn.execute_simple("ROLLBACK")
    except Exception:
        pass


def _close_quietly(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


_database: Database | None = None
_database_lock = threading.Lock()


def database(settings: Settings) -> Database:
    """The process's pool, created on first use and reused by every later request."""
    global _database
    with _database_lock:
        if _database is None:
            _database = Database(settings)
        return _database
