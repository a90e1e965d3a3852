"""The project's job written on Quix Streams: the peer that `make bench` compares the runtime with.

    .venv/bin/python bench/quix_job.py --topic PREFIXcall-events --expect N --group G --state-dir D

Same shape as the project, on the same input topic:
- stage 1, keyed by call_id (the input's key): per-call state in Quix's RocksDB state (with its
  changelog), built by the project's own domain core — `parse_event`, `CallState` (decoded from
  and encoded to JSON on every event, as the project's table does) and `plan_emission` — so the
  comparison is about the runtime, not the logic. For each queue whose contribution changed it
  sends signed figure deltas (the old facts taken out, the new ones added, identical ones
  cancelled), each stamped with the ts of the fact (`contribution_facts`);
- `group_by` queue (a repartition topic), then 15-minute tumbling windows on the facts' ts that
  sum the figures (`Figures`: counts and integer-ms sums; the longest wait is the max of what
  was added, not recomputed when a fact is withdrawn, which the project does).
Not done here (the project does them): duplicates re-sending what was last sent, rekeying,
the dead-letter topic, call-outcomes records, TTL sweeps, per-minute buckets, /metrics.

Windows: a record is late in Quix when its window ended more than `grace` before the newest
timestamp its key (the queue) has seen. The month replayed from 8 partitions reaches a queue
out of order by up to days, so the grace covers the whole replay (`GRACE_MS`): nothing is
dropped, and any late record is counted (`on_late`) and reported.

Runs until stage 1 has read `--expect` input records and stage 2 has applied every delta stage 1
sent, then prints one JSON line: rates, peak RSS, CPU time, late drops, and month totals.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from quixstreams import Application, State

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import peak_rss_kib
from stream_app.domain.calls import CallState, plan_emission
from stream_app.domain.events import Rejected, parse_event
from stream_app.domain.figures import Figures, contribution_facts
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.sla import SlaConfig

INTERVAL_MS = 15 * 60_000
GRACE_MS = 62 * 86_400_000  # two months: more than any disorder of a replayed month
FIELDS = len(Figures().to_json())  # 9 sums, then the longest wait
Delta = dict[str, Any]  # {"queue", "ts", "sign", "f": Figures.to_json()}


class Job:
    """Counters and timestamps shared by both stages (one process, one consumer loop)."""

    def __init__(self, expect: int, sla: SlaConfig) -> None:
        self.expect = expect
        self.sla = sla
        self.app: Application | None = None
        self.read = 0  # input records seen by stage 1
        self.rejected = 0
        self.duplicates = 0
        self.sent = 0  # deltas sent by stage 1
        self.applied = 0  # deltas applied by stage 2
        self.late = 0
        self.first: float | None = None
        self.stage1_done: float | None = None
        self.done: float | None = None
        self.latest: dict[tuple[str, int], list[int | None]] = {}  # (queue, start) → figures

    def short_abandon_ms(self, queue: str | None) -> int:
        return self.sla.for_queue(queue).short_abandon_ms

    def stage1(self, raw: bytes, state: State[str, Any]) -> list[Delta]:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.read += 1
        if self.read == self.expect:
            self.stage1_done = now
        try:
            event = parse_event(raw, now_ms=time.time_ns() // 1_000_000)
        except Rejected:
            self.rejected += 1
            self.check_done()
            return []
        stored = state.get("call")
        call = CallState.from_json(stored) if stored is not None else CallState.new(event.call_id)
        if not call.apply(event):
            self.duplicates += 1
            self.check_done()
            return []
        before = dict(call.sent_contributions)
        emission = plan_emission(call, self.short_abandon_ms)
        state.set("call", call.to_json())
        deltas: list[Delta] = []
        for queue, new in emission.contributions.items():
            deltas.extend(self.deltas(queue, before.get(queue, EMPTY), new))
        self.sent += len(deltas)
        self.check_done()
        return deltas

    def deltas(self, queue: str, old: Contribution, new: Contribution) -> list[Delta]:
        sla = self.sla.for_queue(queue)
        removes = [(ts, f.to_json()) for ts, f in contribution_facts(old, sla)]
        adds = [(ts, f.to_json()) for ts, f in contribution_facts(new, sla)]
        for fact in list(removes):
            if fact in adds:
                removes.remove(fact)
                adds.remove(fact)
        return [{"queue": queue, "ts": ts, "sign": -1, "f": f} for ts, f in removes] + [
            {"queue": queue, "ts": ts, "sign": 1, "f": f} for ts, f in adds
        ]

    def stage2(self, window: dict[str, Any], key: Any) -> None:
        self.latest[(str(key), int(window["start"]))] = window["value"]
        self.applied += 1
        self.check_done()

    def on_late(self, *_: Any, **__: Any) -> bool:
        self.late += 1
        self.applied += 1  # seen by stage 2, though not applied: nothing more will come for it
        self.check_done()
        return False

    def check_done(self) -> None:
        if self.read >= self.expect and self.applied >= self.sent and self.done is None:
            self.done = time.monotonic()
            assert self.app is not None
            self.app.stop()

    def report(self) -> dict[str, object]:
        assert self.first is not None and self.stage1_done is not None and self.done is not None
        totals = [0] * (FIELDS - 1)
        for figures in self.latest.values():
            for i in range(FIELDS - 1):
                totals[i] += figures[i] or 0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "events": self.read,
            "stage1_rate": self.expect / max(self.stage1_done - self.first, 1e-9),
            "end_to_end_rate": self.expect / max(self.done - self.first, 1e-9),
            "peak_rss_kib": peak_rss_kib(os.getpid()),  # not ru_maxrss: fork inherits it
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "deltas": self.sent,
            "late_dropped": self.late,
            "windows": len(self.latest),
            "answered": totals[0],
            "abandoned": totals[4],
            "short_abandoned": totals[5],
            "flowed_out": totals[6],
        }


def initializer(delta: Delta) -> list[int | None]:
    return reducer([0] * (FIELDS - 1) + [None], delta)


def reducer(figures: list[int | None], delta: Delta) -> list[int | None]:
    """Signed sums; the longest wait keeps the max of what was added."""
    sign: int = delta["sign"]
    fact: list[int | None] = delta["f"]
    out: list[int | None] = [
        (a or 0) + sign * (b or 0) for a, b in zip(figures[:-1], fact[:-1], strict=True)
    ]
    longest, added = figures[-1], fact[-1]
    if sign > 0 and added is not None and (longest is None or added > longest):
        longest = added
    return [*out, longest]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True, help="the pre-produced call-events topic")
    parser.add_argument("--expect", type=int, required=True, help="input records to process")
    parser.add_argument("--group", required=True, help="the consumer group (a fresh one)")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()

    job = Job(args.expect, SlaConfig())
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    job.app = app
    events = app.topic(args.topic, key_deserializer="str", value_deserializer="bytes")
    sdf = app.dataframe(events)
    sdf = sdf.apply(job.stage1, stateful=True, expand=True)
    sdf = sdf.group_by(lambda delta: delta["queue"], name="queue")
    sdf = sdf.set_timestamp(lambda delta, _key, _ts, _headers: delta["ts"])
    sdf = (
        sdf.tumbling_window(INTERVAL_MS, grace_ms=GRACE_MS, on_late=job.on_late)
        .reduce(reducer, initializer)
        .current()
    )
    sdf.update(lambda window, key, _ts, _headers: job.stage2(window, key), metadata=True)
    app.run()
    print(orjson.dumps(job.report()).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
