"""Closing, revisions and the live state: late events, idle queues on a live feed, calls waiting."""

from __future__ import annotations

import time
from pathlib import Path

from stream_app.domain.events import format_ts
from tests.integration.engine import (
    Calls,
    latest_by_key,
    past_interval,
    queue_metrics,
    send,
    wait_for,
)
from tests.support import Worker, consume_all, started, unique_prefix

S = 1000
MIN = 60 * S


def test_an_event_after_publication_republishes_with_the_next_revision(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("revision")
    started(workers, tmp_path, prefix)
    t0 = past_interval()
    key = f"late|{format_ts(t0)}"
    first = Calls()
    first.answered("l1", "late", t0 + MIN, 10 * S)
    first.answered("tick", "other", t0 + 20 * MIN, 1 * S)  # stream time past end + grace
    send(prefix, first.events)
    record = queue_metrics(prefix, {key})[key]
    assert (record["answered"], record["asa_seconds"], record["revision"]) == (1, 10.0, 0)

    second = Calls()
    second.answered("l2", "late", t0 + 2 * MIN, 30 * S)  # belongs to the published interval
    send(prefix, second.events)

    def revised() -> dict[str, object] | None:
        latest = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0))[key]
        return latest if latest["revision"] == 1 else None

    record = wait_for(revised, message="revision 1")
    assert (record["answered"], record["asa_seconds"], record["longest_wait_seconds"]) == (
        2,
        20.0,
        30.0,
    )


def test_live_feed_closes_an_idle_queue_by_the_wall_clock_and_waiting_ages(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("live")
    worker = started(workers, tmp_path, prefix, INTERVAL_MINUTES="1", GRACE_SECONDS="3")
    now = time.time_ns() // 1_000_000
    calls = Calls()
    calls.answered("v1", "live", now - 2 * S, 2 * S)
    calls.add("w1", "call_started", now - 2 * S, queue="live")
    calls.add("w1", "queue_entered", now - 2 * S, queue="live")  # waits, never answered
    send(prefix, calls.events)
    start = now - now % MIN
    key = f"live|{format_ts(start)}"
    waiting = wait_for(
        lambda: worker.metrics().get(("callcenter_calls_waiting", (("queue", "live"),))),
        message="calls waiting",
    )
    assert waiting == 1
    first = worker.metrics()[("callcenter_oldest_waiting_seconds", (("queue", "live"),))]
    time.sleep(2.5)
    second = worker.metrics()[("callcenter_oldest_waiting_seconds", (("queue", "live"),))]
    assert second >= first + 2, "oldest waiting must age between scrapes, not freeze between events"
    # No further event: the wall clock moves stream time on, since the feed is live.
    deadline_s = (start + MIN + 3 * S - time.time_ns() // 1_000_000) / 1000 + 60
    record = queue_metrics(prefix, {key}, timeout=deadline_s)[key]
    assert (record["answered"], record["revision"]) == (1, 0)
