"""The end-to-end benchmark of two checkouts side by side in one run: signed notifications over
HTTP through both functions, direct and through the latency proxy, at each concurrency; the
two alternate round by round (ABBA) so that a busier moment of the machine falls on both.
Writes docs/benchmarks-before-after.md (make bench's report includes it).

    python -m benchmarks.before_after --before /path/to/old/checkout [--rounds 3] [--quick]

Each checkout runs its own `benchmarks.run --only end_to_end` with its own virtualenv
(`<checkout>/.venv`, made by `make install` there) and its own database."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import bench_url, machine

REPO = Path(__file__).resolve().parents[1]
METRICS = (("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("cpu", "CPU ms/notification"))


def run_once(checkout: Path, url: str, quick: bool) -> list[dict]:
    command = [str(checkout / ".venv" / "bin" / "python"), "-m", "benchmarks.run", "--only", "end_to_end",
               "--database-url", url] + (["--quick"] if quick else [])
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: benchmark failed\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout[done.stdout.index("\n{") + 1:])
    return [{"proxy": r["proxy"], "concurrency": r["concurrency"], "rps": r["rps"], "p50_ms": r["p50_ms"],
             "p99_ms": r["p99_ms"], "cpu": r["cpu_ms_per_request"]["total"], "errors": r["errors"]}
            for r in report["end_to_end"]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, type=Path, help="the checkout to compare with (with its .venv)")
    p.add_argument("--before-label", default=None, help="how to name it (default: its git commit)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--database-url", default=None)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks-before-after.md")
    args = p.parse_args(argv)

    def commit(path: Path) -> str:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or path.name
    sides = {"before": (args.before.resolve(), args.before_label or commit(args.before)),
             "after": (REPO, commit(REPO))}
    runs: dict[str, list[list[dict]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        for side in order:
            url = bench_url(args.database_url, f"meeting_links_ba_{side}")
            runs[side].append(run_once(sides[side][0], url, args.quick))
            print(side, round_ + 1, runs[side][-1], flush=True)
    text = render(runs, sides, args)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps(runs, indent=2) + "\n")
    print(text)
    return 0


def render(runs, sides, args) -> str:
    m = machine()
    lines = [
        "## Before and after the renovation (end to end)",
        "",
        f"`python -m benchmarks.before_after --before <checkout of {sides['before'][1]}> --rounds {args.rounds}"
        f"{' --quick' if args.quick else ''}`, run on {datetime.now(UTC).isoformat(timespec='seconds')}: the"
        f" end-to-end scenario of `make bench` for {sides['before'][1]} (before) and {sides['after'][1]} (after),"
        f" alternating round by round on one machine ({m['cpu']}, {m['cores']} cores). Each cell: the median"
        f" of {args.rounds} rounds, with the range; ratio after ÷ before of the medians (for req/s higher is"
        " better, for the others lower). CPU is the benchmark's own measure: webhook, assign and the"
        " PostgreSQL backends serving them, per notification.",
        "",
        "| network | concurrency | metric | before | after | ratio |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["proxy"], r["concurrency"]) for rnd in runs["after"] for r in rnd})
    for proxy, concurrency in keys:
        for metric, label in METRICS:
            cells = [[r[metric] for rnd in runs[side] for r in rnd if (r["proxy"], r["concurrency"]) == (proxy, concurrency)]
                     for side in ("before", "after")]
            if not all(cells):
                continue
            med = [statistics.median(v) for v in cells]
            ratio = med[1] / med[0] if med[0] else float("nan")
            lines.append(f"| {'proxy' if proxy else 'direct'} | {concurrency} | {label} | "
                         f"{med[0]:g} ({min(cells[0]):g}–{max(cells[0]):g}) | {med[1]:g} ({min(cells[1]):g}–{max(cells[1]):g}) | "
                         f"{ratio:.2f} |")
    errors = {side: sum(r["errors"] for rnd in runs[side] for r in rnd) for side in runs}
    lines += ["", f"Non-200 answers over all rounds: before {errors['before']}, after {errors['after']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
