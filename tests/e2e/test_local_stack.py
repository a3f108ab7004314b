"""The README's run command: `meeting-links local` creates the database, migrates, serves both
functions wired to each other, and prints curl commands that work."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pg8000.native
import pytest
import requests

from meeting_links.db import embedded
from support import REPO, connect, free_port, notification

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http

LOCAL_KEY = "SB-Mid-server-LOCAL-DEVELOPMENT-ONLY"


def wait_for(port, proc, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "local stack exited"
        if embedded.answers(port):
            return
        time.sleep(0.2)
    raise AssertionError("local stack did not start")


# --- stopping: Ctrl-C in the terminal reaches the whole process group --------------------------

def session_members(sid: int) -> list[int]:
    """Processes whose session is sid (the stack and everything it started, as a terminal sees)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.fixture
def local_stack(database_url, tmp_path):
    """start(**env) runs `meeting-links local` in a session of its own, as a terminal would."""
    name = f"meeting_links_local_{uuid.uuid4().hex[:8]}"
    started = []

    def start(**extra):
        ports = {"WEBHOOK_PORT": free_port(), "ASSIGN_PORT": free_port(), "EVENTS_PORT": free_port(),
                 "MEET_FAKE_PORT": free_port()}
        env = {k: v for k, v in os.environ.items() if k not in ("MIDTRANS_SERVER_KEY", "INTERNAL_API_TOKEN")}
        env.update(DATABASE_URL=database_url.rsplit("/", 1)[0] + "/" + name, **{k: str(v) for k, v in ports.items()})
        args = extra.pop("args", [])
        env.update(extra)
        log = (tmp_path / f"local-{len(started)}.log").open("w+")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "meeting-links"), "local", *args], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        wait_for(ports["WEBHOOK_PORT"], proc)
        wait_for(ports["ASSIGN_PORT"], proc)
        proc.ports, proc.log, proc.database_url = ports, log, env["DATABASE_URL"]
        deadline = time.monotonic() + 30
        while "--send http://127.0.0.1:" not in Path(log.name).read_text():  # the banner is out
            assert time.monotonic() < deadline and proc.poll() is None, Path(log.name).read_text()
            time.sleep(0.05)
        return proc
    yield start
    for proc in started:  # a failed test's stack: stopped as Ctrl-C would, then killed
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        proc.wait()
        proc.log.close()
    conn = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres", port=_port(database_url))
    conn.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    conn.run(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def _port(url: str) -> int:
    from urllib.parse import urlparse
    return urlparse(url).port or 5432


def stopped_cleanly(proc, how) -> str:
    how(proc)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_members(proc.pid) == [], "a process outlived the stack"
    assert not any(embedded.answers(port) for port in proc.ports.values()), "a port is still served"
    proc.log.seek(0)
    output = proc.log.read()
    assert output.rstrip().endswith("stopped") and "error" not in output.lower().split("stopped")[-1]
    return output


def test_local_stack_from_nothing_to_an_assigned_link_then_ctrl_c(local_stack):
    proc = local_stack()
    conn = connect(proc.database_url)
    conn.run("INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
             " duration, price, order_id) VALUES ('u1','e1','Konsultasi','2030-01-06','14:00',60,100000,'ORDER-1')")
    conn.close()
    webhook = f"http://127.0.0.1:{proc.ports['WEBHOOK_PORT']}/"
    r = requests.post(webhook, json=notification("ORDER-1", key=LOCAL_KEY), timeout=10)
    assert r.status_code == 200 and r.json()["meetingLink"] == "https://meet.google.com/kcw-ebey-pqu", r.text
    # Ctrl-C in the terminal: SIGINT to the whole process group, after a little traffic.
    output = stopped_cleanly(proc, lambda p: os.killpg(p.pid, signal.SIGINT))
    name = proc.database_url.rsplit("/", 1)[1]
    assert f"created database {name}" in output and "applied 0001_pool_and_bookings.sql" in output
    assert f"meeting-links sign ORDER-1 --status settlement --send {webhook}" in output


def test_ctrl_c_to_the_process_group_or_a_sigterm_stops_everything_every_time(local_stack):
    # `make drill` repeats Ctrl-C 20 times (STOP_REPEATS); a normal test run does it once, in
    # the test above, and here a SIGTERM (`kill`, `timeout 8 make run`): an ordinary stop too.
    for _ in range(int(os.environ.get("STOP_REPEATS", "1")) - 1):
        proc = local_stack()
        requests.get(f"http://127.0.0.1:{proc.ports['WEBHOOK_PORT']}/", timeout=10)  # a little traffic first
        stopped_cleanly(proc, lambda p: os.killpg(p.pid, signal.SIGINT))
    output = stopped_cleanly(local_stack(), lambda p: p.send_signal(signal.SIGTERM))
    assert "a function stopped" not in output


def test_local_with_the_fake_google_gives_private_spaces_and_dies_with_its_stack(local_stack):
    proc = local_stack(args=["--fake-meet"])
    proc.log.seek(0)
    assert f"127.0.0.1:{proc.ports['MEET_FAKE_PORT']}" in proc.log.read()
    cli = str(Path(sys.executable).parent / "meeting-links")
    env = {k: v for k, v in os.environ.items() if k != "MIDTRANS_SERVER_KEY"}
    env["DATABASE_URL"] = proc.database_url
    made = subprocess.run([cli, "bookings", "create", "--date", "2030-03-03", "--time", "10:00", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    order_id = json.loads(made.stdout)[0]["orderId"]
    sent = subprocess.run([cli, "sign", order_id, "--send", f"http://127.0.0.1:{proc.ports['WEBHOOK_PORT']}/"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0 and "HTTP 200" in sent.stdout, sent.stdout + sent.stderr
    answer = json.loads(sent.stdout.split("\n", 1)[1])
    assert answer["source"] == "meet" and answer["meetingLink"].startswith("https://meet.google.com/")
    # kill -9 gives the stack no chance to stop its functions (they run in sessions of their
    # own): they must not live on holding the ports.
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    assert len(children) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{c}").exists() for c in children) or embedded.answers(proc.ports["WEBHOOK_PORT"]) \
            or embedded.answers(proc.ports["ASSIGN_PORT"]):
        assert time.monotonic() < deadline, "a function outlived the stack killed outright"
        time.sleep(0.05)


def test_make_run_with_the_embedded_postgres_stops_it_on_ctrl_c_and_reuses_its_data(tmp_path, folder):
    """Issue 19: DATABASE_URL=embedded starts a private PostgreSQL for the run (in a folder of
    its own here), Ctrl-C stops it with everything else, and the next run finds the data."""
    data = folder(0o755) / "postgres"
    env = {k: v for k, v in os.environ.items() if k not in ("MIDTRANS_SERVER_KEY", "INTERNAL_API_TOKEN")}
    env.update(DATABASE_URL="embedded", EMBEDDED_POSTGRES_DIR=str(data))
    cli = str(Path(sys.executable).parent / "meeting-links")
    order_ids = []
    try:
        for run in range(2):
            ports = {"WEBHOOK_PORT": free_port(), "ASSIGN_PORT": free_port(), "EVENTS_PORT": free_port()}
            run_env = {**env, **{k: str(v) for k, v in ports.items()}}
            with (tmp_path / f"run-{run}.log").open("w") as log:
                proc = subprocess.Popen([cli, "local"], env=run_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            try:
                wait_for(ports["WEBHOOK_PORT"], proc, timeout=90)
                made = subprocess.run([cli, "bookings", "create", "--date", "2030-03-03", "--time", f"1{run}:00", "--json"],
                                      env=run_env, capture_output=True, text=True, timeout=60)
                assert made.returncode == 0, made.stderr
                order_ids.append(json.loads(made.stdout)[0]["orderId"])
                if run == 1:  # the first run's booking is still there
                    shown = subprocess.run([cli, "bookings", "show", order_ids[0]], env=run_env, capture_output=True,
                                           text=True, timeout=60)
                    assert shown.returncode == 0, shown.stderr
                pid_file = data / "data" / "postmaster.pid"
                postgres_pid = int(pid_file.read_text().split()[0])
            finally:
                with contextlib.suppress(ProcessLookupError):  # a run that died: let its own failure show
                    os.killpg(proc.pid, signal.SIGINT)
                code = proc.wait(timeout=60)
            output = (tmp_path / f"run-{run}.log").read_text()
            assert code == 0 and output.rstrip().endswith("stopped"), output
            assert f"using the embedded PostgreSQL in {data}" in output and "make clean-db" in output
            deadline = time.monotonic() + 15
            while Path(f"/proc/{postgres_pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not Path(f"/proc/{postgres_pid}").exists(), "the embedded PostgreSQL outlived make run"
            assert not pid_file.exists()
    finally:
        embedded.Server(data).stop()  # whatever a failed run left behind


# --- README's command blocks, run as written --------------------------------------------------

def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith("sh\n")]


def test_every_readme_command_block_is_one_a_test_runs():
    blocks = readme_blocks()
    assert len(blocks) == 2  # "Trying it" and serving one function alone: both run below
    table = (REPO / "README.md").read_text().split("## The two commands", 1)[1].split("##", 1)[0]
    assert "`make run`" in table and "`make test`" in table  # CI runs the one, the stack tests the other
    makefile = (REPO / "Makefile").read_text()
    assert "\t$(BIN)/meeting-links local\n" in makefile and "-m pytest" in makefile


def test_the_readme_try_it_block_runs_as_written(local_stack):
    proc = local_stack()
    env = {k: v for k, v in os.environ.items() if k != "MIDTRANS_SERVER_KEY"}
    env.update(DATABASE_URL=proc.database_url, WEBHOOK_PORT=str(proc.ports["WEBHOOK_PORT"]))
    block = readme_blocks()[0]
    assert "meeting-links bookings create" in block and "sign ORDER-1 --send" in block
    for line in block.strip().splitlines():
        done = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        if "bookings show" in line:
            assert "https://meet.google.com/" in done.stdout  # paid, and holding its link
    stopped_cleanly(proc, lambda p: os.killpg(p.pid, signal.SIGINT))


def test_the_readme_way_to_serve_one_function_alone(database_url):
    [line] = readme_blocks()[1].strip().splitlines()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "ASSIGN_PORT": str(port)}
    proc = subprocess.Popen(["bash", "-c", line], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(port, proc)
        r = requests.post(f"http://127.0.0.1:{port}/", json={"sweep": True},
                          headers={"Authorization": "Bearer dev-token"}, timeout=20)
        assert r.status_code == 200 and r.json()["success"] is True
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
