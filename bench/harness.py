"""What every benchmark here shares: the month as input, the broker, and a process's cost.

The input is pre-produced once per run under a fresh TOPIC_PREFIX, so every job measured in
that run reads the very same records from the same partitions.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.domain.events import parse_ts
from stream_app.sources.anonymous_bank import load
from tests.support import kafka_options, make_worker, produce

MONTH_START_MS = 917_827_200_000  # 1999-02-01T00:00Z, the first day of the month in data/
DAY_MS = 86_400_000
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def month_events(dataset: str, days: int | None) -> list[tuple[str, dict[str, object]]]:
    """The month's events (key, value) in event-time order; only the first `days` when given."""
    plan = load(dataset)
    if days is None:
        return plan.events
    until = MONTH_START_MS + days * DAY_MS
    return [(k, v) for k, v in plan.events if parse_ts(str(v["ts"])) < until]


def pre_produce(tmp: Path, prefix: str, events: list[tuple[str, dict[str, object]]]) -> None:
    """Create the project's topics (a short-lived worker, so the catalog's partition counts
    hold) and produce the events to call-events."""
    worker = make_worker(tmp, prefix, name="topics", LOG_LEVEL="warning")
    worker.start()
    worker.wait_ready()
    worker.stop()
    produce(prefix + "call-events", events)


def topic_size(topic: str) -> int:
    """Records in a topic now (the sum of its partitions' end offsets)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(**kafka_options())
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # also lets stop() end cleanly
            partitions = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


def processed(samples: Samples) -> float:
    """Input records a worker has counted, accepted or rejected."""
    names = ("callcenter_events_total", "callcenter_events_rejected_total")
    return sum(v for (name, _), v in samples.items() if name in names)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set so far (VmHWM), not a sample of the current one."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """The process's resident set now (VmRSS): what a soak samples over time."""
    return _status_kib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process: steadier than wall time on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
