"""Bad input gets a reason and loses nothing: every rejection on the dead-letter topic, unchanged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from stream_app.domain.events import format_ts
from tests.integration.engine import Calls, wait_for
from tests.support import Worker, consume_all, produce, started, unique_prefix

HOUR = 3_600_000


def event(call_id: str, type_: str, ts: Any, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{call_id}:{type_}", "call_id": call_id, "type": type_, "ts": ts, **fields}


def test_every_rejection_reason_reaches_the_dlq_unchanged(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("reject")
    worker = started(workers, tmp_path, prefix)
    now = time.time_ns() // 1_000_000
    past = format_ts(now - HOUR)
    bad: dict[str, tuple[str, bytes]] = {
        "invalid_json": ("r1", b"{not json"),
        "not_an_object": ("r2", b"[1, 2, 3]"),
        "missing_field": (
            "r3",
            orjson.dumps({"call_id": "r3", "type": "call_started", "ts": past}),
        ),
        "invalid_field": ("r4", orjson.dumps(event("r4", "call_started", past) | {"event_id": 5})),
        "unknown_type": ("r5", orjson.dumps(event("r5", "call_teleported", past))),
        "invalid_timestamp": ("r6", orjson.dumps(event("r6", "call_started", "yesterday"))),
        "future_timestamp": (
            "r7",
            orjson.dumps(event("r7", "call_started", format_ts(now + HOUR))),
        ),
        "missing_queue": ("r8", orjson.dumps(event("r8", "queue_entered", past))),
        "missing_agent": ("r9", orjson.dumps(event("r9", "call_answered", past))),
        "oversized": ("r10", orjson.dumps(event("r10", "call_started", past, note="x" * 70_000))),
    }
    # Late: the same call (so the same partition) once at stream time, once 60 h before it.
    late_ok = orjson.dumps(event("late", "call_started", past))
    late_old = orjson.dumps(event("late", "ivr_ended", format_ts(now - 61 * HOUR)))
    records: list[tuple[str | None, bytes | None]] = [(key, value) for key, value in bad.values()]
    records += [("late", late_ok), ("late", late_old)]
    # After all of it, a good call still counts: the worker kept going.
    good = Calls()
    good.add("good", "call_started", now - HOUR + 1000, queue="q-after")
    good.add("good", "queue_entered", now - HOUR + 2000, queue="q-after")
    good.add("good", "call_answered", now - HOUR + 7000, agent_id="a1")
    records += [(key, orjson.dumps(value)) for key, value in good.events]
    produce(prefix + "call-events", records)

    dlq = wait_for(
        lambda: (
            (r := consume_all(prefix + "call-events-dlq", idle=1.0))
            and len(r) >= len(bad) + 1
            and r
        ),
        message="dead-letter records",
    )
    by_reason = {r.headers["reason"].decode(): r for r in dlq}
    assert set(by_reason) == set(bad) | {"late"}
    for reason, (key, value) in bad.items():
        assert by_reason[reason].key == key.encode(), reason
        assert by_reason[reason].value == value, reason  # unchanged, byte for byte
    assert by_reason["late"].value == late_old
    metrics = wait_for(
        lambda: (
            (m := worker.metrics())
            and m.get(("callcenter_calls_answered", (("queue", "q-after"), ("window", "1h")))) == 1
            and m
        ),
        message="the good call counted after the bad ones",
    )
    for reason in [*bad, "late"]:
        assert metrics[("callcenter_events_rejected_total", (("reason", reason),))] == 1, reason
    assert metrics[("callcenter_events_late_total", ())] == 1
    assert worker.proc is not None and worker.proc.poll() is None


def test_a_record_keyed_otherwise_than_its_call_is_rerouted_not_lost(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("rekey")
    worker = started(workers, tmp_path, prefix)
    now = time.time_ns() // 1_000_000 - HOUR
    calls = Calls()
    calls.add("k1", "call_started", now)
    calls.add("k1", "queue_entered", now + 1000, queue="rekeyed")
    calls.add("k1", "call_answered", now + 4000, agent_id="a1")
    keys: list[str | None] = [None, "not-the-call", "k1"]
    produce(prefix + "call-events", [(k, v) for k, (_, v) in zip(keys, calls.events, strict=True)])
    wait_for(
        lambda: (
            worker.metrics().get(
                ("callcenter_calls_answered", (("queue", "rekeyed"), ("window", "1h")))
            )
            == 1
        ),
        message="the call counted once all its events met on its partition",
    )
    assert consume_all(prefix + "call-events-dlq", idle=1.0) == []
    assert (
        worker.metrics()[("callcenter_asa_seconds", (("queue", "rekeyed"), ("window", "1h")))]
        == 3.0
    )
