"""A local stand-in for Google's OAuth token endpoint and the Meet REST API v2, speaking their
documented protocols (developers.google.com/workspace/meet/api/reference/rest/v2):

    POST /token                               refresh_token, jwt-bearer and authorization_code grants
    GET  /auth                                the consent screen, already agreed to (meet-login)
    POST /v2/spaces                           create (config.accessType and entryPointAccess checked)
    GET  /v2/spaces/{name or meetingCode}     get
    PATCH /v2/spaces/{name}?updateMask=...    patch (config.accessType)
    POST /v2/spaces/{name}:endActiveConference
    POST|GET /v2/spaces/{name}/members        members.create (409 ALREADY_EXISTS for an email
                                              already a member) and members.list
    DELETE /v2/spaces/{name}/members/{id}     members.delete

Errors have Google's shape, {"error": {"code", "message", "status"}}, with the status name
google.rpc.Code gives each HTTP status. Every call wants a bearer token the token endpoint
issued. For tests it can misbehave the way an outside system may: a status, an HTML page, an
empty or malformed body, an answer that trickles in or floods, or none at all (fail_next).
`meeting-links local --fake-meet` serves it on MEET_FAKE_PORT; nothing deployed uses it."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

from .local_http import LocalHTTPServer

SCOPE = "https://www.googleapis.com/auth/meetings.space.created"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class Fault:
    """One misbehaving answer. kind: status | raw | trickle | flood | hang."""
    kind: str
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    seconds: float = 0.0
    size: int = 0

    @classmethod
    def error(cls, status: int) -> Fault:
        return cls("status", status)

    @classmethod
    def raw(cls, body: bytes | str | dict | list, status: int = 200, content_type: str = "application/json") -> Fault:
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        return cls("raw", status, data, content_type)

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        return cls.raw(b"<html><body>Sorry, something went wrong.</body></html>", status, "text/html")

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        """A valid-looking 200 whose body arrives a byte at a time over `seconds`."""
        return cls("trickle", seconds=seconds)

    @classmethod
    def flood(cls, size: int) -> Fault:
        """A 200 with a body of `size` bytes that never ends as JSON."""
        return cls("flood", size=size)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)


class FakeGoogle(LocalHTTPServer):
    def __init__(self, port: int = 0, create_delay_s: float = 0.0):
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.spaces: dict[str, dict] = {}            # name -> space
        self.members: dict[str, dict[str, dict]] = {}  # space name -> email -> member
        self.active: set[str] = set()                # names with a call running
        self.calls: dict[str, int] = {"token": 0, "create": 0, "get": 0, "patch": 0, "end": 0, "members": 0}
        self.faults: dict[str, list] = {}            # endpoint kind ("api" = any API call) -> faults to answer next
        self.create_delay_s = create_delay_s
        self.refuse_refresh = False
        self.refresh_tokens = {"refresh-1"}
        self.foreign_codes: set[str] = set()         # codes made by hand: the app's scope may not read them
        self.authorizations: dict[str, str] = {}     # code -> PKCE challenge, from /auth
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer._dispatch(self, self.command, self.path, self.headers, body)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass

        super().__init__(Handler, port, name="fake-google")

    # --- what a test (or the local stack) uses ---------------------------------------------

    def authorized_user(self) -> str:
        """MEET_CREDENTIALS for an authorized user whose tokens come from this fake."""
        return json.dumps({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
                           "client_secret": "csecret", "refresh_token": "refresh-1",
                           "token_uri": f"{self.url}/token"})

    def fail_next(self, *faults, kind: str = "api") -> None:
        """The next answers of `kind` (token, create, get, patch, end, members, or api: any API
        call) misbehave, one per call: an int is that HTTP status, a Fault anything else."""
        with self.lock:
            self.faults.setdefault(kind, []).extend(f if isinstance(f, Fault) else Fault.error(f) for f in faults)

    def start_call(self, name: str) -> None:
        with self.lock:
            self.active.add(name)

    def member_emails(self, space: str) -> dict[str, str]:
        with self.lock:
            return {email: m.get("role", "ROLE_UNSPECIFIED") for email, m in self.members.get(space, {}).items()}

    # --- the protocol -----------------------------------------------------------------------

    def _fault(self, kind: str) -> Fault | None:
        with self.lock:
            for key in (kind, "api" if kind != "token" else None):
                if key and self.faults.get(key):
                    return self.faults[key].pop(0)
        return None

    def _dispatch(self, handler, method, path, headers, body):
        url = urlsplit(path)
        route = url.path
        if route == "/token" and method == "POST":
            kind = "token"
        elif route == "/auth" and method == "GET":
            return self._send(handler, *self._authorize(url.query))
        elif route.startswith("/_fake/join") and method == "POST":  # someone joins the space's call
            self.start_call(parse_qs(url.query)["space"][0])
            return self._send(handler, 200, {})
        else:
            token = (headers.get("Authorization") or "").removeprefix("Bearer ")
            if token not in self.tokens:
                return self._send(handler, *_error(401, "Request had invalid authentication credentials."))
            kind = _kind(method, route)
        with self.lock:
            if kind in self.calls:
                self.calls[kind] += 1
        fault = self._fault(kind)
        if fault is not None:
            return self._misbehave(handler, fault)
        if kind == "token":
            return self._send(handler, *self._token(body))
        return self._send(handler, *self._api(method, route, url.query, body))

    def _api(self, method, route, query, body):
        if method == "POST" and route == "/v2/spaces":
            return self._create(_json(body))
        name = route.removeprefix("/v2/")
        if method == "POST" and route.endswith(":endActiveConference"):
            return self._end(name.removesuffix(":endActiveConference"))
        if route.endswith("/members") and method in ("POST", "GET"):
            space = name.removesuffix("/members")
            return self._add_member(space, _json(body)) if method == "POST" else self._list_members(space)
        if "/members/" in route and method == "DELETE":
            return self._delete_member(name)
        if method == "GET" and route.startswith("/v2/spaces/"):
            return self._get(name)
        if method == "PATCH" and route.startswith("/v2/spaces/"):
            return self._patch(name, parse_qs(query), _json(body))
        return _error(404, "Method not found.")

    def _authorize(self, query_string):
        """The consent screen, already agreed to: redirect back with a code bound to the challenge."""
        query = {k: v[0] for k, v in parse_qs(query_string).items()}
        if query.get("scope") != SCOPE or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request"}, {}
        code = "4/" + secrets.token_urlsafe(12)
        with self.lock:
            self.authorizations[code] = query["code_challenge"]
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state'], 'scope': SCOPE})}"
        return 302, b"", {"Location": location}

    def _token(self, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self.lock:
                challenge = self.authorizations.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if challenge is None or challenge != expected:
                return 400, {"error": "invalid_grant", "error_description": "Bad code or verifier."}, {}
            refresh = "refresh-" + secrets.token_urlsafe(8)
            with self.lock:
                self.refresh_tokens.add(refresh)
            return 200, {"access_token": "ya29.x", "expires_in": 3599, "refresh_token": refresh,
                         "scope": SCOPE, "token_type": "Bearer"}, {}
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens and not self.refuse_refresh:
            pass
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and form.get("assertion"):
            pass
        else:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, {}
        token = "ya29." + secrets.token_urlsafe(16)
        with self.lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": SCOPE}, {}

    def _create(self, request):
        config = request.get("config") or {}
        if config.get("accessType", "OPEN") not in ("OPEN", "TRUSTED", "RESTRICTED") or \
                config.get("entryPointAccess", "ALL") not in ("ALL", "CREATOR_APP_ONLY"):
            return _error(400, "Invalid value for config.")
        if self.create_delay_s:
            time.sleep(self.create_delay_s)
        code = "-".join("".join(secrets.choice(string.ascii_lowercase) for _ in range(n)) for n in (3, 4, 3))
        name = "spaces/" + secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
        space = {"name": name, "meetingUri": f"https://meet.google.com/{code}", "meetingCode": code,
                 "config": {"accessType": "TRUSTED", "entryPointAccess": "ALL", **config}}
        with self.lock:
            self.spaces[name] = space
        return 200, space, {}

    def _find(self, ref):
        space = self.spaces.get(ref)
        if space is None:
            space = next((s for s in self.spaces.values() if s["meetingCode"] == ref.removeprefix("spaces/")), None)
        return space

    def _get(self, ref):
        if ref.removeprefix("spaces/") in self.foreign_codes:
            return _error(403, "Permission denied on resource MeetingSpace")
        with self.lock:
            space = self._find(ref)
            if space and space["name"] in self.active:
                space = {**space, "activeConference": {"conferenceRecord": "conferenceRecords/x"}}
        if space is None:
            return _error(404, "Requested entity was not found.")
        return 200, space, {}

    def _patch(self, name, query, request):
        mask = (query.get("updateMask") or [""])[0]
        access = (request.get("config") or {}).get("accessType")
        if mask != "config.accessType" or access not in ("OPEN", "TRUSTED", "RESTRICTED"):
            return _error(400, "Invalid update mask or value.")
        with self.lock:
            space = self.spaces.get(name)
            if space is None:
                return _error(404, "Requested entity was not found.")
            space["config"] = {**space["config"], "accessType": access}
            return 200, space, {}

    def _end(self, name):
        with self.lock:
            if name not in self.spaces:
                return _error(404, "Requested entity was not found.")
            if name not in self.active:
                return _error(400, "No active conference.", "FAILED_PRECONDITION")
            self.active.discard(name)
        return 200, {}, {}

    def _add_member(self, space, request):
        email = request.get("email")
        if not isinstance(email, str) or "@" not in email:
            return _error(400, "email is required.")
        if request.get("role", "ROLE_UNSPECIFIED") not in ("ROLE_UNSPECIFIED", "COHOST"):
            return _error(400, f"Invalid value at 'member.role' ({request.get('role')!r}).")
        with self.lock:
            if space not in self.spaces:
                return _error(404, "Requested entity was not found.")
            members = self.members.setdefault(space, {})
            if email.lower() in members:
                return _error(409, "Member already exists.")
            member = {"name": f"{space}/members/{secrets.token_hex(6)}", "email": email.lower(),
                      "role": request.get("role", "ROLE_UNSPECIFIED")}
            members[email.lower()] = member
        return 200, member, {}

    def _list_members(self, space):
        with self.lock:
            if space not in self.spaces:
                return _error(404, "Requested entity was not found.")
            return 200, {"members": list(self.members.get(space, {}).values())}, {}

    def _delete_member(self, name):
        space = name.split("/members/")[0]
        with self.lock:
            members = self.members.get(space, {})
            email = next((e for e, m in members.items() if m["name"] == name), None)
            if email is None:
                return _error(404, "Requested entity was not found.")
            del members[email]
        return 200, {}, {}

    # --- sending ----------------------------------------------------------------------------

    def _send(self, handler, status, payload, headers=None):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        if not isinstance(payload, bytes):
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _misbehave(self, handler, fault: Fault):
        try:
            if fault.kind == "status":
                return self._send(handler, *_error(fault.status, "injected"))
            if fault.kind == "raw":
                handler.send_response(fault.status)
                handler.send_header("Content-Type", fault.content_type)
                handler.send_header("Content-Length", str(len(fault.body)))
                handler.end_headers()
                handler.wfile.write(fault.body)
                return None
            if fault.kind == "hang":
                time.sleep(fault.seconds)
                return self._send(handler, *_error(503, "late"))
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            if fault.kind == "flood":
                handler.send_header("Content-Length", str(fault.size))
                handler.end_headers()
                chunk = b"[" * 65536
                sent = 0
                while sent < fault.size:
                    handler.wfile.write(chunk[:min(len(chunk), fault.size - sent)])
                    sent += len(chunk)
                return None
            body = json.dumps({"access_token": "late", "expires_in": 3599, "name": "spaces/late"}).encode()
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            pause = fault.seconds / max(1, len(body))
            for byte in body:  # trickle
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should
        return None


def _kind(method: str, route: str) -> str:
    if route == "/v2/spaces" and method == "POST":
        return "create"
    if route.endswith(":endActiveConference"):
        return "end"
    if "/members" in route:
        return "members"
    return {"GET": "get", "PATCH": "patch"}.get(method, "api")


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(status: int, message: str, kind: str | None = None):
    return status, {"error": {"code": status, "message": message, "status": kind or STATUS_NAMES.get(status, "UNKNOWN")}}, {}


if __name__ == "__main__":  # a stand-in for Google on a port of your choice
    import os
    import sys
    with FakeGoogle(port=int(os.environ.get("MEET_FAKE_PORT") or 8083)) as fake:
        print(f"fake Google token endpoint and Meet API at {fake.url}", flush=True)
        print(f"MEET_API_BASE_URL={fake.url}", flush=True)
        print(f"MEET_CREDENTIALS='{fake.authorized_user()}'", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sys.exit(0)
