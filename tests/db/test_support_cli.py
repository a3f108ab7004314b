"""The support team's command line, against the real database."""
import json

import pytest

from meeting_links.support import cli
from support import booking, insert_booking, paid


def test_pool_status_table_and_json(admin, conn, seed_links):
    now = conn.run("SELECT (now() AT TIME ZONE 'Asia/Jakarta')::date::text, to_char(now() AT TIME ZONE 'Asia/Jakarta', 'HH24:MI')")[0]
    b = paid(conn, date=now[0], time=now[1], duration=120)
    admin("bookings", "assign", b["id"])
    code, out, _ = admin("pool", "status")
    assert code == 0 and "3 links: 3 enabled, 1 in use now, 0 disabled" in out
    rows = admin.json("pool", "status")
    busy = [r for r in rows if r["inUseNow"]]
    assert len(busy) == 1 and busy[0]["meetingLink"] == seed_links[0]["meeting_link"]
    assert busy[0]["nextFreeAt"] > rows[1]["nextFreeAt"]  # free only after the session


def test_add_disable_enable_and_usage(admin, conn):
    code, out, _ = admin("links", "add", "https://meet.google.com/abc-defg-hij", "--notes", "Dec")
    assert code == 0 and "Link added" in out
    code, _, err = admin("links", "add", "https://meet.google.com/abc-defg-hij")
    assert code == 4 and "already in the pool" in err  # 4: refused by the rules
    code, _, err = admin("links", "add", "https://zoom.us/j/123")
    assert code == 2 and "not a Google Meet link" in err  # a Meet pool: a typo'd provider is refused
    code, _, err = admin("links", "add", "ftp://nope", "--any-provider")
    assert code == 2 and "not an https:// URL" in err
    assert admin.json("links", "disable", "https://meet.google.com/abc-defg-hij")[0]["enabled"] is False
    assert admin.json("links", "enable", "https://meet.google.com/abc-defg-hij")[0]["enabled"] is True
    code, _, err = admin("links", "disable", "https://meet.google.com/unknown")
    assert code == 3 and "no link in the pool" in err  # 3: not found
    b = paid(conn)
    admin("bookings", "assign", b["id"])
    usage = admin.json("links", "usage")
    assert usage[0]["totalBookings"] == 1 and len(usage) == 4


def test_waiting_free_and_manual_assignment(admin, conn, set_links):
    links = set_links(2)
    a, b, c = paid(conn), paid(conn), paid(conn)
    admin("bookings", "assign", a["id"])
    admin("bookings", "assign", b["id"])
    code, _, err = admin("bookings", "assign", c["id"])
    assert code == 4 and "no link is free for booking" in err and "Please contact support" not in err
    waiting = admin.json("bookings", "waiting")
    assert [w["id"] for w in waiting] == [c["id"]] and waiting[0]["needsManualLink"] is True
    assert admin.json("links", "free", "--date", "2030-01-07", "--time", "14:00", "--duration", "60") == []
    free_later = admin.json("links", "free", "--date", "2030-01-07", "--time", "15:00", "--duration", "60")
    assert [f["id"] for f in free_later] == links

    # A chosen link that is busy is refused by the database with a clear message.
    # A chosen link that is busy is refused by the database, naming the session that holds it.
    code, _, err = admin("bookings", "assign", c["order_id"], "--link", links[0])
    assert code == 4 and f"is already used by {a['order_id']} (2030-01-07 07:00-08:00 UTC)" in err
    unpaid = insert_booking(conn, time="18:00")
    code, _, err = admin("bookings", "assign", unpaid["id"], "--link", links[0])
    assert code == 4 and "is not paid and confirmed" in err
    admin("links", "disable", links[1])
    later = paid(conn, time="20:00")
    code, _, err = admin("bookings", "assign", later["id"], "--link", links[1])
    assert code == 4 and "is disabled" in err
    # Cancelling frees a link, which the waiting booking then gets.
    admin("links", "enable", links[1])
    assert admin.json("bookings", "cancel", a["id"])[0]["waitingBookingsServed"] == [
        {"bookingId": c["id"], "meetingLink": "https://meet.google.com/test-link-01"}]
    assert booking(conn, c["id"])["link_id"] == links[0]


@pytest.mark.parametrize("argv,message,exit_code", [
    (["bookings", "assign", "no-such-order"], "no booking with id or order id 'no-such-order'", 3),
    (["bookings", "assign", "00000000-0000-4000-8000-000000000000"], "no booking with id or order id", 3),
    (["bookings", "cancel", "00000000-0000-4000-8000-000000000000"], "no booking with id or order id", 3),
    (["links", "free", "--date", "2030-13-45", "--time", "10:00", "--duration", "60"], "YYYY-MM-DD", 2),
    (["links", "free", "--date", "2030-01-01", "--time", "10:00", "--duration", "0"], "between 1 and 1440", 2),
    (["pool", "capacity", "--days", "0"], "between 1 and 366", 2),
])
def test_clear_errors(admin, conn, argv, message, exit_code):
    code, _, err = admin(*argv)
    assert code == exit_code and message in err


def test_unreachable_database_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    assert cli.main(["pool", "status"]) == 5  # 5: unavailable, try again
    assert "cannot reach PostgreSQL at 127.0.0.1:1, database none" in capsys.readouterr().err


def test_capacity_report_warns_when_the_pool_is_full(admin, conn):
    today = conn.run("SELECT ((now() AT TIME ZONE 'Asia/Jakarta')::date + 1)::text")[0][0]
    for t in ("10:00", "10:30", "10:45"):
        paid(conn, date=today, time=t, duration=60)
    paid(conn, date=today, time="13:00", duration=60)
    report = admin.json("pool", "capacity", "--days", "3")
    tomorrow = report[1]
    assert (tomorrow["sessions"], tomorrow["peakConcurrent"], tomorrow["poolSize"]) == (4, 3, 3)
    assert tomorrow["warning"] == "FULL"
    paid(conn, date=today, time="10:50", duration=10)
    assert admin.json("pool", "capacity", "--days", "2")[1]["warning"].startswith("OVER: 1")
    assert report[0]["peakConcurrent"] == 0 and report[0]["warning"] == ""


def test_sign_prints_a_correctly_signed_notification(admin, conn, monkeypatch):
    from meeting_links.midtrans import signature
    monkeypatch.setenv("MIDTRANS_SERVER_KEY", "SB-Mid-server-xyz")
    b = insert_booking(conn, price=125000)
    code, out, _ = admin("sign", b["order_id"], "--status", "capture", "--fraud-status", "accept")
    body = json.loads(out)
    assert (body["gross_amount"], body["transaction_status"], body["fraud_status"]) == ("125000.00", "capture", "accept")
    signature.verify(body, "SB-Mid-server-xyz")


def test_sign_without_a_key_uses_the_local_development_key(admin, conn, monkeypatch):
    from meeting_links.midtrans import signature
    from meeting_links.support import local_stack
    monkeypatch.delenv("MIDTRANS_SERVER_KEY", raising=False)
    b = insert_booking(conn)
    code, out, err = admin("sign", b["order_id"])
    assert code == 0 and "local development key" in err
    signature.verify(json.loads(out), local_stack.LOCAL_SERVER_KEY)
