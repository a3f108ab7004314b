"""Applies the numbered migrations in sql/ in lexical order, once each, and records them in
schema_migrations with a checksum (an applied migration that was edited afterwards is an
error, not silently skipped). Safe to run twice, and by two deployers at once. It changes
the schema only: the pool's settings (zone, buffer) change when a person asks
(`meeting-links pool configure`)."""
from __future__ import annotations

import hashlib
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pg8000.exceptions import DatabaseError, InterfaceError

from ..config import Settings
from ..errors import MigrationError
from .connect import connector_for
from .errors import connect_failure, sql_error

# The repo's sql/ folder, which the package ships as meeting_links.sql (see pyproject.toml);
# MIGRATIONS_DIR points elsewhere (a test applying an older set, say).
PACKAGE = "meeting_links.sql"
_LOCK_KEY = 7_285_193_001  # pg_advisory_lock key reserved for migrations


def migration_files(directory: Path | None = None) -> list[Traversable]:
    directory = directory or os.environ.get("MIGRATIONS_DIR")
    folder = Path(directory) if directory else resources.files(PACKAGE)
    files = sorted((f for f in folder.iterdir() if f.name[:4].isdigit() and f.name[4:5] == "_"
                    and f.name.endswith(".sql")), key=lambda f: f.name)
    if not files:
        raise MigrationError(f"no migrations found in {folder}")
    return files


def migrate(settings: Settings, directory: Path | None = None, echo=print) -> list[str]:
    """Applies what is missing; returns the names it applied."""
    try:
        conn = connector_for(settings)()
    except (InterfaceError, OSError, DatabaseError) as exc:
        raise MigrationError(str(connect_failure(settings, exc))) from exc
    applied_now = []
    try:
        conn.execute_simple(f"SELECT pg_advisory_lock({_LOCK_KEY})")
        conn.execute_simple(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row[0]: row[1] for row in conn.execute_simple(
            "SELECT name, checksum FROM schema_migrations").rows}
        for path in migration_files(directory):
            text = path.read_text()
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise MigrationError(f"{path.name} changed after it was applied; "
                                         "add a new migration instead of editing it")
                continue
            try:
                conn.execute_simple("BEGIN")
                conn.execute_simple(text)
                conn.execute_unnamed("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                                     (path.name, checksum))
                conn.execute_simple("COMMIT")
            except DatabaseError as exc:
                conn.execute_simple("ROLLBACK")
                raise MigrationError(f"{path.name} failed: {sql_error(exc)}") from exc
            applied_now.append(path.name)
            echo(f"applied {path.name}")
        if not applied_now:
            echo("database is up to date")
        return applied_now
    finally:
        try:
            conn.execute_simple(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
        finally:
            conn.close()
