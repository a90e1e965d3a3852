"""Benchmark: one worker draining a pre-produced backlog on the real broker.

    .venv/bin/python bench/drain.py [--dataset PATH] [--profile]

Pre-produces the real month (data/, 175k events) under a fresh TOPIC_PREFIX,
then starts `stream-app worker` and measures, from its own /metrics: events per second from the
first to the last event processed, peak RSS of the worker, and the lag from producing one live
event to its effect on /metrics. Prints a Markdown table row for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_app.domain.events import format_ts, parse_ts
from stream_app.sources.anonymous_bank import load
from tests.support import DATASET, ROOT, group_lag, make_worker, produce, unique_prefix


def processed(worker_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    names = ("callcenter_events_total", "callcenter_events_rejected_total")
    return sum(v for (name, _), v in worker_metrics.items() if name in names)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument(
        "--profile", action="store_true", help="record a py-spy flame graph of the worker"
    )
    parser.add_argument("--days", type=int, default=None, help="only the first N days of the month")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    prefix = unique_prefix("bench")
    plan = load(args.dataset)
    if args.days is not None:
        until = 917_827_200_000 + args.days * 86_400_000  # 1999-02-01T00:00Z + N days
        plan.events = [(k, v) for k, v in plan.events if parse_ts(v["ts"]) < until]
    total = len(plan.events)
    print(f"pre-producing {total} events under {prefix!r} …", flush=True)
    worker = make_worker(tmp, prefix, LOG_LEVEL="warning")
    # Create the topics with a short-lived worker so the backlog lands in the catalog's partitions.
    worker.start()
    worker.wait_ready()
    worker.stop()
    produce(prefix + "call-events", plan.events)

    worker = make_worker(tmp, prefix, name="w2", LOG_LEVEL="warning")
    worker.start()
    assert worker.proc is not None
    spy = None
    if args.profile:
        spy = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "-o",
                str(tmp / "profile.svg"),
                "-p",
                str(worker.proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    worker.wait_ready(assigned=False)
    first = last = None
    peak = 0
    seen = 0.0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(worker.proc.pid))
        seen = processed(worker.metrics())
        now = time.monotonic()
        if seen > 0 and first is None:
            first = now
        if seen >= total:
            last = now
            break
        time.sleep(1.0)
    assert first is not None and last is not None, f"processed {seen} of {total}"
    rate = total / max(last - first, 1e-9)
    # The queues stage drains after the calls stage (one worker, one core): wait for it too.
    group = worker.env["TOPIC_PREFIX"] + worker.env["APP_ID"]
    while group_lag(group, prefix + "queue-updates") > 0 and time.monotonic() < deadline:
        peak = max(peak, rss_kib(worker.proc.pid))
        time.sleep(1.0)
    settled = time.monotonic()
    end_to_end = total / max(settled - first, 1e-9)

    # Lag: a live event (now) to its effect on /metrics, on the drained worker; the median of 5.
    time.sleep(5)
    lags = []
    for n in range(5):
        call_id = f"bench-live-lag-{n}"
        now_ms = time.time_ns() // 1_000_000
        before = processed(worker.metrics())
        event = {
            "event_id": f"lag:{n}",
            "call_id": call_id,
            "type": "call_started",
            "ts": format_ts(now_ms),
        }
        produce(prefix + "call-events", [(call_id, event)])
        sent = time.monotonic()
        while processed(worker.metrics()) <= before:
            time.sleep(0.005)
        lags.append(time.monotonic() - sent)
        time.sleep(0.5)
    lag = sorted(lags)[len(lags) // 2]
    if spy is not None:
        spy.terminate()
        spy.wait()
    worker.stop()
    print(
        f"| {time.strftime('%Y-%m-%d')} | real month{f', {args.days} days' if args.days else ''}, {total} events | {rate:,.0f} events/s "
        f"| {end_to_end:,.0f} events/s | {peak / 1024:,.0f} MiB | {lag * 1000:,.0f} ms |"
    )
    if args.profile:
        print(f"profile: {tmp / 'profile.svg'}")
    print(f"worker log: {worker.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
