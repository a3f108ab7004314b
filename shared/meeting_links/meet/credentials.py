"""MEET_CREDENTIALS and the access tokens they buy, within the caller's deadline.

Two kinds, as Google issues them: an authorized user's refresh token (the owner account,
got once with `meeting-links meet-login`), exchanged at its token_uri with the refresh_token
grant; or a service account key acting for a Workspace user through domain-wide
delegation, whose signed JWT is exchanged with the jwt-bearer grant. Both are one POST
through web/outbound: one deadline, no retries and no sleeps (google-auth's own refresh
retries a 503 with 1 s and 2 s sleeps, past any deadline of ours), and an answer that is not
a token is "unavailable", never an exception nobody catches.

A refusal (invalid_grant: a revoked or expired refresh token, or one from a consent screen
left in Testing, which Google expires after 7 days) is an operator's problem: it raises
MeetCredentialsError and writes the `meet_credentials_refused` alert line."""
from __future__ import annotations

import json
import os
import threading
import time
from urllib.parse import urlencode

from .. import logs
from ..config import Settings
from ..errors import MeetCredentialsError, MeetUnavailable
from ..web import outbound

SCOPE = "https://www.googleapis.com/auth/meetings.space.created"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_REFUSALS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "access_denied",
                       "invalid_scope", "disabled_client"})


def credentials_info(raw: str) -> dict:
    """MEET_CREDENTIALS: the JSON text itself, or a path to the file holding it."""
    raw = raw.strip()
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


class AccessTokens:
    """Access tokens for the Meet scope, cached until a minute before they expire; thread-safe."""

    def __init__(self, settings: Settings):
        info = credentials_info(settings.meet_credentials)
        self._kind = info.get("type")
        self._info = info
        if self._kind == "authorized_user":
            missing = [k for k in ("client_id", "client_secret", "refresh_token") if not info.get(k)]
            if missing:
                raise MeetCredentialsError(f"MEET_CREDENTIALS (authorized_user) lacks {', '.join(missing)}")
        elif self._kind == "service_account":
            if not settings.meet_impersonate_user:
                raise MeetCredentialsError("MEET_CREDENTIALS is a service account key: set MEET_IMPERSONATE_USER "
                                           "to the Workspace user it acts for (domain-wide delegation)")
            try:
                from google.auth import crypt
                self._signer = crypt.RSASigner.from_service_account_info(info)
            except (ValueError, KeyError) as exc:
                raise MeetCredentialsError(f"MEET_CREDENTIALS: not a usable service account key ({exc})") from None
            self._subject = settings.meet_impersonate_user
        else:
            raise MeetCredentialsError(f"MEET_CREDENTIALS type must be authorized_user or service_account, "
                                       f"got {str(self._kind)[:40]!r}")
        self._token_uri = info.get("token_uri") or GOOGLE_TOKEN_URI
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def forget(self) -> None:
        """A token Google refused before it expired (revoked): the next call gets a new one."""
        with self._lock:
            self._token = None

    def token(self, deadline: float) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            self._token, lifetime = self._fetch(deadline)
            self._expires_at = time.monotonic() + max(0.0, lifetime - 60)
            return self._token

    def _grant(self) -> dict:
        if self._kind == "authorized_user":
            return {"grant_type": "refresh_token", "client_id": self._info["client_id"],
                    "client_secret": self._info["client_secret"], "refresh_token": self._info["refresh_token"]}
        from google.auth import jwt
        now = int(time.time())
        assertion = jwt.encode(self._signer, {"iss": self._info.get("client_email"), "scope": SCOPE,
                                              "aud": self._token_uri, "iat": now, "exp": now + 3600,
                                              "sub": self._subject})
        return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion.decode()}

    def _fetch(self, deadline: float) -> tuple[str, float]:
        try:
            answer = outbound.call("POST", self._token_uri, deadline=deadline, body=urlencode(self._grant()).encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded",
                                            "Accept": "application/json"}, max_bytes=64 * 1024)
            body = answer.json_object()
        except outbound.Unreachable as exc:
            raise MeetUnavailable(f"Google's token endpoint: {exc}") from None
        except outbound.NotUnderstood as exc:
            raise MeetUnavailable(f"Google's token endpoint answered {answer.status}, but {exc}") from None
        if answer.status in (400, 401, 403) and body.get("error") in _REFUSALS:
            reason = f"{body.get('error')}: {str(body.get('error_description') or '')[:200]}"
            logs.alert("meet_credentials_refused", "Meet credentials refused by Google's token endpoint "
                       "(check MEET_CREDENTIALS; see docs/meet-spaces.md)", reason=reason)
            raise MeetCredentialsError(f"MEET_CREDENTIALS were refused by the token endpoint ({reason})")
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if (answer.status != 200 or not isinstance(token, str) or not token or len(token) > 4096
                or not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0):
            raise MeetUnavailable(f"Google's token endpoint answered {answer.status} without a usable token")
        return token, float(lifetime)
