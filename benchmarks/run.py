"""Benchmarks: allocation latency as history grows, contention for one slot, end to end over
HTTP, and cold starts; each compared in the same run with a baseline. Writes
docs/benchmarks.md (and .json) and prints the report.

    python -m benchmarks.run                 # the full run (make bench), about 15 minutes
    python -m benchmarks.run --quick         # small sizes, to check the benchmark itself
    python -m benchmarks.run --smoke         # every scenario once, tiny (what make test runs)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import queue
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

from meeting_links import allocation, config, logs
from meeting_links import db as db_module
from meeting_links.db import migrations
from meeting_links.db.connect import connector_for
from meeting_links.errors import PoolExhausted
from meeting_links.support.fake_google import FakeGoogle
from meeting_links.support.local_stack import ensure_database, resolve
from tests.support import INTERNAL_TOKEN, REPO, SERVER_KEY, FunctionServer, new_order_id, notification

HERE = Path(__file__).resolve().parent
SECTIONS = ["allocation", "contention", "end_to_end", "meet", "cold_start"]
SLOTS_PER_YEAR = 365 * 48  # half-hour slots


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds):
    return round(seconds * 1000, 3)


class Bench:
    def __init__(self, url: str, proxy_url: str | None = None):
        self.url, self.proxy_url = url, proxy_url
        self.settings = self.settings_for(False)
        self.conn = self.connect()

    def settings_for(self, proxied: bool):
        """Settings for the direct connection, or through the latency proxy."""
        return config.from_environment({"DATABASE_URL": self.proxy_url if proxied else self.url,
                                        "DB_TIMEOUT_S": "1800", "DB_POOL_SIZE": "64",
                                        "DB_LOCK_TIMEOUT_MS": "30000", "DB_STATEMENT_TIMEOUT_MS": "60000"})

    def connect(self, proxied: bool = False):
        conn = connector_for(self.settings_for(proxied))()
        conn.execute_simple("SET TIME ZONE 'UTC'")
        conn.execute_simple("SET statement_timeout = 0")
        return conn

    def sql(self, text, *args):
        return self.conn.execute_unnamed(text, args).rows if args else self.conn.execute_simple(text).rows

    # --- data ---------------------------------------------------------------------------

    def reset(self, links: int):
        self.sql("SET session_replication_role = replica")
        self.sql("TRUNCATE payment_notifications, meet_space_requests, meet_orphaned_spaces, link_event_deliveries,"
                 " link_events, bookings, meeting_links_pool CASCADE")
        self.sql("SET session_replication_role = DEFAULT")
        self.sql("DELETE FROM meeting_links_pool")
        self.sql("INSERT INTO meeting_links_pool (meeting_link, created_at) SELECT"
                 " 'https://meet.google.com/bench-' || i, now() + make_interval(secs => i)"
                 " FROM generate_series(0, CAST($1 AS integer) - 1) i", links)

    def load_history(self, bookings: int, links: int):
        """A year (2030) of half-hour sessions: the k-th booking of a slot holds link k while
        70% of the pool is in use, the rest expired. Then the same rows for the baseline."""
        in_use = max(1, int(links * 0.7))
        self.sql("DROP TABLE IF EXISTS bench_links")
        self.sql("CREATE TABLE bench_links AS SELECT id, row_number() OVER (ORDER BY created_at, id) - 1 AS k"
                 " FROM meeting_links_pool")
        self.sql(
            "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time, duration,"
            " price, payment_status, status, order_id, meeting_link_id)"
            " SELECT 'u', 'e', 'K', date '2030-01-01' + (s / 48), make_time((s % 48) / 2, (s % 2) * 30, 0), 30,"
            " 100000, CASE WHEN k < CAST($2 AS integer) THEN 'paid' ELSE 'expired' END,"
            " CASE WHEN k < CAST($2 AS integer) THEN 'confirmed' ELSE 'cancelled' END, 'H-' || i,"
            " (SELECT id FROM bench_links l WHERE l.k = g.k AND g.k < CAST($2 AS integer))"
            f" FROM generate_series(0, CAST($1 AS integer) - 1) i, LATERAL (SELECT i % {SLOTS_PER_YEAR} AS s,"
            f" i / {SLOTS_PER_YEAR} AS k) g", bookings, in_use)
        self.sql((HERE / "seed_baseline.sql").read_text())
        # Settle maintenance now, so that autovacuum (which a million inserts trigger) and the
        # checkpoint do not run on the same two cores during the measurement.
        self.sql("VACUUM (ANALYZE) bookings")
        self.sql("VACUUM (ANALYZE) seed_bookings")
        self.sql("CHECKPOINT")

    def new_bookings(self, count: int, rng: random.Random, day_range=(0, 365), base="2030-01-01"):
        """Paid bookings at random times, offset a quarter hour so each spans two history slots;
        the same rows go into the baseline's table."""
        made = []
        for _ in range(count):
            day, minute = rng.randrange(*day_range), rng.randrange(0, 24 * 60 - 60, 15)
            row = self.sql(
                "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                " duration, price, payment_status, status, order_id) VALUES ('u', 'e', 'K',"
                " CAST($1 AS date) + CAST($2 AS integer), make_time(CAST($3 AS integer), CAST($4 AS integer), 0),"
                " 30, 100000, 'paid', 'confirmed', $5)"
                " RETURNING id::text, scheduled_date, scheduled_time, duration",
                base, day, minute // 60, minute % 60, f"N-{uuid.uuid4()}")[0]
            self.sql("INSERT INTO seed_bookings (id, scheduled_date, scheduled_time, duration, payment_status)"
                     " VALUES ($1, $2, $3, $4, 'paid')", *row)
            made.append(row)
        return made


def seed_assign(conn, row):
    """The seed's two steps: find a link, then update the booking."""
    found = conn.execute_unnamed("SELECT id FROM seed_find_available_meeting_link(CAST($1 AS date), CAST($2 AS time), CAST($3 AS integer))",
                                 (row[1], row[2], row[3])).rows
    if found:
        conn.execute_unnamed("UPDATE seed_bookings SET meeting_link_id = $1 WHERE id = $2", (found[0][0], row[0]))
    return bool(found)


def global_lock_assign(conn, row):
    conn.execute_simple("BEGIN")
    conn.execute_simple("SELECT pg_advisory_xact_lock(42)")
    got = seed_assign(conn, row)
    conn.execute_simple("COMMIT")
    return got


# --- (a) allocation latency ------------------------------------------------------------------

def allocation_latency(bench: Bench, sizes, pools, per_config: int, rng) -> list[dict]:
    rows = []
    for history in sizes:
        for links in pools:
            started = time.monotonic()
            bench.reset(links)
            bench.load_history(history, links)
            load_s = time.monotonic() - started
            fresh = bench.new_bookings(per_config + 20, rng)
            database = db_module.Database(bench.settings)
            ours, assigned = [], 0
            for i, row in enumerate(fresh):
                t = time.perf_counter()
                try:
                    allocation.assign(database, row[0])
                    assigned += i >= 20
                except PoolExhausted:
                    pass
                if i >= 20:  # the first 20 warm the pool and caches
                    ours.append(time.perf_counter() - t)
            database.close()
            seed_conn, seed = bench.connect(), []
            for i, row in enumerate(fresh):
                t = time.perf_counter()
                seed_assign(seed_conn, row)
                if i >= 20:
                    seed.append(time.perf_counter() - t)
            seed_conn.close()
            result = {"history": history, "links": links, "load_s": round(load_s, 1),
                      "ours_p50_ms": ms(percentile(ours, 50)), "ours_p99_ms": ms(percentile(ours, 99)),
                      "seed_p50_ms": ms(percentile(seed, 50)), "seed_p99_ms": ms(percentile(seed, 99)),
                      "assigned": assigned, "attempts": len(ours)}
            result["p50_ratio"] = round(result["ours_p50_ms"] / result["seed_p50_ms"], 2)
            result["p99_ratio"] = round(result["ours_p99_ms"] / result["seed_p99_ms"], 2)
            print("allocation", result, flush=True)
            rows.append(result)
    return rows


# --- (b) contention ---------------------------------------------------------------------------

def contention(bench: Bench, levels, pools, proxied: bool = False) -> list[dict]:
    results = []
    strategies = ("ours", "global lock") if proxied else ("ours", "seed", "global lock")
    total_links = bench.sql("SELECT count(*) FROM meeting_links_pool")[0][0]
    for links in pools:
        if links > total_links:
            continue
        bench.sql("UPDATE meeting_links_pool SET is_available = (id IN (SELECT id FROM meeting_links_pool"
                  " ORDER BY created_at, id LIMIT CAST($1 AS integer)))", links)
        for k in levels:
            for strategy in strategies:
                bench.sql("DELETE FROM bookings WHERE scheduled_date = '2032-06-01'")
                bench.sql("DELETE FROM seed_bookings WHERE scheduled_date = '2032-06-01'")
                rows = []
                for _ in range(k):
                    row = bench.sql(
                        "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                        " duration, price, payment_status, status, order_id) VALUES ('u','e','K','2032-06-01',"
                        " '10:00', 60, 100000, 'paid', 'confirmed', $1) RETURNING id::text, scheduled_date,"
                        " scheduled_time, duration", f"C-{uuid.uuid4()}")[0]
                    bench.sql("INSERT INTO seed_bookings (id, scheduled_date, scheduled_time, duration,"
                              " payment_status) VALUES ($1, $2, $3, $4, 'paid')", *row)
                    rows.append(row)
                results.append(_contend(bench, strategy, rows, links, proxied))
                print("contention", results[-1], flush=True)
    bench.sql("UPDATE meeting_links_pool SET is_available = true")
    return results


def _open_connections(database, count: int) -> None:
    """Opens the pool's connections first, as the baselines do, so that only assignments are timed."""
    warm = threading.Barrier(count)

    def hold(_):
        with database.transaction() as tx:
            tx.one("now")
            warm.wait()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(hold, range(count)))


def _contend(bench: Bench, strategy: str, rows, links: int, proxied: bool) -> dict:
    k, pool_size = len(rows), min(len(rows), 64)
    barrier = threading.Barrier(k)
    latencies = [0.0] * k
    if strategy == "ours":
        database = db_module.Database(bench.settings_for(proxied))
        _open_connections(database, pool_size)

        def work(i):
            barrier.wait()
            t = time.perf_counter()
            try:
                allocation.assign(database, rows[i][0])
            except PoolExhausted:
                pass
            latencies[i] = time.perf_counter() - t
    else:
        conns: queue.Queue = queue.Queue()
        for _ in range(pool_size):
            conns.put(bench.connect(proxied))
        step = seed_assign if strategy == "seed" else global_lock_assign

        def work(i):
            barrier.wait()
            t = time.perf_counter()
            conn = conns.get()
            try:
                step(conn, rows[i])
            finally:
                conns.put(conn)
            latencies[i] = time.perf_counter() - t
    started = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        list(pool.map(work, range(k)))
    wall = time.perf_counter() - started
    if strategy == "ours":
        database.close()
        table = "bookings"
    else:
        while not conns.empty():
            conns.get().close()
        table = "seed_bookings"
    assigned = bench.sql(f"SELECT count(*) FROM {table} WHERE scheduled_date = '2032-06-01'"
                         " AND meeting_link_id IS NOT NULL")[0][0]
    # Every booking here is 10:00-11:00 on the same day: two on one link is a double booking.
    doubled = bench.sql(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table}"
                        " WHERE scheduled_date = '2032-06-01' AND meeting_link_id IS NOT NULL"
                        " GROUP BY meeting_link_id) x")[0][0]
    return {"strategy": strategy, "proxy": proxied, "concurrency": k, "links": links,
            "throughput_per_s": round(k / wall, 1),
            "p99_ms": ms(percentile(latencies, 99)), "assigned": assigned, "double_bookings": int(doubled)}


def many_slots(bench: Bench, pools, proxied: bool = False, slots: int = 64, per_slot: int = 3,
               threads: int = 64) -> list[dict]:
    """`threads` allocators over `slots` separate slots (per_slot bookings each, shuffled):
    ours should let different slots go at once, where one global lock makes them queue."""
    results = []
    for links in pools:
        bench.sql("UPDATE meeting_links_pool SET is_available = (id IN (SELECT id FROM meeting_links_pool"
                  " ORDER BY created_at, id LIMIT CAST($1 AS integer)))", links)
        for strategy in ("ours", "global lock"):
            bench.sql("DELETE FROM bookings WHERE scheduled_date >= '2033-07-01'")
            bench.sql("DELETE FROM seed_bookings WHERE scheduled_date >= '2033-07-01'")
            rows = []
            for slot in range(slots):
                for _ in range(per_slot):
                    row = bench.sql(
                        "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                        " duration, price, payment_status, status, order_id) VALUES ('u','e','K',"
                        " date '2033-07-01' + CAST($1 AS integer), make_time(CAST($2 AS integer), 0, 0), 60,"
                        " 100000, 'paid', 'confirmed', $3) RETURNING id::text, scheduled_date, scheduled_time,"
                        " duration", slot // 24, slot % 24, new_order_id("M"))[0]
                    bench.sql("INSERT INTO seed_bookings (id, scheduled_date, scheduled_time, duration,"
                              " payment_status) VALUES ($1, $2, $3, $4, 'paid')", *row)
                    rows.append(row)
            random.Random(slots).shuffle(rows)
            results.append(_many_slots_run(bench, strategy, rows, links, threads, proxied))
            print("many slots", results[-1], flush=True)
    bench.sql("UPDATE meeting_links_pool SET is_available = true")
    return results


def _many_slots_run(bench: Bench, strategy: str, rows, links: int, threads: int, proxied: bool) -> dict:
    todo: queue.Queue = queue.Queue()
    for row in rows:
        todo.put(row)
    if strategy == "ours":
        database = db_module.Database(replace(bench.settings_for(proxied), db_pool_size=threads))

        def step(_conn, row):
            try:
                allocation.assign(database, row[0])
            except PoolExhausted:
                pass
        conns = [None] * threads
    else:
        step, conns = global_lock_assign, [bench.connect(proxied) for _ in range(threads)]
    if strategy == "ours":
        _open_connections(database, threads)
    barrier = threading.Barrier(threads)

    def worker(i):
        barrier.wait()
        while True:
            try:
                row = todo.get_nowait()
            except queue.Empty:
                return
            step(conns[i], row)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    wall = time.perf_counter() - started
    if strategy == "ours":
        database.close()
        table = "bookings"
    else:
        for conn in conns:
            conn.close()
        table = "seed_bookings"
    assigned = bench.sql(f"SELECT count(*) FROM {table} WHERE scheduled_date >= '2033-07-01'"
                         " AND meeting_link_id IS NOT NULL")[0][0]
    # Slots are whole separate hours: two bookings of one slot on one link is a double booking.
    doubled = bench.sql(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table}"
                        " WHERE scheduled_date >= '2033-07-01' AND meeting_link_id IS NOT NULL"
                        " GROUP BY meeting_link_id, scheduled_date, scheduled_time) x")[0][0]
    return {"strategy": strategy, "proxy": proxied, "threads": threads, "bookings": len(rows), "links": links,
            "throughput_per_s": round(len(rows) / wall, 1), "assigned": assigned, "double_bookings": int(doubled)}


# --- (c) end to end ----------------------------------------------------------------------------

def end_to_end(bench: Bench, levels, requests_per_level: int, rng, proxied: bool = False) -> list[dict]:
    bench.sql("UPDATE meeting_links_pool SET is_available = true")
    env = {"DATABASE_URL": bench.proxy_url if proxied else bench.url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
           "DB_POOL_SIZE": "8"}
    assign = FunctionServer("assign_meeting_link", env).start()
    webhook = FunctionServer("midtrans_webhook", {**env, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                                  "ASSIGN_MEETING_LINK_URL": assign.url}).start()
    ok = FunctionServer("ok", {}, source=HERE / "ok_function" / "main.py").start()
    results = []
    try:
        for c in levels:
            orders = []
            for _ in range(requests_per_level + max(20, 2 * c)):
                day, minute = rng.randrange(0, 365), rng.randrange(0, 23 * 60, 30)
                order_id = new_order_id("E")
                bench.sql("INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                          " duration, price, order_id) VALUES ('u','e','K', date '2034-01-01' + CAST($1 AS integer),"
                          " make_time(CAST($2 AS integer), CAST($3 AS integer), 0), 30, 100000, $4)", day, minute // 60, minute % 60, order_id)
                orders.append(order_id)
            bodies = [notification(o) for o in orders]
            warm = max(20, 2 * c)  # fresh connections and caches are cold start, measured in (d)
            _load(webhook.url, bodies[:warm], c)
            _load(ok.url, [{} for _ in range(warm)], c)
            bodies, orders = bodies[warm:], orders[warm:]
            before = _cpu_seconds(bench, webhook, assign)
            ours = _load(webhook.url, bodies, c)
            spent = _per_request(before, _cpu_seconds(bench, webhook, assign), len(bodies))
            before_ok = _cpu_seconds(None, ok)
            ceiling = _load(ok.url, [{} for _ in bodies], c)
            spent_ok = _per_request(before_ok, _cpu_seconds(None, ok), len(bodies))
            linked = _linked(bench, orders)
            # What Midtrans and the schedule do next: redeliver what was not answered 200, then
            # a sweep. On a busy machine some links come only then; none may be missing after it.
            _catch_up(webhook.url, assign.url, ours["failed"])
            result = {"proxy": proxied, "concurrency": c, "requests": len(bodies),
                      "rps": ours["rps"], "p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"],
                      "errors": ours["errors"], "links_assigned": linked, "links_after_sweep": _linked(bench, orders),
                      "ok_rps": ceiling["rps"], "ok_p50_ms": ceiling["p50_ms"], "ok_p99_ms": ceiling["p99_ms"]}
            result["share_of_ceiling"] = round(result["rps"] / result["ok_rps"], 3)
            result["cpu_ms_per_request"] = spent
            result["ok_cpu_ms_per_request"] = spent_ok
            print("end to end", result, flush=True)
            results.append(result)
    finally:
        for s in (webhook, assign, ok):
            s.stop()
    return results


def _linked(bench: Bench, orders) -> int:
    return bench.sql("SELECT count(*) FROM bookings WHERE order_id = ANY(CAST($1 AS text[]))"
                     " AND meeting_link_id IS NOT NULL", orders)[0][0]


def _catch_up(webhook_url: str, assign_url: str, failed: list) -> None:
    session = requests.Session()
    for body in failed:
        for _ in range(5):
            if session.post(webhook_url, json=body, timeout=30).status_code == 200:
                break
            time.sleep(0.5)
    session.post(assign_url, json={"sweep": True}, timeout=120,
                 headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PROXY_PID: list[int] = []  # the latency proxy's process, when one runs


def _cpu_seconds(bench: Bench | None, *servers) -> dict:
    """CPU time used so far by each server (gunicorn master and workers), the backends serving
    the benchmark's database (not the rest of a shared machine's PostgreSQL), the latency
    proxy, and this process (the load generator)."""
    def tree(pid):
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return _process_cpu(pid) + sum(_process_cpu(int(c)) for c in children)
    out = {s.command[s.command.index("--target") + 1]: tree(s.proc.pid) for s in servers}
    if bench is not None:
        backends = bench.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                             " AND pid <> pg_backend_pid()")
        out["postgres"] = {pid: _process_cpu(pid) for (pid,) in backends}
    if _PROXY_PID:
        out["proxy"] = _process_cpu(_PROXY_PID[0])
    out["client"] = time.process_time()
    return out


def _per_request(before: dict, after: dict, requests_made: int) -> dict:
    """CPU milliseconds per request by part; backends are matched by pid (the pools keep them)."""
    spent = {}
    for part, now in after.items():
        if part == "postgres":
            used = sum(v - before["postgres"].get(pid, 0.0) for pid, v in now.items())
        else:
            used = now - before.get(part, 0.0)
        spent[part] = round(used / requests_made * 1000, 2)
    spent["total"] = round(sum(spent.values()), 2)
    return spent


def _load(url, bodies, concurrency, keep=False) -> dict:
    work: queue.Queue = queue.Queue()
    for b in bodies:
        work.put(b)
    latencies, failed, lock = [], [], threading.Lock()

    def client():
        session = requests.Session()
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            t = time.perf_counter()
            r = session.post(url, json=body, timeout=30)
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)
                if r.status_code != 200:
                    failed.append(body)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    out = {"rps": round(len(bodies) / wall, 1), "p50_ms": ms(percentile(latencies, 50)),
           "p99_ms": ms(percentile(latencies, 99)), "errors": len(failed), "failed": failed}
    if keep:
        out["latencies"] = latencies
    return out


# --- (e) end to end with private Meet spaces -------------------------------------------------

def meet_end_to_end(bench: Bench, concurrency: int, requests_made: int, rng, create_delay_s: float = 0.15) -> dict:
    """LINK_SOURCE=meet_then_pool against the local fake Meet API answering spaces.create in
    create_delay_s: what a notification costs when every booking gets its own space."""
    with FakeGoogle(create_delay_s=create_delay_s) as meet:
        env = {"DATABASE_URL": bench.url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN, "DB_POOL_SIZE": "8",
               "LINK_SOURCE": "meet_then_pool", "MEET_API_BASE_URL": meet.url,
               "MEET_CREDENTIALS": meet.authorized_user()}
        assign = FunctionServer("assign_meeting_link", env).start()
        webhook = FunctionServer("midtrans_webhook", {**env, "MIDTRANS_SERVER_KEY": SERVER_KEY,
                                                      "ASSIGN_MEETING_LINK_URL": assign.url}).start()
        try:
            orders = []
            for _ in range(requests_made + 2 * concurrency):
                day, minute = rng.randrange(0, 365), rng.randrange(0, 23 * 60, 30)
                order_id = new_order_id("G")
                bench.sql("INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                          " duration, price, order_id) VALUES ('u','e','K', date '2036-01-01' + CAST($1 AS integer),"
                          " make_time(CAST($2 AS integer), CAST($3 AS integer), 0), 30, 100000, $4)",
                          day, minute // 60, minute % 60, order_id)
                orders.append(order_id)
            bodies = [notification(o) for o in orders]
            _load(webhook.url, bodies[:2 * concurrency], concurrency)  # warm-up, token fetched
            timed = _load(webhook.url, bodies[2 * concurrency:], concurrency, keep=True)
            _catch_up(webhook.url, assign.url, timed["failed"])
        finally:
            webhook.stop()
            assign.stop()
        spaces = bench.sql("SELECT count(*) FROM bookings b JOIN meeting_links_pool l ON l.id = b.meeting_link_id"
                           " WHERE l.dedicated_to = b.id AND b.order_id = ANY(CAST($1 AS text[]))", orders)[0][0]
        within = sum(t <= 5.0 for t in timed["latencies"])
        result = {"concurrency": concurrency, "requests": len(timed["latencies"]), "create_delay_ms": create_delay_s * 1000,
                  "rps": timed["rps"], "p50_ms": timed["p50_ms"], "p99_ms": timed["p99_ms"], "errors": timed["errors"],
                  "within_5s_share": round(within / len(timed["latencies"]), 4), "private_spaces": spaces,
                  "spaces_created": meet.calls["create"], "bookings": len(orders),
                  "links_after_sweep": _linked(bench, orders)}
    print("meet end to end", result, flush=True)
    return result


# --- (d) cold start ------------------------------------------------------------------------------

def cold_start(bench: Bench, repeats: int) -> dict:
    env = {"DATABASE_URL": bench.url, "INTERNAL_API_TOKEN": INTERNAL_TOKEN}
    result = {}
    warm_assign = FunctionServer("assign_meeting_link", env).start()
    try:
        for target in ("assign_meeting_link", "midtrans_webhook"):
            times, after_open = [], []
            for _ in range(repeats):
                order_id = new_order_id("S")
                booking_id = bench.sql(
                    "INSERT INTO bookings (user_id, expert_id, session_type, scheduled_date, scheduled_time,"
                    " duration, price, payment_status, status, order_id) VALUES ('u','e','K', '2035-01-01',"
                    " '09:00', 30, 100000, $1, $2, $3) RETURNING id::text",
                    *(("paid", "confirmed") if target == "assign_meeting_link" else ("pending", "pending")),
                    order_id)[0][0]
                extra = {} if target == "assign_meeting_link" else {
                    "MIDTRANS_SERVER_KEY": SERVER_KEY, "ASSIGN_MEETING_LINK_URL": warm_assign.url}
                server = FunctionServer(target, {**env, **extra})
                t = time.perf_counter()
                server.proc = subprocess.Popen(server.command, env=server.env, cwd=server.cwd,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True)
                body = {"bookingId": booking_id} if target == "assign_meeting_link" else notification(order_id)
                headers = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
                while True:  # the moment the port accepts a connection
                    try:
                        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.0005)
                opened = time.perf_counter()
                while True:
                    try:
                        if requests.post(server.url, json=body, headers=headers, timeout=10).status_code == 200:
                            break
                    except requests.ConnectionError:
                        time.sleep(0.001)
                done = time.perf_counter()
                times.append(done - t)
                after_open.append(done - opened)
                server.stop()
                bench.sql("UPDATE bookings SET status = 'cancelled', meeting_link_id = NULL WHERE id = $1", booking_id)
            result[target] = {"first_response_ms_median": ms(statistics.median(times)),
                              "first_response_ms_max": ms(max(times)),
                              "after_port_open_ms_median": ms(statistics.median(after_open)),
                              "after_port_open_ms_max": ms(max(after_open))}
    finally:
        warm_assign.stop()
    for target, source in (("assign_meeting_link", REPO / "functions/assign_meeting_link"),
                           ("midtrans_webhook", REPO / "functions/midtrans_webhook"),
                           ("ok", HERE / "ok_function")):
        probe = ("import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); import main;"
                 " print(time.perf_counter() - t)")
        runs = [float(subprocess.run([sys.executable, "-c", probe, str(source)], capture_output=True,
                                     text=True, check=True).stdout) for _ in range(repeats)]
        result.setdefault(target, {})["import_ms_median"] = ms(statistics.median(runs))
    print("cold start", result, flush=True)
    return result


# --- report ----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
            "memory_gib": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "os": platform.platform()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                   help="server to use (default: DATABASE_URL, else 127.0.0.1:5432 or the embedded"
                        " PostgreSQL); the database is always meeting_links_bench")
    p.add_argument("--quick", action="store_true", help="small sizes (to check the benchmark runs)")
    p.add_argument("--smoke", action="store_true", help="the smallest sizes: every scenario once (the test suite)")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"), help="report path without extension")
    p.add_argument("--only", choices=SECTIONS, action="append",
                   help="run only these sections (repeatable); the report then holds only them")
    p.add_argument("--delay-ms", type=float, default=0.5,
                   help="latency proxy delay per direction (default 0.5; 0 runs no proxied scenarios)")
    args = p.parse_args(argv)
    ours = logging.getLogger("meeting_links")
    level = ours.level
    logs.setup(logging.WARNING)  # one INFO line per assignment would bury the progress lines
    rng = random.Random(20261124)
    args.database_url = bench_url(args.database_url)
    ensure_database(config.from_environment({"DATABASE_URL": args.database_url}))
    proxy = start_proxy(args.database_url, args.delay_ms) if args.delay_ms > 0 else None
    bench = Bench(args.database_url, proxy and proxy[1])
    try:
        return _run(bench, args, rng)
    finally:
        ours.setLevel(level)
        bench.conn.close()
        if proxy:
            proxy[0].kill()
            proxy[0].wait()
            proxy[0].stdout.close()


def bench_url(url: str | None, name: str = "meeting_links_bench") -> str:
    """url's server (or the one `make run` would use) with the benchmark's own database."""
    env = {"DATABASE_URL": url} if url else {}
    settings = resolve(config.from_environment(env), env)
    parsed = urlparse(settings.database_url)
    if url and parsed.path.strip("/") not in ("", "postgres"):
        return settings.database_url  # a database named on purpose
    return urlunparse(parsed._replace(path="/" + name))


def start_proxy(url: str, delay_ms: float) -> tuple[subprocess.Popen, str]:
    """The latency proxy in front of url's server; returns (process, url through it)."""
    parsed = urlparse(url)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.latency_proxy", "--listen", "0",
                             "--target", f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 5432}",
                             "--delay-ms", str(delay_ms)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[-1])
    _PROXY_PID[:] = [proc.pid]
    userinfo = parsed.netloc.rpartition("@")[0]
    netloc = f"{userinfo + '@' if userinfo else ''}{parsed.hostname or '127.0.0.1'}:{port}"
    return proc, urlunparse(parsed._replace(netloc=netloc))


def round_trip_ms(bench: Bench, proxied: bool, count: int = 300) -> dict:
    """What one round trip (SELECT 1) costs, direct or through the proxy."""
    conn, times = bench.connect(proxied), []
    try:
        for _ in range(count):
            t = time.perf_counter()
            conn.execute_simple("SELECT 1")
            times.append(time.perf_counter() - t)
    finally:
        conn.close()
    return {"p50_ms": ms(percentile(times, 50)), "p99_ms": ms(percentile(times, 99))}


def _run(bench: Bench, args, rng) -> int:
    migrations.migrate(bench.settings, echo=lambda *_: None)
    slots = {"slots": 64, "per_slot": 3, "threads": 64}
    meet_n, meet_c, cold_repeats = 400, 8, 5
    if args.smoke:  # the least that runs every scenario (make test checks the benchmark works)
        sizes, pools, per_config, levels, e2e_levels, e2e_n, repeats = [300], [3, 8], 10, [6], [2], 12, 1
        slots, meet_n, meet_c, cold_repeats = {"slots": 8, "per_slot": 2, "threads": 8}, 6, 2, 1
    elif args.quick:
        sizes, pools, per_config, levels, e2e_levels, e2e_n, repeats = [2000], [3, 64], 40, [16], [1, 8], 60, 1
        meet_n = 40
    else:
        sizes, pools, per_config = [10_000, 100_000, 1_000_000], [3, 100, 1000], 400
        levels, e2e_levels, e2e_n, repeats = [16, 64, 256], [1, 8, 32], 1000, 3
    modes = [False, True] if bench.proxy_url else [False]
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "postgres": bench.sql("SHOW server_version")[0][0], "quick": args.quick or args.smoke,
               "delay_ms": args.delay_ms if bench.proxy_url else 0,
               "round_trip": {("proxy" if m else "direct"): round_trip_ms(bench, m) for m in modes}}
    print("round trip", results["round_trip"], flush=True)
    wanted = set(args.only or SECTIONS)
    if "allocation" in wanted:
        results["allocation"] = allocation_latency(bench, sizes, pools, per_config, rng)
    if "contention" in wanted:
        if "allocation" not in wanted:
            bench.reset(max(64, max(pools)))
            bench.sql((HERE / "seed_baseline.sql").read_text())
        results["contention"] = [r for m in modes for r in contention(bench, levels, [3, 64], m)]
        results["many_slots"] = [r for _ in range(repeats) for m in modes
                                 for r in many_slots(bench, [p for p in (3, 64) if p <= max(pools)], m, **slots)]
    if "end_to_end" in wanted:
        # (smoke: through the proxy only; three servers per mode are most of its time)
        e2e_modes = modes[-1:] if args.smoke else modes
        results["end_to_end"] = [r for m in e2e_modes for r in end_to_end(bench, e2e_levels, e2e_n, rng, m)]
    if "meet" in wanted:
        results["meet"] = meet_end_to_end(bench, meet_c, meet_n, rng)
    if "cold_start" in wanted:
        results["cold_start"] = cold_start(bench, cold_repeats)
    if wanted != set(SECTIONS):
        print(json.dumps(results, indent=2, default=str))
        return 0
    from benchmarks.report import write
    text = write(results, Path(args.out))
    print(text)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
