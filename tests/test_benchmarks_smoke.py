"""The benchmark command still runs and writes its report (quick mode, small sizes). The
figures themselves come from `make bench` and live in docs/benchmarks.md."""
import json
import uuid

import pg8000.native
import pytest

from benchmarks import run

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http


def test_quick_benchmark_writes_a_report(database_url, tmp_path):
    name = f"meeting_links_bench_{uuid.uuid4().hex[:8]}"
    url = database_url.rsplit("/", 1)[0] + "/" + name
    try:
        assert run.main(["--quick", "--database-url", url, "--out", str(tmp_path / "bench")]) == 0
        report = (tmp_path / "bench.md").read_text()
        data = json.loads((tmp_path / "bench.json").read_text())
    finally:
        conn = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
        conn.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
    assert "| allocation p99 ≤ 3.0 ms (direct) |" in report and "## (d) Cold start" in report
    ours = [r for r in data["contention"] if r["strategy"] == "ours"]
    assert ours and all(r["double_bookings"] == 0 and r["assigned"] == min(r["concurrency"], r["links"])
                        for r in ours)
    assert all(r["errors"] == 0 and r["links_assigned"] == r["requests"] for r in data["end_to_end"])
    # Every scenario ran direct and through the latency proxy, which adds about 1 ms a round trip.
    for section in ("contention", "many_slots", "end_to_end"):
        assert {r["proxy"] for r in data[section]} == {False, True}, section
    assert data["round_trip"]["proxy"]["p50_ms"] >= data["round_trip"]["direct"]["p50_ms"] + 0.8
    # Every booking of the Meet scenario got its own space, each created once, all within 5 s.
    meet = data["meet"]
    assert meet["errors"] == 0 and meet["within_5s_share"] == 1.0
    assert meet["private_spaces"] == meet["spaces_created"] == meet["bookings"]
