"""The event clock on the real broker: a worker behind a live feed closes no interval before
its records are applied, and an idle live feed still closes its intervals.

Before the event clock, stream time jumped to the wall clock as soon as an event under five
minutes old was applied: a worker starting with a few minutes of live backlog closed every
interval of the backlog at its first tick and then published revisions as the rest came in.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from stream_app.domain.figures import interval_key
from stream_app.domain.windows import interval_start
from tests.integration.engine import Calls, send, wait_for
from tests.support import Worker, consume_all, make_worker, unique_prefix

INTERVAL_MS = 60_000  # INTERVAL_MINUTES=1
GRACE_MS = 5_000
QUEUES = ("sales", "support", "billing", "vip")
CALLS = 4_000  # 12,000 events: several seconds of backlog for a worker on this machine
SPAN_MS = 150_000  # the backlog's events lie in the last 2.5 minutes: live, not current


def test_a_worker_behind_a_live_feed_publishes_each_interval_once_and_right(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("lag")
    settings = {"INTERVAL_MINUTES": "1", "GRACE_SECONDS": str(GRACE_MS // 1000)}
    creator = make_worker(tmp_path, prefix, name="topics", **settings)
    workers.append(creator)
    creator.start().wait_ready()
    creator.stop()

    now = time.time_ns() // 1_000_000
    first = now - SPAN_MS
    calls = Calls()
    answered: Counter[str] = Counter()
    for n in range(CALLS):
        queue = QUEUES[n % len(QUEUES)]
        entered = first + n * SPAN_MS // CALLS
        calls.answered(f"lag-{n}", queue, entered, speed_ms=1_500)
        answered[interval_key(queue, interval_start(entered + 1_500, INTERVAL_MS))] += 1
    send(prefix, calls.events)

    worker = make_worker(tmp_path, prefix, **settings)
    workers.append(worker)
    worker.start().wait_ready()

    # Every interval the backlog touched closes: the last one once the wall clock (the feed is
    # live and idle now) passes its end plus the grace.
    def published() -> list[tuple[str, dict[str, object]]] | None:
        records = consume_all(prefix + "queue-metrics", idle=1.0, timeout=20)
        keyed = [(r.key.decode(), r.json()) for r in records if r.key is not None]
        return keyed if set(answered) <= {key for key, _ in keyed} else None

    records = wait_for(
        published, timeout=240, message=f"queue-metrics for {len(answered)} intervals"
    )
    seen = Counter(key for key, _ in records)
    revised = {key: n for key, n in seen.items() if n > 1}
    assert not revised, f"intervals published more than once (closed early): {revised}"
    for key, record in records:
        assert record["revision"] == 0, (key, record)
        assert record["answered"] == answered[key], (key, record, answered[key])
