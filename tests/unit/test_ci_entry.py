""".ci/run against stand-ins for the PostgreSQL tools and make: a cluster that is still
starting (pg_isready says no, pg_ctlcluster says "already running" with exit 2) is waited for,
not a failure; one that never comes up is a clear failure before any test runs."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).parents[2]


def stand_ins(tmp_path, not_ready_answers):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        # Answers "not ready" for the first N calls, then "ready" (N < 0: never ready).
        "pg_isready": f"""n=$(cat {tmp_path}/isready 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/isready
                          [ {not_ready_answers} -ge 0 ] && [ "$n" -ge {not_ready_answers} ]""",
        "pg_ctlcluster": 'echo "Cluster is already running."; exit 2',
        "make": f'echo "$*" >> {tmp_path}/make.log',
        "shellcheck": "exit 0",
        "sleep": "exit 0",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}


def run_ci(env):
    return subprocess.run(["bash", str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)


def test_a_cluster_still_starting_is_waited_for(tmp_path):
    done = run_ci(stand_ins(tmp_path, not_ready_answers=3))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "waiting for PostgreSQL anyway" in done.stdout
    assert (tmp_path / "make.log").read_text().splitlines() == ["lint", "test", "test-e2e", "test"]


def test_a_cluster_that_never_comes_up_stops_ci_with_a_reason(tmp_path):
    done = run_ci(stand_ins(tmp_path, not_ready_answers=-1))
    assert done.returncode == 1
    assert "does not accept connections" in done.stderr
    assert not (tmp_path / "make.log").exists()
