"""Soak: a simulated quarter through one worker; does its state stay bounded past the retention?

    .venv/bin/python bench/soak.py                      # 90 simulated days, as fast as it goes
    .venv/bin/python bench/soak.py --days 5 --speed 600 # paced, ending live (then --live-minutes)

Runs `stream-app simulate --faults` into one `stream-app worker` under a fresh TOPIC_PREFIX and
samples, once per simulated hour of the worker's stream time (as often as the worker answers:
a fast replay may skip some hours), the worker's RSS, the size of its DATA_DIR on disk and,
from its `/debug/state` page, the keys of each table and RocksDB's memory figures. Writes a CSV
to bench/out/ and prints a summary: the figures when the retention is first reached (the
retention plus a day of stream time after the first event) and at the end, and whether they
are flat (the last third's maximum within 10 % of the middle third's).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import rss_kib
from tests.support import ROOT, STREAM_APP, make_worker, unique_prefix

HOUR_S = 3600
FIELDS = (
    "wall_s",
    "stream_time",
    "queues_stream_time",
    "stream_hours",
    "rss_mib",
    "data_dir_mib",
    "calls_keys",
    "queues_keys",
    "memtable_mib",
    "block_cache_mib",
    "sst_mib",
    "python_blocks",
)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            # A RocksDB file may be removed by a compaction while we walk.
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def debug_state(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/state", timeout=10) as resp:
            state: dict[str, Any] = orjson.loads(resp.read())
            return state
    except OSError:
        return None


def sample(pid: int, data_dir: Path, state: dict[str, Any], started: float) -> dict[str, Any]:
    tables = state["tables"]

    def total(field: str) -> float:
        return float(sum(t[field] for t in tables.values())) / 2**20

    return {
        "wall_s": round(time.monotonic() - started, 1),
        "stream_time": state["stream_time_s"],
        # How far the queues stage got (it trails the calls stage in a fast replay): the state
        # is that of this time. Older workers do not report it: the worker's stream time then.
        "queues_stream_time": state.get("queues_stream_time_s") or state["stream_time_s"],
        "rss_mib": round(rss_kib(pid) / 1024, 1),
        "data_dir_mib": round(dir_bytes(data_dir) / 2**20, 1),
        "calls_keys": tables.get("calls", {}).get("keys", 0),
        "queues_keys": tables.get("queues", {}).get("keys", 0),
        "memtable_mib": round(total("memtable_bytes"), 1),
        "block_cache_mib": round(total("block_cache_bytes"), 1),
        "sst_mib": round(total("sst_bytes"), 1),
        "python_blocks": state["python_blocks"],
    }


def summarize(rows: list[dict[str, Any]], retention_hours: float) -> list[str]:
    """The figures at the retention (+ a day) and at the end; flat past the retention?"""
    if not rows:
        return ["no samples"]
    reached = retention_hours + 24
    at_retention = next((r for r in rows if r["stream_hours"] >= reached), rows[-1])
    end = rows[-1]
    columns = ("rss_mib", "data_dir_mib", "calls_keys", "queues_keys", "memtable_mib", "sst_mib")
    lines = [
        f"samples: {len(rows)} over {end['stream_hours']:.0f} simulated hours "
        f"({end['wall_s']:.0f} s wall)",
        "| when | stream hours | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for label, row in (("retention + 1 day", at_retention), ("end", end)):
        lines.append(
            f"| {label} | {row['stream_hours']:.0f} | "
            + " | ".join(f"{row[c]:,}" for c in columns)
            + " |"
        )
    span = end["stream_hours"]
    middle = [r for r in rows if span / 3 <= r["stream_hours"] < 2 * span / 3]
    last = [r for r in rows if r["stream_hours"] >= 2 * span / 3]
    if middle and last:
        verdicts = []
        for c in columns:
            mid_max, last_max = max(r[c] for r in middle), max(r[c] for r in last)
            ratio = last_max / mid_max if mid_max else float("inf") if last_max else 1.0
            verdicts.append(f"{c} {ratio:.2f} ({'flat' if ratio <= 1.10 else 'GROWS'})")
        lines.append("last third's max / middle third's max: " + ", ".join(verdicts))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=90, help="simulated days (default 90)")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="paced at N x real time, starting DAYS ago so that it ends live "
        "(default: as fast as possible, ending two hours ago)",
    )
    parser.add_argument(
        "--live-minutes", type=float, default=5, help="with --speed: how long to run live"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--every",
        type=float,
        default=0.5,
        help="wall seconds between polls (each one scans the tables, pausing the worker)",
    )
    parser.add_argument("--tag", default="", help="added to the CSV's name")
    parser.add_argument("--timeout", type=float, default=7200, help="wall seconds at most")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a worker setting"
    )
    parser.add_argument(
        "--summarize", metavar="CSV", help="only print the summary of an earlier run's CSV"
    )
    args = parser.parse_args()
    if args.summarize:
        with open(args.summarize, newline="") as handle:
            earlier = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        retention = dict(item.split("=", 1) for item in args.env).get("STATE_RETENTION_HOURS")
        for line in summarize(earlier, float(retention or 48)):
            print(line)
        return 0

    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ccm-soak-"))
    prefix = unique_prefix("soak")
    overrides = dict(item.split("=", 1) for item in args.env)
    worker = make_worker(tmp, prefix, LOG_LEVEL="warning", **overrides)
    retention_hours = float(worker.env.get("STATE_RETENTION_HOURS", "48"))
    data_dir = Path(worker.env["DATA_DIR"])
    worker.start()
    worker.wait_ready()
    assert worker.proc is not None
    pid = worker.proc.pid

    days = f"{args.days * 24:g}h"
    simulate = [str(STREAM_APP), "simulate", "--faults", "--seed", str(args.seed)]
    if args.speed is None:
        simulate += ["--fast", "--duration", days]
        mode = f"as fast as it goes, {days}"
    else:
        simulate += ["--speed", f"{args.speed:g}", "--start", f"now-{days}"]
        mode = f"{args.speed:g}x from {days} ago, then {args.live_minutes:g} min live"
    summary_json = tmp / "simulator-summary.json"
    simulate += ["--summary-json", str(summary_json)]
    sim_log = (tmp / "simulator.log").open("wb")
    sim = subprocess.Popen(simulate, env=worker.env, stdout=sim_log, stderr=subprocess.STDOUT)
    name = f"soak-{time.strftime('%Y%m%d-%H%M%S')}{'-' + args.tag if args.tag else ''}.csv"
    csv_path = out_dir / name
    print(f"{mode}; worker pid {pid}, data {data_dir}; CSV {csv_path}", flush=True)

    try:
        started = time.monotonic()
        first_stream: float | None = None
        last_hour: int | None = None
        live_since: float | None = None
        rows: list[dict[str, Any]] = []
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            while time.monotonic() - started < args.timeout:
                if worker.proc.poll() is not None:
                    raise SystemExit(f"the worker exited:\n{worker.log()}")
                state = debug_state(worker.port)
                if state is not None and state["stream_time_s"] > 0:
                    row = sample(pid, data_dir, state, started)
                    if first_stream is None:
                        first_stream = row["queues_stream_time"]
                    row["stream_hours"] = round(
                        (row["queues_stream_time"] - first_stream) / HOUR_S, 2
                    )
                    hour = int(row["queues_stream_time"] // HOUR_S)
                    if hour != last_hour:
                        last_hour = hour
                        rows.append(row)
                        writer.writerow(row)
                        handle.flush()
                        if len(rows) % 24 == 0:
                            print(
                                f"{row['stream_hours']:7.0f} h  rss {row['rss_mib']:6.1f} MiB  "
                                f"dir {row['data_dir_mib']:6.1f} MiB  calls {row['calls_keys']:7}  "
                                f"queues {row['queues_keys']:7}  mem {row['memtable_mib']:5.1f}",
                                flush=True,
                            )
                if args.speed is not None:
                    # Live once stream time is within a minute of the wall clock.
                    if state is not None and time.time() - state["stream_time_s"] < 60:
                        live_since = live_since or time.monotonic()
                    if live_since and time.monotonic() - live_since > args.live_minutes * 60:
                        sim.send_signal(signal.SIGTERM)
                        sim.wait(60)
                        break
                elif sim.poll() is not None and worker.backlog() == 0:
                    break
                time.sleep(args.every)
        final = debug_state(worker.port)
        if final is not None:
            row = sample(pid, data_dir, final, started)
            row["stream_hours"] = round(
                (row["queues_stream_time"] - (first_stream or 0)) / HOUR_S, 2
            )
            rows.append(row)
            with csv_path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=FIELDS).writerow(row)
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            sim.wait(60)
        worker.stop(timeout=60)
    sim_log.close()
    print(f"simulator: {mode}; exit {sim.poll()}; log {tmp / 'simulator.log'}")
    for line in summarize(rows, retention_hours):
        print(line)
    print(f"CSV: {csv_path}\nworker log: {worker.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
