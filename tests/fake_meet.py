"""A local stand-in for Google's OAuth token endpoint and the Meet REST API v2, speaking their
documented protocols: refresh-token and JWT-bearer grants at /token; POST /v2/spaces,
GET /v2/spaces/{name or meetingCode}, POST /v2/spaces/{name}:endActiveConference, each
wanting a bearer token the token endpoint issued. On demand it answers 429 or 500, answers
slowly, or refuses the refresh token; it counts every call."""
from __future__ import annotations

import json
import secrets
import threading
import time
from urllib.parse import parse_qs

from support import FakeServer

SCOPE = "https://www.googleapis.com/auth/meetings.space.created"


class FakeMeet:
    def __init__(self, create_delay_s: float = 0.0):
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.spaces: dict[str, dict] = {}       # name -> space
        self.active: set[str] = set()           # names with a call running
        self.calls: dict[str, int] = {"token": 0, "create": 0, "get": 0, "end": 0}
        self.failures: list[int] = []           # statuses to answer next, one per API call
        self.create_delay_s = create_delay_s
        self.refuse_refresh = False
        self.refresh_tokens = {"refresh-1"}
        self.server = FakeServer(self._handle)
        self.url = self.server.url

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    # --- what a test uses -----------------------------------------------------------------

    def authorized_user(self) -> str:
        """MEET_CREDENTIALS for an authorized user whose tokens come from this fake."""
        return json.dumps({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
                           "client_secret": "csecret", "refresh_token": "refresh-1",
                           "token_uri": f"{self.url}/token"})

    def fail_next(self, *statuses: int) -> None:
        with self.lock:
            self.failures.extend(statuses)

    def start_call(self, name: str) -> None:
        with self.lock:
            self.active.add(name)

    # --- the protocol -----------------------------------------------------------------------

    def _handle(self, method, path, headers, body):
        if path == "/token" and method == "POST":
            return self._token(body)
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if token not in self.tokens:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        with self.lock:
            status = self.failures.pop(0) if self.failures else None
        if status:
            return _error(status, "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL", "injected")
        if method == "POST" and path == "/v2/spaces":
            return self._create(json.loads(body or b"{}"))
        if method == "GET" and path.startswith("/v2/spaces/"):
            return self._get(path.removeprefix("/v2/"))
        if method == "POST" and path.endswith(":endActiveConference"):
            return self._end(path.removeprefix("/v2/").removesuffix(":endActiveConference"))
        return _error(404, "NOT_FOUND", "no such method")

    def _token(self, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            self.calls["token"] += 1
        grant = form.get("grant_type")
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens and not self.refuse_refresh:
            pass
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and form.get("assertion"):
            pass
        else:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, None
        token = "ya29." + secrets.token_urlsafe(16)
        with self.lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": SCOPE}, None

    def _create(self, request):
        if self.create_delay_s:
            time.sleep(self.create_delay_s)
        code = "-".join(secrets.token_hex(2)[:n] for n in (3, 4, 3)).replace("0", "a")
        name = "spaces/" + secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
        space = {"name": name, "meetingUri": f"https://meet.google.com/{code}", "meetingCode": code,
                 "config": {"accessType": "TRUSTED", "entryPointAccess": "ALL", **(request.get("config") or {})}}
        with self.lock:
            self.calls["create"] += 1
            self.spaces[name] = space
        return 200, space, None

    def _get(self, ref):
        with self.lock:
            self.calls["get"] += 1
            space = self.spaces.get(ref) or next(
                (s for s in self.spaces.values() if s["meetingCode"] == ref.removeprefix("spaces/")), None)
            if space and space["name"] in self.active:
                space = {**space, "activeConference": {"conferenceRecord": "conferenceRecords/x"}}
        if space is None:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        return 200, space, None

    def _end(self, name):
        with self.lock:
            self.calls["end"] += 1
            if name not in self.spaces:
                return _error(404, "NOT_FOUND", "Requested entity was not found.")
            if name not in self.active:
                return _error(400, "FAILED_PRECONDITION", "No active conference.")
            self.active.discard(name)
        return 200, {}, None


def _error(status: int, kind: str, message: str):
    return status, {"error": {"code": status, "message": message, "status": kind}}, None
