"""Google Meet REST API v2, the calls we make: spaces.create, .get, .patch (access) and
.endActiveConference; spaces.members.create, .list and .delete. Plain REST through
web/outbound with a bearer token from meet/credentials (the official client would bring gRPC
and protobuf into a webhook's cold start for a handful of calls).

Every call runs within the deadline its caller gives, and every answer is checked against
the protocol before it is used: a space must have a name `spaces/{id}`, an https meetingUri
and a string meetingCode, a member an email. Anything else is MeetUnavailable, so the
booking falls back as LINK_SOURCE says, exactly as for a 5xx."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from ..config import Settings
from ..errors import MeetCredentialsError, MeetUnavailable
from ..web import outbound
from .credentials import AccessTokens

_SPACE_NAME = re.compile(r"spaces/[A-Za-z0-9_-]{1,128}")
_MEMBER_NAME = re.compile(r"spaces/[A-Za-z0-9_-]{1,128}/members/[A-Za-z0-9_-]{1,128}")
_MEETING_URI = re.compile(r"https://[^\s]{1,2000}")
_CODE = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True)
class Space:
    name: str          # spaces/{id}
    meeting_uri: str   # https://meet.google.com/abc-mnop-xyz
    meeting_code: str  # abc-mnop-xyz
    access_type: str | None = None

    @classmethod
    def from_answer(cls, body: dict) -> Space:
        name, uri, code = body.get("name"), body.get("meetingUri"), body.get("meetingCode", "")
        if not (isinstance(name, str) and _SPACE_NAME.fullmatch(name) and isinstance(uri, str)
                and _MEETING_URI.fullmatch(uri) and isinstance(code, str) and (not code or _CODE.fullmatch(code))):
            raise MeetUnavailable("Meet API answered with a malformed space")
        config = body.get("config") if isinstance(body.get("config"), dict) else {}
        access = config.get("accessType")
        return cls(name, uri, code, access if isinstance(access, str) else None)


@dataclass(frozen=True)
class Member:
    name: str   # spaces/{space}/members/{member}
    email: str
    role: str   # COHOST or MEMBER (ROLE_UNSPECIFIED)


class MeetClient:
    """One per process (clients.meet); thread-safe."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._base = settings.meet_api_base_url.rstrip("/")
        self._tokens = AccessTokens(settings)

    def _call(self, method: str, path: str, deadline: float, body: dict | None = None,
              query: dict | None = None) -> outbound.Answer:
        """The answer; 401 is MeetCredentialsError, 429, 5xx and no answer MeetUnavailable;
        every other status is the caller's to read."""
        token = self._tokens.token(deadline)
        url = f"{self._base}/v2/{path}" + (f"?{urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        try:
            answer = outbound.call(method, url, deadline=deadline, body=data, headers=headers)
        except outbound.Unreachable as exc:
            raise MeetUnavailable(f"Meet API: {exc}") from None
        if answer.status == 401:
            self._tokens.forget()  # a token revoked early: the next call gets a new one
            raise MeetCredentialsError(f"Meet API refused the credentials (401: {_error(answer)})")
        if answer.status == 429 or answer.status >= 500:
            raise MeetUnavailable(f"Meet API answered {answer.status} ({_error(answer)})")
        return answer

    def _object(self, answer: outbound.Answer) -> dict:
        try:
            return answer.json_object()
        except outbound.NotUnderstood as exc:
            raise MeetUnavailable(f"Meet API answered {answer.status}, but {exc}") from None

    def create_space(self, access_type: str, deadline: float) -> Space:
        config = {"accessType": access_type, "entryPointAccess": self._settings.meet_entry_point_access}
        answer = self._call("POST", "spaces", deadline, {"config": config})
        if answer.status == 403:  # the API not enabled, Meet off for the user, a scope missing
            raise MeetCredentialsError(f"Meet API refused to create a space (403: {_error(answer)})")
        if answer.status != 200:
            raise MeetUnavailable(f"Meet API refused to create a space ({answer.status}: {_error(answer)})")
        return Space.from_answer(self._object(answer))

    def get_space(self, name_or_code: str, deadline: float) -> Space | str:
        """The space, or "missing" (404), or "not ours" (403: our scope reaches only what the app made)."""
        answer = self._call("GET", _space_path(name_or_code), deadline)
        if answer.status == 404:
            return "missing"
        if answer.status == 403:
            return "not ours"
        if answer.status != 200:
            raise MeetUnavailable(f"Meet API answered {answer.status} reading {name_or_code}")
        return Space.from_answer(self._object(answer))

    def set_access(self, name: str, access_type: str, deadline: float) -> None:
        answer = self._call("PATCH", _space_path(name), deadline, {"config": {"accessType": access_type}},
                            query={"updateMask": "config.accessType"})
        if answer.status != 200:
            raise MeetUnavailable(f"Meet API answered {answer.status} changing the access of {name}")

    def end_active_conference(self, name: str, deadline: float) -> str:
        """"ended", "none running" (no conference: FAILED_PRECONDITION, or the space is gone), or
        "refused" (403: the app may not manage that space; its own problem, not the credentials')."""
        answer = self._call("POST", f"{_space_path(name)}:endActiveConference", deadline, {})
        if answer.status == 200:
            return "ended"
        if answer.status in (400, 404):
            return "none running"
        if answer.status == 403:
            return "refused"
        raise MeetUnavailable(f"Meet API answered {answer.status} ending the call in {name}")

    def add_member(self, space: str, email: str, role: str, deadline: float) -> Member | None:
        """The member made; None when Google already has that email as a member (409)."""
        body = {"email": email} | ({"role": "COHOST"} if role == "COHOST" else {})
        answer = self._call("POST", f"{_space_path(space)}/members", deadline, body)
        if answer.status == 409:
            return None
        if answer.status != 200:
            raise MeetUnavailable(f"Meet API answered {answer.status} adding a member to {space} ({_error(answer)})")
        return _member(self._object(answer), email)

    def members(self, space: str, deadline: float) -> list[Member]:
        found, token = [], None
        for _ in range(20):  # 250 a page: 20 pages is far more than a consultation has
            answer = self._call("GET", f"{_space_path(space)}/members", deadline,
                                query={"pageSize": 250} | ({"pageToken": token} if token else {}))
            if answer.status != 200:
                raise MeetUnavailable(f"Meet API answered {answer.status} listing the members of {space}")
            body = self._object(answer)
            items = body.get("members", [])
            if not isinstance(items, list):
                raise MeetUnavailable("Meet API answered a member list that is not a list")
            found.extend(_member(item, None) for item in items)
            token = body.get("nextPageToken")
            if not token:
                return found
            if not isinstance(token, str):
                raise MeetUnavailable("Meet API answered a malformed nextPageToken")
        raise MeetUnavailable(f"Meet API kept paging the members of {space}")

    def remove_member(self, member_name: str, deadline: float) -> None:
        answer = self._call("DELETE", quote(member_name, safe="/"), deadline)
        if answer.status not in (200, 404):
            raise MeetUnavailable(f"Meet API answered {answer.status} removing {member_name}")


def _member(item, email: str | None) -> Member:
    if not isinstance(item, dict):
        raise MeetUnavailable("Meet API answered a malformed member")
    name, got_email, role = item.get("name"), item.get("email", email), item.get("role", "ROLE_UNSPECIFIED")
    if not (isinstance(name, str) and _MEMBER_NAME.fullmatch(name) and isinstance(got_email, str)
            and "@" in got_email and len(got_email) <= 254 and isinstance(role, str)):
        raise MeetUnavailable("Meet API answered a malformed member")
    return Member(name, got_email.lower(), "COHOST" if role == "COHOST" else "MEMBER")


def _space_path(name_or_code: str) -> str:
    return name_or_code if name_or_code.startswith("spaces/") else f"spaces/{name_or_code}"


def _error(answer: outbound.Answer) -> str:
    try:
        error = answer.json_object().get("error")
        return f"{error.get('status')}: {str(error.get('message'))[:200]}" if isinstance(error, dict) else "no details"
    except outbound.NotUnderstood:
        return "no details"
