"""PostgreSQL access: connections, a small pool, transactions, and what may be retried.

Two ways to connect, chosen by configuration: DATABASE_URL for any PostgreSQL, or the
Cloud SQL Python Connector (pg8000) when INSTANCE_CONNECTION_NAME is set. Both give a
pg8000 connection; everything above this module sees only Database and Transaction.
"""
from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import logs
from .config import Settings
from .errors import BadRequest, ConfigurationError, DatabaseUnavailable, LinkConflict, MeetingLinksError, SchemaMissing
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


# Constraint violations are the database refusing a change for a domain reason; this is the
# one place that knows their names (sql/*.sql declares them) and says what each means.
CONSTRAINT_ERRORS: dict[str, tuple[type[MeetingLinksError], str]] = {
    "bookings_no_overlapping_link_use":
        (LinkConflict, "refused: that link is already used by an overlapping booking at that time"),
    "bookings_link_must_be_enabled": (LinkConflict, "refused: that link is disabled"),
    "bookings_link_requires_active_booking":
        (LinkConflict, "refused: only a paid, confirmed booking can hold a link"),
    "meeting_links_pool_meeting_link_key": (LinkConflict, "refused: that link is already in the pool"),
    "meeting_links_pool_meeting_link_check":
        (BadRequest, "refused: not an https:// URL (a meeting link starts with https:// and has no spaces)"),
}


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


# Missing tables or functions: the database was never migrated, or is behind the code.
SCHEMA_MISSING = frozenset({"42P01", "42883"})


def where(settings: Settings) -> str:
    """Which database, in words an operator can act on (never with a password)."""
    if settings.instance_connection_name:
        return f"Cloud SQL instance {settings.instance_connection_name}, database {settings.db_name}"
    url = urlparse(settings.database_url)
    database = unquote(url.path.lstrip("/")) or "meeting_links"
    return f"PostgreSQL at {url.hostname or '127.0.0.1'}:{url.port or 5432}, database {database}"


def connect_failure(settings: Settings, exc: Exception) -> DatabaseUnavailable:
    """A failed connection as one line naming the server and database, and what to do."""
    place = where(settings)
    user = settings.db_user if settings.instance_connection_name else (
        unquote(urlparse(settings.database_url).username or "postgres"))
    if isinstance(exc, DatabaseError):
        error = sql_error(exc)
        hints = {
            "3D000": f"{place}: that database does not exist; create it (`make run` does) or fix DATABASE_URL",
            "28P01": f"{place}: password authentication failed for user {user}; check the password "
                     "(DATABASE_URL or DB_PASS)",
            "28000": f"{place}: user {user} may not connect (no such role, or pg_hba.conf refuses it); "
                     "check the user in DATABASE_URL",
            "53300": f"{place}: too many connections; lower DB_POOL_SIZE or raise max_connections",
            "57P03": f"{place}: the server is starting up or shutting down; try again in a moment",
        }
        return DatabaseUnavailable(hints.get(error.sqlstate, f"{place} refused the connection "
                                                             f"({error.sqlstate}: {error})"))
    return DatabaseUnavailable(f"cannot reach {place}: is PostgreSQL running there? "
                               "(check DATABASE_URL, or INSTANCE_CONNECTION_NAME)")


def domain_error(error: SqlError) -> MeetingLinksError:
    """The domain error a refused statement stands for, or the SqlError itself."""
    kind, message = CONSTRAINT_ERRORS.get(error.constraint or "", (None, ""))
    return kind(message) if kind else error


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


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class _Tls:
    """One TLS decision per process, as libpq's sslmode means it (default prefer).

    pg8000 left to itself (ssl_context=None) builds a fresh SSL context on every connect,
    about 30 ms of CPU, even when the server then declines TLS. Here the context is built
    at most once, and only after a server has said it speaks TLS; once a server has
    declined, later connections skip the TLS request altogether."""

    def __init__(self, mode: str, host: str, port: int, timeout: float, root_cert: str | None):
        self.mode, self._host, self._port, self._timeout = mode, host, port, timeout
        self._root_cert = root_cert
        self._context: ssl.SSLContext | None = None
        self._server_speaks_tls: bool | None = None
        self._lock = threading.Lock()

    def _ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                if self.mode.startswith("verify"):
                    context = ssl.create_default_context(cafile=self._root_cert)
                    context.check_hostname = self.mode == "verify-full"
                else:  # libpq's require: encrypted, certificate not checked
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._context = context
            return self._context

    def connect_kwargs(self) -> dict:
        """What to give pg8000 for the next connection."""
        if self.mode == "disable" or self._server_speaks_tls is False:
            return {"ssl_context": False}
        if self.mode not in ("allow", "prefer") or self._server_speaks_tls:
            return {"ssl_context": self._ssl_context()}
        # First connection in prefer mode: ask the server ourselves, so that no context is
        # built for a server that declines.
        try:
            sock = socket.create_connection((self._host, self._port), self._timeout)
        except OSError as exc:
            raise InterfaceError(f"cannot connect to {self._host}:{self._port}") from exc
        try:
            sock.sendall(_SSL_REQUEST)
            speaks_tls = sock.recv(1) == b"S"
            if speaks_tls:
                sock = self._ssl_context().wrap_socket(sock, server_hostname=self._host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise InterfaceError("TLS negotiation failed") from exc
        self._server_speaks_tls = speaks_tls
        return {"sock": sock, "ssl_context": False}


def session_parameters(settings: Settings) -> dict[str, str]:
    """Every pooled connection's settings, sent in the startup packet: no extra round trip."""
    return {"TimeZone": "UTC",
            "statement_timeout": str(int(settings.db_statement_timeout_ms)),
            "lock_timeout": str(int(settings.db_lock_timeout_ms)),
            "idle_in_transaction_session_timeout": "30000"}


def _url_connector(settings: Settings, startup_params: dict | None) -> Callable[[], object]:
    url = urlparse(settings.database_url)
    if url.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError("DATABASE_URL must start with postgresql://")
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    mode = query.get("sslmode", "prefer")
    if mode not in SSL_MODES:
        raise ConfigurationError(f"DATABASE_URL sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}")
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    params = dict(
        user=unquote(url.username or "postgres"),
        password=unquote(url.password) if url.password else None,
        host=host,
        port=port,
        database=unquote(url.path.lstrip("/")) or "meeting_links",
        timeout=settings.db_timeout_s,
        application_name="meeting-links",
        startup_params=startup_params,
    )
    tls = _Tls(mode, host, port, settings.db_timeout_s, query.get("sslrootcert"))

    def connect():
        return pg8000.native.Connection(**params, **tls.connect_kwargs())
    connect.tls = tls  # for tests: what the process decided
    return connect


def _cloud_sql_connector(settings: Settings, startup_params: dict | None) -> Callable[[], object]:
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
        kwargs = dict(user=settings.db_user, db=settings.db_name, startup_params=startup_params)
        if not settings.db_iam_auth:
            kwargs["password"] = settings.db_password
        conn = connector.connect(settings.instance_connection_name, "pg8000", **kwargs)
        conn.autocommit = True  # we issue BEGIN/COMMIT ourselves
        return conn

    return connect


def connector_for(settings: Settings, startup_params: dict | None = None) -> Callable[[], object]:
    """A function that opens a new connection, with startup_params as session settings."""
    if settings.instance_connection_name:
        return _cloud_sql_connector(settings, startup_params)
    return _url_connector(settings, startup_params)


class Database:
    """A lazily filled pool of at most db_pool_size connections, shared by threads."""

    def __init__(self, settings: Settings, connect: Callable[[], object] | None = None):
        self._settings = settings
        self._connect = connect or connector_for(settings, session_parameters(settings))
        self._idle: list = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.db_pool_size)

    def _open(self):
        try:
            return self._connect()
        except (InterfaceError, OSError, DatabaseError) as exc:
            raise connect_failure(self._settings, exc) from exc

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
    def transaction(self, *, single_statement: bool = False) -> Iterator[Transaction]:
        """One transaction; pg8000 and server errors come out as domain errors, SqlError or
        DatabaseUnavailable, and a dropped connection as _ConnectionLost (which run() retries).
        single_statement: the work runs one statement, which is its own transaction, so no
        BEGIN and COMMIT are sent (one round trip instead of three)."""
        with self._connection() as conn:
            try:
                if not single_statement:
                    conn.execute_simple("BEGIN")
                yield Transaction(conn)
                if not single_statement:
                    conn.execute_simple("COMMIT")
            except (InterfaceError, OSError) as exc:
                raise _ConnectionLost() from exc
            except DatabaseError as exc:
                error = sql_error(exc)
                if not single_statement:
                    _rollback(conn)
                if error.sqlstate in CONNECTION_GONE:
                    raise _ConnectionLost() from error
                if error.sqlstate in OVERLOADED:
                    raise DatabaseUnavailable(f"database busy ({error.sqlstate}: {error})") from error
                if error.sqlstate in SCHEMA_MISSING:
                    raise SchemaMissing(f"{where(self._settings)} is not migrated ({error}): run "
                                        "`meeting-links migrate` with DATABASE_URL pointing at it") from error
                raise domain_error(error) from exc
            except BaseException:
                if not single_statement:
                    _rollback(conn)
                raise

    def one(self, name: str, **params) -> dict | None:
        """The first row of one named statement, run as its own transaction in one round trip
        (each operation of ours is one SQL function call); retried as run() retries."""
        found = self.rows(name, **params)
        return found[0] if found else None

    def rows(self, name: str, **params) -> list[dict]:
        return self.run(lambda tx: tx.rows(name, **params), single_statement=True)

    def run(self, work: Callable[[Transaction], T], *, retry_on: frozenset[str] = RETRY_CONFLICTS,
            attempts: int = 30, single_statement: bool = False) -> T:
        """Runs work in a transaction, from the start again (fresh snapshot) when PostgreSQL
        reports one of retry_on, or the connection dropped. Work must be safe to repeat."""
        lost = 0
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction(single_statement=single_statement) as tx:
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
