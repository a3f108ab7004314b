"""A local stand-in for Google's OAuth token endpoint and the Meet REST API v2, speaking their
documented protocols: refresh-token and JWT-bearer grants at /token; POST /v2/spaces,
GET /v2/spaces/{name or meetingCode}, POST /v2/spaces/{name}:endActiveConference, each
wanting a bearer token the token endpoint issued. On demand it answers 429 or 500, answers
slowly, or refuses the refresh token; it counts every call."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode

from tests.support import FakeServer  # importable from the benchmarks too

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
        self.foreign_codes: set[str] = set()    # codes made by hand: the app's scope may not read them
        self.authorizations: dict[str, str] = {}  # code -> PKCE challenge, from /auth
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
        if path.startswith("/auth?") and method == "GET":
            return self._authorize(path)
        if path.startswith("/_fake/join?") and method == "POST":  # someone joins the space's call
            self.start_call(parse_qs(path.split("?", 1)[1])["space"][0])
            return 200, {}, None
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

    def _authorize(self, path):
        """The consent screen, already agreed to: redirect back with a code bound to the challenge."""
        query = {k: v[0] for k, v in parse_qs(path.split("?", 1)[1]).items()}
        if query.get("scope") != SCOPE or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request"}, None
        code = "4/" + secrets.token_urlsafe(12)
        with self.lock:
            self.authorizations[code] = query["code_challenge"]
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state'], 'scope': SCOPE})}"
        return 302, b"", {"Location": location}

    def _token(self, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            self.calls["token"] += 1
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self.lock:
                challenge = self.authorizations.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if challenge is None or challenge != expected:
                return 400, {"error": "invalid_grant", "error_description": "Bad code or verifier."}, None
            refresh = "refresh-" + secrets.token_urlsafe(8)
            with self.lock:
                self.refresh_tokens.add(refresh)
            return 200, {"access_token": "ya29.x", "expires_in": 3599, "refresh_token": refresh,
                         "scope": SCOPE, "token_type": "Bearer"}, None
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
        if ref.removeprefix("spaces/") in self.foreign_codes:
            return _error(403, "PERMISSION_DENIED", "Permission denied on resource MeetingSpace")
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


if __name__ == "__main__":  # a stand-in for Google on a port of your choice, for the local stack
    import sys
    with FakeMeet() as fake:
        print(f"fake Google token endpoint and Meet API at {fake.url}", flush=True)
        print(f"MEET_API_BASE_URL={fake.url}", flush=True)
        print(f"MEET_CREDENTIALS='{fake.authorized_user()}'", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sys.exit(0)
