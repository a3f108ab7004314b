"""A stand-in for the app's receiver of link events, for the local stack: it checks each
delivery's Standard Webhooks signature with the secret the stack generated, prints the event
in the terminal, and answers 204 (401 for a bad signature)."""
from __future__ import annotations

import hmac
import json
import time
from http.server import BaseHTTPRequestHandler

from .. import standard_webhooks
from .local_http import LocalHTTPServer


class AppReceiver(LocalHTTPServer):
    def __init__(self, port: int, secret: str, echo=print):
        outer = self
        self.received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                webhook_id, stamp = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
                expected = standard_webhooks.sign(secret, webhook_id, int(stamp) if stamp.isdigit() else 0, body)
                given = self.headers.get("webhook-signature", "").split()
                ok = stamp.isdigit() and abs(time.time() - int(stamp)) < 300 and any(
                    hmac.compare_digest(expected, s) for s in given)
                if ok:
                    event = json.loads(body)
                    outer.received.append(event)
                    data = event.get("data", {})
                    echo(f"link event {webhook_id} {event.get('type')} {data.get('orderId')} "
                         f"{data.get('meetingLink') or '(no link)'} {data.get('startsAt') or ''}", flush=True)
                self.send_response(204 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(Handler, port, name="app-receiver")
