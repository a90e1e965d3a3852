"""What a wallboard server holds and tells its pages, fed records by hand (no broker)."""

from __future__ import annotations

import asyncio

import orjson

from stream_app.domain.events import format_ts
from stream_app.wallboard.live_view import SUBSCRIBER_BACKLOG, LiveView

NOW = 1_800_000_000_000


def record(queue: str, as_of: int, waiting: int = 0) -> bytes:
    return orjson.dumps({"queue": queue, "calls_waiting": waiting, "as_of": format_ts(as_of)})


def test_the_latest_record_per_queue_wins_and_a_tombstone_removes_it() -> None:
    view = LiveView(clock=lambda: NOW)
    view.apply("queue", b"sales", record("sales", NOW, waiting=1))
    view.apply("queue", b"vip", record("vip", NOW))
    view.apply("queue", b"sales", record("sales", NOW, waiting=3))
    view.apply("queue", b"vip", None)
    snapshot = view.snapshot()
    assert [q["queue"] for q in snapshot["queues"]] == ["sales"]
    assert snapshot["queues"][0]["calls_waiting"] == 3


def test_a_record_that_is_not_json_is_skipped() -> None:
    view = LiveView(clock=lambda: NOW)
    view.apply("queue", b"sales", b"{not json")
    view.apply("queue", b"sales", b"[1, 2]")
    view.apply("queue", None, record("x", NOW))
    assert view.snapshot()["queues"] == []


def test_a_queue_is_stale_when_its_last_record_is_older_than_ten_seconds() -> None:
    view = LiveView(clock=lambda: NOW)
    view.apply("queue", b"fresh", record("fresh", NOW - 10_000))
    view.apply("queue", b"old", record("old", NOW - 10_001))
    view.apply("queue", b"broken", orjson.dumps({"queue": "broken", "as_of": "yesterday"}))
    assert view.stale() == ["broken", "old"]
    assert view.heartbeat() == {"now": NOW, "loaded": False, "stale": ["broken", "old"]}


async def test_pages_hear_each_change_and_a_slow_page_is_cut_off() -> None:
    view = LiveView(clock=lambda: NOW)
    page = view.subscribe()
    slow = view.subscribe()
    view.apply("queue", b"sales", record("sales", NOW))
    view.apply("agent", b"a1", orjson.dumps({"agent_id": "a1", "state": "available"}))
    assert await page.get() == ("queue", orjson.loads(record("sales", NOW)))
    assert await page.get() == ("agent", {"agent_id": "a1", "state": "available"})
    for _ in range(SUBSCRIBER_BACKLOG):
        view.apply("queue", b"sales", record("sales", NOW))
        await asyncio.sleep(0)
        while not page.empty():
            page.get_nowait()
    # `slow` never read: it was cut off with an end mark (its page reconnects for a snapshot)
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert items[-1] is None
    view.apply("queue", b"sales", record("sales", NOW))
    assert slow.empty()
    change = page.get_nowait()
    assert change is not None and change[0] == "queue"


def test_closing_ends_every_stream() -> None:
    view = LiveView(clock=lambda: NOW)
    page = view.subscribe()
    view.close()
    assert view.closed.is_set()
    assert page.get_nowait() is None
