"""The benchmark command still runs and writes its report (smoke mode: every scenario, tiny sizes). The
figures themselves come from `make bench` and live in docs/benchmarks.md; nothing here
depends on how fast or busy the machine is: only on what the system must do at any speed."""
import json
import uuid

import pytest

from benchmarks import run
from support import connect

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http


def test_quick_benchmark_writes_a_report(server_url, tmp_path):
    name = f"meeting_links_bench_{uuid.uuid4().hex[:8]}"
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        assert run.main(["--smoke", "--database-url", url, "--out", str(tmp_path / "bench")]) == 0
        report = (tmp_path / "bench.md").read_text()
        data = json.loads((tmp_path / "bench.json").read_text())
    finally:
        conn = connect(server_url)
        conn.execute_simple(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        conn.execute_simple(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
    assert "| allocation p99 ≤ 3.0 ms (direct) |" in report and "## (d) Cold start" in report
    ours = [r for r in data["contention"] if r["strategy"] == "ours"]
    assert ours and all(r["double_bookings"] == 0 and r["assigned"] == min(r["concurrency"], r["links"])
                        for r in ours)
    assert all(r["double_bookings"] == 0 for r in data["many_slots"])
    # However slow the machine, once Midtrans's redeliveries and a sweep have run, every paid
    # booking of the end-to-end runs holds a link (the pool has room for all of them).
    assert all(r["links_after_sweep"] == r["requests"] for r in data["end_to_end"]), data["end_to_end"]
    # The scenarios ran direct and through the latency proxy, which adds about 1 ms a round
    # trip (end to end: through the proxy only, in smoke mode).
    for section in ("contention", "many_slots"):
        assert {r["proxy"] for r in data[section]} == {False, True}, section
    assert {r["proxy"] for r in data["end_to_end"]} == {True}
    assert data["round_trip"]["proxy"]["p50_ms"] >= data["round_trip"]["direct"]["p50_ms"] + 0.8
    # Meet scenario: every booking holds a link in the end, at most one space created for each.
    meet = data["meet"]
    assert meet["links_after_sweep"] == meet["bookings"]
    assert meet["private_spaces"] <= meet["spaces_created"] <= meet["bookings"]
