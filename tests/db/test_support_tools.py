"""What a support person or a developer does with `meeting-links`, as issue 18 lists the traps
(item numbers in the comments): settings only change when asked, order ids as Midtrans sends
them, links added and removed by mistake, a booking moved off a disabled link, every booking
command by order id, the local try-it loop, and a command line scripts can rely on."""
import json

import pytest
from pg8000.exceptions import DatabaseError

from meeting_links.support import cli
from support import CLI, booking, insert_booking, paid


def one(answer):
    """A command's JSON answer about one thing (an object, or a list of one)."""
    if isinstance(answer, list):
        assert len(answer) == 1, answer
        return answer[0]
    return answer


def settings_row(conn):
    return conn.run("SELECT time_zone, buffer_minutes FROM pool_settings")[0]


def test_5_migrate_never_changes_the_pool_settings(admin, conn, monkeypatch):
    assert admin("pool", "configure", "--buffer-minutes", "15")[0] == 0
    monkeypatch.setenv("LINK_BUFFER_MINUTES", "0")       # what the old migrate applied
    monkeypatch.setenv("BUSINESS_TIME_ZONE", "Asia/Makassar")
    code, out, _ = admin("migrate")
    assert code == 0 and "database is up to date" in out
    assert settings_row(conn) == ["Asia/Jakarta", 15]


def test_5_pool_configure_says_what_it_changes_and_a_dry_run_changes_nothing(admin, conn):
    paid(conn)
    code, out, _ = admin("pool", "configure", "--buffer-minutes", "10", "--dry-run")
    assert code == 0 and "Would change (--dry-run)" in out and settings_row(conn) == ["Asia/Jakarta", 0]
    result = admin.json("pool", "configure", "--buffer-minutes", "10")
    assert result[0]["sessionsAffected"] == 1 and result[0]["outcome"] == "changed"
    assert settings_row(conn) == ["Asia/Jakarta", 10]


def test_14_a_buffer_that_would_overlap_sessions_names_them(admin, conn, set_links):
    [link] = set_links(1)
    a, b = paid(conn, time="10:00"), paid(conn, time="11:00")
    for x in (a, b):
        conn.run("UPDATE bookings SET meeting_link_id = CAST(:l AS uuid) WHERE id = CAST(:b AS uuid)", l=link, b=x["id"])
    code, _, err = admin("pool", "configure", "--buffer-minutes", "15")
    assert code == 4 and a["order_id"] in err and b["order_id"] in err and "bookings_" not in err
    assert settings_row(conn) == ["Asia/Jakarta", 0]


@pytest.mark.parametrize("order_id", ["ORDER 7", "ORDER#7", "A" * 51, "ÖRDER-7"])
def test_6_an_order_id_midtrans_would_never_send_is_refused_where_the_booking_is_written(conn, admin, order_id):
    with pytest.raises(DatabaseError) as refused:
        insert_booking(conn, order_id=order_id)
    assert refused.value.args[0]["n"] == "bookings_order_id_format"
    code, _, err = admin("bookings", "create", "--date", "2030-02-01", "--time", "10:00", "--order-id", order_id)
    assert code == 2 and "order_id must be 1 to 50 letters, digits" in err


def test_7_links_remove_takes_back_a_link_added_by_mistake_but_not_one_that_served(admin, conn):
    assert admin("links", "add", "https://meet.google.com/zzz-typo-zzz")[0] == 0
    removed = admin.json("links", "remove", "https://meet.google.com/zzz-typo-zzz")
    assert removed[0]["removed"] is True
    assert conn.run("SELECT count(*) FROM meeting_links_pool WHERE meeting_link LIKE '%typo%'") == [[0]]
    served = paid(conn)
    admin("bookings", "assign", served["order_id"])
    held = booking(conn, served["id"])["meeting_link"]
    code, _, err = admin("links", "remove", held)
    assert code == 4 and "disable it instead" in err


def test_7_links_add_names_the_link_the_waiting_booking_actually_got(admin, conn, set_links):
    [older] = set_links(1)
    holder, waiting = paid(conn), paid(conn)
    admin("bookings", "assign", holder["id"])
    assert admin("bookings", "assign", waiting["id"])[0] == 4          # the pool is full: it waits
    conn.run("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = CAST(:b AS uuid)",
             b=holder["id"])                                            # freed in psql: nobody told
    added = one(admin.json("links", "add", "https://meet.google.com/new-link-added"))
    assert added["waitingBookingsServed"] == [{"bookingId": waiting["id"],
                                               "meetingLink": "https://meet.google.com/test-link-01"}]
    assert booking(conn, waiting["id"])["link_id"] == older


def test_8_bookings_assign_moves_a_booking_off_a_disabled_link(admin, conn, set_links):
    first, second = set_links(2)
    b = paid(conn)
    admin("bookings", "assign", b["order_id"])
    assert booking(conn, b["id"])["link_id"] == first
    code, out, _ = admin("links", "disable", first)
    assert code == 0 and b["order_id"] in out                           # the sessions it still holds
    moved = one(admin.json("bookings", "assign", b["order_id"]))
    assert moved["movedFrom"] == "https://meet.google.com/test-link-01" and moved["unchanged"] is False
    assert booking(conn, b["id"])["link_id"] == second


def test_9_every_booking_command_takes_an_order_id(admin, conn):
    b = paid(conn, expert_email="expert@klinik-sehat.id", customer_email="pasien@gmail.com")
    shown = one(admin.json("bookings", "show", b["order_id"]))
    assert shown["id"] == b["id"] and shown["orderId"] == b["order_id"]
    assert shown["expertEmail"] == "expert@klinik-sehat.id" and shown["customerEmail"] == "pasien@gmail.com"
    code, out, _ = admin("bookings", "show", b["id"])
    assert code == 0 and b["order_id"] in out
    assert admin("bookings", "assign", b["order_id"])[0] == 0
    assert one(admin.json("bookings", "move", b["order_id"], "--to", "2030-01-08 09:00"))["meetingLink"]
    assert admin("bookings", "cancel", b["order_id"])[0] == 0
    assert booking(conn, b["id"])["status"] == "cancelled"


def test_11_sign_knows_the_statuses_and_the_cli_has_a_version(admin, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["sign", "ORDER-1", "--status", "setlement"])
    assert stopped.value.code == 2 and "invalid choice: 'setlement'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("meeting-links ")


def test_11_errors_under_json_are_json_and_exit_codes_tell_kinds_apart(admin, conn, set_links):
    set_links(1)
    a, b = paid(conn), paid(conn)
    admin("bookings", "assign", a["id"])
    code, _, err = admin("bookings", "show", "NO-SUCH-ORDER", "--json")
    assert code == 3 and json.loads(err)["error"]["kind"] == "BookingNotFound"
    code, _, err = admin("bookings", "assign", b["id"], "--json")
    assert code == 4 and json.loads(err)["error"]["kind"] == "PoolExhausted"
    code, _, err = admin("bookings", "move", a["id"], "--to", "tomorrow", "--json")
    assert code == 2 and json.loads(err)["error"]["kind"] == "BadRequest"


def test_11_the_installed_command_answers_version(tmp_path):
    import subprocess
    done = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("meeting-links ")
