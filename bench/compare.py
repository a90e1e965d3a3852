"""Benchmark: the project next to its peers on one pre-produced input (`make bench`).

    .venv/bin/python bench/compare.py [--dataset PATH] [--days N] [--profile-quix] [--restart-only]

Pre-produces the real month once under a fresh TOPIC_PREFIX, then, one after the other on the
same topic (each job its own process and consumer group):
1. the project: one `stream-app worker` drains it (bench/drain.py: calls stage and end to end);
2. restart: that worker, holding the month's state, is killed with SIGKILL and started again
   (same DATA_DIR and prefix); timed until /metrics serves per-queue figures again, and until
   it serves the same ones as before the kill; then the live lag on the restarted worker;
3. the same job on Quix Streams (bench/quix_job.py);
4. the aiokafka ceiling: read + parse + one produced record per event (bench/aiokafka_limit.py);
5. Faust's ceiling: an agent that only counts and acks each record (bench/faust_limit.py).
`--restart-only` stops after step 2.
Prints a table (events/s, peak RSS, CPU time of each process), the ratios the goals are
stated in, and rows for bench/RESULTS.md. A shared machine is noisy: compare the ratios.
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
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drain import Drained, drain, live_lag
from bench.harness import month_events, pre_produce, topic_size
from tests.support import (
    BOOTSTRAP,
    DATASET,
    ROOT,
    Worker,
    consume_all,
    drop_topics,
    make_worker,
    unique_prefix,
)

BENCH = Path(__file__).resolve().parent
TOTALS = ("answered", "abandoned", "short_abandoned", "flowed_out")  # summed over the month
SETTLE_SECONDS = 5.0  # after the live events: two ticks and a checkpoint, with room


@dataclass
class Restart:
    serving: float | None  # s from the new process's start to /metrics answering at all
    first_figures: float | None  # s from the new process's start to any per-queue figure
    same_figures: float | None  # s until every per-queue figure is back with its value
    compared: int  # how many figures were compared


def restart(worker: Worker, timeout: float = 300.0) -> tuple[Worker, Restart]:
    """SIGKILL the drained worker; time its successor until it serves the same figures."""
    before = worker.queue_figures()
    worker.stop(signal.SIGKILL)
    successor = worker.restarted("worker-restarted").start()
    started = time.monotonic()
    serving = first = same = None
    while time.monotonic() - started < timeout and same is None:
        try:
            now = successor.queue_figures()
            serving = serving or time.monotonic() - started
        except (OSError, AssertionError):
            now = {}
        elapsed = time.monotonic() - started
        if now and first is None:
            first = elapsed
        if now and all(now.get(key) == value for key, value in before.items()):
            same = elapsed
        time.sleep(0.1)
    return successor, Restart(serving, first, same, len(before))


def restart_text(back: Restart) -> str:
    def after(seconds: float | None) -> str:
        return "not within 300 s" if seconds is None else f"after {seconds:.1f} s"

    return (
        f"restart after SIGKILL: /metrics answers {after(back.serving)}, per-queue figures "
        f"{after(back.first_figures)}, the same {back.compared} figures as before the kill "
        f"{after(back.same_figures)} (goal ≤ 10 s)"
    )


def run_json(
    args: list[str], log: Path, profile: Path | None = None, report: Path | None = None
) -> dict[str, Any]:
    """Run a bench script as its own process; its JSON report is its last stdout line (or the
    `report` file, for a script whose stdout a framework takes over)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    *(str(ROOT / ".venv/bin/py-spy"), "record", "--format", "raw"),
                    *("-o", str(profile), "-p", str(proc.pid)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        out, _ = proc.communicate()
        if spy is not None:
            spy.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{args[1]} failed ({proc.returncode}); see {log}")
    text = report.read_bytes() if report is not None else out.decode().strip().splitlines()[-1]
    result: dict[str, Any] = orjson.loads(text)
    return result


def published_totals(topic: str) -> dict[str, int]:
    """Sums over the latest revision of every interval the project published (queue-metrics)."""
    latest = {r.key: r.json() for r in consume_all(topic, timeout=60) if r.value is not None}
    return {"windows": len(latest)} | {f: sum(v[f] for v in latest.values()) for f in TOTALS}


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--days", type=int, default=None, help="only the first N days of the month")
    parser.add_argument(
        "--profile-quix", action="store_true", help="record py-spy samples of the Quix job"
    )
    parser.add_argument(
        "--restart-only", action="store_true", help="only the project and its restart (steps 1-2)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ccm-bench-"))
    prefix = unique_prefix("bench")
    topic = prefix + "call-events"
    events = month_events(args.dataset, args.days)
    total = len(events)
    workload = f"real month{f', {args.days} days' if args.days else ''}, {total:,} events"
    print(f"pre-producing {total} events under {prefix!r} (logs in {tmp}) …", flush=True)
    pre_produce(tmp, prefix, events)

    print("1/5 the project: one worker drains the backlog …", flush=True)
    worker = make_worker(tmp, prefix, name="worker", LOG_LEVEL="warning")
    project: Drained = drain(worker, total)
    time.sleep(2)  # let the last flush settle before the kill
    print("2/5 SIGKILL and restart of the worker …", flush=True)
    successor, back = restart(worker)
    lag = live_lag(successor)
    # The live events move their partitions' clocks to today: the intervals they let close (the
    # month's last, 23:45 on 28 February, waits for them) go out at the next ticks and
    # checkpoints. Stopped at once, the worker sometimes had not published it yet.
    time.sleep(SETTLE_SECONDS)
    successor.stop()
    if args.restart_only:
        print(f"\n{workload}, {time.strftime('%Y-%m-%d')}: {restart_text(back)}")
        print(f"live lag on the restarted worker: {lag * 1000:,.0f} ms\nlogs: {tmp}")
        return 0

    print("3/5 Quix Streams, the same job …", flush=True)
    profile = tmp / "quix-profile.txt" if args.profile_quix else None
    quix = run_json(
        [
            *(sys.executable, str(BENCH / "quix_job.py"), "--bootstrap", BOOTSTRAP),
            *("--topic", topic, "--expect", str(topic_size(topic))),
            *("--group", prefix + "quix", "--state-dir", str(tmp / "quix-state")),
        ],
        tmp / "quix.log",
        profile,
    )
    print("4/5 aiokafka: read + parse + produce …", flush=True)
    limit = run_json(
        [
            *(sys.executable, str(BENCH / "aiokafka_limit.py"), "--topic", topic),
            *("--out", prefix + "bench-limit", "--expect", str(topic_size(topic))),
        ],
        tmp / "aiokafka.log",
    )
    print("5/5 Faust: an agent that only counts and acks …", flush=True)
    faust_report = tmp / "faust-limit.json"
    faust_limit = run_json(
        [
            *(sys.executable, str(BENCH / "faust_limit.py"), "--topic", topic),
            *("--expect", str(topic_size(topic)), "--report", str(faust_report)),
        ],
        tmp / "faust-limit.log",
        report=faust_report,
    )

    rows = [
        ("project, calls stage", project.calls_rate, "", None),
        ("project, end to end", project.end_to_end_rate, project.peak_rss_kib, project.cpu_seconds),
        ("Quix Streams, stage 1", quix["stage1_rate"], "", None),
        (
            "Quix Streams, end to end",
            quix["end_to_end_rate"],
            quix["peak_rss_kib"],
            quix["cpu_seconds"],
        ),
        (
            "aiokafka read + parse + produce",
            limit["rate"],
            limit["peak_rss_kib"],
            limit["cpu_seconds"],
        ),
        (
            "Faust agent, count and ack only",
            faust_limit["rate"],
            faust_limit["peak_rss_kib"],
            faust_limit["cpu_seconds"],
        ),
    ]
    print(f"\n{workload}, {time.strftime('%Y-%m-%d')}\n")
    print("| job | events/s | peak RSS | CPU time of the process |")
    print("| --- | --- | --- | --- |")
    for name, rate, rss, cpu in rows:
        rss_text = mib(rss) if isinstance(rss, int | float) else ""
        cpu_text = f"{cpu:,.0f} s" if cpu is not None else ""
        print(f"| {name} | {rate:,.0f} | {rss_text} | {cpu_text} |")
    ratio = project.end_to_end_rate / quix["end_to_end_rate"]
    balance = project.end_to_end_rate / project.calls_rate
    print(f"\nproject / Quix end to end: {ratio:.2f}x (goal ≥ 1.0x)")
    cpu_ratio = quix["cpu_seconds"] / project.cpu_seconds
    print(f"project / Quix in events per CPU second of their process: {cpu_ratio:.2f}x")
    print(f"project calls stage: {project.calls_rate:,.0f} events/s (goal ≥ 40,000)")
    print(f"project end to end / calls stage: {balance:.2f}x (goal ≥ 0.8x)")
    print(f"project / aiokafka limit: {project.end_to_end_rate / limit['rate']:.3f}x")
    print(
        f"Faust's consume path alone / Quix end to end: "
        f"{faust_limit['rate'] / quix['end_to_end_rate']:.2f}x; "
        f"project / Faust's consume path: {project.end_to_end_rate / faust_limit['rate']:.2f}x"
    )
    print(
        f"Quix: {quix['late_dropped']} late records dropped, {quix['deltas']:,} deltas, "
        f"{quix['rejected']} rejected, {quix['duplicates']} duplicates"
    )
    published = published_totals(prefix + "queue-metrics")
    quix_totals = {"windows": quix["windows"]} | {f: quix[f] for f in TOTALS}
    agree = "the same" if published == quix_totals else "DIFFERENT"
    print(f"month totals, project (queue-metrics): {published}")
    print(f"month totals, Quix (its windows):      {quix_totals}: {agree}")

    print(restart_text(back))
    print(f"peak RSS of the worker: {mib(project.peak_rss_kib)} (goal ≤ 300 MiB)")
    print(f"live lag on the restarted worker: {lag * 1000:,.0f} ms")
    if profile is not None:
        print(f"Quix profile (py-spy raw, collapsed stacks): {profile}")
    print(f"logs: {tmp}; {drop_topics(prefix)} topics of the run deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
