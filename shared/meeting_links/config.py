"""Every setting, read from the environment in one place into one frozen object, and checked
with the rules the functions apply at start (deploy.sh asks the same rules through
`meeting-links config check` before it creates anything).

docs/configuration.md documents each variable and its default; keep the two in step.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qs, urlparse

from . import standard_webhooks
from .errors import ConfigurationError

# One default database for everything local: make run, meeting-links and the functions.
DEFAULT_DATABASE = "meeting_links"
DEFAULT_DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"
EMBEDDED = "embedded"  # DATABASE_URL=embedded: a private PostgreSQL from PyPI (db/embedded.py)
MIDTRANS_SANDBOX_API = "https://api.sandbox.midtrans.com"
MIDTRANS_PRODUCTION_API = "https://api.midtrans.com"
MEET_API = "https://meet.googleapis.com"
LINK_SOURCES = ("pool", "pool_then_meet", "meet_then_pool")
# AUTO: RESTRICTED when the booking names both its people (they become members and walk in),
# OPEN otherwise (nobody would be there to admit anyone).
MEET_ACCESS_TYPES = ("AUTO", "OPEN", "TRUSTED", "RESTRICTED")
MEET_ENTRY_POINTS = ("ALL", "CREATOR_APP_ONLY")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOG_FORMATS = ("json", "text")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    instance_connection_name: str = ""
    db_user: str = "postgres"
    db_password: str = field(default="", repr=False)
    db_name: str = DEFAULT_DATABASE
    db_iam_auth: bool = False
    db_ip_type: str = "public"
    db_pool_size: int = 4
    db_timeout_s: float = 3.0
    db_statement_timeout_ms: int = 2000
    db_lock_timeout_ms: int = 1000

    midtrans_server_key: str = field(default="", repr=False)
    midtrans_verify_with_status_api: bool = False
    midtrans_is_production: bool = False
    midtrans_api_base_url: str = ""
    midtrans_api_timeout_s: float = 2.0

    assign_meeting_link_url: str = ""
    internal_api_token: str = field(default="", repr=False)
    trust_cloud_run_iam: bool = False
    assign_call_timeout_s: float = 2.5
    gce_metadata_host: str = "metadata.google.internal"
    google_application_credentials: str = ""

    handover_time_budget_s: float = 2.0
    sweep_time_budget_s: float = 20.0
    reconcile_after_minutes: int = 15
    reconcile_window_hours: int = 24
    reconcile_max_calls: int = 50

    link_source: str = "pool"
    meet_api_base_url: str = MEET_API
    meet_credentials: str = field(default="", repr=False)
    meet_impersonate_user: str = ""
    meet_access_type: str = "AUTO"
    meet_entry_point_access: str = "ALL"
    meet_api_timeout_s: float = 1.5
    meet_space_lease_s: int = 30
    meet_end_grace_minutes: int = 15
    meet_open_before_minutes: int = 10

    link_events_url: str = ""
    link_events_secret: str = field(default="", repr=False)
    link_events_timeout_s: float = 15.0

    google_cloud_project: str = ""
    running_on_cloud_run: bool = False
    log_format: str = "json"

    @property
    def midtrans_api(self) -> str:
        if self.midtrans_api_base_url:
            return self.midtrans_api_base_url.rstrip("/")
        return MIDTRANS_PRODUCTION_API if self.midtrans_is_production else MIDTRANS_SANDBOX_API

    @property
    def meet_configured(self) -> bool:
        return self.link_source != "pool" or bool(self.meet_credentials)

    def __repr__(self) -> str:  # secrets must never reach a log line through repr()
        return "Settings(<redacted>)"


class _Reader:
    """Reads one environment, collecting every problem (one line each, naming the variable)."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.problems = env, []

    def text(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def secret(self, name: str) -> str:
        # Secret Manager values often end in a newline; a key with one would refuse every
        # signature, a token with one every call. Blank means unset.
        return self.env.get(name, "").strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def number(self, name: str, default, kind=int, minimum=0, maximum=None):
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name} must be {'a whole number' if kind is int else 'a number'}, got {raw!r}")
            return default
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.problems.append(f"{name} must be {bounds}, got {raw!r}")
            return default
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper=False) -> str:
        raw = self.env.get(name, "").strip()
        value = (raw.upper() if upper else raw.lower()) if raw else default
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
            return default
        return value

    def url(self, name: str, default: str = "") -> str:
        value = self.text(name, default)
        if value and (not value.startswith(("https://", "http://")) or not urlparse(value).hostname):
            self.problems.append(f"{name} must be an http(s) URL, got {value!r}")
        return value


def _database_url(r: _Reader) -> str:
    url = r.text("DATABASE_URL", DEFAULT_DATABASE_URL)
    if url == EMBEDDED:
        return url
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        r.problems.append("DATABASE_URL must start with postgresql:// (or be 'embedded')")
        return url
    mode = {k: v[-1] for k, v in parse_qs(parsed.query).items()}.get("sslmode", "prefer")
    if mode not in SSL_MODES:
        r.problems.append(f"DATABASE_URL sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}")
    return url


def _link_events(r: _Reader) -> tuple[str, str]:
    url, secret = r.url("LINK_EVENTS_URL"), r.secret("LINK_EVENTS_SECRET")
    if url and not secret:
        r.problems.append("LINK_EVENTS_URL is set but LINK_EVENTS_SECRET is not: events must be signed")
    if secret:
        try:
            standard_webhooks.signing_key(secret)
        except standard_webhooks.BadSecret as exc:
            r.problems.append(f"LINK_EVENTS_SECRET {exc} (a Standard Webhooks secret is whsec_ and base64)")
    return url, secret


def from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """The settings in env (default: os.environ); ConfigurationError lists every problem."""
    r = _Reader(os.environ if env is None else env)
    d = Settings()
    link_events_url, link_events_secret = _link_events(r)
    settings = Settings(
        database_url=_database_url(r),
        instance_connection_name=r.text("INSTANCE_CONNECTION_NAME"),
        db_user=r.text("DB_USER", d.db_user),
        db_password=r.secret("DB_PASS"),
        db_name=r.text("DB_NAME", d.db_name),
        db_iam_auth=r.flag("DB_IAM_AUTH", d.db_iam_auth),
        db_ip_type=r.choice("DB_IP_TYPE", d.db_ip_type, ("public", "private", "psc")),
        db_pool_size=r.number("DB_POOL_SIZE", d.db_pool_size, minimum=1, maximum=100),
        db_timeout_s=r.number("DB_TIMEOUT_S", d.db_timeout_s, float, 0.1),
        db_statement_timeout_ms=r.number("DB_STATEMENT_TIMEOUT_MS", d.db_statement_timeout_ms, minimum=1),
        db_lock_timeout_ms=r.number("DB_LOCK_TIMEOUT_MS", d.db_lock_timeout_ms, minimum=1),
        midtrans_server_key=r.secret("MIDTRANS_SERVER_KEY"),
        midtrans_verify_with_status_api=r.flag("MIDTRANS_VERIFY_WITH_STATUS_API", d.midtrans_verify_with_status_api),
        midtrans_is_production=r.flag("MIDTRANS_IS_PRODUCTION", d.midtrans_is_production),
        midtrans_api_base_url=r.url("MIDTRANS_API_BASE_URL"),
        midtrans_api_timeout_s=r.number("MIDTRANS_API_TIMEOUT_S", d.midtrans_api_timeout_s, float, 0.1),
        assign_meeting_link_url=r.url("ASSIGN_MEETING_LINK_URL"),
        internal_api_token=r.secret("INTERNAL_API_TOKEN"),
        trust_cloud_run_iam=r.flag("TRUST_CLOUD_RUN_IAM", d.trust_cloud_run_iam),
        assign_call_timeout_s=r.number("ASSIGN_CALL_TIMEOUT_S", d.assign_call_timeout_s, float, 0.1),
        # Google's own variables, as google-auth reads them.
        gce_metadata_host=r.text("GCE_METADATA_HOST", d.gce_metadata_host),
        google_application_credentials=r.text("GOOGLE_APPLICATION_CREDENTIALS"),
        handover_time_budget_s=r.number("HANDOVER_TIME_BUDGET_S", d.handover_time_budget_s, float, 0.1),
        sweep_time_budget_s=r.number("SWEEP_TIME_BUDGET_S", d.sweep_time_budget_s, float, 0.5),
        reconcile_after_minutes=r.number("RECONCILE_AFTER_MINUTES", d.reconcile_after_minutes),
        reconcile_window_hours=r.number("RECONCILE_WINDOW_HOURS", d.reconcile_window_hours, minimum=1),
        reconcile_max_calls=r.number("RECONCILE_MAX_CALLS", d.reconcile_max_calls),
        link_source=r.choice("LINK_SOURCE", d.link_source, LINK_SOURCES),
        meet_api_base_url=r.url("MEET_API_BASE_URL", d.meet_api_base_url),
        # A path, or the JSON itself (Secret Manager hands the JSON over as the value).
        meet_credentials=r.secret("MEET_CREDENTIALS"),
        meet_impersonate_user=r.text("MEET_IMPERSONATE_USER"),
        meet_access_type=r.choice("MEET_ACCESS_TYPE", d.meet_access_type, MEET_ACCESS_TYPES, upper=True),
        meet_entry_point_access=r.choice("MEET_ENTRY_POINT_ACCESS", d.meet_entry_point_access,
                                         MEET_ENTRY_POINTS, upper=True),
        meet_api_timeout_s=r.number("MEET_API_TIMEOUT_S", d.meet_api_timeout_s, float, 0.1),
        meet_space_lease_s=r.number("MEET_SPACE_LEASE_S", d.meet_space_lease_s, minimum=5),
        meet_end_grace_minutes=r.number("MEET_END_GRACE_MINUTES", d.meet_end_grace_minutes),
        meet_open_before_minutes=r.number("MEET_OPEN_BEFORE_MINUTES", d.meet_open_before_minutes),
        link_events_url=link_events_url,
        link_events_secret=link_events_secret,
        link_events_timeout_s=r.number("LINK_EVENTS_TIMEOUT_S", d.link_events_timeout_s, float, 0.1),
        google_cloud_project=r.text("GOOGLE_CLOUD_PROJECT"),
        # Cloud Run (and so Cloud Functions 2nd gen) sets K_SERVICE in every instance.
        running_on_cloud_run=bool(r.text("K_SERVICE")),
        log_format=r.choice("LOG_FORMAT", d.log_format, LOG_FORMATS),
    )
    if r.problems:
        error = ConfigurationError("; ".join(r.problems))
        error.problems = r.problems
        raise error
    return settings


FUNCTIONS = ("midtrans_webhook", "assign_meeting_link")


def problems(env: Mapping[str, str], function: str | None = None) -> list[str]:
    """Every problem with env's settings, one line each (empty when they are good); with a
    function's name, also what that function cannot work without."""
    try:
        s = from_environment(env)
    except ConfigurationError as exc:
        return list(exc.problems)
    found = []
    if function is None:
        return found
    if s.instance_connection_name and not s.db_iam_auth and not s.db_password:
        found.append("INSTANCE_CONNECTION_NAME is set but DB_PASS is not (or set DB_IAM_AUTH=true)")
    if function == "midtrans_webhook":
        if not s.midtrans_server_key:
            found.append("MIDTRANS_SERVER_KEY is not set: no notification could be verified")
        if not s.assign_meeting_link_url:
            found.append("ASSIGN_MEETING_LINK_URL is not set: paid bookings would wait for the sweep")
    if function == "assign_meeting_link":
        if not (s.internal_api_token or s.trust_cloud_run_iam):
            found.append("neither INTERNAL_API_TOKEN nor TRUST_CLOUD_RUN_IAM=true is set: every caller would be refused")
        if s.link_source != "pool" and not s.meet_credentials:
            found.append(f"LINK_SOURCE={s.link_source} needs MEET_CREDENTIALS: no private space could be created")
        if not s.midtrans_server_key:
            found.append("MIDTRANS_SERVER_KEY is not set: the sweep could not ask Midtrans about lost payments")
    return found


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once (an instance never sees its environment change)."""
    return from_environment()
