"""deploy.sh's settings: each one's default and rule, all checked before anything is created,
and the environment each function is deployed with, checked by the rules the functions apply
at start (config.problems). deploy.sh runs `python -m meeting_links.support.deploy_settings`
and evals what it prints, so no rule or default is written a second time in bash.
docs/deploying.md describes each setting."""
from __future__ import annotations

import base64
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import config

_PLACEHOLDERS = re.compile(r"your|example|changeme|change-me|placeholder|<|>", re.IGNORECASE)


def _pattern(regex: str, what: str) -> Callable[[str], str | None]:
    compiled = re.compile(regex)
    return lambda v: None if compiled.fullmatch(v) else f"must be {what}"


def _whole(low: int, high: int) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        if not re.fullmatch(r"\d+", v) or not low <= int(v) <= high:
            return f"must be a whole number from {low} to {high}"
        return None
    return check


def _choice(*choices: str) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _optional(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda v: None if v == "" else check(v)


def _project(v: str) -> str | None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", v):
        return "must be a Google Cloud project id (6-30 lowercase letters, digits and hyphens)"
    return "looks like a placeholder: give your project's id" if _PLACEHOLDERS.search(v) else None


def _email(v: str) -> str | None:
    if not re.fullmatch(r"[^@\s,;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", v):
        return "must be an email address"
    return "looks like a placeholder" if _PLACEHOLDERS.search(v) else None


def _url(v: str) -> str | None:
    parsed = urlparse(v)
    if parsed.scheme != "https" or not parsed.hostname:
        return "must be an https:// URL"
    return "looks like a placeholder" if _PLACEHOLDERS.search(parsed.hostname) else None


def _time_zone(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone such as Asia/Jakarta"
    return None


def _key_file(v: str) -> str | None:
    return None if v == "-" or Path(v).is_file() else "names no file (give a path, or - for standard input)"


def _database_url(v: str) -> str | None:
    return None if urlparse(v).scheme in ("postgres", "postgresql") else "must be a postgresql:// URL"


def _schedule(v: str) -> str | None:
    return None if len(v.split()) == 5 else "must be a cron line of five fields, e.g. */10 * * * *"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    check: Callable[[str], str | None]


_NAME = _pattern(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", "lowercase letters, digits and hyphens, starting with a letter")
_SECRET = _pattern(r"[A-Za-z0-9_-]{1,255}", "a Secret Manager name (letters, digits, - and _)")
_IDENTIFIER = _pattern(r"[a-z_][a-z0-9_]{0,62}", "a lowercase SQL name (letters, digits and _)")
_BOOL = _choice("true", "false")

SETTINGS = (
    Setting("PROJECT_ID", "", _project),
    Setting("REGION", "asia-southeast2", _pattern(r"[a-z]+-[a-z]+\d{1,2}", "a region such as asia-southeast2")),
    Setting("RUNTIME", "python312", _choice("python310", "python311", "python312", "python313")),
    Setting("CLOUD_SQL_INSTANCE", "meeting-links-pg", _NAME),
    Setting("DB_VERSION", "POSTGRES_15", _pattern(r"POSTGRES_1[4-8]", "POSTGRES_14 ... POSTGRES_18")),
    Setting("DB_TIER", "db-custom-1-3840", _pattern(r"db-[a-z0-9-]+", "a Cloud SQL tier such as db-custom-1-3840")),
    Setting("DB_EDITION", "ENTERPRISE", _choice("ENTERPRISE", "ENTERPRISE_PLUS")),
    Setting("DB_FLAGS", "", _optional(_pattern(r"[a-z0-9_.]+=[^,]+(,[a-z0-9_.]+=[^,]+)*", "flag=value,flag=value"))),
    Setting("DB_NAME", config.DEFAULT_DATABASE, _IDENTIFIER),
    Setting("DB_USER", "meeting_links_app", _IDENTIFIER),
    Setting("DB_PASSWORD_SECRET", "meeting-links-db-password", _SECRET),
    Setting("DB_POOL_SIZE", "4", _whole(1, 100)),
    Setting("DB_MAX_CONNECTIONS", "100", _whole(25, 262143)),
    Setting("DB_RESERVED_CONNECTIONS", "15", _whole(0, 1000)),
    Setting("DEPLOY_DATABASE_URL", "", _optional(_database_url)),
    Setting("MIDTRANS_SECRET", "midtrans-server-key", _SECRET),
    Setting("MIDTRANS_SERVER_KEY_FILE", "", _optional(_key_file)),
    Setting("MIDTRANS_IS_PRODUCTION", "false", _BOOL),
    Setting("MIDTRANS_VERIFY_WITH_STATUS_API", "true", _BOOL),
    Setting("SECRET_VERSION", "", _optional(_pattern(r"[1-9]\d*", "a version number"))),
    # Applied with `meeting-links pool configure` only when set: a deploy never resets them.
    Setting("BUSINESS_TIME_ZONE", "", _optional(_time_zone)),
    Setting("LINK_BUFFER_MINUTES", "", _optional(_whole(0, 240))),
    Setting("WEBHOOK_FUNCTION", "midtrans-webhook", _NAME),
    Setting("ASSIGN_FUNCTION", "assign-meeting-link", _NAME),
    # public: allUsers may invoke the webhook; no-invoker-iam-check: Cloud Run skips the IAM
    # check instead, for organisations whose policy refuses allUsers (domain restricted sharing).
    Setting("WEBHOOK_ACCESS", "public", _choice("public", "no-invoker-iam-check")),
    Setting("MEMORY", "512Mi", _pattern(r"\d+(Mi|Gi)", "a size such as 512Mi or 1Gi")),
    Setting("CPU", "1", _pattern(r"\d+(\.\d+)?", "a number of CPUs such as 1")),
    Setting("CONCURRENCY", "8", _whole(1, 1000)),
    Setting("WEBHOOK_MAX_INSTANCES", "5", _whole(1, 1000)),
    Setting("WEBHOOK_MIN_INSTANCES", "0", _whole(0, 1000)),
    Setting("ASSIGN_MAX_INSTANCES", "5", _whole(1, 1000)),
    Setting("FUNCTION_TIMEOUT", "30s", _pattern(r"\d{1,4}s", "seconds such as 30s")),
    Setting("LINK_SOURCE", "pool", _choice(*config.LINK_SOURCES)),
    Setting("MEET_CREDENTIALS_SECRET", "", _optional(_SECRET)),
    Setting("MEET_IMPERSONATE_USER", "", _optional(_email)),
    Setting("MEET_ACCESS_TYPE", "AUTO", _choice(*config.MEET_ACCESS_TYPES)),
    Setting("MEET_ENTRY_POINT_ACCESS", "ALL", _choice(*config.MEET_ENTRY_POINTS)),
    Setting("LINK_EVENTS_URL", "", _optional(_url)),
    Setting("LINK_EVENTS_SECRET_NAME", "", _optional(_SECRET)),
    Setting("ALERT_EMAIL", "", _optional(_email)),
    Setting("SWEEP_SCHEDULE", "*/10 * * * *", _schedule),
    Setting("SWEEP_JOB", "meeting-links-sweep", _NAME),
)

# What deploy.sh computes from the settings (printed with them).
SERVICE_ACCOUNTS = {"WEBHOOK_SA": "meeting-links-webhook", "ASSIGN_SA": "meeting-links-assign",
                    "SCHEDULER_SA": "meeting-links-scheduler", "BUILD_SA": "meeting-links-build"}
# Stand-ins for secrets whose value deploy.sh could not read (a dry run): present, well formed.
_STAND_INS = {"DB_PASS": "stand-in", "MIDTRANS_SERVER_KEY": "SB-Mid-server-stand-in",
              "LINK_EVENTS_SECRET": "whsec_" + base64.b64encode(bytes(32)).decode(),
              "MEET_CREDENTIALS": '{"type": "authorized_user"}'}


def resolve(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Every setting's value (env's, else the default) and every problem, one line each."""
    values, found = {}, []
    for s in SETTINGS:
        value = env.get(s.name, "").strip() or s.default
        values[s.name] = value
        if s.name == "PROJECT_ID" and not value:
            found.append("PROJECT_ID is not set and gcloud has no default project")
        elif (problem := s.check(value)) is not None:
            found.append(f"{s.name} {problem}, got {value!r}")
    if found:
        return values, found
    found += _together(values)
    if found:
        return values, found
    if key := env.get("SECRET_CHECK_MIDTRANS_SERVER_KEY"):
        found += midtrans_key_problems(key, values["MIDTRANS_IS_PRODUCTION"] == "true")
    for function in config.FUNCTIONS:
        found += [f"{function}: {p}" for p in config.problems(
            {**function_env(values, function, "https://assign.preflight.run.app"), **_secrets(values, env, function)},
            function)]
    return values, found


def _together(v: Mapping[str, str]) -> list[str]:
    found = []
    budget = (int(v["WEBHOOK_MAX_INSTANCES"]) + int(v["ASSIGN_MAX_INSTANCES"])) * int(v["DB_POOL_SIZE"])
    usable = int(v["DB_MAX_CONNECTIONS"]) - int(v["DB_RESERVED_CONNECTIONS"])
    if budget > usable:
        found.append(f"DB_POOL_SIZE: ({v['WEBHOOK_MAX_INSTANCES']} + {v['ASSIGN_MAX_INSTANCES']} instances) x "
                     f"{v['DB_POOL_SIZE']} = {budget} connections exceed DB_MAX_CONNECTIONS - "
                     f"DB_RESERVED_CONNECTIONS = {usable}")
    if int(v["WEBHOOK_MIN_INSTANCES"]) > int(v["WEBHOOK_MAX_INSTANCES"]):
        found.append("WEBHOOK_MIN_INSTANCES is above WEBHOOK_MAX_INSTANCES")
    if v["LINK_SOURCE"] != "pool" and not v["MEET_CREDENTIALS_SECRET"]:
        found.append(f"LINK_SOURCE={v['LINK_SOURCE']} needs MEET_CREDENTIALS_SECRET (docs/meet-spaces.md)")
    if v["MEET_IMPERSONATE_USER"] and not v["MEET_CREDENTIALS_SECRET"]:
        found.append("MEET_IMPERSONATE_USER needs MEET_CREDENTIALS_SECRET (a service-account key)")
    if bool(v["LINK_EVENTS_URL"]) != bool(v["LINK_EVENTS_SECRET_NAME"]):
        found.append("LINK_EVENTS_URL and LINK_EVENTS_SECRET_NAME go together (docs/link-events.md)")
    return found


def _secrets(values: Mapping[str, str], env: Mapping[str, str], function: str) -> dict[str, str]:
    """The secrets the function gets: the values deploy.sh read (SECRET_CHECK_<NAME>) where it
    could, so that their content is checked too; else stand-ins."""
    names = ["DB_PASS", "MIDTRANS_SERVER_KEY"]
    if values["LINK_EVENTS_URL"]:
        names.append("LINK_EVENTS_SECRET")
    if function == "assign_meeting_link" and values["MEET_CREDENTIALS_SECRET"]:
        names.append("MEET_CREDENTIALS")
    return {n: env.get(f"SECRET_CHECK_{n}") or _STAND_INS[n] for n in names}


def midtrans_key_problems(key: str, production: bool) -> list[str]:
    """A Midtrans server key as deploy.sh is about to store it."""
    if not key:
        return ["the Midtrans server key is empty"]
    if any(c.isspace() for c in key):
        return ["the Midtrans server key contains spaces or line breaks: give the key alone"]
    if production and key.startswith("SB-"):
        return ["MIDTRANS_IS_PRODUCTION=true but the key is a sandbox key (SB-Mid-server-...)"]
    if not production and key.startswith("Mid-server-"):
        return ["MIDTRANS_IS_PRODUCTION=false but the key is a production key (Mid-server-...)"]
    return []


def instance_connection_name(v: Mapping[str, str]) -> str:
    return f"{v['PROJECT_ID']}:{v['REGION']}:{v['CLOUD_SQL_INSTANCE']}"


def function_env(v: Mapping[str, str], function: str, assign_url: str) -> dict[str, str]:
    """The plain (not secret) environment a function is deployed with."""
    env = {"INSTANCE_CONNECTION_NAME": instance_connection_name(v),
           "DB_USER": v["DB_USER"], "DB_NAME": v["DB_NAME"], "DB_POOL_SIZE": v["DB_POOL_SIZE"],
           "THREADS": v["CONCURRENCY"], "GOOGLE_CLOUD_PROJECT": v["PROJECT_ID"],
           "MIDTRANS_IS_PRODUCTION": v["MIDTRANS_IS_PRODUCTION"]}
    if function == "assign_meeting_link":
        env.update(TRUST_CLOUD_RUN_IAM="true", LINK_SOURCE=v["LINK_SOURCE"], MEET_ACCESS_TYPE=v["MEET_ACCESS_TYPE"],
                   MEET_ENTRY_POINT_ACCESS=v["MEET_ENTRY_POINT_ACCESS"])
        if v["MEET_IMPERSONATE_USER"]:
            env["MEET_IMPERSONATE_USER"] = v["MEET_IMPERSONATE_USER"]
    else:
        env.update(ASSIGN_MEETING_LINK_URL=assign_url,
                   MIDTRANS_VERIFY_WITH_STATUS_API=v["MIDTRANS_VERIFY_WITH_STATUS_API"])
    if v["LINK_EVENTS_URL"]:
        env["LINK_EVENTS_URL"] = v["LINK_EVENTS_URL"]
    return env


def env_vars_flag(env: Mapping[str, str]) -> str:
    """--set-env-vars's value: gcloud splits on commas, so a value holding one is sent with
    gcloud's ^DELIM^ escaping (gcloud topic escaping), a delimiter found in no value."""
    pairs = [f"{k}={v}" for k, v in env.items()]
    if not any("," in p for p in pairs):
        return ",".join(pairs)
    delimiter = next(d for d in ";|#@~!" if not any(d in p for p in pairs))
    return f"^{delimiter}^" + delimiter.join(pairs)


# Where the webhook's environment names the assign function's URL, known only once deployed.
ASSIGN_URL = "@ASSIGN_URL@"


def shell_assignments(values: Mapping[str, str]) -> str:
    """The settings and what follows from them (accounts, each function's --set-env-vars), as
    lines a shell can eval."""
    project = values["PROJECT_ID"]
    derived = {k: f"{name}@{project}.iam.gserviceaccount.com" for k, name in SERVICE_ACCOUNTS.items()}
    derived["INSTANCE_CONNECTION_NAME"] = instance_connection_name(values)
    # The Meet API is enabled for a source that uses it, or for credentials given anyway.
    derived["USES_MEET"] = "true" if values["LINK_SOURCE"] != "pool" or values["MEET_CREDENTIALS_SECRET"] else "false"
    derived["ASSIGN_ENV"] = env_vars_flag(function_env(values, "assign_meeting_link", ""))
    derived["WEBHOOK_ENV"] = env_vars_flag(function_env(values, "midtrans_webhook", ASSIGN_URL))
    return "\n".join(f"{k}={shlex.quote(v)}" for k, v in {**values, **derived}.items()) + "\n"


def main(env: Mapping[str, str] | None = None) -> int:
    """Prints the settings as shell lines, or every problem (exit 6)."""
    values, found = resolve(os.environ if env is None else env)
    for line in found:
        print(f"deploy.sh: {line}", file=sys.stderr)
    if found:
        return 6
    print(shell_assignments(values), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
