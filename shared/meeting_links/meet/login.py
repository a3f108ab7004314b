"""`meeting-links meet-login`: get the Meet owner account's refresh token once, on a machine
with a browser, and write the authorized-user JSON that MEET_CREDENTIALS takes.

OAuth 2.0 for installed apps with a loopback redirect and PKCE: open the printed URL, sign in
as the Workspace account that will own the spaces, allow the one scope; Google redirects to
127.0.0.1 here with a code, which is exchanged for a refresh token at the client's
token_uri. The OAuth client is a "Desktop app" client of the project where the Meet REST API
is enabled (its JSON, as downloaded from the Cloud console).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from ..errors import BadRequest
from ..web import outbound
from .credentials import SCOPE

DEFAULT_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"  # the installed-app guide's
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"


def _client(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read the OAuth client file {path} ({type(exc).__name__})") from None
    # A "Desktop app" client: only it may redirect to a loopback address on any port.
    client = data.get("installed") if isinstance(data, dict) else None
    if not isinstance(client, dict) or not client.get("client_id") or not client.get("client_secret"):
        raise BadRequest(f"{path} is not the JSON of a Desktop app OAuth client (no installed.client_id / "
                         "client_secret); create one under APIs & Services > Credentials")
    return client


def login(client_file: str, out: str, port: int = 0, show=print, timeout_s: float = 300) -> dict:
    """Runs the flow and writes the authorized-user JSON to `out` (mode 0600). Returns it."""
    client = _client(client_file)
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    received: dict = {}

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            if query.get("state") == state and ("code" in query or "error" in query):
                received.update(query)
                message = b"Signed in. You can close this tab and return to the terminal."
            else:
                message = b"Unexpected request."
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", port), Callback)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    url = (client.get("auth_uri") or DEFAULT_AUTH_URI) + "?" + urlencode({
        "client_id": client["client_id"], "redirect_uri": redirect_uri, "response_type": "code",
        "scope": SCOPE, "access_type": "offline", "prompt": "consent", "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    show(f"Open this URL in a browser, sign in as the account that will own the Meet spaces:\n\n  {url}\n")
    deadline = time.monotonic() + timeout_s
    try:
        while not received and time.monotonic() < deadline:
            server.timeout = max(0.1, deadline - time.monotonic())
            server.handle_request()
    finally:
        server.server_close()
    if "code" not in received:
        raise BadRequest(f"sign-in did not complete ({received.get('error', 'no answer')})")
    token_uri = client.get("token_uri") or DEFAULT_TOKEN_URI
    form = {"code": received["code"], "client_id": client["client_id"], "client_secret": client["client_secret"],
            "redirect_uri": redirect_uri, "grant_type": "authorization_code", "code_verifier": verifier}
    try:
        answer = outbound.call("POST", token_uri, deadline=time.monotonic() + 15, body=urlencode(form).encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = answer.json_object()
    except (outbound.Unreachable, outbound.NotUnderstood) as exc:
        raise BadRequest(f"the token endpoint could not exchange the code ({exc})") from None
    if answer.status != 200 or not isinstance(body.get("refresh_token"), str):
        raise BadRequest(f"the token endpoint refused the code ({answer.status}: "
                         f"{str(body.get('error_description') or body.get('error') or 'no refresh_token')[:200]})")
    credentials = {"type": "authorized_user", "client_id": client["client_id"],
                   "client_secret": client["client_secret"], "refresh_token": body["refresh_token"],
                   "token_uri": token_uri}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(credentials, f)  # no trailing newline: stored as-is in Secret Manager
    return credentials
