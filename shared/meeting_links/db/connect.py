"""The ways to open a connection, one function each, all giving a pg8000 native connection:
DATABASE_URL for any PostgreSQL (with libpq's sslmode, decided once per process), the Cloud
SQL Python Connector when INSTANCE_CONNECTION_NAME is set, and DATABASE_URL=embedded for a
private PostgreSQL on a laptop (see embedded.py)."""
from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.native
from pg8000.exceptions import InterfaceError

from ..config import EMBEDDED, Settings

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


def url_connector(database_url: str, timeout_s: float, startup_params: dict | None) -> Callable[[], object]:
    url = urlparse(database_url)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    params = dict(
        user=unquote(url.username or "postgres"),
        password=unquote(url.password) if url.password else None,
        host=host,
        port=port,
        database=unquote(url.path.lstrip("/")) or "meeting_links",
        timeout=timeout_s,
        application_name="meeting-links",
        startup_params=startup_params,
    )
    tls = _Tls(query.get("sslmode", "prefer"), host, port, timeout_s, query.get("sslrootcert"))

    def connect():
        return pg8000.native.Connection(**params, **tls.connect_kwargs())
    connect.tls = tls  # for tests: what the process decided
    return connect


def cloud_sql_connector(settings: Settings, startup_params: dict | None) -> Callable[[], object]:
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
        return cloud_sql_connector(settings, startup_params)
    if settings.database_url == EMBEDDED:
        from . import embedded  # a development dependency: never imported when deployed
        return url_connector(embedded.server().url(), settings.db_timeout_s, startup_params)
    return url_connector(settings.database_url, settings.db_timeout_s, startup_params)


def session_parameters(settings: Settings) -> dict[str, str]:
    """Every pooled connection's settings, sent in the startup packet: no extra round trip."""
    return {"TimeZone": "UTC",
            "statement_timeout": str(int(settings.db_statement_timeout_ms)),
            "lock_timeout": str(int(settings.db_lock_timeout_ms)),
            "idle_in_transaction_session_timeout": "30000"}
