"""One exception type per way a request can fail. Each function's edge maps them to HTTP
(see web.py); nothing below the edge knows about status codes."""


class MeetingLinksError(Exception):
    """Base class; the message is safe to show to the caller."""


class ConfigurationError(MeetingLinksError):
    """A setting is missing or malformed; an operator must fix the deployment."""


class BadRequest(MeetingLinksError):
    """The request body is not what the endpoint accepts."""


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


class BookingNotFound(MeetingLinksError):
    """No booking has that id."""


class BookingNotPaid(MeetingLinksError):
    """Links are only given to paid, confirmed bookings."""


class BookingCancelled(BookingNotPaid):
    """Support cancelled the booking: it gets no link, whatever its payment says."""


class PoolExhausted(MeetingLinksError):
    """Every enabled link is busy for the booking's range; a person must step in."""

    def __init__(self, booking_id: str, starts_at, ends_at, newly_flagged: bool = False,
                 order_id: str | None = None):
        super().__init__("No available meeting links at this time. Please contact support.")
        self.booking_id, self.starts_at, self.ends_at = booking_id, starts_at, ends_at
        self.newly_flagged, self.order_id = newly_flagged, order_id


class LinkNotFound(MeetingLinksError):
    """No link in the pool has that id or URL."""


class LinkConflict(MeetingLinksError):
    """The database refused a manual assignment (overlap, disabled link, unpaid booking)."""


class AmountMismatch(MeetingLinksError):
    """A notification's gross_amount differs from the booking's price."""


class TransientError(MeetingLinksError):
    """Worth retrying later: the caller should get a status that makes it retry."""


class DatabaseUnavailable(TransientError):
    """The database could not be reached, timed out, or kept refusing a retryable error."""


class SchemaMissing(DatabaseUnavailable):
    """The database has no schema (or an older one): migrations were not applied to it."""


class AssignUnavailable(TransientError):
    """The assign_meeting_link function could not be reached or failed."""


class MeetUnavailable(TransientError):
    """The Meet API could not be reached, was too slow, rate-limited us (429) or failed (5xx)."""


class MeetCredentialsError(ConfigurationError):
    """MEET_CREDENTIALS are missing, malformed, or refused by Google."""


class PaymentGatewayUnavailable(TransientError):
    """Midtrans's status API could not be reached or failed."""


class PaymentNotFound(PaymentGatewayUnavailable):
    """Midtrans's status API knows no transaction for the order (yet)."""
