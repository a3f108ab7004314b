"""Time and the pool, and the answers: a buffer that leaves past sessions alone, disable and
assign serialized on the link, and answers that say what support and the app need."""
import json
import threading

import pg8000.exceptions
import pytest

from meeting_links import allocation
from support import INTERNAL_TOKEN, booking, connect, paid, wait_until_blocked_by

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


# --- 11. the buffer applies to sessions that have not ended ---------------------------------

def test_a_buffer_can_be_turned_on_over_a_history_of_back_to_back_sessions(conn, db, set_links):
    link = set_links(1)[0]
    past = [paid(conn, date="2024-03-04", time=t) for t in ("10:00", "11:00")]
    for b in past:
        conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=b["id"])
    ranges_before = conn.run("SELECT id::text, link_hold::text FROM bookings ORDER BY id")
    conn.run("SELECT configure_pool('Asia/Jakarta', 15)")
    assert conn.run("SELECT id::text, link_hold::text FROM bookings ORDER BY id") == ranges_before
    # A refund of a past session leaves its range alone too.
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = :i", i=past[0]["id"])
    # Sessions to come get the buffer: back to back on one link is now an overlap.
    first = paid(conn, date="2030-01-07", time="10:00")
    allocation.assign(db, first["id"])
    assert conn.run("SELECT upper(link_hold) - lower(link_hold) FROM bookings WHERE id = :i",
                    i=first["id"])[0][0].total_seconds() == 75 * 60
    second = paid(conn, date="2030-01-07", time="11:00")
    with pytest.raises(allocation.PoolExhausted):
        allocation.assign(db, second["id"])


def test_a_buffer_that_would_overlap_sessions_to_come_is_still_refused(conn, set_links):
    link = set_links(1)[0]
    for t in ("10:00", "11:00"):
        b = paid(conn, date="2030-01-07", time=t)
        conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=b["id"])
    with pytest.raises(pg8000.exceptions.DatabaseError, match="bookings_no_overlapping_link_use"):
        conn.run("SELECT configure_pool('Asia/Jakarta', 15)")


# --- 12. disable and assign serialize on the link --------------------------------------------

def test_an_assignment_waiting_on_a_disable_sees_it_and_is_refused(conn, database_url, set_links):
    link = set_links(1)[0]
    b = paid(conn)
    disabler, assigner = connect(database_url), connect(database_url)
    try:
        disabler.run("BEGIN")
        disabler.run("UPDATE meeting_links_pool SET is_available = false WHERE id = CAST(:l AS uuid)", l=link)
        outcome = {}

        def assign_by_hand():
            try:
                assigner.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=b["id"])
                outcome["result"] = "assigned"
            except pg8000.exceptions.DatabaseError as exc:
                outcome["result"] = str(exc)
        thread = threading.Thread(target=assign_by_hand)
        thread.start()
        wait_until_blocked_by(disabler, conn)
        assert thread.is_alive(), "the assignment must wait for the disable to commit"
        disabler.run("COMMIT")
        thread.join(5)
    finally:
        disabler.close()
        assigner.close()
    assert "is disabled and cannot be assigned" in outcome["result"]
    assert booking(conn, b["id"])["link_id"] is None


def test_a_disable_waits_for_an_assignment_in_flight_and_lists_it(conn, database_url, set_links, admin):
    link = set_links(1)[0]
    b = paid(conn)
    assigner = connect(database_url)
    try:
        assigner.run("BEGIN")
        assigner.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=b["id"])
        result = {}
        thread = threading.Thread(target=lambda: result.update(zip(("code", "out", "err"),
                                                                   admin("links", "disable", link, "--json"))))
        thread.start()
        wait_until_blocked_by(assigner, conn)
        assert thread.is_alive(), "the disable must wait for the assignment to commit"
        assigner.run("COMMIT")
        thread.join(5)
    finally:
        assigner.close()
    assert result["code"] == 0, result["err"]
    row = json.loads(result["out"])[0]
    assert row["enabled"] is False
    assert [s["bookingId"] for s in row["upcomingSessions"]] == [b["id"]]


def test_links_disable_lists_every_upcoming_session_it_holds(conn, db, set_links, admin):
    link = set_links(1)[0]
    upcoming = [paid(conn, time=t) for t in ("09:00", "11:00", "13:00")]
    for b in upcoming:
        allocation.assign(db, b["id"])
    code, out, _ = admin("links", "disable", link)
    assert code == 0
    assert "3 upcoming session(s) still hold it" in out
    for b in upcoming:
        assert b["id"] in out and b["order_id"] in out


# --- 13. answers -----------------------------------------------------------------------------

def test_bookings_waiting_shows_sessions_that_have_not_ended_unless_all(conn, admin):
    past, coming = paid(conn, date="2020-01-01"), paid(conn, date="2030-01-07")
    code, out, _ = admin("bookings", "waiting")
    assert code == 0 and coming["id"] in out and past["id"] not in out
    code, out, _ = admin("bookings", "waiting", "--all")
    assert code == 0 and coming["id"] in out and past["id"] in out
