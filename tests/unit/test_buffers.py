"""A stream buffer resumes a partition paused under pressure while others keep it filled."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, ThrowableQueue

from stream_app.buffers import ResumingQueue


def resumed_at(queue_class: type[ThrowableQueue[int]]) -> int | None:
    """Fill a buffer of 10 past its pressure mark from partition A (paused), then take records
    while partition B keeps the buffer about half full; the buffer size when A was resumed."""

    async def run() -> int | None:
        queue = queue_class(maxsize=10, flow_control=FlowControlEvent())
        resumed: list[int] = []

        def put(value: int, partition: str) -> None:
            queue.put_nowait_enhanced(
                value,
                on_pressure_high=lambda: None,
                on_pressure_drop=lambda: (
                    resumed.append(queue.qsize()) if partition == "A" else None
                ),
            )

        for n in range(9):  # the 9th arrives at 8 (80 %): A is paused
            put(n, "A")
        for n in range(40):
            await queue.get()
            if resumed:
                return resumed[0]
            while queue.qsize() < 6:
                put(100 + n, "B")  # B's records keep coming: a backlog
        return None

    return asyncio.run(run())


def test_a_paused_partition_is_resumed_once_the_buffer_is_below_75_percent() -> None:
    assert resumed_at(ResumingQueue) == 7


def test_modes_queue_would_starve_it_while_other_partitions_keep_the_buffer_filled() -> None:
    """Why ResumingQueue exists: if this starts failing, mode fixed it upstream."""
    assert resumed_at(ThrowableQueue) is None
