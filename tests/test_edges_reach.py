"""Every paid booking is reached: the sweep walks past bookings that stay waiting, freed links
are handed over from every path, and payments whose notification was lost are found with
Midtrans's GET Status API."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from meeting_links import allocation, config, sweep
from support import INTERNAL_TOKEN, SERVER_KEY, FakeServer, FunctionServer, booking, insert_booking

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def paid(conn, **kw):
    return insert_booking(conn, payment_status="paid", status="confirmed", **kw)


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
    result = allocation.sweep_waiting(db, budget_s=60)
    assert result.complete and (result.assigned, result.waiting) == (1, 510)
    assert booking(conn, behind["id"])["link_id"] == link


def test_a_sweep_out_of_time_leaves_off_where_the_next_goes_on(conn, db, set_links):
    set_links(1)
    allocation.assign(db, paid(conn, time="10:00")["id"])
    block_slot(conn, 300)
    behind = paid(conn, time="16:00")
    first = allocation.sweep_waiting(db, budget_s=0.05)
    assert not first.complete and first.assigned == 0
    point = conn.run("SELECT resume_after_id::text FROM sweep_progress")[0][0]
    assert point is not None
    for _ in range(200):  # each sweep goes on from the last one's point, never from the head again
        if booking(conn, behind["id"])["link_id"]:
            break
        allocation.sweep_waiting(db, budget_s=0.05)
    assert booking(conn, behind["id"])["link_id"] is not None
    # Once a sweep has been all the way round, it starts from the head again.
    assert allocation.sweep_waiting(db, budget_s=60).complete
    assert conn.run("SELECT resume_after_id FROM sweep_progress") == [[None]]


def test_concurrent_sweeps_count_only_the_links_each_gave(conn, assign_server, set_links):
    set_links(15)
    waiting = [paid(conn, time=f"{8 + i % 5:02d}:00") for i in range(15)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: assign_server.post({"sweep": True}, headers=AUTH), range(6)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["assigned"] for a in answers) == 15
    assert all(booking(conn, b["id"])["link_id"] for b in waiting)


# --- 2. freed links are handed over from every path ----------------------------------------

def test_moving_a_booking_by_hand_hands_the_link_it_left_to_a_waiting_booking(conn, db, set_links, admin):
    first = set_links(1)[0]
    mover = paid(conn, time="10:00")
    allocation.assign(db, mover["id"])
    waiter = paid(conn, time="10:30")
    with pytest.raises(allocation.PoolExhausted):
        allocation.assign(db, waiter["id"])
    # a second link inserted the seed's way: no hand-over of its own
    second = str(conn.run("INSERT INTO meeting_links_pool (meeting_link, created_at) VALUES"
                          " ('https://meet.google.com/second-link', now() + interval '1 hour') RETURNING id")[0][0])
    row = admin.json("bookings", "assign", mover["id"], "--link", second)[0]
    assert row["moved_from"] == "https://meet.google.com/test-link-01" and row["waiting_bookings_assigned"] == 1
    assert booking(conn, waiter["id"])["link_id"] == first
    assert booking(conn, mover["id"])["link_id"] == second


def test_a_link_freed_in_psql_reaches_a_waiting_booking_at_the_next_sweep(conn, db, set_links):
    link = set_links(1)[0]
    allocation.assign(db, paid(conn, time="10:00")["id"])
    block_slot(conn, 505)
    holder = paid(conn, time="16:00")
    allocation.assign(db, holder["id"])
    waiter = paid(conn, time="16:30")
    with pytest.raises(allocation.PoolExhausted):
        allocation.assign(db, waiter["id"])
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = :i", i=holder["id"])
    allocation.sweep_waiting(db, budget_s=60)
    assert booking(conn, waiter["id"])["link_id"] == link


# --- 3. lost notifications: the sweep asks the GET Status API --------------------------------

class FakeMidtrans:
    """Midtrans's GET /v2/{order_id}/status: answers from `statuses` (order_id -> body),
    404 for others; `fail` makes every call a 500."""

    def __init__(self):
        self.statuses, self.fail = {}, False
        self.server = FakeServer(self._handle)

    def _handle(self, method, path, headers, body):
        if self.fail:
            return 500, {"status_code": "500", "status_message": "internal error"}, {}
        order_id = path.split("/")[2]
        if order_id not in self.statuses:
            return 404, {"status_code": "404", "status_message": "Transaction doesn't exist."}, {}
        return 200, self.statuses[order_id], {}

    def settle(self, order_id, amount="100000.00", status="settlement"):
        self.statuses[order_id] = {
            "status_code": "200", "status_message": "Success, transaction is found",
            "transaction_id": f"tx-{order_id}", "order_id": order_id, "gross_amount": amount,
            "transaction_status": status, "fraud_status": "accept", "signature_key": "f" * 128}

    def orders_asked(self):
        return [r["path"].split("/")[2] for r in self.server.requests]


@pytest.fixture
def midtrans():
    fake = FakeMidtrans()
    with fake.server:
        yield fake


def settings_for(database_url, midtrans, **env):
    return config.from_environment({"DATABASE_URL": database_url, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                    "MIDTRANS_API_BASE_URL": midtrans.server.url, **env})


def open_payment(conn, minutes_old: int, **kw):
    b = insert_booking(conn, **kw)
    conn.run("UPDATE bookings SET created_at = now() - make_interval(mins => :m) WHERE id = :i",
             m=minutes_old, i=b["id"])
    return b


def test_the_sweep_records_a_payment_whose_notification_was_lost(conn, midtrans, database_url):
    lost = open_payment(conn, 20)
    too_new, too_old = open_payment(conn, 5), open_payment(conn, 25 * 60)
    for b in (lost, too_new, too_old):
        midtrans.settle(b["order_id"])
    server = FunctionServer("assign_meeting_link", {
        "DATABASE_URL": database_url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN, "MIDTRANS_SERVER_KEY": SERVER_KEY,
        "MIDTRANS_API_BASE_URL": midtrans.server.url}).start()
    try:
        r = server.post({"sweep": True}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["paymentsChecked"] == 1 and r.json()["paymentsRecorded"] == 1
        logs = server.log_entries()
    finally:
        server.stop()
    assert midtrans.orders_asked() == [lost["order_id"]]
    state = booking(conn, lost["id"])
    assert (state["payment_status"], state["status"]) == ("paid", "confirmed") and state["link_id"]
    assert booking(conn, too_new["id"])["payment_status"] == "pending"
    assert booking(conn, too_old["id"])["payment_status"] == "pending"
    assert conn.run("SELECT outcome, source, body ? 'signature_key' FROM payment_notifications") == [
        ["applied", "status_api", False]]
    assert any(e.get("source") == "status_api" and e["message"] == "notification recorded" for e in logs)
    assert midtrans.server.requests[0]["headers"]["Authorization"].startswith("Basic ")


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
    assert len(midtrans.server.requests) == 1           # the first failure ends the round
    assert result.payments_checked == 0 and result.assigned == 1   # the rest of the sweep still ran
    assert booking(conn, waiting_for_link["id"])["link_id"]
    assert all(booking(conn, b["id"])["payment_status"] == "pending" for b in pending)
    assert conn.run("SELECT count(*) FROM bookings WHERE payment_checked_at IS NOT NULL") == [[0]]


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
