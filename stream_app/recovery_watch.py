"""A table recovery whose changelog records were fetched but never applied fetches them again.

Faust's consumer drops a fetched batch when the flow stops or the generation changes while it
hands the batch out (a rebalance), and the client's position is past it already. Input
partitions are sought back to their committed offsets after every recovery, but nothing seeks a
changelog partition being recovered: its recovery waits for records that will never come, and
the worker never serves its figures ("Still fetching changelog topics for recovery" for ever,
seen with three workers rebalancing back to back). Faust's own remedy for a recovery stuck past
its records (`detect_aborted_tx`) runs only with transactions.

So, while a recovery runs: a changelog partition whose applied offset has not moved for
STALLED_AFTER_S, short of its end, although the client has read past that end, is sought back
to the record after the last one applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)
STALLED_AFTER_S = 10.0  # a recovery applies what it fetched within milliseconds
CHECK_EVERY_S = 2.0


class RecoveryWatch:
    def __init__(self, app: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.seen: dict[TP, tuple[int, float]] = {}  # the last applied offset, and since when
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """From the first assignment on (Faust's own tasks start only after the first recovery,
        which is exposed to this as much as any later one)."""
        if self.task is None:
            self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while not self.app.should_stop:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                await self.check()
            except Exception:  # a broker call that failed: the next check asks again
                log.warning("the recovery watch could not check the recovery", exc_info=True)

    async def check(self) -> dict[TP, int]:
        """Seek back the changelog partitions whose recovery stalled past what the client read;
        returns them with the offset each was sought to."""
        recovery = self.app.tables.recovery
        if not recovery.in_recovery:
            self.seen.clear()
            return {}
        now = self.clock()
        stalled: list[tuple[TP, int]] = []
        for tp, last in list(recovery.active_highwaters.items()):
            applied = recovery.active_offsets.get(tp, -1)
            if last is None or applied is None or applied >= last:
                continue
            seen = self.seen.get(tp)
            if seen is None or seen[0] != applied:
                self.seen[tp] = (applied, now)
            elif now - seen[1] >= STALLED_AFTER_S:
                stalled.append((tp, applied))
        refetch: dict[TP, int] = {}
        for tp, applied in stalled:
            position = await self.app.consumer.position(tp)
            if position is not None and position > recovery.active_highwaters[tp]:
                refetch[tp] = applied + 1  # read past its end, its records never applied
        if refetch:
            log.warning(
                "table recovery stalled with its records read but not applied: fetching them "
                "again from %s",
                ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in refetch.items()),
            )
            await self.app.consumer.seek_wait(refetch)
            for tp, offset in refetch.items():
                self.seen[tp] = (offset - 1, now)  # sought: it gets its time again
        return refetch
