"""A small failure drill in the normal run (the full one: python -m benchmarks.drill)."""
import pytest

from benchmarks.drill import replay, run_drill

# Runs real servers or processes: the `http` layer (see conftest.py).
pytestmark = pytest.mark.http


def test_replay_model():
    assert replay([("pending", None, "t", "applied"), ("settlement", None, "t", "applied")]) == "paid"
    assert replay([("settlement", None, "t", "applied"), ("deny", None, "t", "applied"),
                   ("settlement", None, "t", "duplicate")]) == "failed"
    assert replay([("settlement", None, "t", "applied"), ("expire", None, "t", "stale")]) == "paid"


def test_small_drill_loses_nothing_and_double_books_nothing(database_url):
    report = run_drill(database_url, bookings=60, notifications=240, links=6, concurrency=12,
                       restart_postgres=False, outage_s=1.5, seed=11)
    summary = report.as_dict()
    assert report.backends_terminated > 0 and report.assign_outage_s > 0, summary
    assert report.state_mismatches == [], summary
    assert report.double_bookings == 0 and report.still_failing == 0, summary
    assert report.paid_without_link_that_fit == [], summary
    assert report.final_states["paid"] > 0, summary
