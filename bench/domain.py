"""Benchmark: the domain core alone, in process, on the real month (no broker, no Faust).

    .venv/bin/python bench/domain.py [--dataset PATH] [--days N] [--repeat N] [--profile OUT]

Drives the two stages as `stream_app/agents.py` does, with Faust and Kafka taken out:

* **calls part**: every event, in the month's order, through `CallsStage.process` on an
  in-memory store per partition (`tests/unit/dict_store.py`: orjson on every read and write,
  like the worker's table store). An event's partition is the one the producer would pick:
  aiokafka's default partitioner (murmur2 of the call_id key) over 8 partitions. Each emission
  joins the partition's pending contributions (`stream_app/domain/hop.py`), sent at each tick
  as the agent sends them before a checkpoint: one `queue-updates` value per queue (orjson),
  placed by the same partitioner; call-outcomes are encoded too. Every TICK_EVERY input events
  a tick saves each partition's stream time, sends its pending contributions, announces it to every queue partition (a watermark
  record) and sweeps the partitions that are due (stream-time schedule only).
* **queues part**: those `queue-updates` records, in order, decoded and applied with
  `QueueStage.apply` (each entry at its position in its queue partition), the stream clock observing
  each record's source stream time; at each tick, as `queue_tick` does, every queue of each
  partition is closed (`close_due`) by the stream time of the previous tick and the partition
  swept when due; a last close past the month's end publishes everything.

Prints one JSON line: events/s of the calls part, the queues part and both (the month's
events over the sum of the two times), by the CPU time of the process, the updates the hop carried, and a digest of
everything sent and every store's final content: a change that keeps the digest keeps the
behaviour. `--profile OUT` runs the same under py-spy (raw collapsed stacks into OUT) and
prints the functions with the most samples of their own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiokafka.partitioner import DefaultPartitioner

from bench.harness import month_events
from stream_app.domain.calls import Emission
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import EventClock
from stream_app.domain.hop import Pending, Update, entry_position, update_record
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from stream_app.settings import load_settings
from tests.support import DATASET, ROOT
from tests.unit.dict_store import PartitionedStore

PARTITIONS = 8  # TOPIC_PARTITIONS' default, for call-events and queue-updates alike
TICK_EVERY = 1000  # input events between two ticks (the worker ticks once a second)
WALL_MS = 1_700_000_000_000  # a fixed wall clock: the month (1999) is never live nor future
END_OF_TIME_MS = 2**53  # the last close: every interval past its grace

Tick = None  # a tick marker in the queue-updates stream


@dataclass
class Hop:
    """What the calls part sent, in order: (queue partition, value) records and tick markers."""

    records: list[tuple[int, bytes] | None] = field(default_factory=list)
    outcomes: list[bytes] = field(default_factory=list)
    rejects: Counter[str] = field(default_factory=Counter)


def partitioner() -> DefaultPartitioner:
    return DefaultPartitioner()


def place(part: DefaultPartitioner, key: bytes, cache: dict[bytes, int]) -> int:
    if key not in cache:
        cache[key] = part(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
    return cache[key]


def run_calls(
    records: list[tuple[bytes, bytes, int]], sla: SlaConfig
) -> tuple[Hop, PartitionedStore]:
    settings = load_settings({})
    store = PartitionedStore()
    calls = CallsStage(
        store,
        sla,
        EventClock(),
        max_event_bytes=settings.max_event_bytes,
        retention_ms=settings.retention_ms,
        call_ttl_ms=settings.call_ttl_ms,
    )
    sweeps = SweepSchedule(
        wall_every_ms=2**62, stream_every_ms=stream_period_ms(settings.retention_ms)
    )
    hop = Hop()
    part = partitioner()
    queue_partition: dict[bytes, int] = {}
    announced: dict[int, int] = {}

    pending = Pending()

    def send(call_id: str, emission: Emission, partition: int) -> None:
        pending.add(partition, call_id, emission.contributions)
        if emission.outcome is not None:
            hop.outcomes.append(orjson.dumps(emission.outcome))

    def send_pending(partition: int) -> None:
        st = calls.stream_time(partition)
        for queue, entries in pending.take(partition):
            value = orjson.dumps(update_record(queue, entries, partition, st, None, False))
            hop.records.append((place(part, queue.encode(), queue_partition), value))

    def sweep(partition: int) -> None:
        store.current = partition
        st = calls.stream_time(partition)
        if st is None or not sweeps.due(partition, st, WALL_MS):
            return
        for call_id, emission in calls.sweep(partition).emissions:
            send(call_id, emission, partition)

    def tick() -> None:
        for partition in range(PARTITIONS):
            store.current = partition
            st = calls.stream_time(partition)
            if st is None:
                continue
            calls.save_stream_time(partition)
            send_pending(partition)
            if announced.get(partition) != st:
                announced[partition] = st
                watermark = orjson.dumps({"sp": partition, "st": st})
                hop.records.extend((target, watermark) for target in range(PARTITIONS))
            sweep(partition)
        hop.records.append(Tick)

    for n, (key, value, partition) in enumerate(records, 1):
        store.current = partition
        outcome = calls.process(key, value, WALL_MS, partition)
        if outcome.reject is not None:
            hop.rejects[outcome.reject] += 1
        elif outcome.rekey is not None:
            hop.rejects["rekey"] += 1
        else:
            assert outcome.event is not None
            if outcome.emission is not None:
                send(outcome.event.call_id, outcome.emission, partition)
            sweep(partition)
        if n % TICK_EVERY == 0:
            tick()
    tick()
    return hop, store


def run_queues(
    hop: Hop, sla: SlaConfig
) -> tuple[list[tuple[str, dict[str, object]]], PartitionedStore, int]:
    settings = load_settings({})
    windows = WindowConfig(
        interval_ms=settings.interval_ms,
        grace_ms=settings.grace_ms,
        retention_ms=settings.retention_ms + settings.interval_ms,
        zone=settings.zone,
    )
    store = PartitionedStore()
    queues = QueueStage(store, windows, sla)
    clock = EventClock()
    sweeps = SweepSchedule(
        wall_every_ms=2**62, stream_every_ms=stream_period_ms(windows.retention_ms)
    )
    offsets = [0] * PARTITIONS
    owned: list[set[str]] = [set() for _ in range(PARTITIONS)]
    sources: list[dict[int, int]] = [{} for _ in range(PARTITIONS)]
    settled: dict[int, int] = {}
    published: list[tuple[str, dict[str, object]]] = []
    updates = 0

    def sweep(partition: int) -> None:
        if len(sources[partition]) == PARTITIONS:
            low = min(sources[partition].values())
            if sweeps.due(partition, low, WALL_MS):
                store.current = partition
                queues.sweep(low)

    def close(partition: int, now: int) -> None:
        store.current = partition
        for queue in sorted(owned[partition]):
            published.extend(queues.close_due(queue, now))

    for record in hop.records:
        if record is None:  # a tick: close by the previous tick's stream time
            now = clock.now(WALL_MS, caught_up=True)
            if now is None:
                continue
            for partition in range(PARTITIONS):
                previous = settled.get(partition)
                settled[partition] = now
                if previous is not None:
                    close(partition, previous)
                sweep(partition)
            continue
        partition, value = record
        offset = offsets[partition]
        offsets[partition] += 1
        update = Update.from_json(orjson.loads(value))
        if update.stream_time is not None:
            clock.observe(update.stream_time, WALL_MS)
            mine = sources[partition]
            mine[update.source] = max(mine.get(update.source, 0), update.stream_time)
        queue = update.queue
        if queue is None:
            continue
        updates += len(update.entries)
        owned[partition].add(queue)
        store.current = partition
        for index, (call_id, contribution) in enumerate(update.entries):
            queues.apply(queue, call_id, contribution, entry_position(offset, index))
        sweep(partition)
    for partition in range(PARTITIONS):
        close(partition, END_OF_TIME_MS)
    return published, store, updates


def digest(
    hop: Hop,
    calls: PartitionedStore,
    published: list[tuple[str, dict[str, object]]],
    queues: PartitionedStore,
) -> str:
    h = hashlib.sha256()
    for record in hop.records:
        h.update(b"T" if record is None else b"%d:" % record[0] + record[1])
    for outcome in hop.outcomes:
        h.update(outcome)
    h.update(orjson.dumps(sorted(hop.rejects.items())))
    for key, value in published:
        h.update(key.encode() + orjson.dumps(value))
    for store in (calls, queues):
        for partition in sorted(store.partitions):
            for key, raw in sorted(store.partitions[partition].data.items()):
                h.update(b"%d:" % partition + key.encode() + b"=" + raw)
    return h.hexdigest()[:16]


def load_records(dataset: str, days: int | None) -> list[tuple[bytes, bytes, int]]:
    """The month as call-events records: (key, value, partition), as the replay produces them."""
    part = partitioner()
    cache: dict[bytes, int] = {}
    records = []
    for key, value in month_events(dataset, days):
        k = key.encode()
        records.append((k, orjson.dumps(value), place(part, k, cache)))
    return records


def measure(records: list[tuple[bytes, bytes, int]]) -> dict[str, object]:
    """Rates by CPU time of this process (steadier than the wall clock on a shared machine)."""
    sla = SlaConfig()
    started, wall = time.process_time(), time.perf_counter()
    hop, calls_store = run_calls(records, sla)
    calls_done = time.process_time()
    published, queues_store, updates = run_queues(hop, sla)
    queues_done = time.process_time()
    calls_s, queues_s = calls_done - started, queues_done - calls_done
    events = len(records)
    return {
        "events": events,
        "updates": updates,
        "hop_records": sum(1 for r in hop.records if r is not None and b'"q"' in r[1]),
        "published": len(published),
        "calls_events_per_s": round(events / calls_s),
        "queues_events_per_s": round(events / queues_s),
        "queues_updates_per_s": round(updates / queues_s),
        "both_events_per_s": round(events / (calls_s + queues_s)),
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(calls_s + queues_s, 1),
        "digest": digest(hop, calls_store, published, queues_store),
    }


def _frame(text: str) -> str:
    """`func (path/file.py:line)` → `func (file.py)`: samples of one function add up."""
    name, _, where = text.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})"


def top_of_profile(raw: Path, limit: int = 25) -> list[tuple[float, float, str]]:
    """(own %, inclusive %, function) from py-spy's raw collapsed stacks, most own samples
    first; only the samples under `measure` (not the loading of the month) count."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        if not any(f.startswith("measure ") for f in frames):
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return [
        (100 * n / total, 100 * inclusive[name] / total, name) for name, n in own.most_common(limit)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--days", type=int, default=None, help="only the month's first N days")
    parser.add_argument("--repeat", type=int, default=1, help="runs in one process, one line each")
    parser.add_argument("--profile", type=Path, help="run under py-spy; raw stacks into this file")
    args = parser.parse_args()
    if args.profile is not None:
        command = [
            sys.executable,
            __file__,
            "--dataset",
            args.dataset,
            "--repeat",
            str(args.repeat),
        ]
        if args.days is not None:
            command += ["--days", str(args.days)]
        spy = ROOT / ".venv" / "bin" / "py-spy"
        subprocess.run(
            [
                str(spy),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "-o",
                str(args.profile),
                "--",
                *command,
            ],
            check=True,
        )
        for own, inclusive, name in top_of_profile(args.profile):
            print(f"{own:5.1f}% own {inclusive:5.1f}% incl  {name}")
        return
    records = load_records(args.dataset, args.days)
    for _ in range(args.repeat):
        print(json.dumps(measure(records)), flush=True)


if __name__ == "__main__":
    main()
