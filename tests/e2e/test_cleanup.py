"""Issue 18.3: a test that fails, or gives up waiting, while it has servers and a database
leaves neither behind. A child pytest runs the probe below, which starts a function server
and fails; afterwards nothing it started is running and its database is gone."""
import os
import subprocess
import sys
import time
from pathlib import Path

from support import INTERNAL_TOKEN, REPO, FunctionServer, connect


def probe_that_fails_with_a_server_running(database_url):
    """Collected only by the child run below (python_functions=probe_*)."""
    server = FunctionServer("assign_meeting_link", {"DATABASE_URL": database_url,
                                                    "INTERNAL_API_TOKEN": INTERNAL_TOKEN}).start()
    print(f"PROBE pid={server.proc.pid} database={database_url.rsplit('/', 1)[1]}", flush=True)
    raise TimeoutError("gave up waiting for something")  # as a test that times out does


def test_a_failing_test_leaves_no_server_and_no_database(server_url):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "-o", "python_functions=probe_*", str(Path(__file__))], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TEST_POSTGRES_URL": server_url})
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    pid, database = (part.split("=", 1)[1] for part in line.split()[1:])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the failed test's server is still running"
    conn = connect(server_url)
    try:
        assert conn.run("SELECT count(*) FROM pg_database WHERE datname = :d", d=database) == [[0]]
    finally:
        conn.close()
