"""Building blocks of the engine's integration tests: scenarios as events, and reading the outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stream_app.domain.events import format_ts
from tests.support import BOOTSTRAP, Record, Worker, consume_all, produce

INTERVAL_MS = 15 * 60_000


def past_interval(hours_ago: float = 3) -> int:
    """The start of a 15-minute interval some hours back: old enough that the wall clock never
    closes it (the feed is not live), young enough to lie inside the state's retention."""
    now = time.time_ns() // 1_000_000
    start = now - int(hours_ago * 3_600_000)
    return start - start % INTERVAL_MS


class Calls:
    """Write a scenario call by call: `calls.add("c1", "call_started", t, queue="sales")`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def add(self, call_id: str, type_: str, ts: int, **fields: Any) -> dict[str, Any]:
        event = {
            "event_id": f"{call_id}:{type_}:{ts}",
            "call_id": call_id,
            "type": type_,
            "ts": format_ts(ts),
        }
        event.update(fields)
        self.events.append((call_id, event))
        return event

    def answered(
        self, call_id: str, queue: str, ts: int, speed_ms: int, agent_id: str = "a"
    ) -> None:
        """A call that joins `queue` at `ts` (no IVR) and is answered `speed_ms` later."""
        self.add(call_id, "call_started", ts, queue=queue)
        self.add(call_id, "queue_entered", ts, queue=queue)
        self.add(call_id, "call_answered", ts + speed_ms, agent_id=agent_id)


def send(prefix: str, events: list[tuple[str, dict[str, Any]]], bootstrap: str = BOOTSTRAP) -> None:
    produce(prefix + "call-events", [(key, value) for key, value in events], bootstrap)


def latest_by_key(records: list[Record]) -> dict[str, dict[str, Any]]:
    """A compacted topic as a consumer sees it: the last record per key."""
    out: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        out[record.key.decode()] = record.json()
    return out


def wait_for(
    check: Callable[[], Any], *, timeout: float = 60.0, every: float = 0.5, message: str = ""
) -> Any:
    """Poll until `check` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s: {message} (last: {last!r})")


def queue_metrics(prefix: str, keys: set[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Wait until every key has a record on queue-metrics; return the latest per key."""

    def check() -> dict[str, dict[str, Any]] | None:
        latest = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=10))
        return latest if keys <= set(latest) else None

    result: dict[str, dict[str, Any]] = wait_for(
        check, timeout=timeout, message=f"queue-metrics keys {keys}"
    )
    return result


def gauge(worker: Worker, name: str, **labels: str) -> float | None:
    return worker.metrics().get((name, tuple(sorted(labels.items()))))
