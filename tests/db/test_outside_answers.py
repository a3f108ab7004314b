"""Whatever Google, Midtrans's status API or the app's receiver answers, or however slowly or
largely, a paid booking still gets its link and the sweep still finishes its work. Each test
is one of the defects issue 17 lists (its number in the name's comment), against the real
PostgreSQL and hostile local servers speaking the outside protocols; the functions run as
functions_framework builds them, in this process, so that its memory can be measured."""
import base64
import json
import socketserver
import threading
import time

import pytest

from conftest import function_client
from meeting_links.support.fake_google import Fault
from support import INTERNAL_TOKEN, FakeServer, booking, insert_booking, local_time_ago, notification, open_payment, paid

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


@pytest.fixture
def assign(meet_env):
    """The assign function with Meet settings pointing at the hostile fake; returns a poster."""
    def make(source="meet_then_pool", **extra):
        client = meet_env(source, **{"MEET_API_TIMEOUT_S": "1.0", **extra})
        return lambda body: client.post("/", json=body, headers=AUTH)
    return make


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_growth_kib(call):
    """How far the process's resident memory rose above where it was, at its peak, during call
    (Linux: writing 5 to clear_refs resets the high-water mark VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_kib()
    result = call()
    return result, rss_kib("VmHWM") - before


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def assert_pool_fallback(conn, r, b, seed_links):
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["source"] == "pool" and r.get_json()["meetingLink"] == seed_links[0]["meeting_link"]
    assert booking(conn, b["id"])["link_id"] is not None


# --- Google Meet ------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [Fault.html(), Fault.raw(b""), Fault.raw(b"[1, 2]"), Fault.raw(b'{"name": 7}'),
                                   Fault.raw(b"\xff\xfe not json", content_type="text/plain")],
                         ids=["html", "empty", "a list", "wrong types", "bytes"])
def test_1_a_create_answer_that_is_not_a_space_falls_back_to_the_pool_and_blocks_nothing(
        conn, google, assign, seed_links, fault):
    post = assign()
    google.fail_next(fault, kind="create")
    b = paid(conn)
    r, took = timed(lambda: post({"bookingId": b["id"]}))
    assert_pool_fallback(conn, r, b, seed_links)
    assert took < 2.5  # within the webhook's budget for its call (ASSIGN_CALL_TIMEOUT_S)
    # The request is not left "requested": the next booking gets its own space at once.
    assert conn.run("SELECT state FROM meet_space_requests WHERE booking_id = CAST(:b AS uuid)",
                    b=b["id"]) != [["requested"]]
    c = paid(conn, time="16:00")
    assert post({"bookingId": c["id"]}).get_json()["source"] == "meet"


@pytest.mark.parametrize("space", [
    {"name": "spaces/ok1", "meetingUri": "https://meet.google.com/abc defg-hij", "meetingCode": "abc-defg-hij"},
    {"name": "spaces/ok2", "meetingUri": "https://meet.google.com/" + "a" * 8192, "meetingCode": "abc-defg-hij"},
    {"name": "spaces/abc/def", "meetingUri": "https://meet.google.com/abc-defg-hij", "meetingCode": "abc-defg-hij"},
    {"name": "spaces/ok3", "meetingUri": "javascript:alert(1)", "meetingCode": "x"},
], ids=["a space in the uri", "an 8 KiB uri", "a nested name", "not https"])
def test_2_a_space_the_database_refuses_falls_back_to_the_pool(conn, google, assign, seed_links, space):
    post = assign()
    google.fail_next(Fault.raw(space), kind="create")
    b = paid(conn)
    r, took = timed(lambda: post({"bookingId": b["id"]}))
    assert_pool_fallback(conn, r, b, seed_links)
    assert took < 2.5


def test_2_the_same_space_returned_for_two_bookings_gives_the_second_the_pool(conn, google, assign, seed_links):
    post = assign()
    a = paid(conn)
    first = post({"bookingId": a["id"]}).get_json()
    assert first["source"] == "meet"
    name = next(iter(google.spaces))
    google.fail_next(Fault.raw(google.spaces[name]), kind="create")
    b = paid(conn)  # same slot: Google hands back the first booking's space
    assert_pool_fallback(conn, post({"bookingId": b["id"]}), b, seed_links)
    assert booking(conn, a["id"])["meeting_link"] == first["meetingLink"]


@pytest.mark.parametrize("fault", [Fault.raw('"a string"'), Fault.html(), Fault.raw({"access_token": 5}),
                                   Fault.raw({"expires_in": 3599})],
                         ids=["a json string", "html", "a number for a token", "no token"])
def test_3_a_token_answer_that_is_not_a_token_falls_back_and_the_sweep_answers_200(
        conn, google, assign, seed_links, admin, monkeypatch, fault):
    post = assign()
    google.fail_next(fault, fault, fault, kind="token")
    b = paid(conn)
    assert_pool_fallback(conn, post({"bookingId": b["id"]}), b, seed_links)
    assert post({"sweep": True}).status_code == 200
    # The support tool says it in one line, never a traceback.
    monkeypatch.setenv("MEET_CREDENTIALS", google.authorized_user())
    monkeypatch.setenv("MEET_API_BASE_URL", google.url)
    code, out, err = admin("links", "check")
    assert "Traceback" not in out + err


def test_4_a_token_endpoint_answering_503_costs_one_attempt_not_library_sleeps(conn, google, assign, seed_links):
    post = assign(MEET_API_TIMEOUT_S="1.5")
    google.fail_next(503, 503, 503, kind="token")
    b = paid(conn)
    r, took = timed(lambda: post({"bookingId": b["id"]}))
    assert_pool_fallback(conn, r, b, seed_links)
    assert took < 1.5 + 1.0  # within MEET_API_TIMEOUT_S (+1 s), not google-auth's 1 s and 2 s retries
    assert google.calls["token"] == 1


def test_5_a_private_space_support_disabled_is_not_reattached_when_its_booking_is_paid_again(
        conn, google, assign, seed_links, admin):
    post = assign()
    b = paid(conn)
    space = post({"bookingId": b["id"]}).get_json()["meetingLink"]
    conn.run("UPDATE bookings SET payment_status = 'refunded', status = 'cancelled', meeting_link_id = NULL"
             " WHERE id = CAST(:b AS uuid)", b=b["id"])
    assert admin("links", "disable", space)[0] == 0
    conn.run("UPDATE bookings SET payment_status = 'paid', status = 'confirmed' WHERE id = CAST(:b AS uuid)", b=b["id"])
    r = post({"bookingId": b["id"]})
    assert_pool_fallback(conn, r, b, seed_links)
    assert post({"sweep": True}).status_code == 200


def test_6_pool_then_meet_with_the_pool_full_and_meet_failing_raises_the_alert(conn, google, assign, set_links, capfd):
    set_links(0)
    post = assign(source="pool_then_meet")
    google.fail_next(Fault.html(), kind="create")
    b = paid(conn)
    capfd.readouterr()
    assert post({"bookingId": b["id"]}).status_code == 409
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    alert = [e for e in lines if e.get("alert") == "pool_exhausted"]
    assert alert and alert[0]["severity"] == "ERROR" and alert[0]["booking_id"] == b["id"]


def test_7_one_space_refusing_to_end_its_call_does_not_stop_the_others(conn, google, assign, capfd):
    post = assign()

    first, second = paid(conn, **local_time_ago(conn, 180)), paid(conn, **local_time_ago(conn, 170))
    for b in (first, second):
        assert post({"bookingId": b["id"]}).get_json()["source"] == "meet"
    spaces = [conn.run("SELECT space_name FROM meeting_links_pool WHERE dedicated_to = CAST(:b AS uuid)",
                       b=b["id"])[0][0] for b in (first, second)]
    for name in spaces:
        google.start_call(name)
    google.fail_next(403, kind="end")
    capfd.readouterr()
    swept = post({"sweep": True})
    assert swept.status_code == 200 and swept.get_json()["callsEnded"] == 1
    outcomes = sorted(r[0] for r in conn.run("SELECT call_end_outcome FROM bookings WHERE call_end_outcome IS NOT NULL"))
    assert outcomes == ["ended", "refused"]
    logged = capfd.readouterr().err
    refused = [json.loads(line) for line in logged.splitlines() if line.startswith("{") and "403" in line]
    assert refused and any(name in json.dumps(e) for e in refused for name in spaces)
    assert not any(e.get("alert") == "meet_credentials_refused" for e in refused)
    # The refused one is not first again at the next sweep ahead of anything else.
    assert post({"sweep": True}).status_code == 200


# --- Midtrans's status API --------------------------------------------------------------------

class RawMidtrans:
    """A status API that answers with the given bytes (or sleeps first)."""

    def __init__(self, body: bytes, delay_s: float = 0.0):
        self.body, self.delay_s = body, delay_s
        self.server = FakeServer(self._handle)

    def _handle(self, method, path, headers, body):
        time.sleep(self.delay_s)
        return 200, self.body, {"Content-Type": "application/json"}


@pytest.mark.parametrize("answer", [
    b'{"status_code": "200", "order_id": "%s", "transaction_status": "settle\\u0000ment",'
    b' "gross_amount": "100000.00", "transaction_id": "t\\u0000"}',
    b'{"status_code": "200", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"status_code": "200", "order_id": "%s", "transaction_status": "settlement", "gross_amount": "1e400"}',
], ids=["a NUL", "nested 100,000 deep", "an amount out of format"])
def test_9_a_status_answer_no_database_could_store_is_unavailable_not_a_500(conn, app_env, set_links, answer):
    set_links(1)
    waiting = paid(conn)
    pending = open_payment(conn, 30)
    fake = RawMidtrans(answer.replace(b"%s", pending["order_id"].encode()))
    with fake.server:
        app_env(MIDTRANS_API_BASE_URL=fake.server.url, MIDTRANS_VERIFY_WITH_STATUS_API="true",
                ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")
        swept = function_client("assign_meeting_link").post("/", json={"sweep": True}, headers=AUTH)
        assert swept.status_code == 200 and swept.get_json()["assigned"] == 1
        assert booking(conn, waiting["id"])["link_id"] is not None
        # The webhook's second check: 503 (Midtrans retries), nothing recorded.
        r = function_client("midtrans_webhook").post("/", json=notification(pending["order_id"]))
        assert r.status_code == 503
    assert booking(conn, pending["id"])["payment_status"] == "pending"


def test_10_a_slow_status_api_and_many_open_payments_leave_time_for_waiting_bookings(conn, app_env, set_links, midtrans):
    set_links(1)
    waiting = paid(conn)
    for i in range(40):
        open_payment(conn, 30 + i)
    slow = RawMidtrans(b'{"status_code": "404", "status_message": "not found"}', delay_s=0.45)
    with slow.server:
        app_env(MIDTRANS_API_BASE_URL=slow.server.url, SWEEP_TIME_BUDGET_S="3")
        swept, took = timed(lambda: function_client("assign_meeting_link").post("/", json={"sweep": True},
                                                                                 headers=AUTH))
    body = swept.get_json()
    assert swept.status_code == 200 and body["assigned"] == 1, body
    assert booking(conn, waiting["id"])["link_id"] is not None
    assert 1 <= body["paymentsChecked"] < 40 and "payments" in body["incomplete"]
    assert took < 3 + 1.0


# --- slow and large answers, the sweep's stages -----------------------------------------------

def trickling_server(head: bytes) -> socketserver.ThreadingTCPServer:
    """Reads a request's head, sends `head`, then one byte every 0.1 s for 20 s."""
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                self.wfile.write(head)
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass  # the client gave up, as it should

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def test_11_a_trickling_meet_answer_is_cut_at_the_deadline(conn, google, assign, seed_links):
    post = assign(MEET_API_TIMEOUT_S="1.0")
    google.fail_next(Fault.trickle(8.0), kind="create")
    b = paid(conn)
    r, took = timed(lambda: post({"bookingId": b["id"]}))
    assert_pool_fallback(conn, r, b, seed_links)
    assert took < 1.0 + 1.0


def test_11_a_flood_from_meet_is_refused_without_growing_the_worker(conn, google, assign, seed_links):
    post = assign(MEET_API_TIMEOUT_S="3.0")
    warm = paid(conn, time="08:00")
    post({"bookingId": warm["id"]})  # connections, caches and code loaded before measuring
    google.fail_next(Fault.flood(300 * 1024 * 1024), kind="create")
    b = paid(conn)
    r, grown = peak_growth_kib(lambda: post({"bookingId": b["id"]}))
    assert_pool_fallback(conn, r, b, seed_links)
    assert grown < 8 * 1024, f"grew {grown} KiB"


def test_11_a_trickling_or_flooding_status_api_holds_the_webhook_no_longer_than_its_deadline(conn, app_env):
    b = insert_booking(conn)
    server = trickling_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    try:
        app_env(MIDTRANS_API_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}",
                MIDTRANS_VERIFY_WITH_STATUS_API="true", MIDTRANS_API_TIMEOUT_S="1.0",
                ASSIGN_MEETING_LINK_URL="http://127.0.0.1:9/")
        r, took = timed(lambda: function_client("midtrans_webhook").post("/", json=notification(b["order_id"])))
    finally:
        server.shutdown()
        server.server_close()
    assert r.status_code == 503 and took < 1.0 + 1.0
    assert booking(conn, b["id"])["payment_status"] == "pending"


def test_11_a_trickling_receiver_holds_the_sweep_no_longer_than_its_budget(conn, app_env, seed_links):
    server = trickling_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    try:
        app_env(LINK_EVENTS_URL=f"http://127.0.0.1:{server.server_address[1]}/hooks", LINK_EVENTS_SECRET=secret,
                LINK_EVENTS_TIMEOUT_S="15", SWEEP_TIME_BUDGET_S="2")
        for hour in range(3):
            paid(conn, time=f"{10 + hour}:00")
        post = function_client("assign_meeting_link")
        swept, took = timed(lambda: post.post("/", json={"sweep": True}, headers=AUTH))
    finally:
        server.shutdown()
        server.server_close()
    assert swept.status_code == 200
    assert took < 2 + 1.0, f"{took:.1f} s"


def test_12_each_stage_of_the_sweep_gets_its_share_when_meet_times_out(conn, google, assign, set_links):
    set_links(1)
    post = assign(source="pool_then_meet", MEET_API_TIMEOUT_S="0.5", SWEEP_TIME_BUDGET_S="4")

    # A finished session in a private space whose call still runs.
    conn.run("UPDATE meeting_links_pool SET is_available = false")
    over = paid(conn, **local_time_ago(conn, 180))
    assert post({"bookingId": over["id"]}).get_json()["source"] == "meet"
    space = conn.run("SELECT space_name FROM meeting_links_pool WHERE dedicated_to = CAST(:b AS uuid)", b=over["id"])[0][0]
    google.start_call(space)
    # Eight paid bookings wait; every Meet create now hangs past the timeout.
    for i in range(8):
        paid(conn, time=f"{9 + i}:00")
    google.fail_next(*[Fault.hang(2.0)] * 40, kind="create")
    swept = post({"sweep": True})
    assert swept.status_code == 200
    assert swept.get_json()["callsEnded"] == 1, swept.get_json()
    assert space not in google.active
