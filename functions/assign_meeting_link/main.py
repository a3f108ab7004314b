"""assign_meeting_link: POST {"bookingId": "<uuid>"} gives that paid booking a link (from the
pool or a private Meet space, as LINK_SOURCE says); POST {"sweep": true} catches up on
everything left behind (meeting_links.sweep). Private: see meeting_links.web.internal_auth."""
import functions_framework

from meeting_links import clients, link_source, sweep
from meeting_links.config import settings
from meeting_links.web import answers, inbound
from meeting_links.web.internal_auth import authenticate_caller


@functions_framework.http
def assign_meeting_link(request):
    return answers.handle(request, _assign)


def _assign(request):
    inbound.require_post(request)
    config = settings()
    authenticate_caller(request.headers.get("Authorization"), config)
    body = inbound.json_object(request)
    if body.get("sweep") is True:
        return answers.sweep(sweep.run(clients.database(config), config))
    booking_id = inbound.uuid_field(body, "bookingId")
    return answers.assignment(link_source.give_link(clients.database(config), config, booking_id))
