"""A small pool of connections shared by a process's threads, transactions on them, and what
is retried: only what PostgreSQL itself says is worth running again."""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from .. import logs
from ..config import Settings
from ..errors import DatabaseUnavailable, SqlError
from . import errors
from .connect import connector_for, session_parameters
from .queries import query

T = TypeVar("T")


class _ConnectionLost(Exception):
    pass


class Transaction:
    """Runs named queries (queries.sql) on one connection inside one transaction."""

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
        # Lists and objects go as JSON text (pg8000 would send a list as an array).
        found = statement.run(**{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
        if found is None:
            return []
        names = [c["name"] for c in statement.columns]
        return [dict(zip(names, row)) for row in found]

    def one(self, name: str, **params) -> dict | None:
        found = self.rows(name, **params)
        return found[0] if found else None


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
            raise errors.connect_failure(self._settings, exc) from exc

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
        """One transaction; a refusal comes out as a domain error (db/errors.py), a dropped
        connection as _ConnectionLost (which run() retries). single_statement: the work runs
        one statement, which is its own transaction, so no BEGIN and COMMIT are sent (one
        round trip instead of three)."""
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
                error = errors.sql_error(exc)
                if not single_statement:
                    _rollback(conn)
                if error.sqlstate in errors.CONNECTION_GONE:
                    raise _ConnectionLost() from error
                if error.sqlstate in errors.OVERLOADED:
                    raise DatabaseUnavailable(f"database busy ({error.sqlstate}: {error})") from error
                if error.sqlstate in errors.SCHEMA_MISSING:
                    raise errors.schema_missing(self._settings, error) from error
                raise errors.domain_error(error) from exc
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

    def run(self, work: Callable[[Transaction], T], *, attempts: int = 30, single_statement: bool = False) -> T:
        """Runs work in a transaction, from the start again (fresh snapshot) when PostgreSQL
        reports a serialization failure or a deadlock, or the connection dropped. Work must be
        safe to repeat."""
        lost = 0
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction(single_statement=single_statement) as tx:
                    return work(tx)
            except SqlError as error:
                if error.sqlstate not in errors.RETRY_CONFLICTS:
                    raise
                if attempt == attempts:
                    raise DatabaseUnavailable(f"gave up after {attempts} conflicting attempts") from error
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
