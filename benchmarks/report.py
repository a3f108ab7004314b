"""Turns a benchmark run's results into docs/benchmarks.md (and the raw .json beside it)."""
from __future__ import annotations

import json
from pathlib import Path

P99_ALLOCATION_MS = 5.0
E2E_P99_MS = 100.0
CEILING_SHARE = 0.30
MANY_SLOTS_RATIO = 1.2  # issue 8, without the latency proxy


def many_slot_ratios(results: dict) -> dict[int, list[float]]:
    """links -> [ours / global lock throughput, one per run]: the runs come in pairs."""
    rows, ratios = results.get("many_slots", []), {}
    for ours, lock in zip(rows[::2], rows[1::2]):
        ratios.setdefault(ours["links"], []).append(round(ours["throughput_per_s"] / lock["throughput_per_s"], 2))
    return ratios


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(key, "")) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def verdicts(results: dict) -> list[tuple[str, str, str, bool]]:
    """(target, measured, where, met) for each target the issue sets."""
    out = []
    allocation = results["allocation"]
    largest = max(allocation, key=lambda r: (r["history"], r["links"]))
    out.append((f"p99 allocation ≤ {P99_ALLOCATION_MS} ms",
                f"{largest['ours_p99_ms']} ms", f"{largest['history']:,} bookings, {largest['links']} links",
                largest["ours_p99_ms"] <= P99_ALLOCATION_MS))
    ours = [r for r in results["contention"] if r["strategy"] == "ours"]
    doubled = sum(r["double_bookings"] for r in ours)
    out.append(("0 double-bookings at every concurrency", f"{doubled}",
                ", ".join(f"{r['concurrency']}×{r['links']} links" for r in ours), doubled == 0))
    for links, ratios in many_slot_ratios(results).items():
        out.append((f"many-slot contention ≥ {MANY_SLOTS_RATIO}× the global lock (no latency proxy)",
                    f"{min(ratios)}–{max(ratios)}× ({len(ratios)} runs)", f"64 threads, 64 slots × 3, {links} links",
                    min(ratios) >= MANY_SLOTS_RATIO))
        doubled = sum(r["double_bookings"] for r in results["many_slots"] if r["strategy"] == "ours")
        if doubled:
            out.append(("0 double-bookings, many slots", str(doubled), f"{links} links", False))
    for r in results["end_to_end"]:
        if r["concurrency"] == 8:
            out.append((f"end-to-end p99 ≤ {E2E_P99_MS:.0f} ms at concurrency 8", f"{r['p99_ms']} ms", "c=8",
                        r["p99_ms"] <= E2E_P99_MS))
    for r in results["end_to_end"]:
        out.append((f"end-to-end throughput ≥ {CEILING_SHARE:.0%} of the 'ok' ceiling",
                    f"{r['share_of_ceiling']:.1%} ({r['rps']} of {r['ok_rps']} req/s)", f"c={r['concurrency']}",
                    r["share_of_ceiling"] >= CEILING_SHARE))
    return out


def write(results: dict, out: Path) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Run on {results['date']} with `make bench` (`python -m benchmarks.run`)"
        + (" in --quick mode (small sizes: not the reference figures)" if results.get("quick") else "") + ".",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}; "
        f"PostgreSQL {results['postgres']} (local, default settings). Client, servers and database share the "
        "same two cores.",
        "",
        "## Targets",
        "",
        "| target | measured | where | met |",
        "|---|---|---|---|",
    ]
    for target, measured, where, met in verdicts(results):
        lines.append(f"| {target} | {measured} | {where} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "## (a) Allocation latency as history grows",
        "",
        "One assignment = one call of `allocation.assign` (pool checkout, BEGIN, `assign_link_v1`: lock the",
        "booking and its time buckets, pick a link, update; COMMIT), single-threaded, after 20 warm-up calls. History: a year of half-hour sessions,",
        "70% of the pool in use in every slot; new bookings start on a quarter hour so each overlaps two",
        "history slots. Seed = the original find-then-update (two autocommit statements, no locking, on a",
        "copy of the table without the constraint, with its own indexes). Ratio = ours / seed.",
        "",
        _table(results["allocation"], [("history", "bookings"), ("links", "links"), ("ours_p50_ms", "ours p50 ms"),
                                       ("ours_p99_ms", "ours p99 ms"), ("seed_p50_ms", "seed p50 ms"),
                                       ("seed_p99_ms", "seed p99 ms"), ("p50_ratio", "p50 ratio"),
                                       ("p99_ratio", "p99 ratio"), ("assigned", "assigned"),
                                       ("attempts", "attempts"), ("load_s", "history load s")]),
        "",
        "## (b) Contention: concurrent assignments for one slot",
        "",
        "K threads released together, each assigning one paid booking for the same hour; at most 64",
        "database connections per strategy. Global lock = the seed's steps inside one transaction that",
        "first takes `pg_advisory_xact_lock`. A correct run assigns exactly min(K, links).",
        "",
        _table(results["contention"], [("strategy", "strategy"), ("concurrency", "K"), ("links", "links"),
                                       ("throughput_per_s", "assignments/s"), ("p99_ms", "p99 ms"),
                                       ("assigned", "assigned"), ("double_bookings", "double-bookings")]),
        "",
        "## (b2) Contention: many slots at once",
        "",
        "64 threads draw from 192 paid bookings in 64 separate hour slots (3 each, shuffled) and assign",
        "each; ours (assign_link_v1: advisory locks on the 15-minute buckets of the range) against the",
        "seed's steps under one global advisory lock. A correct run assigns min(3, links) per slot.",
        "",
        _table(results.get("many_slots", []), [("strategy", "strategy"), ("links", "links"),
                                                ("throughput_per_s", "assignments/s"), ("assigned", "assigned"),
                                                ("double_bookings", "double-bookings")]),
        "",
        "## (c) End to end over HTTP",
        "",
        "Signed settlement notifications to midtrans_webhook, which records the payment and calls",
        "assign_meeting_link over HTTP, both under functions-framework's production server (gunicorn, one",
        "worker, default threads); each request ends with the booking holding a link. Ceiling = a",
        "function that only answers \"ok\", under the same server, driven by the same client.",
        "",
        _table(results["end_to_end"], [("concurrency", "concurrency"), ("requests", "requests"), ("rps", "req/s"),
                                       ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("errors", "non-200"),
                                       ("links_assigned", "links assigned"), ("ok_rps", "ok req/s"),
                                       ("ok_p50_ms", "ok p50 ms"), ("ok_p99_ms", "ok p99 ms"),
                                       ("share_of_ceiling", "share of ceiling")]),
        "",
        "## (d) Cold start",
        "",
        "From process start to the first successful response (assign: a paid booking; webhook: a",
        "settlement, with a warm assign function behind it), and the time to import each `main` module.",
        "",
        _table([{"function": k, **v} for k, v in results["cold_start"].items()],
               [("function", "function"), ("first_response_ms_median", "first response ms (median)"),
                ("first_response_ms_max", "max"), ("import_ms_median", "import ms (median)")]),
        "",
        "## Reading the figures",
        "",
    ]
    lines += results.get("notes", _default_notes(results))
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return text


def _default_notes(results: dict) -> list[str]:
    notes = []
    for r in results.get("end_to_end", []):
        cpu, ok = r.get("cpu_ms_per_request"), r.get("ok_cpu_ms_per_request")
        if cpu and ok:
            notes.append(
                f"- End to end at concurrency {r['concurrency']}: each notification cost "
                f"{sum(cpu.values()):.1f} ms of CPU in all (" + ", ".join(f"{k} {v}" for k, v in cpu.items())
                + f") against {sum(ok.values()):.1f} ms for the 'ok' request ("
                + ", ".join(f"{k} {v}" for k, v in ok.items()) + ").")
    for target, measured, where, met in verdicts(results):
        if not met:
            notes.append(f"- Missed: {target}: measured {measured} ({where}).")
    if any(not met for target, _, _, met in verdicts(results) if "ceiling" in target):
        at8 = next((r for r in results["end_to_end"] if r["concurrency"] == 8), results["end_to_end"][-1])
        notes.append(
            "- Why the end-to-end share misses 30%: a notification is two HTTP requests (Midtrans to the "
            "webhook, the webhook to assign) and two durable transactions (the webhook's: BEGIN, record_payment_v1, "
            "COMMIT; assign's: BEGIN, assign_link_v1, COMMIT), each statement a round trip through "
            "pg8000, a pure-Python driver; the ceiling is one "
            "request with no I/O. The CPU lines above show it: about 4.5x the CPU of the 'ok' request, on two "
            "cores that the load generator, both servers and PostgreSQL share, so throughput is CPU-bound at "
            "about a quarter of the ceiling. What would close it: fewer round trips still (BEGIN and COMMIT around "
            "each single statement could go: autocommit); a driver in C (psycopg) where the Cloud SQL connector allows it; and, deployed, the two functions "
            "and Cloud SQL each have their own CPUs instead of sharing these two. Latency, which Midtrans "
            f"cares about, is far inside its budget: p99 {at8['p99_ms']:.0f} ms at concurrency "
            f"{at8['concurrency']} against 5 s.")
    missed_p99 = [r for r in results["end_to_end"] if r["concurrency"] == 8 and r["p99_ms"] > E2E_P99_MS]
    for r in missed_p99:
        notes.append(
            f"- Why p99 at concurrency 8 is over {E2E_P99_MS:.0f} ms ({r['p99_ms']} ms, by "
            f"{r['p99_ms'] - E2E_P99_MS:.1f} ms): with 8 requests in flight, each needing about "
            f"{sum(r.get('cpu_ms_per_request', {}).values()):.0f} ms of CPU on two shared cores, a request "
            f"mostly waits its turn (p50 {r['p50_ms']} ms); the p99 of {r['requests']} requests is its 4th "
            "slowest, so scheduler noise decides it, and it varies from run to run. "
            "What closes it is what closes the throughput gap: less CPU per request, or more CPUs.")
    notes.append(
        "- One slot (b) is the worst case for our allocator and the best for a global lock: every "
        "contender needs the same time buckets, so ours queues like the lock does and pays a PL/pgSQL "
        "call and its bucket locks on top. Both are correct. Many slots (b2) is the common case: ours "
        "makes only allocations whose ranges share a 15-minute bucket wait for each other, where a "
        "global lock queues every allocation of every slot behind one another.")
    seed = [r for r in results["contention"] if r["strategy"] == "seed"]
    if seed:
        worst = max(seed, key=lambda r: r["double_bookings"])
        notes.append(f"- The seed's find-then-update double-booked up to {worst['double_bookings']} bookings "
                     f"(K={worst['concurrency']}, {worst['links']} links); ours and the global lock never did.")
    return notes or ["- Every target was met."]


if __name__ == "__main__":  # re-render a report from its .json: python -m benchmarks.report docs/benchmarks.json
    import sys
    source = Path(sys.argv[1])
    print(write(json.loads(source.read_text()), source.with_suffix("")))
