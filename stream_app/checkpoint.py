"""One stage's checkpoint: the order in which what a batch of input records did becomes durable.

1. the records sent to other topics (`before` sends what the stage held back for this
   partition, then the worker's output producer is flushed and acknowledged);
2. the state, ending with the input position that vouches for it (the table's changelog,
   acknowledged, then the local store);
3. only then the input records are acked, so the consumer may commit past them.

A crash between any two steps redoes input whose effects may be lost, and never skips any:
outputs sent twice are revised or deduplicated downstream, state written twice is the same
state. A partition revoked during a checkpoint keeps nothing of it: its records are not acked,
its buffered state was dropped, and its next owner redoes them.

A record whose processing spans a revocation or an assignment of its partition (it waited on
the broker while the group rebalanced) is neither held nor checkpointed, and what it left in
memory is forgotten: it was computed from state the worker no longer holds as it was (dropped,
or being recovered), and kept it would shadow the recovered state. It is delivered again.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)
EXIT_STAGE_FAILED = 70  # a stage raised: the worker exits rather than run on past lost effects


class Ackable(Protocol):
    def ack(self) -> bool: ...


class Flushable(Protocol):
    async def flush(self) -> None: ...


class Positions(Protocol):
    def epoch(self, partition: int) -> int: ...

    def save(self, partition: int) -> None: ...


class Checkpoint:
    """Holds a stage's processed, unacked records per partition and checkpoints a partition
    every `every` records, or when asked (ticks)."""

    def __init__(
        self,
        outputs: Flushable,
        state: Flushable,
        positions: Positions,
        *,
        every: int,
        forget: Callable[[int], None],
        before: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.outputs = outputs
        self.state = state
        self.positions = positions
        self.every = every
        self.forget = forget
        self.before = before
        self.held: dict[int, list[Ackable]] = {}

    def epoch(self, partition: int) -> int:
        """Taken when a record of the partition begins: `moved` and `hold` compare with it."""
        return self.positions.epoch(partition)

    def moved(self, partition: int, since: int) -> bool:
        """Whether the partition was revoked or assigned since the epoch `since`; if so, what
        the stage holds of it in memory is forgotten (the record in hand may have written it
        after the partition's state was dropped, from a table still being recovered)."""
        if self.positions.epoch(partition) == since:
            return False
        self.drop(partition)
        self.forget(partition)
        return True

    async def hold(self, partition: int, record: Ackable, *, since: int, now: bool = False) -> bool:
        """Hold a processed record of `partition` (inside an agent, on a record of that
        partition), begun at epoch `since`; checkpoint the partition when due. True when it
        was checkpointed."""
        if self.moved(partition, since):
            return False
        held = self.held.setdefault(partition, [])
        held.append(record)
        if not now and len(held) < self.every:
            return False
        if self.before is not None:
            await self.before(partition)
        await self.outputs.flush()
        if self.moved(partition, since):
            return False  # revoked meanwhile: the held records and their state were dropped
        self.positions.save(partition)
        await self.state.flush()
        for done in held:
            done.ack()
        held.clear()
        return True

    def drop(self, partition: int) -> None:
        """On revocation: the held records are not acked (their next owner redoes them)."""
        self.held.pop(partition, None)


AgentFun = Callable[[Any], Coroutine[Any, Any, None]]


def stop_on_failure(
    stage: str, exit: Callable[[int], Any] = os._exit
) -> Callable[[AgentFun], AgentFun]:
    """Wrap an agent so that an exception stops the worker process.

    Faust restarts a crashed agent in the same process, with the stage's buffered state and
    input positions in memory still advanced past records whose outputs or state just failed
    to become durable (`OutputLost`, a refused changelog write, `ProbeFailed`): the next
    checkpoint would vouch for them. Exiting instead leaves the durable state as the last
    checkpoint made it; the restarted worker, or another one, redoes the rest."""

    def wrap(agent: AgentFun) -> AgentFun:
        @functools.wraps(agent)
        async def guarded(stream: Any) -> None:
            try:
                await agent(stream)
            except Exception:
                log.critical(
                    "the %s stage failed; the worker exits (status %d) so that nothing is acked "
                    "past what was made durable",
                    stage,
                    EXIT_STAGE_FAILED,
                    exc_info=True,
                )
                sys.stderr.flush()
                exit(EXIT_STAGE_FAILED)
                raise

        return guarded

    return wrap
