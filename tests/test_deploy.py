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

    def deploy(*args, **env):
        full_env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_GCLOUD_STATE": str(state),
                    "PROJECT_ID": "demo-project", "MIGRATE": f"{sys.executable} -m meeting_links.cli migrate", **env}
        (state / "calls.jsonl").write_text("")
        result = subprocess.run(["bash", str(REPO / "deploy.sh"), *args], env=full_env, capture_output=True,
                                text=True, timeout=120)
        calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
        return result, calls
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
    assert flag(webhook, "set-secrets") == ("DB_PASS=meeting-links-db-password:latest,"
                                           "MIDTRANS_SERVER_KEY=midtrans-server-key:latest")
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

    again, calls = gcloud(DEPLOY_DATABASE_URL=database_url)
    assert again.returncode == 0, again.stderr
    assert commands(calls, "functions", "deploy") == []
    assert commands(calls, "iam", "service-accounts", "create") == []
    assert commands(calls, "scheduler", "jobs", "create") == []
    assert "is up to date" in again.stdout and "database is up to date" in again.stdout


def test_meet_credentials_go_to_the_assign_function_only(gcloud, database_url):
    result, calls = gcloud(DEPLOY_DATABASE_URL=database_url, LINK_SOURCE="meet_then_pool",
                           MEET_CREDENTIALS_SECRET="meet-credentials", MEET_IMPERSONATE_USER="bookings@example.com",
                           MEET_ACCESS_TYPE="OPEN")
    assert result.returncode == 0, result.stdout + result.stderr
    assign, webhook = commands(calls, "functions", "deploy")
    assert flag(assign, "set-secrets").endswith(",MEET_CREDENTIALS=meet-credentials:latest")
    assert "MEET_CREDENTIALS" not in flag(webhook, "set-secrets")
    env = flag(assign, "set-env-vars")
    for setting in ("LINK_SOURCE=meet_then_pool", "MEET_ACCESS_TYPE=OPEN", "MEET_ENTRY_POINT_ACCESS=ALL",
                    "MEET_IMPERSONATE_USER=bookings@example.com"):
        assert setting in env
    readers = [flag(c, "member") for c in commands(calls, "secrets", "add-iam-policy-binding") if "meet-credentials" in c]
    assert readers == ["serviceAccount:meeting-links-assign@demo-project.iam.gserviceaccount.com"]


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


def bundle_server(target, env):
    """Serve a staged bundle with nothing of the repo on the path: -S skips the editable
    install's .pth, so meeting_links can only come from the bundle itself."""
    bundle = REPO / ".deploy" / target
    site = sysconfig.get_paths()["purelib"]
    return FunctionServer(target, {**env, "PYTHONPATH": f"{bundle}:{site}"}, cwd=bundle,
                          command=[sys.executable, "-S", "-m", "functions_framework", "--target", target,
                                   "--source", "main.py", "--host", "127.0.0.1"])


def test_each_staged_bundle_serves_from_its_own_folder(gcloud, conn, database_url):
    result, _ = gcloud("--dry-run")
    assert result.returncode == 0
    for target in ("assign_meeting_link", "midtrans_webhook"):
        bundle = REPO / ".deploy" / target
        assert sorted(p.name for p in bundle.iterdir()) == [".gcloudignore", "main.py", "meeting_links",
                                                            "requirements.txt"]
        assert not any(p.is_symlink() for p in bundle.rglob("*"))
    assign = bundle_server("assign_meeting_link", {"DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN})
    with running(assign):
        webhook = bundle_server("midtrans_webhook", {
            "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
            "MIDTRANS_SERVER_KEY": SERVER_KEY, "ASSIGN_MEETING_LINK_URL": assign.url})
        with running(webhook):
            b = insert_booking(conn)
            r = webhook.post(notification(b["order_id"]))
            assert r.status_code == 200 and r.json()["meetingLink"], r.text + webhook.output()
    assert booking(conn, b["id"])["link_id"]
