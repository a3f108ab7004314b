"""Authentication between the two functions.

Callee (assign_meeting_link): with INTERNAL_API_TOKEN it wants that bearer token. Deployed
privately on Cloud Run (TRUST_CLOUD_RUN_IAM=true), Google has checked the caller's ID token
and invoker role before the request arrives (and strips the token's signature, so it cannot
be checked again here). With neither, it refuses every request.

Caller (midtrans_webhook): sends INTERNAL_API_TOKEN when set, otherwise a Google-signed ID
token whose audience is the callee's URL, from the metadata server or a service account key.
"""
from __future__ import annotations

import hmac
import threading

from .config import Settings
from .errors import AssignUnavailable, Unauthorized


def _bearer(header: str) -> str:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate_caller(authorization: str | None, settings: Settings) -> None:
    token = _bearer(authorization or "")
    if settings.internal_api_token:
        if not token or not hmac.compare_digest(token.encode(), settings.internal_api_token.encode()):
            raise Unauthorized("missing or invalid bearer token")
        return
    if settings.trust_cloud_run_iam and settings.running_on_cloud_run:
        if not token:
            raise Unauthorized("missing bearer token")
        return
    raise Unauthorized("authentication is not configured: set INTERNAL_API_TOKEN, "
                       "or deploy privately with TRUST_CLOUD_RUN_IAM=true")


class IdTokens:
    """Google ID tokens for one audience, fetched on first use and refreshed near expiry."""

    def __init__(self, audience: str):
        self._audience = audience
        self._credentials = None
        self._lock = threading.Lock()

    def token(self) -> str:
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import id_token

        with self._lock:
            try:
                request = google.auth.transport.requests.Request()
                if self._credentials is None:
                    self._credentials = id_token.fetch_id_token_credentials(self._audience, request=request)
                if not self._credentials.valid:
                    self._credentials.refresh(request)
                return self._credentials.token
            except google.auth.exceptions.GoogleAuthError as exc:
                raise AssignUnavailable(f"could not get an ID token ({type(exc).__name__})") from exc
