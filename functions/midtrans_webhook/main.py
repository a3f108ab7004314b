"""midtrans_webhook: Midtrans's payment notifications. Verify the signature, record the
notification on its booking, and ask assign_meeting_link for a link once it is paid.

200 means the notification's effect is durably recorded; 503 makes Midtrans retry."""
import functions_framework

from meeting_links import assign_client, notifications, signature, web
from meeting_links.config import settings
from meeting_links.db import database


@functions_framework.http
def midtrans_webhook(request):
    return web.handle(request, _notify)


def _notify(request):
    web.require_post(request)
    config = settings()
    body = web.json_object(request)
    signature.verify(body, config.midtrans_server_key)
    done = notifications.receive(database(config), config, body,
                                 lambda booking_id, order_id: assign_client.request_assignment(
                                     config, booking_id, order_id))
    return done.answer(), 200
