"""The original system's SQL examples run as written against our schema."""
from pathlib import Path

import pytest
from pg8000.exceptions import DatabaseError

SQL = Path(__file__).parents[1] / "seed_sql"


def run_file(conn, name, **placeholders):
    text = (SQL / name).read_text()
    for key, value in placeholders.items():
        text = text.replace(key, value)
    rows = conn.run(text)
    return [dict(zip([c["name"] for c in conn.columns], r)) for r in rows] if rows else []


def test_verify_installation_and_pool_status_show_the_three_seed_links(conn):
    links = run_file(conn, "verify_installation.sql")
    assert [link["meeting_link"] for link in links] == [
        "https://meet.google.com/kcw-ebey-pqu", "https://meet.google.com/ppt-myeq-puu",
        "https://meet.google.com/wyk-nvfk-qkq"]
    assert run_file(conn, "pool_status.sql") == [{"total_links": 3, "available_links": 3}]


def test_inserts_of_tests_1_3_and_4_run_and_derive_absolute_ranges(conn):
    rows = run_file(conn, "test1_insert.sql") + run_file(conn, "test3_insert.sql") + run_file(conn, "test4_insert.sql")
    assert len(rows) == 5 and all(r["order_id"] for r in rows)
    # 14:00 in Jakarta (UTC+7, no DST) is 07:00 UTC.
    starts = conn.run("SELECT starts_at::text, ends_at::text FROM bookings WHERE order_id LIKE 'TEST-%'")
    assert starts == [["2025-12-01 07:00:00+00", "2025-12-01 08:00:00+00"]]


def test_find_available_then_manual_update_is_refused_when_it_would_double_book(conn):
    first, second = run_file(conn, "test3_insert.sql")
    link = run_file(conn, "find_available.sql".replace("find_available", "find_available"))
    # The seed looks up 14:00; Test 3 is at 10:00: look up the right slot the same way.
    link = conn.run("SELECT * FROM find_available_meeting_link('2025-12-01', '10:00', 60)")
    link_id = str(link[0][0])
    run_file(conn, "manual_update.sql", LINK_ID_FROM_ABOVE=link_id, BOOKING_ID=str(first["id"]))
    with pytest.raises(DatabaseError) as refused:
        run_file(conn, "manual_update.sql", LINK_ID_FROM_ABOVE=link_id, BOOKING_ID=str(second["id"]))
    error = refused.value.args[0]
    assert error["C"] == "23P01"
    assert error["n"] == "bookings_no_overlapping_link_use"
    assert "conflicts with existing key" in error["D"]
    # The lookup now offers the next link, which the manual update accepts.
    next_link = conn.run("SELECT * FROM find_available_meeting_link('2025-12-01', '10:00', 60)")[0]
    assert str(next_link[0]) != link_id
    run_file(conn, "manual_update.sql", LINK_ID_FROM_ABOVE=str(next_link[0]), BOOKING_ID=str(second["id"]))


def test_seed_lookup_as_written(conn):
    rows = run_file(conn, "find_available.sql")
    assert rows[0]["meeting_link"] == "https://meet.google.com/kcw-ebey-pqu"
    assert set(rows[0]) == {"id", "meeting_link"}


def test_reporting_queries_as_written(conn):
    booked, unassigned = run_file(conn, "test4_insert.sql")
    link_id = conn.run("SELECT id::text FROM meeting_links_pool ORDER BY created_at LIMIT 1")[0][0]
    run_file(conn, "manual_update.sql", LINK_ID_FROM_ABOVE=link_id, BOOKING_ID=str(booked["id"]))

    with_links = run_file(conn, "bookings_with_links.sql")
    assert {r["order_id"]: r["meeting_link"] for r in with_links} == {
        booked["order_id"]: "https://meet.google.com/kcw-ebey-pqu", unassigned["order_id"]: None}

    without = run_file(conn, "bookings_without_links.sql")
    assert [r["order_id"] for r in without] == [unassigned["order_id"]]

    usage = run_file(conn, "link_usage.sql")
    assert usage[0]["meeting_link"] == "https://meet.google.com/kcw-ebey-pqu"
    assert usage[0]["total_bookings"] == 1
    assert sum(u["total_bookings"] for u in usage) == 1


def test_adding_links_as_written(conn):
    run_file(conn, "add_links.sql")
    assert run_file(conn, "pool_status.sql") == [{"total_links": 5, "available_links": 5}]
