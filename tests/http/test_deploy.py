"""deploy.sh: against a fake gcloud that records every call and refuses what the real CLI
refuses, with every line it accepted replayed through the real gcloud (when installed); and
the staged bundles served from their own folders alone."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from fake_gcloud import FLAGS, FakeGcloud
from meeting_links import logs
from support import CLI, INTERNAL_TOKEN, REPO, SERVER_KEY, FunctionServer, booking, insert_booking, notification, running

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http

PROJECT = "klinik-sehat"
WEBHOOK_SA = f"meeting-links-webhook@{PROJECT}.iam.gserviceaccount.com"
ASSIGN_SA = f"meeting-links-assign@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"meeting-links-scheduler@{PROJECT}.iam.gserviceaccount.com"
BUILD_SA = f"meeting-links-build@{PROJECT}.iam.gserviceaccount.com"
EVENTS_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NO_ACCOUNT = "You do not currently have an active account selected"


@pytest.fixture
def deploy(tmp_path):
    """deploy(*args, stdin="", **env) runs deploy.sh against a fresh FakeGcloud (deploy.fake),
    in an environment holding only what a person would set."""
    fake = FakeGcloud()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    base = {"HOME": str(tmp_path), "LANG": "C.UTF-8", **fake.install(bindir)}
    key_file = tmp_path / "midtrans-key"
    key_file.write_text("SB-Mid-server-from-a-file\n")  # as an editor saves it
    stage = tmp_path / "stage"  # kept: the replay reads the alert policy files

    def run(*args, stdin="", **env):
        full_env = {**base, "PROJECT_ID": PROJECT, "MEETING_LINKS": CLI, "DEPLOY_PYTHON": sys.executable, "MIDTRANS_SERVER_KEY_FILE": str(key_file),
                    "STAGE_DIR": str(stage), "DEPLOY_RETRY_BASE_S": "0", **env}
        stage.mkdir(exist_ok=True)
        fake.calls.clear()
        result = subprocess.run(["bash", str(REPO / "deploy.sh"), *args], env={k: v for k, v in full_env.items() if v is not None},
                                capture_output=True, text=True, timeout=120, input=stdin)
        result.calls = list(fake.calls)
        return result
    run.fake = fake
    run.add_secret = lambda name, value: fake.state["secrets"].__setitem__(name, [value])
    yield run
    fake.close()


def flag(argv, name):
    return next(a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}="))


def deployed(fake, name):
    return fake.state["functions"][name]


# --- first run, second run, the run after a failed one ------------------------------------------

def test_first_run_on_an_empty_project_then_a_second_that_changes_nothing(deploy, database_url, conn):
    conn.run("UPDATE pool_settings SET buffer_minutes = 15")  # set by a person, earlier
    result = deploy(DEPLOY_DATABASE_URL=database_url, ALERT_EMAIL="ops@klinik-sehat.id")
    assert result.returncode == 0, result.stdout + result.stderr
    fake, state = deploy.fake, deploy.fake.state
    # The pool's settings are left as they were (no BUSINESS_TIME_ZONE or LINK_BUFFER_MINUTES).
    assert conn.run("SELECT buffer_minutes FROM pool_settings") == [[15]] and "pool configure" not in result.stdout
    # Everything an empty project lacks, in order: APIs, accounts, database, secrets, functions.
    assert {"iam.googleapis.com", "cloudresourcemanager.googleapis.com", "cloudfunctions.googleapis.com",
            "sqladmin.googleapis.com", "secretmanager.googleapis.com"} <= set(state["services"])
    assert "meet.googleapis.com" not in state["services"]  # LINK_SOURCE=pool, no credentials
    assert state["sa"] == [WEBHOOK_SA, ASSIGN_SA, SCHEDULER_SA, BUILD_SA]
    assert state["instances"] == ["meeting-links-pg"] and state["databases"] == ["meeting_links"]
    create = fake.commands("sql", "instances", "create")[0]
    assert flag(create, "database-version") == "POSTGRES_15" and flag(create, "tier") == "db-custom-1-3840"
    # The user's password is the secret's, generated, and never on a command line or printed.
    password = state["secrets"]["meeting-links-db-password"][0]
    assert len(password) == 32 and state["users"] == {"meeting_links_app": password}
    assert not any(password in " ".join(c["argv"]) for c in result.calls)
    assert password not in result.stdout + result.stderr
    assert state["secrets"]["midtrans-server-key"] == ["SB-Mid-server-from-a-file"]
    assert "SB-Mid-server-from-a-file" not in result.stdout + result.stderr

    assign, webhook = deployed(fake, "assign-meeting-link"), deployed(fake, "midtrans-webhook")
    assert "--no-allow-unauthenticated" in fake.commands("functions", "deploy", "assign-meeting-link")[0]
    assert "--allow-unauthenticated" in fake.commands("functions", "deploy", "midtrans-webhook")[0]
    for argv in fake.commands("functions", "deploy"):
        assert flag(argv, "build-service-account") == f"projects/{PROJECT}/serviceAccounts/{BUILD_SA}"
        assert flag(argv, "max-instances") == "5" and flag(argv, "concurrency") == "8"
    assert "TRUST_CLOUD_RUN_IAM=true" in assign["env"]
    assert "ASSIGN_MEETING_LINK_URL=https://assign-meeting-link-abc123-asia-southeast2.a.run.app" in webhook["env"]
    assert "MIDTRANS_VERIFY_WITH_STATUS_API=true" in webhook["env"]
    # Pinned to the versions that are newest now, not "latest".
    assert webhook["secrets"] == "DB_PASS=meeting-links-db-password:1,MIDTRANS_SERVER_KEY=midtrans-server-key:1"
    assert assign["secrets"] == webhook["secrets"]  # the sweep asks Midtrans about lost payments
    bindings = state["bindings"]
    for sa in (WEBHOOK_SA, ASSIGN_SA):
        assert [f"project:{PROJECT}", f"serviceAccount:{sa}", "roles/cloudsql.client"] in bindings
        assert ["secret:midtrans-server-key", f"serviceAccount:{sa}", "roles/secretmanager.secretAccessor"] in bindings
    for role in ("roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectAdmin"):
        assert [f"project:{PROJECT}", f"serviceAccount:{BUILD_SA}", role] in bindings
    invokers = {b[1] for b in bindings if b[0] == "function:assign-meeting-link"}
    assert invokers == {f"serviceAccount:{WEBHOOK_SA}", f"serviceAccount:{SCHEDULER_SA}"}
    assert ["function:midtrans-webhook", "allUsers", "roles/run.invoker"] in bindings
    job = state["jobs"]["meeting-links-sweep"]
    assert job["message-body"] == '{"sweep": true}' and job["oidc-token-audience"] == job["uri"]
    assert job["headers"] == "Content-Type=application/json"
    assert result.stdout.splitlines()[-1] == "  https://midtrans-webhook-abc123-asia-southeast2.a.run.app"
    assert "Secrets are pinned: DB_PASS=meeting-links-db-password:1" in result.stdout
    # Alerts reach a person by email, each counted by a metric over the line's alert field.
    assert [c["email"] for c in state["channels"]] == ["ops@klinik-sehat.id"]
    channel = state["channels"][0]["name"]
    policies = {p["displayName"]: p for p in state["policies"]}
    assert all(p["notificationChannels"] == [channel] for p in policies.values())
    sweep = policies["Meeting Links: the sweep has not run for 30 minutes"]["conditions"][0]["conditionAbsent"]
    assert sweep["duration"] == "1800s" and "meeting_links_sweep_runs" in sweep["filter"]
    waiting = policies["Meeting Links: a booking waits for a person"]["conditions"][0]["conditionThreshold"]
    assert waiting["comparison"] == "COMPARISON_GT" and waiting["thresholdValue"] == 0
    # Every alert the code can raise (logs.ALERTS) is counted by a metric that matches the
    # line's alert field, never the wording of its message.
    filters = {flag(c, "log-filter") for c in fake.commands("logging", "metrics", "create")}
    for alert in logs.ALERTS:
        assert any(f'jsonPayload.alert="{alert}"' in f for f in filters), alert
    assert not any("jsonPayload.message" in f for f in filters)

    again = deploy(DEPLOY_DATABASE_URL=database_url, ALERT_EMAIL="ops@klinik-sehat.id")
    assert again.returncode == 0, again.stdout + again.stderr
    # Nothing created, no version added, no password changed, nothing redeployed; the
    # bindings are made again (a no-op when present) and the job keeps its settings.
    assert [c for c in fake.mutations() if any(w in ("create", "add", "deploy", "set-password") for w in c)] == []
    assert "is up to date" in again.stdout and "database is up to date" in again.stdout
    update = fake.commands("scheduler", "jobs", "update", "http")[0]
    assert flag(update, "update-headers") == "Content-Type=application/json"
    assert state["users"] == {"meeting_links_app": password}


def test_a_run_that_died_half_way_is_completed_by_the_next(deploy, database_url):
    deploy.fake.fail_once("secrets versions add meeting-links-db-password")
    first = deploy(DEPLOY_DATABASE_URL=database_url)
    assert first.returncode != 0 and "Connection reset by peer" in first.stderr
    state = deploy.fake.state
    assert state["secrets"]["meeting-links-db-password"] == [] and state["users"] == {}  # left half done
    assert state["functions"] == {}

    second = deploy(DEPLOY_DATABASE_URL=database_url)
    assert second.returncode == 0, second.stdout + second.stderr
    password = state["secrets"]["meeting-links-db-password"][0]
    assert state["users"] == {"meeting_links_app": password}
    assert set(state["functions"]) == {"assign-meeting-link", "midtrans-webhook"}

    # A binding someone removed, and a password secret whose versions were destroyed: healed.
    state["bindings"].remove(["secret:midtrans-server-key", f"serviceAccount:{ASSIGN_SA}",
                              "roles/secretmanager.secretAccessor"])
    state["secrets"]["meeting-links-db-password"] = []
    # (and the organisation now refuses allUsers: the webhook's invoker check is turned off)
    third = deploy(DEPLOY_DATABASE_URL=database_url, WEBHOOK_ACCESS="no-invoker-iam-check")
    assert third.returncode == 0, third.stdout + third.stderr
    webhook = deploy.fake.commands("functions", "deploy", "midtrans-webhook")[0]
    assert "--allow-unauthenticated" not in webhook
    assert state["invoker_iam_check"] == {"midtrans-webhook": False}
    assert not deploy.fake.commands("functions", "add-invoker-policy-binding", "midtrans-webhook")
    assert ["secret:midtrans-server-key", f"serviceAccount:{ASSIGN_SA}",
            "roles/secretmanager.secretAccessor"] in state["bindings"]
    new_password = state["secrets"]["meeting-links-db-password"][0]
    assert new_password != password and state["users"] == {"meeting_links_app": new_password}
    assert deploy.fake.commands("sql", "users", "set-password")  # the user follows its secret
    assert "DB_PASS=meeting-links-db-password:1" in deployed(deploy.fake, "midtrans-webhook")["secrets"]


def test_new_accounts_and_metrics_google_does_not_know_yet_are_waited_for(deploy, database_url):
    # IAM: a just-created account is "not found" for a while; Monitoring: a new log-based
    # metric answers 404 "could take up to 10 minutes". Each answers so twice, then works.
    deploy.fake.iam_lag, deploy.fake.metric_lag = 2, 2
    result = deploy(DEPLOY_DATABASE_URL=database_url, ALERT_EMAIL="ops@klinik-sehat.id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting 0s for the new service account to be known to IAM" in result.stdout
    assert "waiting 0s for Monitoring to know the metric meeting_links_pool_exhausted" in result.stdout
    state = deploy.fake.state
    assert len(state["policies"]) == 7 and len({p["displayName"] for p in state["policies"]}) == 7
    creates = deploy.fake.commands("alpha", "monitoring", "policies", "create")
    assert len(creates) == 7 * 3  # each policy: two 404s, then created
    assert [f"project:{PROJECT}", f"serviceAccount:{WEBHOOK_SA}", "roles/cloudsql.client"] in state["bindings"]


def test_an_error_that_is_not_google_catching_up_is_not_retried(deploy, database_url):
    deploy.fake.fail_once("projects add-iam-policy-binding")
    result = deploy(DEPLOY_DATABASE_URL=database_url)
    assert result.returncode != 0 and "Connection reset by peer" in result.stderr
    assert "waiting" not in result.stdout
    assert len(deploy.fake.commands("projects", "add-iam-policy-binding")) == 1


# --- preflight: nothing is created before every setting is known to be good ----------------

def test_bad_settings_are_each_one_line_and_nothing_is_asked_of_gcloud(deploy):
    result = deploy(PROJECT_ID="YOUR_PROJECT", DB_POOL_SIZE="x", LINK_SOURCE="meet", WEBHOOK_ACCESS="open")
    assert result.returncode == 2 and result.calls == []
    assert result.stderr.splitlines() == [
        "deploy.sh: PROJECT_ID must be a Google Cloud project id (6-30 lowercase letters, digits and hyphens),"
        " got 'YOUR_PROJECT'",
        "deploy.sh: DB_POOL_SIZE must be a whole number from 1 to 100, got 'x'",
        "deploy.sh: WEBHOOK_ACCESS must be one of public, no-invoker-iam-check, got 'open'",
        "deploy.sh: LINK_SOURCE must be one of pool, pool_then_meet, meet_then_pool, got 'meet'"]
    placeholder = deploy(PROJECT_ID="your-project-id")
    assert placeholder.returncode == 2 and "PROJECT_ID looks like a placeholder" in placeholder.stderr


def test_settings_the_functions_would_refuse_are_refused_before_anything_exists(deploy):
    result = deploy(LINK_SOURCE="meet_then_pool", MEET_ACCESS_TYPE="PUBLIC", LINK_EVENTS_URL="http://app.klinik-sehat.id/h")
    assert result.returncode == 2 and result.calls == []
    lines = result.stderr.splitlines()
    assert "deploy.sh: MEET_ACCESS_TYPE must be one of AUTO, OPEN, TRUSTED, RESTRICTED, got 'PUBLIC'" in lines
    assert "deploy.sh: LINK_EVENTS_URL must be an https:// URL, got 'http://app.klinik-sehat.id/h'" in lines
    budget = deploy(WEBHOOK_MAX_INSTANCES="30")
    assert budget.returncode == 2 and budget.calls == []
    assert budget.stderr.strip() == ("deploy.sh: DB_POOL_SIZE: (30 + 5 instances) x 4 = 140 connections exceed"
                                     " DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS = 85")
    meet = deploy(LINK_SOURCE="meet_then_pool")
    assert "LINK_SOURCE=meet_then_pool needs MEET_CREDENTIALS_SECRET" in meet.stderr and meet.calls == []


def test_a_missing_midtrans_key_is_said_before_anything_is_created(deploy):
    result = deploy(MIDTRANS_SERVER_KEY_FILE="")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "deploy.sh: secret midtrans-server-key has no key yet: give it once with MIDTRANS_SERVER_KEY_FILE=path"
        " (or - for standard input)",
        "deploy.sh: nothing was created or changed"]
    assert deploy.fake.mutations() == [] and deploy.fake.state["instances"] == []
    wrong = deploy(MIDTRANS_SERVER_KEY_FILE="/no/such/key")
    assert wrong.returncode == 2 and "MIDTRANS_SERVER_KEY_FILE names no file" in wrong.stderr


def test_a_key_for_the_other_environment_or_an_invalid_stored_secret_is_refused(deploy):
    result = deploy(MIDTRANS_IS_PRODUCTION="true")  # the file holds a sandbox key
    assert result.returncode == 2 and deploy.fake.mutations() == []
    assert "MIDTRANS_IS_PRODUCTION=true but the key is a sandbox key (SB-Mid-server-...)" in result.stderr
    deploy.add_secret("link-events-secret", "whsec_c2VjcmV0")  # six bytes: no Standard Webhooks key
    events = deploy(LINK_EVENTS_URL="https://app.klinik-sehat.id/hooks/links", LINK_EVENTS_SECRET_NAME="link-events-secret")
    assert events.returncode == 2 and deploy.fake.mutations() == []
    assert "LINK_EVENTS_SECRET" in events.stderr and "whsec_" in events.stderr
    missing = deploy(MEET_CREDENTIALS_SECRET="meet-credentials", LINK_SOURCE="meet_then_pool")
    assert missing.returncode == 2 and deploy.fake.mutations() == []
    assert ("secret meet-credentials (MEET_CREDENTIALS) does not exist or has no enabled version:"
            " create it first (docs/meet-spaces.md)") in missing.stderr


def test_a_project_without_billing_is_refused_before_anything_is_created(deploy):
    deploy.fake.billing = False
    result = deploy()
    assert result.returncode == 2 and deploy.fake.mutations() == []
    assert f"billing is not enabled on {PROJECT}" in result.stderr


def test_dry_run_says_it_is_one_asks_nothing_and_prints_what_it_would_create(deploy):
    result = deploy("--dry-run", ALERT_EMAIL="ops@klinik-sehat.id")
    assert result.returncode == 0, result.stderr
    assert result.calls == []
    out = result.stdout
    for expected in ("dry run: the project, its billing and its secrets are not looked at",
                     "functions deploy assign-meeting-link", "--no-allow-unauthenticated",
                     "functions deploy midtrans-webhook", "--allow-unauthenticated",
                     "add-invoker-policy-binding assign-meeting-link", "scheduler jobs create http",
                     "sql instances create meeting-links-pg", "iam service-accounts create meeting-links-build",
                     "--set-secrets=DB_PASS=meeting-links-db-password:latest", "--max-instances=5",
                     "--concurrency=8", "--cpu=1", "--memory=512Mi", "--timeout=30s",
                     "INSTANCE_CONNECTION_NAME=klinik-sehat:asia-southeast2:meeting-links-pg",
                     "DB_PASS=<from meeting-links-db-password>", "alpha monitoring policies create"):
        assert expected in out, expected
    assert out.rstrip().endswith("would do; a real run skips what exists and pins each secret to its newest version.")
    assert "Dry run: nothing was created or changed." in out
    assert "Paste this URL" not in out and "Secrets are pinned" not in out


def test_a_dry_run_writes_nothing_into_the_checkout(deploy, tmp_path):
    # The library deploy.sh runs is the checkout's own (an editable install): Python would leave
    # __pycache__ folders in it unless told not to. A cache prefix makes any such write visible
    # even where the checkout's caches are already fresh (CI, with them absent, saw it directly);
    # the checkout's own caches are left out of its status, as other tests' processes may write
    # them meanwhile.
    def checkout():
        status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                                text=True).stdout
        return [line for line in status.splitlines() if "__pycache__" not in line]
    cache = tmp_path / "pycache"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPYCACHEPREFIX={cache} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    before = checkout()
    result = deploy("--dry-run", ALERT_EMAIL="ops@klinik-sehat.id", STAGE_DIR=None, DEPLOY_PYTHON=str(python))
    assert result.returncode == 0 and result.calls == [] and checkout() == before, result.stderr
    assert "Dry run: nothing was created or changed." in result.stdout
    assert not any(cache.rglob("*.pyc"))


# --- settings that reach the functions -----------------------------------------------------------

def test_meet_credentials_and_link_events_reach_the_right_functions_with_the_key_from_stdin(deploy, database_url):
    deploy.add_secret("meet-credentials", json.dumps({"type": "authorized_user", "client_id": "c",
                                                      "client_secret": "s", "refresh_token": "r"}))
    deploy.add_secret("link-events-secret", EVENTS_SECRET)
    url = "https://app.klinik-sehat.id/hooks/links?tags=a,b"
    result = deploy(DEPLOY_DATABASE_URL=database_url, LINK_SOURCE="meet_then_pool",
                    MEET_CREDENTIALS_SECRET="meet-credentials", MEET_IMPERSONATE_USER="bookings@klinik-sehat.id",
                    MEET_ACCESS_TYPE="OPEN", LINK_EVENTS_URL=url, LINK_EVENTS_SECRET_NAME="link-events-secret",
                    MIDTRANS_SERVER_KEY_FILE="-", stdin="SB-Mid-server-stdin\n")
    assert result.returncode == 0, result.stdout + result.stderr
    state = deploy.fake.state
    assert state["secrets"]["midtrans-server-key"] == ["SB-Mid-server-stdin"]  # read once, newline dropped
    assign, webhook = deployed(deploy.fake, "assign-meeting-link"), deployed(deploy.fake, "midtrans-webhook")
    # Only the assign function (and its sweep) talks to Google.
    assert assign["secrets"].endswith(",MEET_CREDENTIALS=meet-credentials:1")
    assert "MEET_CREDENTIALS" not in webhook["secrets"]
    for setting in ("LINK_SOURCE=meet_then_pool", "MEET_ACCESS_TYPE=OPEN", "MEET_ENTRY_POINT_ACCESS=ALL",
                    "MEET_IMPERSONATE_USER=bookings@klinik-sehat.id"):
        assert setting in assign["env"]
    readers = [b[1] for b in state["bindings"] if b[0] == "secret:meet-credentials"]
    assert readers == [f"serviceAccount:{ASSIGN_SA}"]
    assert "meet.googleapis.com" in state["services"]
    # Link events: both functions send them; gcloud splits --set-env-vars on commas, so the
    # URL's comma goes with gcloud's ^;^ escaping.
    for name in ("assign-meeting-link", "midtrans-webhook"):
        env, secrets = deployed(deploy.fake, name)["env"], deployed(deploy.fake, name)["secrets"]
        assert env.startswith("^;^") and f";LINK_EVENTS_URL={url}" in env
        assert ",LINK_EVENTS_SECRET=link-events-secret:1" in secrets
    readers = [b[1] for b in state["bindings"] if b[0] == "secret:link-events-secret"]
    assert sorted(readers) == sorted([f"serviceAccount:{WEBHOOK_SA}", f"serviceAccount:{ASSIGN_SA}"])


def test_pool_settings_change_only_when_deploy_is_asked_to(deploy, database_url, conn):
    # (left as they are when not asked: see the first-run test)
    result = deploy(DEPLOY_DATABASE_URL=database_url, BUSINESS_TIME_ZONE="Asia/Makassar", LINK_BUFFER_MINUTES="5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert conn.run("SELECT time_zone, buffer_minutes FROM pool_settings") == [["Asia/Makassar", 5]]
    bad = deploy(BUSINESS_TIME_ZONE="Asia/Atlantis")
    assert bad.returncode == 2 and "BUSINESS_TIME_ZONE must be an IANA time zone" in bad.stderr


def test_dry_run_options_min_instances_status_api_and_a_config_file(deploy, tmp_path):
    result = deploy("--dry-run", WEBHOOK_MIN_INSTANCES="1", MIDTRANS_VERIFY_WITH_STATUS_API="false")
    assert result.returncode == 0, result.stderr
    deploys = [line for line in result.stdout.splitlines() if " functions deploy " in line]
    assert "--min-instances=0" in deploys[0] and "--min-instances=1" in deploys[1]
    assert "MIDTRANS_VERIFY_WITH_STATUS_API=false" in deploys[1]
    config = tmp_path / "deploy.env"
    config.write_text("REGION=europe-west1\nCONCURRENCY=4\n")
    result = deploy("--dry-run", "--config", str(config))
    assert "--region=europe-west1" in result.stdout and "--concurrency=4" in result.stdout


def test_help_and_a_missing_config_file(deploy):
    result = deploy("--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: ./deploy.sh [--dry-run] [--config FILE]")
    assert "==" not in result.stdout and result.calls == []
    result = deploy("--config", "/no/such/deploy.env")
    assert result.returncode == 2 and result.calls == []
    assert result.stderr == "deploy.sh: config file /no/such/deploy.env does not exist\n"


def test_shellcheck_reports_nothing():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (.ci/run installs it)")
    result = subprocess.run(["shellcheck", str(REPO / "deploy.sh"), str(REPO / ".ci" / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def test_files_holding_secrets_are_ignored_by_git():
    for name in ("midtrans.key", "deploy.env", "meet-credentials.json", "owner.credentials.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO)
        assert ignored.returncode == 0, name


# --- the real gcloud as the oracle -----------------------------------------------------------------

def real_gcloud():
    """(python, sdk root) of the installed Google Cloud CLI, or None."""
    found = shutil.which("gcloud", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/lib/google-cloud-sdk/bin")
    if not found or "fake" in found:
        return None
    root = Path(os.path.realpath(found)).parents[1]
    if not (root / "lib" / "googlecloudsdk").is_dir():
        return None
    bundled = root / "platform" / "bundledpythonunix" / "bin" / "python3"
    python = os.environ.get("CLOUDSDK_PYTHON") or (str(bundled) if bundled.exists() else shutil.which("python3"))
    return python, root


def replay(calls):
    """Each distinct call through the real gcloud, offline: [(argv, exit, stderr)]."""
    python, root = real_gcloud()
    lines = {json.dumps({"argv": c["argv"], "stdin": c["stdin"]}) for c in calls}
    with tempfile.TemporaryDirectory() as config_dir:
        done = subprocess.run([python, str(REPO / "tests" / "gcloud_replay.py")], input="\n".join(sorted(lines)) + "\n",
                              capture_output=True, text=True, timeout=300,
                              env={"PATH": os.environ["PATH"], "CLOUDSDK_ROOT_DIR": str(root),
                                   "CLOUDSDK_CONFIG": config_dir, "HTTPS_PROXY": "http://127.0.0.1:9",
                                   "HTTP_PROXY": "http://127.0.0.1:9", "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [(a["argv"], a["exit"], a["stderr"]) for a in map(json.loads, done.stdout.splitlines())]


def refused(answers):
    return ["gcloud " + " ".join(argv) + "\n    " + (err.strip().splitlines() or [str(code)])[0]
            for argv, code, err in answers if NO_ACCOUNT not in err]


needs_gcloud = pytest.mark.skipif(real_gcloud() is None, reason="the Google Cloud CLI (gcloud) is not installed:"
                                  " deploy.sh's lines cannot be replayed through it")


@needs_gcloud
def test_every_line_deploy_sh_sends_is_one_the_real_gcloud_accepts(deploy, database_url):
    deploy.add_secret("meet-credentials", json.dumps({"type": "authorized_user", "client_id": "c",
                                                      "client_secret": "s", "refresh_token": "r"}))
    deploy.add_secret("link-events-secret", EVENTS_SECRET)
    everything = {"DEPLOY_DATABASE_URL": database_url, "ALERT_EMAIL": "ops@klinik-sehat.id",
                  "LINK_SOURCE": "meet_then_pool", "MEET_CREDENTIALS_SECRET": "meet-credentials",
                  "MEET_IMPERSONATE_USER": "bookings@klinik-sehat.id", "DB_FLAGS": "max_connections=100",
                  "LINK_EVENTS_URL": "https://app.klinik-sehat.id/hooks/links?tags=a,b",
                  "LINK_EVENTS_SECRET_NAME": "link-events-secret", "WEBHOOK_MIN_INSTANCES": "1"}
    calls = []
    for run_env in (everything, everything):  # the create branches, then the update ones
        result = deploy(**run_env)
        assert result.returncode == 0, result.stdout + result.stderr
        calls += result.calls
    # The healing branches: a password secret without a version (set-password), alert
    # policies Monitoring refuses once, the other way to make the webhook public.
    deploy.fake.state["secrets"]["meeting-links-db-password"] = []
    deploy.fake.metric_lag, deploy.fake.state["policies"] = 1, []
    result = deploy(**everything, WEBHOOK_ACCESS="no-invoker-iam-check")
    assert result.returncode == 0, result.stdout + result.stderr
    calls += result.calls
    used = {tuple(w for w in c["argv"] if not w.startswith("--"))[:4] for c in calls}
    assert len(used) >= 30  # every branch's commands were exercised
    answers = replay(calls)
    assert len(answers) == len({json.dumps(c) for c in calls})
    assert refused(answers) == []


@needs_gcloud
def test_the_replay_refuses_what_the_real_gcloud_refuses():
    # Two lines the deploy.sh of 7be50d7 sent: the replay must name them.
    old = [{"argv": ["--project=p", "--quiet", "sql", "users", "create", "u", "--instance=i", "--prompt-for-password"],
            "stdin": "secret"},
           {"argv": ["--project=p", "--quiet", "scheduler", "jobs", "update", "http", "j", "--location=r",
                     "--headers=Content-Type=application/json"], "stdin": ""},
           {"argv": ["--project=p", "--quiet", "sql", "users", "create", "u", "--instance=i", "--flags-file=-"],
            "stdin": "--password: abc"}]
    named = refused(replay(old))
    assert len(named) == 2
    assert "unrecognized arguments: --prompt-for-password" in named[0] + named[1]
    assert "unrecognized arguments: --headers=Content-Type=application/json" in named[0] + named[1]


def test_the_fake_refuses_what_the_real_gcloud_refuses(deploy):
    fake = deploy.fake
    code, _, err = fake.call(["--project=p", "sql", "users", "create", "u", "--instance=i", "--prompt-for-password"], "")
    assert code == 2 and "unrecognized arguments: --prompt-for-password" in err
    code, _, err = fake.call(["--project=p", "scheduler", "jobs", "update", "http", "j", "--headers=a=b"], "")
    assert code == 2 and "unrecognized arguments: --headers" in err
    code, _, err = fake.call(["--project=p", "sql", "users", "create", "u", "--flags-file=-"], "--pasword: x")
    assert code == 2 and "--pasword" in err
    code, _, err = fake.call(["--project=p", "functions", "deploy", "f", "--no-invoker-iam-check"], "")
    assert code == 2  # not a flag of functions deploy in gcloud 528 (it is one of run services update)
    assert ("run", "services", "update") in FLAGS


# --- the bundles ------------------------------------------------------------------------------------

def bundle_server(bundle, target, env):
    """Serve a staged bundle with nothing of the repo on the path: -S skips the editable
    install's .pth, so meeting_links can only come from the bundle itself."""
    site = sysconfig.get_paths()["purelib"]
    return FunctionServer(target, {**env, "PYTHONPATH": f"{bundle}:{site}"}, cwd=bundle,
                          command=[sys.executable, "-S", "-m", "functions_framework", "--target", target,
                                   "--source", "main.py", "--host", "127.0.0.1"])


def test_each_staged_bundle_serves_from_its_own_folder(deploy, conn, database_url, tmp_path):
    result = deploy("--dry-run")
    assert result.returncode == 0
    stage = tmp_path / "stage"
    for target in ("assign_meeting_link", "midtrans_webhook"):
        bundle = stage / target
        assert sorted(p.name for p in bundle.iterdir()) == [".gcloudignore", "main.py", "meeting_links",
                                                            "requirements.txt"]
        assert not any(p.is_symlink() for p in bundle.rglob("*"))
        assert not re.search(r"embedded.postgres|pytest", (bundle / "requirements.txt").read_text())
    assign = bundle_server(stage / "assign_meeting_link", "assign_meeting_link",
                           {"DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN})
    with running(assign):
        webhook = bundle_server(stage / "midtrans_webhook", "midtrans_webhook", {
            "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
            "MIDTRANS_SERVER_KEY": SERVER_KEY, "ASSIGN_MEETING_LINK_URL": assign.url})
        with running(webhook):
            b = insert_booking(conn)
            r = webhook.post(notification(b["order_id"]))
            assert r.status_code == 200 and r.json()["meetingLink"], r.text + webhook.output()
    assert booking(conn, b["id"])["link_id"]
