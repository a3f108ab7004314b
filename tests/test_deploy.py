"""deploy.sh against a fake gcloud that records its arguments, and the staged bundles served
from their own folders alone."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from support import INTERNAL_TOKEN, REPO, SERVER_KEY, FunctionServer, booking, insert_booking, notification, running

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http


@pytest.fixture
def gcloud(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gcloud").symlink_to(Path(__file__).with_name("fake_gcloud.py"))
    state = tmp_path / "state"
    state.mkdir()

    key_file = tmp_path / "midtrans-key"
    key_file.write_text("SB-Mid-server-from-a-file\n")  # as an editor saves it

    def deploy(*args, stdin=None, **env):
        full_env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_GCLOUD_STATE": str(state),
                    "PROJECT_ID": "demo-project", "MIGRATE": f"{sys.executable} -m meeting_links.cli migrate",
                    "MIDTRANS_SERVER_KEY_FILE": str(key_file), **env}
        (state / "calls.jsonl").write_text("")
        result = subprocess.run(["bash", str(REPO / "deploy.sh"), *args], env=full_env, capture_output=True,
                                text=True, timeout=120, input=stdin)
        calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
        return result, calls
    deploy.state = lambda: json.loads((state / "state.json").read_text())

    def add_secret(name, value):  # one a person created by hand, as README says
        current = deploy.state() if (state / "state.json").exists() else {}
        current.setdefault("secrets", {})[name] = [value]
        (state / "state.json").write_text(json.dumps(current))
    deploy.add_secret = add_secret
    return deploy


def commands(calls, *prefix):
    return [c for c in calls if [w for w in c if not w.startswith("--")][:len(prefix)] == list(prefix)]


def flag(call, name):
    return next(a.split("=", 1)[1] for a in call if a.startswith(f"--{name}="))


def test_dry_run_prints_every_command_and_runs_none(gcloud):
    result, calls = gcloud("--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls == []
    out = result.stdout
    for expected in ("functions deploy assign-meeting-link", "--no-allow-unauthenticated",
                     "functions deploy midtrans-webhook", "--allow-unauthenticated",
                     "add-invoker-policy-binding assign-meeting-link", "scheduler jobs create http",
                     "--set-secrets=DB_PASS=meeting-links-db-password:latest", "--max-instances=5",
                     "--concurrency=8", "--cpu=1", "--memory=512Mi", "--timeout=30s",
                     "INSTANCE_CONNECTION_NAME=demo-project:asia-southeast2:meeting-links-pg",
                     "DB_PASS=<from meeting-links-db-password>"):
        assert expected in out, expected
    assert "Paste this URL into Midtrans" in out


def test_deploys_then_changes_nothing_the_second_time(gcloud, database_url, conn):
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    deploys = commands(calls, "functions", "deploy")
    assert [[w for w in d if not w.startswith("--")][2] for d in deploys] == ["assign-meeting-link", "midtrans-webhook"]
    assign, webhook = deploys
    assert "--no-allow-unauthenticated" in assign and "--allow-unauthenticated" in webhook
    assert "TRUST_CLOUD_RUN_IAM=true" in flag(assign, "set-env-vars")
    assert ("ASSIGN_MEETING_LINK_URL=https://assign-meeting-link-abc123-asia-southeast2.a.run.app"
            in flag(webhook, "set-env-vars"))
    # Pinned to the versions "latest" resolved to, not "latest" itself.
    assert flag(webhook, "set-secrets") == ("DB_PASS=meeting-links-db-password:1,"
                                           "MIDTRANS_SERVER_KEY=midtrans-server-key:1")
    # The sweep asks Midtrans about lost payments, so assign needs the key too; the webhook
    # checks every notification with the GET Status API unless told not to.
    assert flag(assign, "set-secrets") == flag(webhook, "set-secrets")
    assert "MIDTRANS_VERIFY_WITH_STATUS_API=true" in flag(webhook, "set-env-vars")
    key_readers = [flag(c, "member") for c in commands(calls, "secrets", "add-iam-policy-binding")
                   if "midtrans-server-key" in c]
    assert key_readers == ["serviceAccount:meeting-links-webhook@demo-project.iam.gserviceaccount.com",
                           "serviceAccount:meeting-links-assign@demo-project.iam.gserviceaccount.com"]
    invokers = [flag(c, "member") for c in commands(calls, "functions", "add-invoker-policy-binding")]
    assert "serviceAccount:meeting-links-webhook@demo-project.iam.gserviceaccount.com" in invokers
    job = commands(calls, "scheduler", "jobs", "create", "http")[0]
    assert flag(job, "message-body") == '{"sweep": true}'
    assert flag(job, "oidc-token-audience") == flag(job, "uri")
    assert "https://midtrans-webhook-abc123-asia-southeast2.a.run.app" in result.stdout.splitlines()[-1]
    assert len(commands(calls, "iam", "service-accounts", "create")) == 3

    # From an empty project: the instance, database, user and both secrets were created, the
    # Midtrans key stored without the file's trailing newline, the password never printed.
    made = gcloud.state()
    assert made["instances"] == ["meeting-links-pg"] and made["databases"] == ["meeting_links"]
    assert made["users"] == ["meeting_links_app"]
    assert made["secrets"]["midtrans-server-key"] == ["SB-Mid-server-from-a-file"]
    password = made["secrets"]["meeting-links-db-password"][0]
    assert len(password) == 32 and password not in result.stdout + result.stderr
    assert "SB-Mid-server-from-a-file" not in result.stdout + result.stderr
    assert not any(password in " ".join(c) for c in calls)
    create = commands(calls, "sql", "instances", "create")[0]
    assert flag(create, "database-version") == "POSTGRES_15" and flag(create, "tier") == "db-custom-1-3840"
    assert "To rotate one" in result.stdout

    again, calls = gcloud(DEPLOY_DATABASE_URL=database_url)
    assert again.returncode == 0, again.stderr
    assert [c for c in calls if "create" in c or "add" in c] == []  # nothing created, no version added
    assert commands(calls, "functions", "deploy") == []
    assert commands(calls, "iam", "service-accounts", "create") == []
    assert commands(calls, "scheduler", "jobs", "create") == []
    assert "is up to date" in again.stdout and "database is up to date" in again.stdout


def test_meet_credentials_go_to_the_assign_function_only(gcloud, database_url):
    result, _ = gcloud(DEPLOY_DATABASE_URL=database_url, MEET_CREDENTIALS_SECRET="meet-credentials")
    assert result.returncode == 2 and result.stderr.startswith("deploy.sh: secret meet-credentials")
    gcloud.add_secret("meet-credentials", '{"type": "authorized_user"}')
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url, LINK_SOURCE="meet_then_pool",
                           MEET_CREDENTIALS_SECRET="meet-credentials", MEET_IMPERSONATE_USER="bookings@example.com",
                           MEET_ACCESS_TYPE="OPEN")
    assert result.returncode == 0, result.stdout + result.stderr
    assign, webhook = commands(calls, "functions", "deploy")
    assert flag(assign, "set-secrets").endswith(",MEET_CREDENTIALS=meet-credentials:1")
    assert "MEET_CREDENTIALS" not in flag(webhook, "set-secrets")
    env = flag(assign, "set-env-vars")
    for setting in ("LINK_SOURCE=meet_then_pool", "MEET_ACCESS_TYPE=OPEN", "MEET_ENTRY_POINT_ACCESS=ALL",
                    "MEET_IMPERSONATE_USER=bookings@example.com"):
        assert setting in env
    readers = [flag(c, "member") for c in commands(calls, "secrets", "add-iam-policy-binding") if "meet-credentials" in c]
    assert readers == ["serviceAccount:meeting-links-assign@demo-project.iam.gserviceaccount.com"]


def test_alerts_reach_a_person_by_email_and_are_created_once(gcloud, database_url):
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url, ALERT_EMAIL="ops@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    state = gcloud.state()
    assert [c["email"] for c in state["channels"]] == ["ops@example.com"]
    assert state["metrics"] == ["meeting_links_pool_exhausted", "meeting_links_invalid_signatures",
                                "meeting_links_5xx", "meeting_links_sweep_runs"]
    policies = {p["displayName"]: p for p in state["policies"]}
    assert set(policies) == {"Meeting Links: a booking waits for manual assignment",
                             "Meeting Links: burst of invalid signatures", "Meeting Links: functions answering 5xx",
                             "Meeting Links: the sweep has not run for 30 minutes"}
    channel = state["channels"][0]["name"]
    assert all(p["notificationChannels"] == [channel] for p in policies.values())
    sweep = policies["Meeting Links: the sweep has not run for 30 minutes"]["conditions"][0]
    assert sweep["conditionAbsent"]["duration"] == "1800s"
    assert "meeting_links_sweep_runs" in sweep["conditionAbsent"]["filter"]
    pool = policies["Meeting Links: a booking waits for manual assignment"]["conditions"][0]["conditionThreshold"]
    assert pool["comparison"] == "COMPARISON_GT" and pool["thresholdValue"] == 0
    exhausted = commands(calls, "logging", "metrics", "create", "meeting_links_pool_exhausted")[0]
    assert 'jsonPayload.message="meeting link pool exhausted: booking needs manual assignment"' in flag(exhausted, "log-filter")
    again, calls = gcloud(DEPLOY_DATABASE_URL=database_url, ALERT_EMAIL="ops@example.com")
    assert again.returncode == 0 and [c for c in calls if "create" in c] == []


def test_a_fresh_project_without_the_midtrans_key_is_a_one_line_error(gcloud):
    result, _ = gcloud(MIDTRANS_SERVER_KEY_FILE="")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "deploy.sh: secret midtrans-server-key does not exist: give the key once with "
        "MIDTRANS_SERVER_KEY_FILE=path (or - for standard input)"]


def test_the_midtrans_key_can_come_from_standard_input(gcloud, database_url):
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url, MIDTRANS_SERVER_KEY_FILE="-", stdin="SB-Mid-server-stdin\n")
    assert result.returncode == 0, result.stderr
    assert gcloud.state()["secrets"]["midtrans-server-key"] == ["SB-Mid-server-stdin"]


def test_min_instances_for_the_webhook(gcloud):
    result, _ = gcloud("--dry-run", WEBHOOK_MIN_INSTANCES="1")
    deploys = [line for line in result.stdout.splitlines() if " functions deploy " in line]
    assert "--min-instances=0" in deploys[0] and "--min-instances=1" in deploys[1]


def test_help_and_a_missing_config_file(gcloud):
    result, calls = gcloud("--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: ./deploy.sh [--dry-run] [--config FILE]")
    assert "==" not in result.stdout and calls == []
    result, calls = gcloud("--config", "/no/such/deploy.env")
    assert result.returncode == 2 and calls == []
    assert result.stderr == "deploy.sh: config file /no/such/deploy.env does not exist\n"


def test_a_dry_run_writes_nothing_into_the_checkout(gcloud):
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                            text=True).stdout
    result, calls = gcloud("--dry-run", ALERT_EMAIL="ops@example.com")
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                           text=True).stdout
    assert result.returncode == 0 and calls == [] and before == after


def test_refuses_a_connection_budget_over_the_database_limit(gcloud):
    result, calls = gcloud("--dry-run", WEBHOOK_MAX_INSTANCES="30")
    assert result.returncode == 2 and "refusing to deploy" in result.stderr and calls == []


def test_the_status_api_check_can_be_turned_off(gcloud):
    result, _ = gcloud("--dry-run", MIDTRANS_VERIFY_WITH_STATUS_API="false")
    assert result.returncode == 0 and "MIDTRANS_VERIFY_WITH_STATUS_API=false" in result.stdout


def test_settings_from_a_config_file(gcloud, tmp_path):
    config = tmp_path / "deploy.env"
    config.write_text("REGION=europe-west1\nCONCURRENCY=4\n")
    result, _ = gcloud("--dry-run", "--config", str(config))
    assert "--region=europe-west1" in result.stdout and "--concurrency=4" in result.stdout


def test_shellcheck_reports_nothing():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (.ci/run installs it)")
    result = subprocess.run(["shellcheck", str(REPO / "deploy.sh"), str(REPO / ".ci" / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def bundle_server(bundle, target, env):
    """Serve a staged bundle with nothing of the repo on the path: -S skips the editable
    install's .pth, so meeting_links can only come from the bundle itself."""
    site = sysconfig.get_paths()["purelib"]
    return FunctionServer(target, {**env, "PYTHONPATH": f"{bundle}:{site}"}, cwd=bundle,
                          command=[sys.executable, "-S", "-m", "functions_framework", "--target", target,
                                   "--source", "main.py", "--host", "127.0.0.1"])


def test_each_staged_bundle_serves_from_its_own_folder(gcloud, conn, database_url, tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    result, _ = gcloud("--dry-run", STAGE_DIR=str(stage))
    assert result.returncode == 0
    for target in ("assign_meeting_link", "midtrans_webhook"):
        bundle = stage / target
        assert sorted(p.name for p in bundle.iterdir()) == [".gcloudignore", "main.py", "meeting_links",
                                                            "requirements.txt"]
        assert not any(p.is_symlink() for p in bundle.rglob("*"))
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


def test_link_events_settings_reach_both_functions(gcloud, database_url):
    gcloud.add_secret("link-events-secret", "whsec_c2VjcmV0")
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url, LINK_EVENTS_URL="https://app.example.com/hooks/links",
                           LINK_EVENTS_SECRET_NAME="link-events-secret")
    assert result.returncode == 0, result.stderr
    for deployed in commands(calls, "functions", "deploy"):
        assert "LINK_EVENTS_URL=https://app.example.com/hooks/links" in flag(deployed, "set-env-vars")
        assert flag(deployed, "set-secrets").endswith(",LINK_EVENTS_SECRET=link-events-secret:1")
    readers = [flag(c, "member") for c in commands(calls, "secrets", "add-iam-policy-binding") if "link-events-secret" in c]
    assert len(readers) == 2
