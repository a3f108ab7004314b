"""What PostgreSQL's refusals mean: the one place that reads SQLSTATEs and constraint names
(sql/*.sql declares the constraints) and turns them into domain errors, and that words a
failed connection for the person who must fix it."""
from __future__ import annotations

from urllib.parse import unquote, urlparse

from pg8000.exceptions import DatabaseError

from ..config import EMBEDDED, Settings
from ..errors import BadRequest, DatabaseUnavailable, LinkConflict, MeetingLinksError, SchemaMissing, SqlError

# What PostgreSQL itself says is worth retrying from the start of the transaction.
RETRY_CONFLICTS = frozenset({"40001", "40P01"})  # serialization failure, deadlock
# The connection is gone (server shutting down, restarting, or the link broke): worth one
# immediate retry on a fresh connection.
CONNECTION_GONE = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006"})
# Overloaded or too slow (too many connections, out of shared memory or lock slots, statement
# or lock timeout): retrying at once would only add load; the caller retries later.
OVERLOADED = frozenset({"53300", "53200", "53400", "57014", "55P03"})
# Missing tables or functions: the database was never migrated, or is behind the code.
SCHEMA_MISSING = frozenset({"42P01", "42883"})

CONSTRAINT_ERRORS: dict[str, tuple[type[MeetingLinksError], str]] = {
    "bookings_no_overlapping_link_use":
        (LinkConflict, "refused: that link is already used by an overlapping booking at that time"),
    "bookings_link_must_be_enabled": (LinkConflict, "refused: that link is disabled"),
    "bookings_link_requires_active_booking":
        (LinkConflict, "refused: only a paid, confirmed booking can hold a link"),
    "bookings_private_space_of_its_booking":
        (LinkConflict, "refused: that link is another booking's private space"),
    "meeting_links_pool_meeting_link_key": (LinkConflict, "refused: that link is already in the pool"),
    "meeting_links_pool_meeting_link_check":
        (BadRequest, "refused: not an https:// URL (a meeting link starts with https:// and has no spaces)"),
    "meeting_links_pool_meeting_link_length": (BadRequest, "refused: a meeting link is at most 2048 characters"),
    "bookings_order_id_format":
        (BadRequest, "refused: order_id must be 1 to 50 letters, digits, '-', '_', '~' or '.' (as Midtrans sends it)"),
    "bookings_scheduled_date_check": (BadRequest, "refused: scheduled_date must be from 2000-01-01 to 2099-12-31"),
    "bookings_scheduled_time_check":
        (BadRequest, "refused: scheduled_time must be before 24:00 (write 00:00 of the next day)"),
    "bookings_duration_check": (BadRequest, "refused: duration must be between 1 and 1440 minutes"),
    "bookings_expert_email_check": (BadRequest, "refused: expert_email is not an email address"),
    "bookings_customer_email_check": (BadRequest, "refused: customer_email is not an email address"),
    "bookings_order_id_key": (LinkConflict, "refused: a booking with that order_id exists already"),
}


def sql_error(exc: DatabaseError) -> SqlError:
    """The SQLSTATE, message, constraint and detail of a pg8000 DatabaseError."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return SqlError(fields.get("C", ""), fields.get("M", str(exc)), fields.get("n"), fields.get("D"))


def domain_error(error: SqlError) -> MeetingLinksError:
    """The domain error a refused statement stands for, or the SqlError itself."""
    kind, message = CONSTRAINT_ERRORS.get(error.constraint or "", (None, ""))
    return kind(message) if kind else error


def where(settings: Settings) -> str:
    """Which database, in words an operator can act on (never with a password)."""
    if settings.instance_connection_name:
        return f"Cloud SQL instance {settings.instance_connection_name}, database {settings.db_name}"
    if settings.database_url == EMBEDDED:
        return "the embedded PostgreSQL"
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
    text = str(exc).lower() + str(exc.__cause__ or "").lower()
    if "ssl" in text or "tls" in text:
        return DatabaseUnavailable(f"{place}: the server refused TLS, which sslmode in DATABASE_URL requires "
                                   "(use sslmode=prefer or disable for a server without TLS)")
    return DatabaseUnavailable(f"cannot reach {place}: is PostgreSQL running there? "
                               "(check DATABASE_URL, or INSTANCE_CONNECTION_NAME)")


def schema_missing(settings: Settings, error: SqlError) -> SchemaMissing:
    return SchemaMissing(f"{where(settings)} is not migrated ({error}): run "
                         "`meeting-links migrate` with DATABASE_URL pointing at it")
