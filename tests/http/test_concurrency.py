"""Many payments at once for one popular slot, through both functions over HTTP."""
from concurrent.futures import ThreadPoolExecutor

from support import insert_booking, notification


def test_fifty_concurrent_payments_for_one_slot_with_five_links(conn, set_links, webhook_server):
    links = set_links(5)
    bookings = [insert_booking(conn, time="19:00", duration=90) for _ in range(50)]
    # Overlapping, not identical, ranges count too.
    bookings += [insert_booking(conn, time="19:30", duration=30) for _ in range(6)]
    with ThreadPoolExecutor(56) as pool:
        responses = list(pool.map(lambda b: webhook_server.post(notification(b["order_id"])), bookings))
    assert [r.status_code for r in responses] == [200] * len(bookings)

    rows = conn.run("SELECT payment_status, status, meeting_link_id::text, needs_manual_link FROM bookings")
    assert all(r[0] == "paid" and r[1] == "confirmed" for r in rows)
    held = [r[2] for r in rows if r[2]]
    assert sorted(held) == sorted(links)  # exactly five, all different
    assert sum(1 for r in rows if r[2] is None and r[3]) == len(bookings) - 5
    assert sum(1 for r in responses if r.json().get("requiresManualAssignment")) == len(bookings) - 5
