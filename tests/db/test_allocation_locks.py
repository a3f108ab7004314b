"""assign_link_v2 locks the time a booking needs, not the links (lock_link_hold_v1): only
allocations whose ranges overlap take turns, nobody waits behind an unrelated writer, and the
number of locks is bounded whatever the duration and buffer."""
import threading
import time

import pytest

from meeting_links import allocation
from support import booking, connect, paid, wait_until_blocked_by


def locks_taken(conn, date, at, minutes, buffer=0):
    """The advisory locks lock_link_hold_v1 takes for a session: {(kind, key, mode)}."""
    conn.run("BEGIN")
    try:
        conn.run("SELECT lock_link_hold_v1(tstzrange(t, t + make_interval(mins => :m)))"
                 " FROM (SELECT (CAST(:d AS date) + CAST(:t AS time)) AT TIME ZONE 'Asia/Jakarta' AS t) x",
                 d=date, t=at, m=minutes + buffer)
        rows = conn.run("SELECT classid, objid, mode FROM pg_locks WHERE locktype = 'advisory'"
                        " AND pid = pg_backend_pid()")
    finally:
        conn.run("ROLLBACK")
    return {("day" if c == 7285194 else "quarter", int(o), m) for c, o, m in rows}


def quarters(locks):
    return {key for kind, key, _ in locks if kind == "quarter"}


@pytest.mark.parametrize("a,b,share", [
    (("10:00", 30), ("10:30", 30), False),   # back to back: half-open ranges share no bucket
    (("10:00", 60), ("10:45", 30), True),
    (("10:00", 30), ("14:00", 60), False),
])
def test_buckets_of_ranges(conn, a, b, share):
    first, second = locks_taken(conn, "2030-01-07", *a), locks_taken(conn, "2030-01-07", *b)
    assert len(quarters(first)) == a[1] // 15 and len(quarters(second)) == -(-b[1] // 15)
    assert bool(quarters(first) & quarters(second)) is share


def test_a_session_across_midnight_meets_one_early_the_next_day(conn):
    late, early = locks_taken(conn, "2030-01-07", "23:30", 60), locks_taken(conn, "2030-01-08", "00:15", 30)
    assert quarters(late) & quarters(early)


@pytest.mark.parametrize("minutes,buffer", [(60, 0), (480, 0), (1440, 0), (1440, 1440)])
def test_the_locks_an_allocation_takes_are_bounded(conn, minutes, buffer):
    """97 locks for a one-day session and 193 with a one-day buffer, before: near the lock
    table's size at the deployment's connection budget. Now at most 34, whatever the range;
    a long one locks its days exclusively, which every shorter one sharing a day waits for."""
    locks = locks_taken(conn, "2030-01-07", "10:00", minutes, buffer)
    assert len(locks) <= 34
    if minutes + buffer > 8 * 60:
        assert {mode for kind, _, mode in locks} == {"ExclusiveLock"} and not quarters(locks)
        short = locks_taken(conn, "2030-01-07", "12:00", 30)
        assert {key for kind, key, _ in short if kind == "day"} <= {key for _, key, _ in locks}


def test_the_lock_arithmetic_cannot_overflow(conn):
    """A date like year 202501 (refused now, but possibly stored before) clamps, not overflows."""
    conn.run("BEGIN")
    try:
        assert conn.run("SELECT lock_link_hold_v1(tstzrange(timestamptz '202501-01-07 10:00+00',"
                        " timestamptz '202501-01-07 11:00+00'))") == [[True]]
    finally:
        conn.run("ROLLBACK")


def test_an_uncommitted_update_in_psql_does_not_hold_up_another_slot_of_that_link(conn, db, set_links,
                                                                                 database_url):
    link = set_links(1)[0]
    morning, afternoon = paid(conn, time="10:00"), paid(conn, time="14:00")
    support = connect(database_url)
    try:
        support.run("BEGIN")
        support.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=link, i=morning["id"])
        started = time.monotonic()
        assert allocation.assign(db, afternoon["id"]).link_id == link
        assert time.monotonic() - started < 0.5   # the lock timeout is 1 s: it did not wait
        support.run("COMMIT")
    finally:
        support.close()
    assert booking(conn, morning["id"])["link_id"] == link


def test_only_overlapping_allocations_wait_for_each_other(conn, db, set_links, database_url):
    set_links(1)
    first, overlapping, elsewhere = paid(conn, time="10:00"), paid(conn, time="10:30"), paid(conn, time="14:00")
    holder = connect(database_url)
    try:
        holder.run("BEGIN")
        assert holder.run("SELECT outcome FROM assign_link_v2(CAST(:i AS uuid), true)", i=first["id"]) == [["assigned"]]
        started = time.monotonic()
        allocation.assign(db, elsewhere["id"])           # another slot: no wait
        assert time.monotonic() - started < 0.5
        outcome = {}

        def overlap():
            try:
                allocation.assign(db, overlapping["id"])
                outcome["result"] = "assigned"
            except allocation.PoolExhausted:
                outcome["result"] = "exhausted"
        thread = threading.Thread(target=overlap)
        thread.start()
        wait_until_blocked_by(holder, conn)
        assert thread.is_alive(), "an overlapping allocation waits for the one in flight"
        holder.run("COMMIT")
        thread.join(5)
    finally:
        holder.close()
    assert outcome["result"] == "exhausted"     # it saw the committed assignment


def test_a_race_lost_to_a_writer_without_bucket_locks_is_settled_inside_the_statement(conn, set_links,
                                                                                      database_url):
    """psql takes link 1 for 14:00 and has not committed; assign_link_v2 for another 14:00
    booking scans, picks link 1, waits on the exclusion check, and when psql commits takes
    link 2 within the same statement: its caller never sees the 23P01."""
    first, second = set_links(2)
    by_hand, booked = paid(conn), paid(conn)
    psql, allocator = connect(database_url), connect(database_url)
    answer = []
    try:
        psql.run("BEGIN")
        psql.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = :i", l=first, i=by_hand["id"])
        worker = threading.Thread(target=lambda: answer.append(allocator.run(
            "SELECT outcome, link_id::text FROM assign_link_v2(CAST(:i AS uuid), true)", i=booked["id"])))
        worker.start()
        wait_until_blocked_by(psql, conn)  # the allocator now waits for psql's row
        psql.run("COMMIT")
        worker.join(5)
    finally:
        psql.close()
        allocator.close()
    assert answer == [[["assigned", second]]]


def test_the_busy_link_scan_uses_the_constraint_index_even_with_stale_statistics(conn, set_links):
    """Statistics taken while no booking held a link must not turn the busy-link lookup into a
    scan of every link-holding booking: the lookup by range goes through the exclusion
    constraint's GiST index, whatever ANALYZE last saw (checked with a generic plan, which is
    what a plpgsql function settles on)."""
    links = set_links(40)
    conn.run("INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time, duration,"
             " price, payment_status, status, order_id) SELECT 'u', 'e', 'K', date '2031-01-01' + i / 48,"
             " make_time((i % 48) / 2, (i % 2) * 30, 0), 30, 1, 'paid', 'confirmed', 'S-' || i"
             " FROM generate_series(0, 7999) i")
    conn.run("ANALYZE bookings")  # no booking holds a link yet
    conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE order_id LIKE 'S-%'", l=links[0])
    conn.run("SET plan_cache_mode = force_generic_plan")
    try:
        conn.run("PREPARE busy(tstzrange) AS SELECT o.meeting_link_id FROM bookings o"
                 " WHERE o.link_hold && $1 AND o.meeting_link_id IS NOT NULL")
        plan = "\n".join(r[0] for r in conn.run(
            "EXPLAIN EXECUTE busy(tstzrange('2031-02-01 10:00+07', '2031-02-01 11:00+07'))"))
        conn.run("DEALLOCATE busy")
    finally:
        conn.run("RESET plan_cache_mode")
    assert "bookings_no_overlapping_link_use" in plan and "Seq Scan" not in plan, plan
