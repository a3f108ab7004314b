"""Allocation through the shared library, against the real database."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from meeting_links import allocation, config, sweep
from meeting_links.errors import BookingNotFound, BookingNotPaid, PoolExhausted
from support import booking, insert_booking, paid


def sweep_waiting(db, budget_s):
    """The sweep's waiting stage alone, with the pool as the link source."""
    return sweep.serve_waiting(db, config.from_environment({}), time.monotonic() + budget_s)


def test_first_free_link_in_stable_order_then_the_next(conn, db, seed_links):
    a, b, c = (paid(conn)["id"] for _ in range(3))
    got = [allocation.assign(db, x).meeting_link for x in (a, b, c)]
    assert got == [link["meeting_link"] for link in seed_links]


def test_assigning_twice_returns_the_same_link(conn, db):
    b = paid(conn)["id"]
    first = allocation.assign(db, b)
    again = allocation.assign(db, b)
    assert (again.link_id, again.already_assigned, first.already_assigned) == (first.link_id, True, False)


def test_exhausted_pool_marks_the_booking_for_manual_assignment(conn, db, capsys):
    for _ in range(3):
        allocation.assign(db, paid(conn)["id"])
    fourth = paid(conn)["id"]
    with pytest.raises(PoolExhausted):
        allocation.assign(db, fourth)
    state = booking(conn, fourth)
    assert state["needs_manual_link"] is True and state["link_id"] is None
    assert '"severity": "ERROR"' in capsys.readouterr().err
    # Later in the day the pool is free again.
    later = paid(conn, time="15:00")["id"]
    assert allocation.assign(db, later).meeting_link == "https://meet.google.com/kcw-ebey-pqu"


def test_never_a_link_for_an_unpaid_or_unknown_booking(conn, db):
    for payment_status, status in [("pending", "pending"), ("refunded", "cancelled"), ("paid", "cancelled")]:
        b = insert_booking(conn, payment_status=payment_status, status=status)["id"]
        with pytest.raises(BookingNotPaid):
            allocation.assign(db, b)
        assert booking(conn, b)["link_id"] is None
    with pytest.raises(BookingNotFound):
        allocation.assign(db, "00000000-0000-0000-0000-000000000000")


def test_disabled_links_are_skipped(conn, db, seed_links):
    conn.run("UPDATE meeting_links_pool SET is_available = false WHERE id = :i", i=seed_links[0]["id"])
    assert allocation.assign(db, paid(conn)["id"]).link_id == seed_links[1]["id"]


def test_concurrent_assignments_in_one_slot_never_share_a_link(conn, db, set_links):
    links = set_links(5)
    ids = [paid(conn)["id"] for _ in range(40)]

    def attempt(booking_id):
        try:
            return allocation.assign(db, booking_id).link_id
        except PoolExhausted:
            return None

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, ids))
    given = [r for r in results if r]
    assert sorted(given) == sorted(links)
    assert conn.run("SELECT count(*) FROM bookings WHERE needs_manual_link") == [[35]]


def test_hand_over_gives_freed_ranges_to_the_oldest_payment_first(conn, db, set_links):
    set_links(1)
    holder = paid(conn)["id"]
    allocation.assign(db, holder)
    older, newer = paid(conn)["id"], paid(conn)["id"]
    conn.run("UPDATE bookings SET paid_at = now() - interval '1 hour' WHERE id = :i", i=older)
    for b in (newer, older):
        with pytest.raises(PoolExhausted):
            allocation.assign(db, b)
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = :i", i=holder)
    swept = allocation.hand_over(db, budget_s=5)
    assert (swept.assigned, swept.waiting) == (1, 1)
    assert booking(conn, older)["link_id"] is not None and booking(conn, newer)["link_id"] is None


def test_hand_over_and_sweep_leave_sessions_that_already_ended(conn, db):
    past = paid(conn, date="2020-01-01")["id"]
    assert allocation.hand_over(db, budget_s=5).assigned == 0
    assert sweep_waiting(db, budget_s=5).assigned == 0
    assert booking(conn, past)["link_id"] is None
