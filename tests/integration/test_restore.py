"""A worker killed with SIGKILL restarts on its own DATA_DIR: Faust restores only the changelog
records after each store's persisted offset, and the same figures are served again. A store
whose changelog was deleted meanwhile is not trusted: the worker rebuilds it and still ends
with the same figures."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any, cast

import faust

from stream_app.domain.events import parse_ts
from stream_app.local_stores import LocalStore, read_local_stores
from stream_app.sources.anonymous_bank import load
from stream_app.tables import RocksDBStore, create_tables
from tests.integration.engine import Calls, send, wait_for
from tests.integration.test_workers import QUEUES, answered_1h, send_a_call_per_queue
from tests.support import (
    DATASET,
    Worker,
    delete_topics,
    describe_topics,
    make_worker,
    started,
    unique_prefix,
)

UNTIL_MS = 918_000_000_000  # 1999-02-03T00:00Z: two days of the real month
Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def workload() -> list[tuple[str, dict[str, Any]]]:
    events = [(k, v) for k, v in load(DATASET).events if parse_ts(v["ts"]) < UNTIL_MS]
    end = Calls()
    end.add("end-of-workload", "call_started", UNTIL_MS + 86_400_000)
    return events + end.events


def local_stores(worker: Worker) -> list[LocalStore]:
    """The stores in the worker's DATA_DIR (the worker stopped: they are not locked)."""
    prefix = worker.env["TOPIC_PREFIX"]
    partitions = {
        name: info["partitions"]
        for name, info in describe_topics(
            [prefix + "call-events", prefix + "queue-updates"]
        ).items()
    }
    app = faust.App(
        prefix + worker.env["APP_ID"], store="rocksdb://", datadir=worker.env["DATA_DIR"]
    )
    tables = create_tables(
        app,
        calls_partitions=partitions[prefix + "call-events"],
        queue_partitions=partitions[prefix + "queue-updates"],
    )
    return read_local_stores(cast(RocksDBStore, table.data) for table in tables)


def reading_starts_at(log: str) -> dict[tuple[str, int], int]:
    """Faust's recovery log: where it started reading each active changelog partition (the
    last such table in `log`)."""
    tables = log.split("Reading Starts At - Active")
    assert len(tables) > 1, "no recovery in the log"
    starts: dict[tuple[str, int], int] = {}
    topic = ""
    for line in tables[-1].splitlines()[1:]:
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if len(cells) == 3 and cells[1].isdigit():
            topic = cells[0] if cells[0] != "〃" else topic
            starts[(topic, int(cells[1]))] = int(cells[2])
        elif starts and not line.strip().startswith(("├", "┌", "└", "+", "|", "│")):
            break
    return starts


def drained(worker: Worker, events: int) -> Figures:
    """Wait until both stages committed every record and the figures stand still."""
    wait_for(
        lambda: worker.backlog() == 0 and worker.queue_figures(),
        timeout=600,
        every=2,
        message="both stages drained",
    )
    previous: list[Figures] = [{}]

    def still() -> Figures | None:
        now = worker.queue_figures()
        same = now == previous[0]
        previous[0] = now
        return now if same else None

    result: Figures = wait_for(still, timeout=120, every=3, message="figures stand still")
    return result


def restarted(worker: Worker, workers: list[Worker]) -> Worker:
    again = worker.restarted(str(time.time_ns()))
    workers.append(again.start())
    again.wait_ready(assigned=False)
    return again


def serves(worker: Worker, want: Figures) -> None:
    last: list[Figures] = [{}]

    def same() -> bool:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()
        try:
            last[0] = worker.queue_figures()
        except (OSError, AssertionError):
            return False
        return last[0] == want

    try:
        wait_for(same, timeout=300, every=1, message="the figures of before the kill")
    except AssertionError:
        diff = [k for k in set(want) | set(last[0]) if want.get(k) != last[0].get(k)]
        raise AssertionError(f"{len(diff)} figures differ, e.g. {sorted(diff)[:5]}") from None


def test_a_restart_restores_only_the_tail_and_serves_the_same_figures(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("restore")
    worker = started(workers, tmp_path, prefix, name="restore")
    events = workload()
    send(prefix, events)
    before = drained(worker, len(events))
    assert len(before) > 100
    worker.stop(signal.SIGKILL)

    stores = local_stores(worker)
    assert stores and all(s.mark is not None for s in stores), stores
    persisted = {(s.changelog, s.partition): s.persisted_offset for s in stores}
    assert sum(offset or 0 for offset in persisted.values()) > 1000  # the state is not trivial

    worker = restarted(worker, workers)
    serves(worker, before)
    log = worker.log_path.read_text(errors="replace")
    for store in stores:
        assert f"local store {store.changelog}[{store.partition}] kept" in log, log[-3000:]
    # Faust's recovery read each changelog partition from its store's persisted offset on,
    # not from the start.
    starts = reading_starts_at(log)
    assert {tp: starts.get(tp) for tp in persisted} == persisted, starts

    # The changelogs deleted (and created again by the worker): no store is trusted, the state
    # is rebuilt from the input, to the same figures.
    worker.stop(signal.SIGKILL)
    app_id = prefix + worker.env["APP_ID"]
    delete_topics([f"{app_id}-calls-changelog", f"{app_id}-queues-changelog"])
    worker = restarted(worker, workers)
    serves(worker, before)
    log = worker.log_path.read_text(errors="replace")
    for store in stores:
        where = f"{store.changelog}[{store.partition}]"
        assert f"local store {where} deleted, restored from the changelog: the changelog " in log


def test_a_partition_back_from_another_worker_is_brought_up_to_date_from_its_offset(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """w1 holds every queue, w2 joins and takes some (and writes their state), w2 is killed:
    w1's stores of those partitions are stale, and Faust restores them from their offsets."""
    prefix = unique_prefix("back")
    first = started(workers, tmp_path, prefix, name="w1")
    t0 = time.time_ns() // 1_000_000 - 120_000  # recent: inside the 1h window for the test
    send_a_call_per_queue(prefix, "back-a", t0)
    wait_for(
        lambda: answered_1h(first) == dict.fromkeys(QUEUES, 1.0) and first.backlog() == 0,
        timeout=120,
        message="w1 alone holds every queue",
    )

    second = make_worker(tmp_path, prefix, name="w2")
    workers.append(second.start())
    second.wait_ready(assigned=False)

    def split() -> tuple[set[str], set[str]] | None:
        a, b = set(answered_1h(first)), set(answered_1h(second))
        return (a, b) if a and b and a | b == set(QUEUES) and not a & b else None

    _, moved = wait_for(split, timeout=120, message="both workers own queues")
    send_a_call_per_queue(prefix, "back-b", t0 + 30_000)
    wait_for(
        lambda: (
            answered_1h(first) | answered_1h(second) == dict.fromkeys(QUEUES, 2.0)
            and first.backlog() == 0
        ),
        timeout=120,
        message="the second calls counted by their owners",
    )
    time.sleep(2)  # a tick's flush: the second worker's state is in the changelog

    second.stop(signal.SIGKILL)
    # w1's stores of the moved queues' partitions hold only the first calls; the changelog
    # records w2 wrote after their offsets bring them up to date.
    wait_for(
        lambda: answered_1h(first) == dict.fromkeys(QUEUES, 2.0),
        timeout=120,
        message=f"w1 holds every queue again, {sorted(moved)} with w2's calls",
    )
    changelog = f"{prefix}{first.env['APP_ID']}-queues-changelog"
    held = reading_starts_at(second.log_path.read_text(errors="replace"))
    held_by_w2 = {p for topic, p in held if topic == changelog}
    starts = reading_starts_at(first.log_path.read_text(errors="replace"))
    came_back = {p: starts[(changelog, p)] for p in held_by_w2}
    # Read from w1's persisted offsets on (-1: from the start, for a partition w1 never wrote).
    assert any(offset >= 0 for offset in came_back.values()), (held_by_w2, starts)
