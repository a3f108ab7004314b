"""assign_meeting_link: POST {"bookingId": "<uuid>"} gives that paid booking a link (from the
pool or a private Meet space, as LINK_SOURCE says); POST {"sweep": true} does so for every paid booking still without one.
Private: see meeting_links.internal_auth."""
import functions_framework

from meeting_links import spaces, sweep, web
from meeting_links.config import settings
from meeting_links.db import database
from meeting_links.internal_auth import authenticate_caller


@functions_framework.http
def assign_meeting_link(request):
    return web.handle(request, _assign)


def _assign(request):
    web.require_post(request)
    config = settings()
    authenticate_caller(request.headers.get("Authorization"), config)
    body = web.json_object(request)
    if body.get("sweep") is True:
        return sweep.run(database(config), config).answer(), 200
    return spaces.give_link(database(config), config, web.uuid_field(body, "bookingId")).answer(), 200
