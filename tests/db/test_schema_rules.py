"""What the database itself guarantees, whoever writes: ranges in absolute time, the
exclusion constraint, and the rules around it."""
import pytest
from pg8000.exceptions import DatabaseError

from meeting_links import config
from meeting_links.db import migrations
from meeting_links.errors import MigrationError
from support import insert_booking


def hold(conn, booking_id):
    return conn.run("SELECT starts_at::text, ends_at::text, link_hold::text FROM bookings WHERE id = :i",
                    i=booking_id)[0]


def give(conn, booking_id, link_id):
    conn.run("UPDATE bookings SET meeting_link_id = :l WHERE id = :b", l=link_id, b=booking_id)


def refusal(conn, booking_id, link_id) -> dict:
    with pytest.raises(DatabaseError) as refused:
        give(conn, booking_id, link_id)
    return refused.value.args[0]


def test_wall_clock_time_is_read_in_the_business_time_zone(conn):
    b = insert_booking(conn, date="2030-01-07", time="09:30", duration=45)
    assert hold(conn, b["id"])[:2] == ["2030-01-07 02:30:00+00", "2030-01-07 03:15:00+00"]


def test_the_time_zone_is_configurable_and_rederives_existing_bookings(conn):
    b = insert_booking(conn, date="2030-07-01", time="09:00", duration=60)
    conn.run("SELECT configure_pool_v2('Europe/Berlin', 0, true)")
    assert hold(conn, b["id"])[0] == "2030-07-01 07:00:00+00"  # CEST, UTC+2
    with pytest.raises(DatabaseError, match="time zone"):
        conn.run("SELECT configure_pool_v2('Mars/Olympus', 0, true)")


def test_a_session_crossing_midnight_conflicts_with_one_early_next_day(conn, seed_links):
    late = insert_booking(conn, date="2030-01-07", time="23:30", duration=60, payment_status="paid", status="confirmed")
    early = insert_booking(conn, date="2030-01-08", time="00:15", duration=30, payment_status="paid", status="confirmed")
    give(conn, late["id"], seed_links[0]["id"])
    assert refusal(conn, early["id"], seed_links[0]["id"])["C"] == "23P01"
    free = conn.run("SELECT id::text FROM find_available_meeting_link('2030-01-08', '00:15', 30)")
    assert free[0][0] == seed_links[1]["id"]


def test_back_to_back_sessions_share_a_link(conn, seed_links):
    first = insert_booking(conn, time="10:00", duration=60, payment_status="paid", status="confirmed")
    second = insert_booking(conn, time="11:00", duration=60, payment_status="paid", status="confirmed")
    give(conn, first["id"], seed_links[0]["id"])
    give(conn, second["id"], seed_links[0]["id"])
    one_minute_overlap = insert_booking(conn, time="10:59", duration=1, payment_status="paid", status="confirmed")
    assert refusal(conn, one_minute_overlap["id"], seed_links[0]["id"])["C"] == "23P01"


def test_the_buffer_keeps_minutes_free_between_sessions_on_a_link(conn, seed_links):
    conn.run("SELECT configure_pool_v2('Asia/Jakarta', 15, true)")
    first = insert_booking(conn, time="10:00", duration=60, payment_status="paid", status="confirmed")
    too_soon = insert_booking(conn, time="11:10", duration=30, payment_status="paid", status="confirmed")
    after_buffer = insert_booking(conn, time="11:15", duration=30, payment_status="paid", status="confirmed")
    before = insert_booking(conn, time="08:45", duration=60, payment_status="paid", status="confirmed")
    give(conn, first["id"], seed_links[0]["id"])
    assert refusal(conn, too_soon["id"], seed_links[0]["id"])["C"] == "23P01"
    give(conn, after_buffer["id"], seed_links[0]["id"])
    # 08:45-09:45 ends 15 minutes before 10:00: exactly the buffer.
    give(conn, before["id"], seed_links[0]["id"])
    assert hold(conn, first["id"])[2] == '["2030-01-07 03:00:00+00","2030-01-07 04:15:00+00")'


def test_raising_the_buffer_is_refused_when_held_links_would_then_overlap(conn, seed_links):
    a = insert_booking(conn, time="10:00", duration=60, payment_status="paid", status="confirmed")
    b = insert_booking(conn, time="11:00", duration=60, payment_status="paid", status="confirmed")
    give(conn, a["id"], seed_links[0]["id"])
    give(conn, b["id"], seed_links[0]["id"])
    outcome, conflicts = conn.run("SELECT outcome, conflicts FROM configure_pool_v2('Asia/Jakarta', 10, true)")[0]
    assert (outcome, conflicts) == ("conflict", [sorted([a["order_id"], b["order_id"]])])  # the sessions, named
    assert conn.run("SELECT buffer_minutes FROM pool_settings") == [[0]]
    # The superseded configure_pool (for the previous release) refused it through the constraint.
    with pytest.raises(DatabaseError, match="bookings_no_overlapping_link_use"):
        conn.run("SELECT configure_pool('Asia/Jakarta', 10)")


def test_the_same_range_on_different_links_is_fine(conn, seed_links):
    ids = [insert_booking(conn, payment_status="paid", status="confirmed")["id"] for _ in range(3)]
    for booking_id, link in zip(ids, seed_links):
        give(conn, booking_id, link["id"])


@pytest.mark.parametrize("payment_status,status", [("pending", "pending"), ("refunded", "cancelled"),
                                                    ("paid", "cancelled"), ("review", "pending")])
def test_only_a_paid_confirmed_booking_can_hold_a_link(conn, seed_links, payment_status, status):
    b = insert_booking(conn, payment_status=payment_status, status=status)
    assert refusal(conn, b["id"], seed_links[0]["id"])["n"] == "bookings_link_requires_active_booking"


def test_unpaying_a_booking_without_releasing_its_link_is_refused(conn, seed_links):
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    give(conn, b["id"], seed_links[0]["id"])
    with pytest.raises(DatabaseError, match="bookings_link_requires_active_booking"):
        conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled' WHERE id = :i", i=b["id"])


def test_a_disabled_link_cannot_be_assigned(conn, seed_links):
    conn.run("UPDATE meeting_links_pool SET is_available = false WHERE id = :i", i=seed_links[0]["id"])
    b = insert_booking(conn, payment_status="paid", status="confirmed")
    assert refusal(conn, b["id"], seed_links[0]["id"])["n"] == "bookings_link_must_be_enabled"
    assert conn.run("SELECT id::text FROM find_available_meeting_link('2030-01-07', '14:00', 60)")[0][0] == seed_links[1]["id"]


def test_assignment_time_and_paid_time_are_kept_by_the_database(conn, seed_links):
    b = insert_booking(conn)
    conn.run("UPDATE bookings SET payment_status = 'paid', status = 'confirmed', needs_manual_link = true WHERE id = :i", i=b["id"])
    give(conn, b["id"], seed_links[0]["id"])
    paid_at, assigned_at, waiting = conn.run(
        "SELECT paid_at, link_assigned_at, needs_manual_link FROM bookings WHERE id = :i", i=b["id"])[0]
    assert paid_at is not None and assigned_at is not None and waiting is False


@pytest.mark.parametrize("column,value", [("duration", 0), ("duration", -5), ("price", -1),
                                          ("payment_status", "settled"), ("status", "done"),
                                          # issue 17.14: a year the bucket arithmetic overflowed on
                                          ("scheduled_date", "202501-01-07"), ("scheduled_date", "1999-12-31")])
def test_bad_values_are_refused(conn, column, value):
    b = insert_booking(conn)
    with pytest.raises(DatabaseError) as refused:
        conn.run(f"UPDATE bookings SET {column} = :v WHERE id = :i", v=value, i=b["id"])
    assert refused.value.args[0]["C"] == "23514"


def test_links_must_be_unique_https_urls(conn):
    with pytest.raises(DatabaseError) as dup:
        conn.run("INSERT INTO meeting_links_pool (meeting_link) VALUES ('https://meet.google.com/kcw-ebey-pqu')")
    assert dup.value.args[0]["C"] == "23505"
    with pytest.raises(DatabaseError) as bad:
        conn.run("INSERT INTO meeting_links_pool (meeting_link) VALUES ('javascript:alert(1)')")
    assert bad.value.args[0]["C"] == "23514"


def test_updated_at_is_kept_by_triggers(conn, seed_links):
    before = conn.run("SELECT updated_at FROM meeting_links_pool WHERE id = :i", i=seed_links[0]["id"])[0][0]
    conn.run("UPDATE meeting_links_pool SET notes = 'x' WHERE id = :i", i=seed_links[0]["id"])
    after = conn.run("SELECT updated_at FROM meeting_links_pool WHERE id = :i", i=seed_links[0]["id"])[0][0]
    assert after > before


def test_the_notification_log_is_append_only(conn):
    conn.run("INSERT INTO payment_notifications (order_id, transaction_status, outcome, body)"
             " VALUES ('o', 'settlement', 'ignored', '{}')")
    for statement in ("UPDATE payment_notifications SET outcome = 'applied'",
                      "DELETE FROM payment_notifications", "TRUNCATE payment_notifications"):
        with pytest.raises(DatabaseError, match="append-only"):
            conn.run(statement)
    assert conn.run("SELECT count(*) FROM payment_notifications") == [[1]]


def test_migrations_are_recorded_and_safe_to_run_twice(database_url, conn):
    settings = config.from_environment({"DATABASE_URL": database_url})
    assert migrations.migrate(settings, echo=lambda *_: None) == []
    names = [r[0] for r in conn.run("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [p.name for p in migrations.migration_files()]
    assert conn.run("SELECT count(*) FROM meeting_links_pool") == [[3]]


def test_an_edited_migration_is_an_error(database_url, conn, tmp_path):
    for path in migrations.migration_files():
        (tmp_path / path.name).write_text(path.read_text())
    first = sorted(tmp_path.iterdir())[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrations.migrate(config.from_environment({"DATABASE_URL": database_url}), tmp_path, echo=lambda *_: None)


def test_a_migration_never_changes_the_pool_settings(database_url, conn, monkeypatch):
    """Settings change when a person asks (`pool configure`): a plain migrate after a
    configured buffer, even with the old variables still in the environment, keeps it."""
    conn.run("SELECT configure_pool_v2('Asia/Makassar', 15, true)")
    monkeypatch.setenv("LINK_BUFFER_MINUTES", "0")
    monkeypatch.setenv("BUSINESS_TIME_ZONE", "Asia/Jakarta")
    migrations.migrate(config.from_environment({"DATABASE_URL": database_url}), echo=lambda *_: None)
    assert conn.run("SELECT time_zone, buffer_minutes FROM pool_settings") == [["Asia/Makassar", 15]]
