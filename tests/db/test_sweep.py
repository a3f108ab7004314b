"""Every paid booking is reached: the sweep walks past bookings that stay waiting, freed links
are handed over from every path, and payments whose notification was lost are found with
Midtrans's GET Status API."""
import time

import pytest

from meeting_links import allocation, config, sweep
from meeting_links.errors import PoolExhausted
from support import INTERNAL_TOKEN, SERVER_KEY, booking, open_payment, paid

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}



def sweep_waiting(db, budget_s):
    """The sweep's waiting stage alone, with the pool as the link source."""
    return sweep.serve_waiting(db, config.from_environment({}), time.monotonic() + budget_s)


def block_slot(conn, count: int, *, date="2030-01-07", time="10:00"):
    """`count` paid bookings without a link in one slot, paid before anything else."""
    conn.run(
        "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time, duration,"
        " price, payment_status, status, order_id, paid_at)"
        " SELECT 'u', 'e', 'K', CAST(:d AS date), CAST(:t AS time), 60, 100000, 'paid', 'confirmed',"
        " 'BLOCKED-' || i || '-x', now() - interval '1 day' + make_interval(secs => i)"
        " FROM generate_series(1, :n) AS i", d=date, t=time, n=count)


# --- 1. sweep starvation -------------------------------------------------------------------

def test_the_sweep_reaches_a_booking_behind_more_than_500_that_stay_waiting(conn, db, set_links):
    link = set_links(1)[0]
    holder = paid(conn, time="10:00")
    allocation.assign(db, holder["id"])
    block_slot(conn, 510)                    # the 10:00 slot is full: they all stay waiting
    behind = paid(conn, time="16:00")        # paid last, in a slot where the link is free
    result = sweep_waiting(db, budget_s=60)
    assert result.complete and (result.assigned, result.waiting) == (1, 510)
    assert booking(conn, behind["id"])["link_id"] == link


def test_a_sweep_out_of_time_leaves_off_where_the_next_goes_on(conn, db, set_links):
    set_links(1)
    allocation.assign(db, paid(conn, time="10:00")["id"])
    block_slot(conn, 300)
    behind = paid(conn, time="16:00")
    first = sweep_waiting(db, budget_s=0.05)
    assert not first.complete and first.assigned == 0
    point = conn.run("SELECT resume_after_id::text FROM sweep_progress")[0][0]
    assert point is not None
    for _ in range(200):  # each sweep goes on from the last one's point, never from the head again
        if booking(conn, behind["id"])["link_id"]:
            break
        sweep_waiting(db, budget_s=0.05)
    assert booking(conn, behind["id"])["link_id"] is not None
    # Once a sweep has been all the way round, it starts from the head again.
    assert sweep_waiting(db, budget_s=60).complete
    assert conn.run("SELECT resume_after_id FROM sweep_progress") == [[None]]


def test_moving_a_booking_by_hand_hands_the_link_it_left_to_a_waiting_booking(conn, db, set_links, admin):
    first = set_links(1)[0]
    mover = paid(conn, time="10:00")
    allocation.assign(db, mover["id"])
    waiter = paid(conn, time="10:30")
    with pytest.raises(PoolExhausted):
        allocation.assign(db, waiter["id"])
    # a second link inserted the seed's way: no hand-over of its own
    second = str(conn.run("INSERT INTO meeting_links_pool (meeting_link, created_at) VALUES"
                          " ('https://meet.google.com/second-link', now() + interval '1 hour') RETURNING id")[0][0])
    row = admin.json("bookings", "assign", mover["id"], "--link", second)[0]
    assert row["movedFrom"] == "https://meet.google.com/test-link-01"
    assert row["waitingBookingsServed"] == [{"bookingId": waiter["id"], "meetingLink": "https://meet.google.com/test-link-01"}]
    assert booking(conn, waiter["id"])["link_id"] == first
    assert booking(conn, mover["id"])["link_id"] == second


def test_a_link_freed_in_psql_reaches_a_waiting_booking_at_the_next_sweep(conn, db, set_links):
    link = set_links(1)[0]
    allocation.assign(db, paid(conn, time="10:00")["id"])
    block_slot(conn, 505)
    holder = paid(conn, time="16:00")
    allocation.assign(db, holder["id"])
    waiter = paid(conn, time="16:30")
    with pytest.raises(PoolExhausted):
        allocation.assign(db, waiter["id"])
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = :i", i=holder["id"])
    sweep_waiting(db, budget_s=60)
    assert booking(conn, waiter["id"])["link_id"] == link


# --- 3. lost notifications: the sweep asks the GET Status API --------------------------------

def settings_for(database_url, midtrans, **env):
    return config.from_environment({"DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                    "MIDTRANS_API_BASE_URL": midtrans.server.url, **env})


def test_status_checks_are_bounded_per_sweep_and_reach_every_booking_in_turn(conn, db, midtrans, database_url):
    bookings = [open_payment(conn, 30 + i) for i in range(5)]
    settings = settings_for(database_url, midtrans, RECONCILE_MAX_CALLS="2")
    asked = []
    for _ in range(3):
        before = len(midtrans.server.requests)
        sweep.run(db, settings)
        asked.append(len(midtrans.server.requests) - before)
    assert asked == [2, 2, 1]
    assert sorted(midtrans.orders_asked()) == sorted(b["order_id"] for b in bookings)
    assert all(booking(conn, b["id"])["payment_status"] == "pending" for b in bookings)  # all 404
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]


def test_a_failing_status_api_leaves_bookings_as_they_are(conn, db, midtrans, database_url, set_links):
    set_links(1)
    waiting_for_link = paid(conn)
    pending = [open_payment(conn, 30) for _ in range(3)]
    midtrans.fail = True
    result = sweep.run(db, settings_for(database_url, midtrans))
    assert len(midtrans.server.requests) == 3           # three failures in a row end the round
    # Each failed one is marked asked, so it goes to the back of the queue, not first forever.
    assert result.payments_checked == 3 and result.assigned == 1   # the rest of the sweep still ran
    assert booking(conn, waiting_for_link["id"])["link_id"]
    assert all(booking(conn, b["id"])["payment_status"] == "pending" for b in pending)
    assert conn.run("SELECT count(*) FROM bookings WHERE payment_checked_at IS NOT NULL") == [[3]]
    assert result.incomplete == ("payments",)


def test_one_payment_whose_check_fails_does_not_hide_a_settled_one_behind_it(conn, db, midtrans, database_url):
    """The oldest open payment's status call failing (a 500, or an answer for another order)
    is that payment's problem: a newer, settled payment is still recorded, this sweep."""
    broken, other_order, settled = open_payment(conn, 90), open_payment(conn, 60), open_payment(conn, 30)
    midtrans.failing.add(broken["order_id"])
    midtrans.settle(other_order["order_id"])
    midtrans.statuses[other_order["order_id"]]["order_id"] = "SOMEONE-ELSE"
    midtrans.settle(settled["order_id"])
    result = sweep.run(db, settings_for(database_url, midtrans))
    assert (result.payments_checked, result.payments_recorded) == (3, 1)
    assert booking(conn, settled["id"])["payment_status"] == "paid"
    assert booking(conn, broken["id"])["payment_status"] == booking(conn, other_order["id"])["payment_status"] == "pending"
    # Asked again next time, after the others: not first forever.
    again = [r[0] for r in conn.run("SELECT order_id FROM bookings WHERE payment_checked_at IS NOT NULL ORDER BY 1")]
    assert sorted(again) == sorted([broken["order_id"], other_order["order_id"], settled["order_id"]])


def test_no_server_key_means_no_status_checks(conn, db, midtrans, database_url):
    open_payment(conn, 30)
    sweep.run(db, settings_for(database_url, midtrans, MIDTRANS_SERVER_KEY=""))
    assert midtrans.server.requests == []


def test_a_status_api_payment_of_the_wrong_amount_is_rejected_not_applied(conn, db, midtrans, database_url):
    b = open_payment(conn, 30)
    midtrans.settle(b["order_id"], amount="1.00")
    assert sweep.run(db, settings_for(database_url, midtrans)).payments_recorded == 0
    assert booking(conn, b["id"])["payment_status"] == "pending"
    assert conn.run("SELECT outcome, source FROM payment_notifications") == [["rejected", "status_api"]]


def test_a_payment_still_pending_at_midtrans_writes_no_log_row(conn, db, midtrans, database_url):
    b = open_payment(conn, 30)
    midtrans.settle(b["order_id"], status="pending")
    midtrans.statuses[b["order_id"]]["status_code"] = "201"
    sweep.run(db, settings_for(database_url, midtrans))
    assert len(midtrans.server.requests) == 1
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[0]]
    assert booking(conn, b["id"])["payment_status"] == "pending"
