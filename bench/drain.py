"""Benchmark: one worker draining a pre-produced backlog on the real broker.

    .venv/bin/python bench/drain.py [--dataset PATH] [--days N] [--profile]

Pre-produces the real month (data/, 175k events) under a fresh TOPIC_PREFIX,
then starts `stream-app worker` and measures, from its own /metrics: events per second from the
first to the last event processed, peak RSS of the worker, and the lag from producing one live
event to its effect on /metrics. Prints a Markdown table row for bench/RESULTS.md.
`bench/compare.py` (make bench) runs the same measurement next to its peers.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import cpu_seconds, month_events, peak_rss_kib, pre_produce, processed
from stream_app.domain.events import format_ts
from tests.support import (
    DATASET,
    ROOT,
    LagWatch,
    Worker,
    drop_topics,
    make_worker,
    produce,
    unique_prefix,
)


@dataclass
class Drained:
    calls_rate: float  # events/s through the calls stage
    end_to_end_rate: float  # events/s until the queues stage committed everything too
    peak_rss_kib: int
    cpu_seconds: float  # the worker's CPU time from its start to the end of the drain


def drain(worker: Worker, total: int, timeout: float = 1800.0) -> Drained:
    """Start `worker` (unless started) on the backlog; wait until both stages processed it all."""
    if worker.proc is None:
        worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid
    worker.wait_ready(assigned=False)
    first = last = None
    seen = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = processed(worker.metrics())
        now = time.monotonic()
        if seen > 0 and first is None:
            first = now
        if seen >= total:
            last = now
            break
        time.sleep(1.0 if first is not None else 0.2)
    assert first is not None and last is not None, f"processed {seen} of {total}"
    # The queues stage drains after the calls stage (one worker, one core): wait for it too.
    group = worker.env["TOPIC_PREFIX"] + worker.env["APP_ID"]
    updates = worker.env["TOPIC_PREFIX"] + "queue-updates"
    # Asked every 0.1 s through one client: the end is seen within 0.1 s of the commit (Quix's
    # job stamps its own end in process; a poll per second made ours up to a second late).
    watch = LagWatch(group, updates)
    try:
        while watch.lag() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        settled = time.monotonic()
    finally:
        watch.close()
    return Drained(
        calls_rate=total / max(last - first, 1e-9),
        end_to_end_rate=total / max(settled - first, 1e-9),
        peak_rss_kib=peak_rss_kib(pid),
        cpu_seconds=cpu_seconds(pid),
    )


def live_lag(worker: Worker, samples: int = 5) -> float:
    """On a drained worker: the median time from a live event's acknowledgement to its count."""
    topic = worker.env["TOPIC_PREFIX"] + "call-events"
    lags = []
    for n in range(samples):
        call_id = f"bench-live-lag-{n}"
        now_ms = time.time_ns() // 1_000_000
        before = processed(worker.metrics())
        event = {
            "event_id": f"lag:{n}",
            "call_id": call_id,
            "type": "call_started",
            "ts": format_ts(now_ms),
        }
        produce(topic, [(call_id, event)])
        sent = time.monotonic()
        while processed(worker.metrics()) <= before:
            time.sleep(0.005)
        lags.append(time.monotonic() - sent)
        time.sleep(0.5)
    return sorted(lags)[len(lags) // 2]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument(
        "--profile", action="store_true", help="record py-spy collapsed stacks of the worker"
    )
    parser.add_argument("--days", type=int, default=None, help="only the first N days of the month")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    prefix = unique_prefix("bench")
    events = month_events(args.dataset, args.days)
    total = len(events)
    print(f"pre-producing {total} events under {prefix!r} …", flush=True)
    pre_produce(tmp, prefix, events)

    worker = make_worker(tmp, prefix, name="w2", LOG_LEVEL="warning")
    spy = None
    if args.profile:
        worker.start()  # py-spy attaches before the first record
        assert worker.proc is not None
        spy = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "-f",
                "raw",
                "-r",
                "50",
                "-o",
                str(tmp / "profile.txt"),
                "-p",
                str(worker.proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    drained = drain(worker, total)
    time.sleep(5)
    lag = live_lag(worker)
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT, not SIGTERM
        spy.wait()
    worker.stop()
    print(
        f"| {time.strftime('%Y-%m-%d')} | real month{f', {args.days} days' if args.days else ''}, {total} events | {drained.calls_rate:,.0f} events/s "
        f"| {drained.end_to_end_rate:,.0f} events/s | {drained.peak_rss_kib / 1024:,.0f} MiB | {lag * 1000:,.0f} ms |"
    )
    print(
        f"worker CPU {drained.cpu_seconds:,.1f} s over {total / drained.end_to_end_rate:,.1f} s "
        "of drain (both stages)"
    )
    if args.profile:
        print(f"profile (py-spy raw collapsed stacks): {tmp / 'profile.txt'}")
    print(f"worker log: {worker.log_path}; {drop_topics(prefix)} topics of the run deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
