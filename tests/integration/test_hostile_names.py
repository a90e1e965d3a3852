"""Names that would reach Prometheus labels and BI keys are checked, and their number is bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from stream_app.domain.events import format_ts
from tests.integration.engine import wait_for
from tests.support import Worker, consume_all, produce, started, unique_prefix

HOUR = 3_600_000


def event(call_id: str, type_: str, ts: int, **fields: Any) -> bytes:
    body = {
        "event_id": f"{call_id}:{type_}",
        "call_id": call_id,
        "type": type_,
        "ts": format_ts(ts),
    }
    return orjson.dumps(body | fields)


def answered(call_id: str, queue: str, ts: int) -> list[tuple[str, bytes]]:
    return [
        (call_id, event(call_id, "queue_entered", ts, queue=queue)),
        (call_id, event(call_id, "call_answered", ts + 3000, agent_id="a1")),
    ]


def answered_in(worker: Worker, queue: str) -> float | None:
    return worker.metrics().get(("callcenter_calls_answered", (("queue", queue), ("window", "1h"))))


def test_bad_names_and_queues_beyond_the_limit_go_to_the_dlq_with_their_headers(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("names")
    worker = started(workers, tmp_path, prefix, MAX_QUEUES="3")
    t0 = time.time_ns() // 1_000_000 - HOUR
    source = [("source", b"pbx-7"), ("trace", b"\x00\x01")]
    bad = {
        "ctl-queue": event("ctl-queue", "queue_entered", t0, queue="sa\nles"),
        "bar-queue": event("bar-queue", "queue_entered", t0, queue="sales|2026-03-02T10:00:00Z"),
        "long-queue": event("long-queue", "queue_entered", t0, queue="q" * 201),
        "ctl-agent": event("ctl-agent", "call_answered", t0, agent_id="a\x1b[31m"),
        "ctl-tenant": event("ctl-tenant", "call_started", t0, tenant="acme\x85"),
    }
    records: list[Any] = [(key, value, source) for key, value in bad.items()]
    # Three queues fill the registry; the fourth is one too many, the first still counts. The
    # calls are keyed apart, so they are in different partitions, which Kafka orders in no way:
    # the three are counted before the others come.
    for n, queue in enumerate(["q1", "q2", "q3"]):
        records += answered(f"c{n}", queue, t0 + n * 10_000)
    produce(prefix + "call-events", records)
    wait_for(
        lambda: all(answered_in(worker, q) == 1 for q in ("q1", "q2", "q3")),
        message="the first three queues admitted",
    )
    records = list(answered("c3", "q4", t0 + 30_000))
    records.append(("c9", event("c9", "queue_entered", t0 + 50_000, queue="q5"), source))
    records += answered("c10", "q1", t0 + 60_000)
    produce(prefix + "call-events", records)

    dlq = wait_for(
        lambda: (r := consume_all(prefix + "call-events-dlq", idle=1.0)) and len(r) >= 7 and r,
        message="dead-letter records",
    )
    by_key = {r.key.decode(): r for r in dlq if r.key is not None}
    for key, value in bad.items():
        record = by_key[key]
        assert record.value == value
        assert record.header_list[: len(source)] == source, key  # the record's own headers first
        assert record.headers["reason"] == b"invalid_field", key
        assert record.headers["detail"], key
    assert b"'|'" in by_key["bar-queue"].headers["detail"]
    assert b"control character" in by_key["ctl-queue"].headers["detail"]
    beyond = sorted(k for k, r in by_key.items() if r.headers["reason"] == b"too_many_queues")
    assert beyond == ["c3", "c9"]  # q4's queue_entered and q5's (c3's answer names no queue)
    assert by_key["c9"].header_list[: len(source)] == source
    assert len(dlq) == len(bad) + 2

    wait_for(lambda: answered_in(worker, "q1") == 2, message="q1 still counts after the limit")
    metrics = worker.metrics()
    for queue in ("q1", "q2", "q3"):
        assert answered_in(worker, queue) is not None, queue
    assert answered_in(worker, "q4") is None
    assert not any(
        labels and dict(labels).get("queue", "").startswith(("sa\n", "sales|", "qqq"))
        for _, labels in metrics
    )
    assert metrics[("callcenter_events_rejected_total", (("reason", "invalid_field"),))] == 5
    assert metrics[("callcenter_events_rejected_total", (("reason", "too_many_queues"),))] == 2

    # The registry outlives the worker: a new one with empty local state knows the three queues.
    assert worker.proc is not None
    worker.proc.terminate()
    worker.proc.wait(timeout=60)
    second = started(workers, tmp_path, prefix, name="w2", MAX_QUEUES="3")
    more = answered("d1", "q2", t0 + 70_000) + answered("d2", "q6", t0 + 80_000)
    produce(prefix + "call-events", more)
    wait_for(
        lambda: answered_in(second, "q2") == 2,
        timeout=120,
        message=f"q2 counts on the new worker ({second.log_path})",
    )
    wait_for(
        lambda: (
            second.metrics().get(
                ("callcenter_events_rejected_total", (("reason", "too_many_queues"),))
            )
            == 1
        ),
        message="q6 is one queue too many on the new worker too",
    )
