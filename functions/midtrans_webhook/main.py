"""midtrans_webhook: Midtrans's payment notifications. Verify the signature, record the
notification on its booking, and ask assign_meeting_link for a link once it is paid.

200 means the notification's effect is durably recorded; 503 makes Midtrans retry."""
import functions_framework

from meeting_links import allocation, assign_client, logs, midtrans_api, signature, web
from meeting_links.config import settings
from meeting_links.db import database
from meeting_links.errors import AmountMismatch, MeetingLinksError
from meeting_links.notifications import Notification, record


@functions_framework.http
def midtrans_webhook(request):
    return web.handle(request, _notify)


def _notify(request):
    web.require_post(request)
    config = settings()
    body = web.json_object(request)
    signature.verify(body, config.midtrans_server_key)
    notification = Notification.from_body(body)
    if config.midtrans_verify_with_status_api:
        notification = notification.as_reported_by(
            midtrans_api.transaction_status(config, notification.order_id))

    db = database(config)
    recorded = record(db, notification)
    if recorded.outcome == "rejected":
        raise AmountMismatch(recorded.detail)
    if recorded.booking_id is None:
        return {"success": True, "ignored": True, "reason": recorded.detail}, 200

    if recorded.released:
        try:
            allocation.serve_waiting(db, *recorded.released)
        except MeetingLinksError as exc:
            # The release is committed; the sweep will hand the link over instead.
            logs.error("handing a released link to waiting bookings failed",
                       booking_id=recorded.booking_id, error=type(exc).__name__)

    answer = {"success": True, "outcome": recorded.outcome, "bookingId": recorded.booking_id,
              "paymentStatus": recorded.payment_status, "status": recorded.status}
    if recorded.needs_link:
        assigned = assign_client.request_assignment(config, recorded.booking_id, notification.order_id)
        answer["meetingLink"] = assigned.get("meetingLink")
        answer["requiresManualAssignment"] = bool(assigned.get("requiresManualAssignment"))
    return answer, 200
