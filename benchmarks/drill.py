"""Failure drill: a burst of signed notifications (duplicates, reordering, status changes)
through both functions over HTTP while connections are killed, PostgreSQL restarts and the
assign function goes down and comes back. Midtrans-style redelivery of every non-2xx answer,
then one sweep; then the checks: nothing paid is lost, nothing is double-booked.

    python -m benchmarks.drill [--bookings 500] [--notifications 2000] [--no-restart]

The test suite runs a smaller version (tests/test_drill.py)."""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from meeting_links import config
from meeting_links.db import migrations
from tests.support import (
    INTERNAL_TOKEN,
    SERVER_KEY,
    FunctionServer,
    connect,
    expected_payment_status,
    new_order_id,
    notification,
)

# Scripts of (transaction_status, fraud_status) an order's notifications follow, with weights.
SCRIPTS = [
    (50, [("pending", None), ("settlement", None)]),
    (10, [("settlement", None), ("pending", None)]),                    # reordered
    (10, [("pending", None), ("settlement", None), ("refund", None)]),  # frees a link
    (6, [("pending", None), ("settlement", None), ("deny", None)]),     # channel reversal
    (10, [("pending", None), ("expire", None)]),
    (7, [("capture", "challenge"), ("capture", "accept")]),
    (4, [("capture", "challenge"), ("deny", None)]),
    (3, [("pending", None), ("settlement", None), ("partial_refund", None)]),
]

def replay(log_rows) -> str:
    """The payment state the notifications a booking actually received imply."""
    return expected_payment_status((status, fraud, txn) for status, fraud, txn, outcome in log_rows
                                   if outcome not in ("rejected", "ignored"))


@dataclass
class Report:
    bookings: int = 0
    links: int = 0
    notifications_sent: int = 0
    first_answers: Counter = field(default_factory=Counter)
    redelivery_rounds: int = 0
    still_failing: int = 0
    backends_terminated: int = 0
    postgres_restarts: int = 0
    assign_outage_s: float = 0.0
    sweep: dict = field(default_factory=dict)
    final_states: Counter = field(default_factory=Counter)
    state_mismatches: list = field(default_factory=list)
    double_bookings: int = 0
    paid_without_link_that_fit: list = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return (not self.state_mismatches and self.double_bookings == 0
                and not self.paid_without_link_that_fit and self.still_failing == 0)

    def as_dict(self):
        d = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}
        d["passed"] = self.passed
        return d


def prepare(url: str, bookings: int, links: int, rng: random.Random) -> list[dict]:
    conn = connect(url)
    try:
        conn.execute_simple("SET session_replication_role = replica")
        conn.execute_simple("TRUNCATE payment_notifications, meet_space_requests, meet_orphaned_spaces,"
                            " link_event_deliveries, link_events, bookings, meeting_links_pool CASCADE")
        conn.execute_simple("SET session_replication_role = DEFAULT")
        conn.execute_simple("DELETE FROM meeting_links_pool")
        for i in range(links):
            conn.execute_unnamed("INSERT INTO meeting_links_pool (meeting_link, notes, created_at) VALUES "
                                 "($1, 'drill', now() + make_interval(secs => $2))",
                                 (f"https://meet.google.com/drill-{i:03d}", i))
        made = []
        for _ in range(bookings):
            # Overlapping sessions on one future day: starts every 15 minutes over 8 hours.
            minute = rng.randrange(0, 8 * 60, 15)
            order_id = new_order_id("DRILL")
            conn.execute_unnamed(
                "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                " duration, price, order_id) VALUES ('u', 'e', 'Konsultasi', '2031-03-03', $1, $2, 100000, $3)",
                (f"{9 + minute // 60:02d}:{minute % 60:02d}", rng.choice([30, 45, 60, 90]), order_id))
            made.append({"order_id": order_id})
        return made
    finally:
        conn.close()


def scripts_for(orders, total, rng):
    weights = [w for w, _ in SCRIPTS]
    plans = {o["order_id"]: list(rng.choices([s for _, s in SCRIPTS], weights)[0]) for o in orders}
    sent = sum(len(p) for p in plans.values())
    # Duplicates, as Midtrans sometimes sends them, up to the requested total.
    while sent < total:
        order_id = rng.choice(orders)["order_id"]
        plan = plans[order_id]
        i = rng.randrange(len(plan))
        plan.insert(rng.randrange(i, len(plan) + 1), plan[i])
        sent += 1
    return plans


def _transaction_id(order_id, status, fraud):
    # One Midtrans transaction per order; a challenged capture and its later accept share it.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, order_id))


class Faults(threading.Thread):
    """Kills the functions' database connections every half second; optionally restarts
    PostgreSQL once and takes the assign function down for a while."""

    def __init__(self, url, assign: FunctionServer, report: Report, restart_postgres: bool, outage_s: float):
        super().__init__(daemon=True)
        self.url, self.assign, self.report = url, assign, report
        self.restart_postgres, self.outage_s = restart_postgres, outage_s
        self.stop_event = threading.Event()

    def run(self):
        # The outage starts with the burst and the faults run to completion however fast the
        # burst is, so every drill sees all of them.
        start = time.monotonic()
        outage_started = None
        if self.outage_s:
            self.assign.stop()
            outage_started = time.monotonic()
        restarted = not self.restart_postgres
        while True:
            try:
                conn = connect(self.url)
                rows = conn.execute_simple(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name ="
                    " 'meeting-links' AND datname = current_database() AND pid <> pg_backend_pid()").rows
                self.report.backends_terminated += len(rows or [])
                conn.close()
            except Exception:
                pass  # PostgreSQL may be restarting
            if outage_started and time.monotonic() - outage_started >= self.outage_s:
                self.report.assign_outage_s = round(time.monotonic() - outage_started, 2)
                self.assign.start()
                outage_started = None
            if not restarted and time.monotonic() - start > 1.0:
                restart_postgres(self.url)
                restarted = True
                self.report.postgres_restarts += 1
            if self.stop_event.is_set() and outage_started is None and restarted:
                return
            self.stop_event.wait(0.25)


def restart_postgres(url: str) -> None:
    """Restarts the server behind url: the embedded one, or the system's cluster."""
    from urllib.parse import urlparse

    from meeting_links.db import embedded
    server = embedded.Server()
    if server.port() == urlparse(url).port:
        server.restart()
        return
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=60)


def run_drill(url: str, *, bookings=500, notifications=2000, links=12, concurrency=32,
              restart_postgres=True, outage_s=3.0, seed=7) -> Report:
    rng = random.Random(seed)
    report = Report(bookings=bookings, links=links)
    migrations.migrate(config.from_environment({"DATABASE_URL": url}), echo=lambda *_: None)
    orders = prepare(url, bookings, links, rng)
    plans = scripts_for(orders, notifications, rng)
    report.notifications_sent = sum(len(p) for p in plans.values())

    env = {"DATABASE_URL": url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN, "DB_POOL_SIZE": "8"}
    assign = FunctionServer("assign_meeting_link", env).start()
    webhook = FunctionServer("midtrans_webhook", {**env, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                                  "ASSIGN_MEETING_LINK_URL": assign.url}).start()
    failed: list[dict] = []
    lock = threading.Lock()
    session_local = threading.local()

    def post(body):
        s = getattr(session_local, "s", None) or requests.Session()
        session_local.s = s
        try:
            return s.post(webhook.url, json=body, timeout=20).status_code
        except requests.RequestException:
            return 0

    def send_order(order_id):
        for status, fraud in plans[order_id]:
            body = notification(order_id, status, fraud_status=fraud,
                                transaction_id=_transaction_id(order_id, status, fraud))
            code = post(body)
            with lock:
                report.first_answers[str(code)] += 1
                if not 200 <= code < 300:
                    failed.append(body)

    started = time.monotonic()
    faults = Faults(url, assign, report, restart_postgres, outage_s)
    try:
        faults.start()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send_order, list(plans)))
        faults.stop_event.set()
        faults.join()
        # Midtrans redelivers what was not answered 2xx, at most 5 more times.
        pending = failed
        while pending and report.redelivery_rounds < 5:
            report.redelivery_rounds += 1
            time.sleep(0.5)
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(post, pending))
            pending = [b for b, c in zip(pending, codes) if not 200 <= c < 300]
        report.still_failing = len(pending)
        sweep = requests.post(assign.url, json={"sweep": True}, timeout=60,
                              headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
        report.sweep = sweep.json()
    finally:
        faults.stop_event.set()
        webhook.stop()
        assign.stop()
    report.duration_s = round(time.monotonic() - started, 2)
    check(url, report)
    return report


def check(url: str, report: Report) -> None:
    conn = connect(url)
    try:
        logs = defaultdict(list)
        for order_id, status, fraud, txn, outcome in conn.execute_simple(
                "SELECT order_id, transaction_status, fraud_status, transaction_id, outcome"
                " FROM payment_notifications ORDER BY id").rows:
            logs[order_id].append((status, fraud, txn, outcome))
        for order_id, payment_status, status, link in conn.execute_simple(
                "SELECT order_id, payment_status, status, meeting_link_id FROM bookings").rows:
            report.final_states[payment_status] += 1
            expected = replay(logs[order_id])
            if payment_status != expected:
                report.state_mismatches.append({"order_id": order_id, "state": payment_status, "expected": expected})
            if (link is not None) != (payment_status == "paid" and status == "confirmed") and link is not None:
                report.state_mismatches.append({"order_id": order_id, "holds_link_while": payment_status})
        report.double_bookings = conn.execute_simple(
            "SELECT count(*) FROM bookings a JOIN bookings b ON a.meeting_link_id = b.meeting_link_id"
            " AND a.id < b.id AND a.link_hold && b.link_hold").rows[0][0]
        report.paid_without_link_that_fit = [r[0] for r in conn.execute_simple(
            "SELECT b.order_id FROM bookings b WHERE b.payment_status = 'paid' AND b.status = 'confirmed'"
            " AND b.meeting_link_id IS NULL AND EXISTS (SELECT 1 FROM meeting_links_pool l WHERE l.is_available"
            " AND NOT EXISTS (SELECT 1 FROM bookings o WHERE o.meeting_link_id = l.id AND o.link_hold && b.link_hold))").rows]
    finally:
        conn.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                   help="server to use (default: DATABASE_URL, else 127.0.0.1:5432 or the embedded"
                        " PostgreSQL); the database is always meeting_links_drill")
    p.add_argument("--bookings", type=int, default=500)
    p.add_argument("--notifications", type=int, default=2000)
    p.add_argument("--links", type=int, default=12)
    p.add_argument("--no-restart", action="store_true", help="do not restart PostgreSQL")
    p.add_argument("--report", default="docs/drill.json")
    args = p.parse_args(argv)
    from benchmarks.run import bench_url
    from meeting_links.support.local_stack import ensure_database
    args.database_url = bench_url(args.database_url, "meeting_links_drill")
    ensure_database(config.from_environment({"DATABASE_URL": args.database_url}))
    report = run_drill(args.database_url, bookings=args.bookings, notifications=args.notifications,
                       links=args.links, restart_postgres=not args.no_restart)
    text = json.dumps(report.as_dict(), indent=2)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
