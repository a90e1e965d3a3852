"""Two workers share the partitions: each queue is exported by exactly one of them, also after
one of them joined late and took queues over; each one's wallboard shows them all."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.integration.engine import Calls, past_interval, send, wait_for
from tests.support import Worker, make_worker, started, unique_prefix

QUEUES = [f"queue-{n:02d}" for n in range(16)]


def answered_1h(worker: Worker) -> dict[str, float]:
    """Calls answered per queue in the last hour, as this worker exports them (its queues)."""
    return {
        dict(labels)["queue"]: value
        for (name, labels), value in worker.metrics().items()
        if name == "callcenter_calls_answered" and dict(labels).get("window") == "1h"
    }


def exported(worker: Worker) -> set[str]:
    return set(answered_1h(worker))


def send_a_call_per_queue(prefix: str, tag: str, t0: int | None = None) -> None:
    """One answered call in each of QUEUES, from `t0` (by default in an interval the wall
    clock never closes)."""
    t0 = past_interval() if t0 is None else t0
    calls = Calls()
    for n, queue in enumerate(QUEUES):
        calls.answered(f"{tag}-{n}", queue, t0 + n * 1000, 5000)
    send(prefix, calls.events)


def test_each_queue_is_exported_by_exactly_one_of_two_workers(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("two")
    first = make_worker(tmp_path, prefix, name="w1")
    second = make_worker(tmp_path, prefix, name="w2")
    workers.extend([first.start(), second.start()])
    first.wait_ready()
    second.wait_ready()
    send_a_call_per_queue(prefix, "two")

    def both() -> tuple[set[str], set[str]] | None:
        a, b = exported(first), exported(second)
        return (a, b) if a | b == set(QUEUES) else None

    a, b = wait_for(both, timeout=90, message="every queue exported")
    assert a and b, "both workers own some queues"
    assert not a & b, f"exported twice: {sorted(a & b)}"

    # Each worker's wallboard shows every queue, with the figures of the worker that owns it.
    owners = {**answered_1h(first), **answered_1h(second)}
    for worker in (first, second):

        def board(worker: Worker = worker) -> dict[str, float] | None:
            status, body = worker.get("/api/queues")
            shown = {
                q["queue"]: q["windows"]["1h"]["answered"] for q in orjson.loads(body)["queues"]
            }
            return shown if status == 200 and shown == owners else None

        wait_for(board, message=f"every queue on {worker.log_path.stem}'s /api/queues")


def histogram_queues(worker: Worker) -> set[str]:
    return {
        dict(labels)["queue"]
        for (name, labels), _ in worker.metrics().items()
        if name == "callcenter_answer_speed_seconds_count"
    }


def test_a_queue_taken_over_by_a_joining_worker_leaves_the_first_ones_metrics(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("join")
    first = started(workers, tmp_path, prefix, name="w1")
    send_a_call_per_queue(prefix, "join")
    wait_for(
        lambda: histogram_queues(first) == set(QUEUES),
        timeout=90,
        message="the first worker's answer-speed histogram for every queue",
    )

    second = started(workers, tmp_path, prefix, name="w2")

    def split() -> tuple[set[str], set[str], set[str]] | None:
        a, b = exported(first), exported(second)
        return (a, b, histogram_queues(first)) if a and b and a | b == set(QUEUES) else None

    a, b, first_histogram = wait_for(split, timeout=120, message="the queues shared out")
    assert not a & b, f"exported twice: {sorted(a & b)}"
    assert first_histogram <= a, f"histogram of queues moved away: {sorted(first_histogram - a)}"
