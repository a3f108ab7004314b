"""Private and joinable (issue 21): a booking's two people become members of its private space
(the expert COHOST), so both walk in and strangers knock; without them, the space lets the
link's holders in. And a rescheduled booking keeps a valid link, whoever writes the UPDATE."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import function_client
from meeting_links.support.fake_google import Fault
from support import INTERNAL_TOKEN, booking, insert_booking, local_time_ago, notification, paid

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
EXPERT, CUSTOMER = "dr.sari@klinik-sehat.id", "budi.pasien@gmail.com"


@pytest.fixture
def assign(meet_env):
    def make(**extra):
        client = meet_env(**extra)
        return lambda body: client.post("/", json=body, headers=AUTH)
    return make


def space_of(conn, booking_id):
    return conn.run("SELECT space_name, access_type, opened_at FROM meeting_links_pool"
                    " WHERE dedicated_to = CAST(:b AS uuid)", b=booking_id)[0]


def soon(conn, minutes):
    """A local date and time `minutes` from now (Asia/Jakarta)."""
    return local_time_ago(conn, -minutes)


# --- members ----------------------------------------------------------------------------------

def test_both_people_known_means_a_restricted_space_they_both_walk_into(conn, google, assign):
    post = assign()
    b = paid(conn, expert_email="Dr.Sari@Klinik-Sehat.id", customer_email=CUSTOMER)
    r = post({"bookingId": b["id"]}).get_json()
    assert r["source"] == "meet"
    name, access, _ = space_of(conn, b["id"])
    assert access == "RESTRICTED" and google.spaces[name]["config"]["accessType"] == "RESTRICTED"
    assert google.member_emails(name) == {EXPERT: "COHOST", CUSTOMER: "ROLE_UNSPECIFIED"}
    assert sorted(r[0] for r in conn.run("SELECT email FROM space_members")) == sorted([EXPERT, CUSTOMER])


def test_without_its_people_a_space_lets_the_links_holders_in(conn, google, assign):
    post = assign()
    b = paid(conn)
    assert post({"bookingId": b["id"]}).get_json()["source"] == "meet"
    name, access, _ = space_of(conn, b["id"])
    # Nobody is a member, so nobody could admit a knock: OPEN, anyone with the link.
    assert access == "OPEN" and google.spaces[name]["config"]["accessType"] == "OPEN"
    assert google.member_emails(name) == {}


def test_members_google_refused_at_first_are_added_by_the_sweep(conn, google, assign):
    post = assign()
    b = paid(conn, expert_email=EXPERT, customer_email=CUSTOMER)
    google.fail_next(503, Fault.html(), kind="members")
    r = post({"bookingId": b["id"]})
    assert r.status_code == 200 and r.get_json()["source"] == "meet"  # the booking has its space now
    name = space_of(conn, b["id"])[0]
    missing = 2 - len(google.member_emails(name))
    assert missing >= 1
    added = [post({"sweep": True}).get_json()["membersAdded"] for _ in range(2)]  # Google recovers
    assert sum(added) == missing and added[0] >= 1  # one the html answer left out, the next sweep adds
    assert google.member_emails(name) == {EXPERT: "COHOST", CUSTOMER: "ROLE_UNSPECIFIED"}
    assert sorted(r[0] for r in conn.run("SELECT email FROM space_members")) == sorted([EXPERT, CUSTOMER])


def test_still_missing_near_the_start_the_space_is_opened_and_the_app_told(conn, google, assign, capfd):
    post = assign(MEET_OPEN_BEFORE_MINUTES="10")
    b = paid(conn, expert_email=EXPERT, customer_email=CUSTOMER, **soon(conn, 5))
    google.fail_next(*[503] * 10, kind="members")
    assert post({"bookingId": b["id"]}).get_json()["source"] == "meet"
    capfd.readouterr()
    assert post({"sweep": True}).status_code == 200
    name, access, opened_at = space_of(conn, b["id"])
    assert access == "OPEN" and opened_at is not None and google.spaces[name]["config"]["accessType"] == "OPEN"
    logged = capfd.readouterr().err
    assert '"severity": "WARNING"' in logged and "private space opened to anyone with the link" in logged
    assert conn.run("SELECT type FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id",
                    b=b["id"])[-1] == ["link.opened"]


def test_an_email_the_app_changes_is_followed_at_the_next_sweep(conn, google, assign):
    post = assign()
    b = paid(conn, expert_email=EXPERT, customer_email=CUSTOMER)
    post({"bookingId": b["id"]})
    name = space_of(conn, b["id"])[0]
    conn.run("UPDATE bookings SET customer_email = 'budi.baru@gmail.com' WHERE id = CAST(:b AS uuid)", b=b["id"])
    post({"sweep": True})
    assert google.member_emails(name) == {EXPERT: "COHOST", "budi.baru@gmail.com": "ROLE_UNSPECIFIED"}


def test_a_pool_link_never_gets_members_or_an_access_change(conn, google, assign, seed_links):
    post = assign()
    google.fail_next(500, kind="create")
    b = paid(conn, expert_email=EXPERT, customer_email=CUSTOMER)
    assert post({"bookingId": b["id"]}).get_json()["source"] == "pool"
    post({"sweep": True})
    assert google.calls["members"] == 0 and google.calls["patch"] == 0
    assert conn.run("SELECT count(*) FROM space_members") == [[0]]


def test_support_sees_a_bookings_people_and_its_space_members(conn, google, assign, admin):
    post = assign()
    b = paid(conn, expert_email=EXPERT, customer_email=CUSTOMER)
    post({"bookingId": b["id"]})
    shown = admin.json("bookings", "show", b["order_id"])
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["expertEmail"] == EXPERT and shown["customerEmail"] == CUSTOMER
    assert sorted(m["email"] for m in shown["members"]) == sorted([EXPERT, CUSTOMER])


# --- reschedules --------------------------------------------------------------------------------

def move(conn, booking_id, time):
    """What the app does: an UPDATE of the booking's time, nothing else."""
    conn.run("UPDATE bookings SET scheduled_time = :t WHERE id = CAST(:b AS uuid)", t=time, b=booking_id)


def overlapping_pairs_on_one_link(conn):
    return conn.run("SELECT count(*) FROM bookings a JOIN bookings b ON a.meeting_link_id = b.meeting_link_id"
                    " AND a.id < b.id AND a.link_hold && b.link_hold")[0][0]


def test_moving_three_bookings_into_each_others_times_with_two_links(conn, set_links, db):
    from meeting_links import allocation
    first_link, second_link = set_links(2)
    a, b, c = paid(conn, time="10:00"), paid(conn, time="10:00"), paid(conn, time="12:00")
    for x in (a, b, c):
        try:
            allocation.assign(db, x["id"])
        except Exception:
            pass
    assert {booking(conn, x["id"])["link_id"] for x in (a, b)} == {first_link, second_link}
    # c moves into 10:00, where both links are busy: it gives its link up and waits, flagged.
    move(conn, c["id"], "10:00")
    assert booking(conn, c["id"])["link_id"] is None and booking(conn, c["id"])["needs_manual_link"] is True
    # a moves to 12:00: it keeps its link (free then); the 10:00 it left goes to c.
    kept = booking(conn, a["id"])["link_id"]
    move(conn, a["id"], "12:00")
    assert booking(conn, a["id"])["link_id"] == kept
    assert booking(conn, c["id"])["link_id"] == kept and booking(conn, c["id"])["needs_manual_link"] is False
    # b moves to 12:00 too: a holds one link there; b keeps its own (free at 12:00).
    move(conn, b["id"], "12:00")
    assert booking(conn, b["id"])["link_id"] is not None
    assert overlapping_pairs_on_one_link(conn) == 0
    types = {x["order_id"]: [r[0] for r in conn.run(
        "SELECT type FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id", b=x["id"])] for x in (a, b, c)}
    assert types[c["order_id"]][-2:] == ["link.waiting", "link.assigned"]
    assert types[a["order_id"]][-1] == "link.rescheduled" and types[b["order_id"]][-1] == "link.rescheduled"
    rescheduled = conn.run("SELECT starts_at, previous_starts_at FROM link_events WHERE booking_id = CAST(:b AS uuid)"
                           " AND type = 'link.rescheduled'", b=a["id"])[0]
    assert rescheduled[0] != rescheduled[1]  # the event carries the new time and the old


def test_a_move_to_a_time_where_its_link_is_busy_takes_another_free_link(conn, set_links, db):
    from meeting_links import allocation
    first_link, second_link = set_links(2)
    a, b = paid(conn, time="10:00"), paid(conn, time="14:00")
    allocation.assign(db, a["id"])
    allocation.assign(db, b["id"])
    assert booking(conn, a["id"])["link_id"] == booking(conn, b["id"])["link_id"] == first_link
    move(conn, b["id"], "10:30")  # overlaps a on the first link: the UPDATE succeeds anyway
    assert booking(conn, b["id"])["link_id"] == second_link
    assert conn.run("SELECT type FROM link_events WHERE booking_id = CAST(:b AS uuid) ORDER BY id DESC LIMIT 1",
                    b=b["id"]) == [["link.changed"]]
    assert overlapping_pairs_on_one_link(conn) == 0


def test_a_private_space_stays_with_its_booking_whatever_the_new_time(conn, google, assign):
    post = assign()
    b = paid(conn)
    link = post({"bookingId": b["id"]}).get_json()["meetingLink"]
    move(conn, b["id"], "18:00")
    assert booking(conn, b["id"])["meeting_link"] == link


def test_support_moves_a_booking_as_the_app_does(conn, set_links, db, admin):
    from meeting_links import allocation
    [link] = set_links(1)
    b = paid(conn, time="10:00")
    allocation.assign(db, b["id"])
    moved = admin.json("bookings", "move", b["order_id"], "--to", "2030-01-07 15:00")
    moved = moved[0] if isinstance(moved, list) else moved
    assert moved["meetingLink"] == "https://meet.google.com/test-link-01" and moved["waiting"] is False
    assert booking(conn, b["id"])["link_id"] == link


def test_a_payment_and_a_reschedule_at_once_never_double_book(conn, set_links, database_url, app_env, assign_server):
    """Threads: one booking pays for 10:00 while another, holding the only link at 12:00, is
    moved to 10:00. Whatever the order, one of them holds the link and the other waits."""
    from support import connect
    app_env(ASSIGN_MEETING_LINK_URL=assign_server.url)
    set_links(1)
    for _ in range(5):
        conn.run("SET session_replication_role = replica")
        conn.run("DELETE FROM payment_notifications")
        conn.run("DELETE FROM link_events")
        conn.run("DELETE FROM bookings")
        conn.run("SET session_replication_role = DEFAULT")
        payer = insert_booking(conn, time="10:00")
        mover = paid(conn, time="12:00")
        conn.run("UPDATE bookings SET meeting_link_id = (SELECT id FROM meeting_links_pool LIMIT 1)"
                 " WHERE id = CAST(:b AS uuid)", b=mover["id"])
        barrier = threading.Barrier(2)

        def pay(barrier=barrier, payer=payer):
            barrier.wait()
            return function_client("midtrans_webhook").post("/", json=notification(payer["order_id"])).status_code

        def reschedule(barrier=barrier, mover=mover):
            c = connect(database_url)
            try:
                barrier.wait()
                move(c, mover["id"], "10:00")
            finally:
                c.close()
        with ThreadPoolExecutor(2) as pool:
            paid_answer = pool.submit(pay)
            pool.submit(reschedule).result()
            assert paid_answer.result() == 200
        holders = [x for x in (payer, mover) if booking(conn, x["id"])["link_id"]]
        assert len(holders) == 1 and overlapping_pairs_on_one_link(conn) == 0
