"""Authentication between the two functions.

Callee (assign_meeting_link): with INTERNAL_API_TOKEN it wants that bearer token. Deployed
privately on Cloud Run (TRUST_CLOUD_RUN_IAM=true), Google has checked the caller's ID token
and invoker role before the request arrives (and strips the token's signature, so it cannot
be checked again here). With neither, it refuses every request.

Caller (midtrans_webhook): sends INTERNAL_API_TOKEN when set, otherwise a Google-signed ID
token whose audience is the callee's URL: from the metadata server on Google Cloud, or from
the service account key in GOOGLE_APPLICATION_CREDENTIALS elsewhere. Fetched through
web/outbound within the call's deadline, and cached until five minutes before it expires.
"""
from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from urllib.parse import quote, urlencode

from ..config import Settings
from ..errors import AssignUnavailable, Unauthorized
from . import outbound


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


def _expiry(token: str) -> float:
    """The token's exp claim (the holder need not check the signature: Google does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise AssignUnavailable("the ID token source answered something that is not a JWT") from None


class IdTokens:
    """Google ID tokens for the assign function's URL."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._audience = settings.assign_meeting_link_url
        self._token, self._expires_at = "", 0.0
        self._lock = threading.Lock()

    def token(self, deadline: float) -> str:
        with self._lock:
            if self._token and time.time() < self._expires_at - 300:
                return self._token
            token = self._from_key(deadline) if self._settings.google_application_credentials else \
                self._from_metadata(deadline)
            self._token, self._expires_at = token, _expiry(token)
            return token

    def _from_metadata(self, deadline: float) -> str:
        host = self._settings.gce_metadata_host
        url = (f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
               f"?audience={quote(self._audience, safe='')}&format=full")
        try:
            answer = outbound.call("GET", url, deadline=deadline, headers={"Metadata-Flavor": "Google"},
                                   max_bytes=16 * 1024)
        except outbound.Unreachable as exc:
            raise AssignUnavailable(f"could not get an ID token from the metadata server ({exc})") from None
        if answer.status != 200:
            raise AssignUnavailable(f"the metadata server answered {answer.status} for an ID token")
        return answer.body.decode("ascii", "replace").strip()

    def _from_key(self, deadline: float) -> str:
        from google.auth import crypt, jwt  # a service account key outside Google Cloud
        try:
            with open(self._settings.google_application_credentials, encoding="utf-8") as f:
                info = json.load(f)
            signer = crypt.RSASigner.from_service_account_info(info)
        except (OSError, ValueError, KeyError) as exc:
            raise AssignUnavailable(f"GOOGLE_APPLICATION_CREDENTIALS is not a usable key ({type(exc).__name__})") \
                from None
        token_uri = info.get("token_uri") or "https://oauth2.googleapis.com/token"
        now = int(time.time())
        assertion = jwt.encode(signer, {"iss": info.get("client_email"), "sub": info.get("client_email"),
                                        "aud": token_uri, "iat": now, "exp": now + 3600,
                                        "target_audience": self._audience})
        try:
            answer = outbound.call("POST", token_uri, deadline=deadline, max_bytes=64 * 1024,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"},
                                   body=urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                   "assertion": assertion.decode()}).encode())
            token = answer.json_object().get("id_token")
        except (outbound.Unreachable, outbound.NotUnderstood) as exc:
            raise AssignUnavailable(f"could not get an ID token ({exc})") from None
        if answer.status != 200 or not isinstance(token, str):
            raise AssignUnavailable(f"the token endpoint answered {answer.status} without an ID token")
        return token
