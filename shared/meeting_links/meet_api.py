"""Google Meet REST API (v2): create a meeting space, read one, end its call.

Plain REST over one requests.Session with a bearer token from google-auth credentials (an
authorized user's refresh token, or a service account acting for a Workspace user through
domain-wide delegation). The official client (google-apps-meet) would bring gRPC and
protobuf into a webhook's cold start for three calls; see README, "Private Meet spaces".

Every call, the token refresh included, runs within one deadline the caller gives, so the
webhook's answer to Midtrans never waits on Google past its budget.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

import requests

from .config import Settings
from .errors import MeetCredentialsError, MeetUnavailable

SCOPE = "https://www.googleapis.com/auth/meetings.space.created"


@dataclass(frozen=True)
class Space:
    name: str          # spaces/{id}
    meeting_uri: str   # https://meet.google.com/abc-mnop-xyz
    meeting_code: str  # abc-mnop-xyz

    @classmethod
    def from_json(cls, body: dict) -> Space:
        try:
            space = cls(str(body["name"]), str(body["meetingUri"]), str(body.get("meetingCode") or ""))
        except (KeyError, TypeError):
            raise MeetUnavailable("Meet API answered without a space's name and meetingUri") from None
        if not space.name.startswith("spaces/") or not space.meeting_uri.startswith("https://"):
            raise MeetUnavailable("Meet API answered with a malformed space")
        return space


def _credentials_info(settings: Settings) -> dict:
    """MEET_CREDENTIALS: the JSON text itself, or a path to the file holding it."""
    raw = settings.meet_credentials.strip()
    if not raw:
        raise MeetCredentialsError("MEET_CREDENTIALS is not set")
    try:
        if not raw.startswith("{"):
            with open(os.path.expanduser(raw), encoding="utf-8") as f:
                raw = f.read()
        info = json.loads(raw)
    except OSError as exc:
        raise MeetCredentialsError(f"MEET_CREDENTIALS: cannot read the file ({type(exc).__name__})") from None
    except ValueError:
        raise MeetCredentialsError("MEET_CREDENTIALS is not JSON (nor a path to a JSON file)") from None
    if not isinstance(info, dict):
        raise MeetCredentialsError("MEET_CREDENTIALS must be a JSON object")
    return info


def _credentials(settings: Settings):
    # Imported here: only assign needs them, and only when LINK_SOURCE involves Meet.
    info = _credentials_info(settings)
    kind = info.get("type")
    try:
        if kind == "authorized_user":
            from google.oauth2.credentials import Credentials
            credentials = Credentials.from_authorized_user_info(info, scopes=[SCOPE])
            # google-auth always puts Google's token endpoint here; the file's own token_uri
            # (a stand-in's, or a future endpoint) is what the credentials were issued by.
            return credentials.with_token_uri(info["token_uri"]) if info.get("token_uri") else credentials
        if kind == "service_account":
            if not settings.meet_impersonate_user:
                raise MeetCredentialsError("MEET_CREDENTIALS is a service account key: set MEET_IMPERSONATE_USER "
                                           "to the Workspace user it acts for (domain-wide delegation)")
            from google.oauth2 import service_account
            return service_account.Credentials.from_service_account_info(
                info, scopes=[SCOPE], subject=settings.meet_impersonate_user)
    except ValueError as exc:
        raise MeetCredentialsError(f"MEET_CREDENTIALS: {exc}") from None
    raise MeetCredentialsError(f"MEET_CREDENTIALS type must be authorized_user or service_account, got {kind!r}")


class _TokenRequest:
    """google-auth's transport with a timeout it cannot exceed (its default is 120 s)."""

    def __init__(self, session: requests.Session, timeout_s: float):
        from google.auth.transport.requests import Request
        self._request, self._timeout_s = Request(session), timeout_s

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return self._request(url, method=method, body=body, headers=headers,
                             timeout=min(timeout or self._timeout_s, self._timeout_s), **kwargs)


class MeetClient:
    """One per process (see client()); thread-safe."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._base = settings.meet_api_base_url.rstrip("/")
        self._credentials = _credentials(settings)
        self._session = requests.Session()
        self._session.trust_env = False
        self._lock = threading.Lock()

    def _token(self, deadline: float) -> str:
        with self._lock:
            if not self._credentials.valid:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MeetUnavailable("no time left to refresh the Meet credentials")
                from google.auth import exceptions
                try:
                    self._credentials.refresh(_TokenRequest(self._session, remaining))
                except exceptions.RefreshError as exc:
                    # Refused (revoked token, wrong client, no delegation): an operator must act.
                    retryable = getattr(exc, "retryable", False)
                    if retryable:
                        raise MeetUnavailable("refreshing the Meet credentials failed; will retry") from None
                    raise MeetCredentialsError(
                        f"MEET_CREDENTIALS were refused by the token endpoint ({_first_line(exc)})") from None
                except exceptions.TransportError:
                    raise MeetUnavailable("the token endpoint could not be reached") from None
            return self._credentials.token

    def _call(self, method: str, path: str, deadline: float, body: dict | None = None,
              *, own: frozenset[int] = frozenset()) -> requests.Response:
        """The response; 401/403 raise MeetCredentialsError, 429/5xx MeetUnavailable, except
        the statuses in `own`, which the caller reads itself."""
        token = self._token(deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MeetUnavailable("no time left for the Meet API call")
        try:
            response = self._session.request(method, f"{self._base}/v2/{path}", json=body,
                                             headers={"Authorization": f"Bearer {token}"},
                                             timeout=(min(1.0, remaining), remaining), allow_redirects=False)
        except requests.RequestException as exc:
            raise MeetUnavailable(f"Meet API unreachable ({type(exc).__name__})") from None
        if response.status_code in own:
            return response
        if response.status_code == 401:
            with self._lock:  # a token revoked early: the next call refreshes
                self._credentials.token = None
        if response.status_code in (401, 403):
            raise MeetCredentialsError(f"Meet API refused the credentials ({response.status_code}: "
                                       f"{_error_message(response)})")
        if response.status_code == 429 or response.status_code >= 500:
            raise MeetUnavailable(f"Meet API answered {response.status_code}")
        return response

    def create_space(self, deadline: float) -> Space:
        config = {"accessType": self._settings.meet_access_type,
                  "entryPointAccess": self._settings.meet_entry_point_access}
        response = self._call("POST", "spaces", deadline, {"config": config})
        if response.status_code != 200:
            raise MeetUnavailable(f"Meet API refused to create a space ({response.status_code}: "
                                  f"{_error_message(response)})")
        return Space.from_json(response.json())

    def lookup(self, name_or_code: str, deadline: float) -> str:
        """"exists", "missing" (the API does not know it), or "not ours" (it exists or may exist,
        but our scope reaches only spaces the app created: a code made by hand)."""
        # On a read, 403 is about the space, not our credentials.
        response = self._call("GET", _space_path(name_or_code), deadline, own=frozenset({403}))
        if response.status_code == 200:
            return "exists"
        if response.status_code == 404:
            return "missing"
        if response.status_code == 403:
            return "not ours"
        raise MeetUnavailable(f"Meet API answered {response.status_code} reading {name_or_code}")

    def end_active_conference(self, name: str, deadline: float) -> bool:
        """Ends the call running in the space; False when none was running or the space is gone."""
        response = self._call("POST", f"{_space_path(name)}:endActiveConference", deadline, {})
        if response.status_code == 200:
            return True
        if response.status_code in (400, 404):  # FAILED_PRECONDITION: no active conference
            return False
        raise MeetUnavailable(f"Meet API answered {response.status_code} ending the call in {name}")


def _space_path(name_or_code: str) -> str:
    return name_or_code if name_or_code.startswith("spaces/") else f"spaces/{name_or_code}"


def _error_message(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.reason or ""


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


_client: MeetClient | None = None
_client_lock = threading.Lock()


def client(settings: Settings) -> MeetClient:
    """The process's client, built on first use; MeetCredentialsError if it cannot be."""
    global _client
    with _client_lock:
        if _client is None:
            _client = MeetClient(settings)
        return _client


def reset() -> None:
    """Forget the process's client (tests, and a settings change in the local stack)."""
    global _client
    with _client_lock:
        _client = None
