"""midtrans_webhook: Midtrans's payment notifications. Verify the signature, record the
notification on its booking, and ask assign_meeting_link for a link once it is paid.

200 means the notification's effect is durably recorded; 503 makes Midtrans retry."""
import functools

import functions_framework

from meeting_links import clients, notifications
from meeting_links.config import settings
from meeting_links.midtrans import formats, signature
from meeting_links.web import answers, assign_client, inbound


@functions_framework.http
def midtrans_webhook(request):
    return answers.handle(request, _notify)


def _notify(request):
    inbound.require_post(request)
    config = settings()
    body = inbound.json_object(request)
    if kind := formats.non_payment_kind(body):
        return answers.not_a_payment(kind)
    signature.verify(body, config.midtrans_server_key)
    request_link = functools.partial(assign_client.request_link, config)
    return answers.notification(notifications.receive(clients.database(config), config, body, request_link))
