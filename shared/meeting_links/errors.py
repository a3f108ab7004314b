"""One exception type per way an operation can fail. The edges map them: web/answers.py to an
HTTP status and body, support/cli.py to an exit code. Nothing below an edge knows either.

A message is written for the operator or support person who reads it in a log or a
terminal; a public caller of the webhook only ever sees the edge's own short text."""


class MeetingLinksError(Exception):
    """Base class."""


class ConfigurationError(MeetingLinksError):
    """A setting is missing or malformed; an operator must fix the deployment."""


class BadRequest(MeetingLinksError):
    """The request (or the command's arguments) is not what the operation accepts."""


class PayloadTooLarge(BadRequest):
    """The body is larger than any legitimate request."""


class MethodNotAllowed(MeetingLinksError):
    """Only POST is served."""


class Unauthorized(MeetingLinksError):
    """The caller could not be authenticated."""


class MalformedNotification(BadRequest):
    """A signed notification's fields are not in Midtrans's own formats."""


class InvalidSignature(Unauthorized):
    """A Midtrans notification's signature_key is missing or does not match."""


class NotFound(MeetingLinksError):
    """Something named by the caller does not exist."""


class BookingNotFound(NotFound):
    """No booking has that id (or order id)."""


class LinkNotFound(NotFound):
    """No link in the pool has that id or URL."""


class EventNotFound(NotFound):
    """No link event has that id."""


class Refused(MeetingLinksError):
    """The rules refuse the operation in the state things are in (a conflict, not bad input)."""


class BookingNotPaid(Refused):
    """Links are only given to paid, confirmed bookings."""


class BookingCancelled(BookingNotPaid):
    """Support cancelled the booking: it gets no link, whatever its payment says."""


class LinkConflict(Refused):
    """The database refused a change of a link (overlap, disabled link, unpaid booking)."""


class AmountMismatch(Refused):
    """A notification's gross_amount differs from the booking's price."""


class PoolExhausted(Refused):
    """Every enabled link is busy for the booking's range; a person must step in."""

    def __init__(self, booking_id: str, starts_at, ends_at, order_id: str | None = None):
        super().__init__(f"no link is free for booking {booking_id} ({order_id}) from {starts_at} to {ends_at}")
        self.booking_id, self.starts_at, self.ends_at, self.order_id = booking_id, starts_at, ends_at, order_id


class SqlError(MeetingLinksError):
    """PostgreSQL refused a statement for a reason that is neither a known rule nor retryable."""

    def __init__(self, sqlstate: str, message: str, constraint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.sqlstate, self.constraint, self.detail = sqlstate, constraint, detail


class MigrationError(MeetingLinksError):
    """The migrations could not be applied (an edited migration, or one that failed)."""


class TransientError(MeetingLinksError):
    """Worth retrying later: the caller should get a status that makes it retry."""


class DatabaseUnavailable(TransientError):
    """The database could not be reached, timed out, or kept refusing a retryable error."""


class SchemaMissing(DatabaseUnavailable):
    """The database has no schema (or an older one): migrations were not applied to it."""


class AssignUnavailable(TransientError):
    """The assign_meeting_link function could not be reached, failed, or answered nonsense."""


class MeetUnavailable(TransientError):
    """The Meet API could not be reached, was too slow, rate-limited us, failed, or answered
    something its protocol does not allow."""


class MeetCredentialsError(ConfigurationError):
    """MEET_CREDENTIALS are missing, malformed, or refused by Google."""


class PaymentGatewayUnavailable(TransientError):
    """Midtrans's status API could not be reached, failed, or answered something its protocol
    does not allow."""


class PaymentNotFound(PaymentGatewayUnavailable):
    """Midtrans's status API knows no transaction for the order (yet)."""
