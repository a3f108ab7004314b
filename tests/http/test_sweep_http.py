"""The sweep as the scheduler calls it: over HTTP, concurrently, and with a lost payment to
recover through a stand-in for Midtrans's GET Status API."""
from concurrent.futures import ThreadPoolExecutor

from support import INTERNAL_TOKEN, SERVER_KEY, FunctionServer, booking, open_payment, paid

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def test_concurrent_sweeps_count_only_the_links_each_gave(conn, assign_server, set_links):
    set_links(15)
    waiting = [paid(conn, time=f"{8 + i % 5:02d}:00") for i in range(15)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: assign_server.post({"sweep": True}, headers=AUTH), range(6)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["assigned"] for a in answers) == 15
    assert all(booking(conn, b["id"])["link_id"] for b in waiting)


# --- 2. freed links are handed over from every path ----------------------------------------


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
