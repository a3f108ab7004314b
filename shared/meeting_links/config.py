"""Every setting, read from the environment in one place into one frozen object.

README.md documents each variable and its default; keep the two in step.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from .errors import ConfigurationError

# One default database for everything local: make run, meeting-links and the functions.
DEFAULT_DATABASE = "meeting_links"
DEFAULT_DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"
MIDTRANS_SANDBOX_API = "https://api.sandbox.midtrans.com"
MEET_API = "https://meet.googleapis.com"
LINK_SOURCES = ("pool", "pool_then_meet", "meet_then_pool")
MEET_ACCESS_TYPES = ("OPEN", "TRUSTED", "RESTRICTED")
MEET_ENTRY_POINTS = ("ALL", "CREATOR_APP_ONLY")
MIDTRANS_PRODUCTION_API = "https://api.midtrans.com"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    instance_connection_name: str = ""
    db_user: str = "postgres"
    db_password: str = ""
    db_name: str = DEFAULT_DATABASE
    db_iam_auth: bool = False
    db_ip_type: str = "public"
    db_pool_size: int = 4
    db_timeout_s: float = 3.0
    db_statement_timeout_ms: int = 2000
    db_lock_timeout_ms: int = 1000

    business_time_zone: str = "Asia/Jakarta"
    link_buffer_minutes: int = 0

    midtrans_server_key: str = ""
    midtrans_verify_with_status_api: bool = False
    midtrans_is_production: bool = False
    midtrans_api_base_url: str = ""
    midtrans_api_timeout_s: float = 2.0

    assign_meeting_link_url: str = ""
    internal_api_token: str = ""
    trust_cloud_run_iam: bool = False
    assign_call_timeout_s: float = 2.5

    handover_time_budget_s: float = 2.0
    sweep_time_budget_s: float = 20.0
    reconcile_after_minutes: int = 15
    reconcile_window_hours: int = 24
    reconcile_max_calls: int = 50

    link_source: str = "pool"
    meet_api_base_url: str = MEET_API
    meet_credentials: str = ""
    meet_impersonate_user: str = ""
    meet_access_type: str = "TRUSTED"
    meet_entry_point_access: str = "ALL"
    meet_api_timeout_s: float = 1.5
    meet_space_lease_s: int = 30
    meet_end_grace_minutes: int = 15

    link_events_url: str = ""
    link_events_secret: str = ""
    link_events_timeout_s: float = 2.0

    google_cloud_project: str = ""
    running_on_cloud_run: bool = False

    @property
    def midtrans_api(self) -> str:
        if self.midtrans_api_base_url:
            return self.midtrans_api_base_url.rstrip("/")
        return MIDTRANS_PRODUCTION_API if self.midtrans_is_production else MIDTRANS_SANDBOX_API

    def __repr__(self) -> str:  # secrets must never reach a log line through repr()
        return "Settings(<redacted>)"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default, kind=int, minimum=0):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _secret(env: Mapping[str, str], name: str) -> str:
    # Secret Manager values often end in a newline; a key with one would refuse every
    # signature, a token with one every call. Blank means unset.
    return env.get(name, "").strip()


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], upper=False) -> str:
    raw = env.get(name, "").strip()
    value = (raw.upper() if upper else raw.lower()) if raw else default
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _link_events_url(env: Mapping[str, str]) -> str:
    url = env.get("LINK_EVENTS_URL", "").strip()
    if url and not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"LINK_EVENTS_URL must be an http(s) URL, got {url!r}")
    if url and not _secret(env, "LINK_EVENTS_SECRET"):
        raise ConfigurationError("LINK_EVENTS_URL is set but LINK_EVENTS_SECRET is not: events must be signed")
    return url


def from_environment(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    d = Settings()
    ip_type = env.get("DB_IP_TYPE", d.db_ip_type).strip().lower()
    if ip_type not in ("public", "private", "psc"):
        raise ConfigurationError(f"DB_IP_TYPE must be public, private or psc, got {ip_type!r}")
    return Settings(
        database_url=env.get("DATABASE_URL", "").strip() or d.database_url,
        instance_connection_name=env.get("INSTANCE_CONNECTION_NAME", "").strip(),
        db_user=env.get("DB_USER", "").strip() or d.db_user,
        db_password=_secret(env, "DB_PASS"),
        db_name=env.get("DB_NAME", "").strip() or d.db_name,
        db_iam_auth=_bool(env, "DB_IAM_AUTH", d.db_iam_auth),
        db_ip_type=ip_type,
        db_pool_size=_number(env, "DB_POOL_SIZE", d.db_pool_size, minimum=1),
        db_timeout_s=_number(env, "DB_TIMEOUT_S", d.db_timeout_s, float, 0.1),
        db_statement_timeout_ms=_number(env, "DB_STATEMENT_TIMEOUT_MS", d.db_statement_timeout_ms, minimum=1),
        db_lock_timeout_ms=_number(env, "DB_LOCK_TIMEOUT_MS", d.db_lock_timeout_ms, minimum=1),
        business_time_zone=env.get("BUSINESS_TIME_ZONE", "").strip() or d.business_time_zone,
        link_buffer_minutes=_number(env, "LINK_BUFFER_MINUTES", d.link_buffer_minutes),
        midtrans_server_key=_secret(env, "MIDTRANS_SERVER_KEY"),
        midtrans_verify_with_status_api=_bool(env, "MIDTRANS_VERIFY_WITH_STATUS_API", False),
        midtrans_is_production=_bool(env, "MIDTRANS_IS_PRODUCTION", False),
        midtrans_api_base_url=env.get("MIDTRANS_API_BASE_URL", "").strip(),
        midtrans_api_timeout_s=_number(env, "MIDTRANS_API_TIMEOUT_S", d.midtrans_api_timeout_s, float, 0.1),
        assign_meeting_link_url=env.get("ASSIGN_MEETING_LINK_URL", "").strip(),
        internal_api_token=_secret(env, "INTERNAL_API_TOKEN"),
        trust_cloud_run_iam=_bool(env, "TRUST_CLOUD_RUN_IAM", False),
        assign_call_timeout_s=_number(env, "ASSIGN_CALL_TIMEOUT_S", d.assign_call_timeout_s, float, 0.1),
        handover_time_budget_s=_number(env, "HANDOVER_TIME_BUDGET_S", d.handover_time_budget_s, float, 0.1),
        sweep_time_budget_s=_number(env, "SWEEP_TIME_BUDGET_S", d.sweep_time_budget_s, float, 0.1),
        reconcile_after_minutes=_number(env, "RECONCILE_AFTER_MINUTES", d.reconcile_after_minutes),
        reconcile_window_hours=_number(env, "RECONCILE_WINDOW_HOURS", d.reconcile_window_hours, minimum=1),
        reconcile_max_calls=_number(env, "RECONCILE_MAX_CALLS", d.reconcile_max_calls),
        link_source=_choice(env, "LINK_SOURCE", d.link_source, LINK_SOURCES),
        meet_api_base_url=env.get("MEET_API_BASE_URL", "").strip() or d.meet_api_base_url,
        # A path, or the JSON itself (Secret Manager hands the JSON over as the value).
        meet_credentials=_secret(env, "MEET_CREDENTIALS"),
        meet_impersonate_user=env.get("MEET_IMPERSONATE_USER", "").strip(),
        meet_access_type=_choice(env, "MEET_ACCESS_TYPE", d.meet_access_type, MEET_ACCESS_TYPES, upper=True),
        meet_entry_point_access=_choice(env, "MEET_ENTRY_POINT_ACCESS", d.meet_entry_point_access,
                                        MEET_ENTRY_POINTS, upper=True),
        meet_api_timeout_s=_number(env, "MEET_API_TIMEOUT_S", d.meet_api_timeout_s, float, 0.1),
        meet_space_lease_s=_number(env, "MEET_SPACE_LEASE_S", d.meet_space_lease_s, minimum=5),
        meet_end_grace_minutes=_number(env, "MEET_END_GRACE_MINUTES", d.meet_end_grace_minutes),
        link_events_url=_link_events_url(env),
        link_events_secret=_secret(env, "LINK_EVENTS_SECRET"),
        link_events_timeout_s=_number(env, "LINK_EVENTS_TIMEOUT_S", d.link_events_timeout_s, float, 0.1),
        google_cloud_project=env.get("GOOGLE_CLOUD_PROJECT", "").strip(),
        # Cloud Run (and so Cloud Functions 2nd gen) sets K_SERVICE in every instance.
        running_on_cloud_run=bool(env.get("K_SERVICE", "").strip()),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once (an instance never sees its environment change)."""
    return from_environment()
