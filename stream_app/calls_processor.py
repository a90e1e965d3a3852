"""The calls stage's processor: what a call event, a tick, an assignment and a revocation of a
`call-events` partition do. Its Faust agent (stream_app.agents) only loops over records; the
processor is tested without a broker (tests/unit/test_calls_processor.py).

A record: applied once and in offset order (the input guard), its outputs sent (rejects to the
dead-letter topic, outcomes), its contributions held to be combined (stream_app.domain.hop),
then held for the partition's checkpoint (stream_app.checkpoint), which sends the combined
contributions, flushes the outputs, the state and the input position, and only then acks.
A tick: the partition's stream time announced to every queue partition (after the
contributions it vouches for) and its retention.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from stream_app.checkpoint import Checkpoint
from stream_app.domain.agents_stage import AgentPending, agent_update_record
from stream_app.domain.calls import Emission
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import Announced, wall_ms
from stream_app.domain.hop import Pending, update_record
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics
from stream_app.outputs import partition_of

AGENTS_CLOCK_EVERY_MS = 5_000  # in a replay, how often its clock goes to the agents partitions
FLUSH_EVERY = 2000  # records of one partition between checkpoints (a tick checkpoints too)
Headers = list[tuple[str, bytes]]


def own_headers(headers: Any) -> Headers:
    """The input record's headers as (name, value) pairs, whichever form the client gave."""
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(str(name), bytes(value or b"")) for name, value in headers]


class Triage(Protocol):
    reject: str | None
    detail: str
    late: bool
    rekey: str | None


async def divert(
    outputs: Sender, metrics: Metrics, topics: tuple[str, str], message: Any, outcome: Triage
) -> bool:
    """A rejected input record to the dead-letter topic as it came, with why (headers); one
    keyed by something else than its id back to the input under its id. True if either.
    `topics`: (the input, its dead-letter topic)."""
    if outcome.reject is not None:
        metrics.rejected.labels(reason=outcome.reject).inc()
        if outcome.late:
            metrics.late.inc()
        headers = [
            *own_headers(message.headers),
            ("reason", outcome.reject.encode()),
            ("detail", outcome.detail.encode()[:1000]),
        ]
        await outputs.send(topics[1], message.value, key=message.key, headers=headers)
        return True
    if outcome.rekey is not None:
        await outputs.send(
            topics[0],
            message.value,
            key=outcome.rekey.encode(),
            headers=own_headers(message.headers),
        )
        return True
    return False


class Sender(Protocol):
    """The worker's output producer (stream_app.outputs.Outputs)."""

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None: ...

    async def flush(self) -> None: ...


class Guard(Protocol):
    """The input positions of the stage (stream_app.input_guard.InputGuard)."""

    async def process(self, message: Any, apply: Callable[[Any], Awaitable[None]]) -> bool: ...
    async def watch(self, partition: int) -> None: ...
    def next_offset(self, partition: int) -> int: ...
    def epoch(self, partition: int) -> int: ...
    def save(self, partition: int) -> None: ...
    def forget(self, partition: int) -> None: ...


class State(Protocol):
    """The stage's buffered table (stream_app.tables.BufferedStore)."""

    async def flush(self) -> None: ...
    def drop(self, partition: int) -> None: ...


class Registry(Protocol):
    """The deployment's queues (stream_app.queue_registry.QueueRegistry)."""

    loaded: bool

    async def load(self) -> None: ...
    def take_unsent(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class CallsTopics:
    events: str
    dead_letter: str
    outcomes: str
    updates: str
    registry: str
    update_partitions: int  # every one of them hears each calls partition's clock
    agent_updates: str | None = None  # what calls mean to agents, to the agents stage
    agent_partitions: int = 1  # of agent-updates (and agent-events: co-partitioned)


def agent_partition(agent_id: str, partitions: int) -> int:
    """The partition a record keyed by `agent_id` goes to (Kafka's default partitioner): the
    agents stage's partition of that agent, as its `agent-events` are partitioned."""
    return partition_of(agent_id.encode(), range(partitions))


class CallsProcessor:
    def __init__(
        self,
        calls: CallsStage,
        state: State,
        outputs: Sender,
        guard: Guard,
        registry: Registry,
        metrics: Metrics,
        topics: CallsTopics,
        *,
        highwater: Callable[[int], int | None],
        sweeps: SweepSchedule,
        wall: Callable[[], int] = wall_ms,
        flush_every: int = FLUSH_EVERY,
    ) -> None:
        self.calls = calls
        self.state = state
        self.outputs = outputs
        self.guard = guard
        self.registry = registry
        self.metrics = metrics
        self.topics = topics
        self.highwater = highwater  # the partition's end on the broker, as the consumer knows it
        self.sweeps = sweeps
        self.wall = wall
        self.pending = Pending()  # contributions applied, not sent yet
        self.agent_pending = AgentPending()  # what calls mean to agents, not sent yet
        self.announced = Announced()  # the partition's clock, as told the queue partitions
        self.ends: dict[int, int] = {}  # per partition: its end on the broker, last asked
        self.told_agents = Announced()  # the partition's clock, as told the agents partitions
        self.checkpoint = Checkpoint(
            outputs, state, guard, every=flush_every, forget=self._forget, before=self.send_pending
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_record(self, event: Any, *, tick: bool, idle: Callable[[], bool]) -> None:
        """One record of the stage's input (a call event, or a tick of its partition); `idle`
        says whether the input buffer is empty (then nothing more comes to combine with)."""
        partition = event.message.partition
        since = self.checkpoint.epoch(partition)
        if tick:
            await self.guard.watch(partition)
            if self.checkpoint.moved(partition, since):
                return  # the partition moved while its stall watch waited
            await self.punctuate(partition)
        elif not await self.guard.process(event.message, self.apply):
            self.checkpoint.moved(partition, since)
            return  # dropped unacked: it is delivered again
        else:
            await self.sweep(partition)
        if not await self.checkpoint.hold(partition, event, since=since, now=tick) and idle():
            for held in sorted(self.holding()):
                # Each send can span a rebalance: a partition revoked or assigned meanwhile
                # holds nothing any more, and its clock and position are not known here (read
                # now, they would be read from the table of the record in hand).
                if held in self.holding() and self.sends_at_once(held):
                    await self.send_pending(held)

    def holding(self) -> set[int]:
        """The partitions with contributions or agents' news not sent yet."""
        return {*self.pending.partitions(), *self.agent_pending.partitions()}

    async def punctuate(self, partition: int) -> None:
        """A tick: the partition's clock to every queue partition, and its retention."""
        # What the announced time vouches for goes first (the agents partitions told the time
        # with facts need not hear it again).
        await self.send_contributions(partition)
        told = await self.send_agent_updates(partition)
        st, seen_at, behind = self.clock_of(partition)
        self.calls.save_stream_time(partition)
        wall = self.wall()
        # Announce a change at once, the same news after every rebalance (a queue partition
        # that moved to a worker which has not heard it yet closes nothing until then) and
        # once a minute; not more often, or queue-updates would never be read to its end.
        if self.announced.due(partition, st, behind, wall):
            watermark = orjson.dumps({"sp": partition, "st": st, "sa": seen_at, "b": behind})
            for target in range(self.topics.update_partitions):
                await self.outputs.send(self.topics.updates, watermark, partition=target)
        await self.tell_agents_partitions(partition, st, behind, told, wall)
        await self.sweep(partition)

    async def tell_agents_partitions(
        self, partition: int, st: int | None, behind: bool, told: set[int], wall: int
    ) -> None:
        """The partition's time to every agents partition not told it with facts just now, so
        each knows up to when this partition's facts are in (it holds the queues' closing back
        to that). On a live feed at each change; in a replay, whose agents stage checkpoints
        every few seconds only, at most every AGENTS_CLOCK_EVERY_MS; unchanged, once a minute."""
        if self.topics.agent_updates is None:
            return
        gap = 0 if self.calls.clock_of(partition).live else AGENTS_CLOCK_EVERY_MS
        if not self.told_agents.due(partition, st, behind, wall, min_gap_ms=gap):
            return
        clock_only = orjson.dumps(agent_update_record([], st, partition, behind))
        for target in range(self.topics.agent_partitions):
            if target not in told:
                await self.outputs.send(self.topics.agent_updates, clock_only, partition=target)

    def assigned(self, partition: int) -> None:
        """Its state is read afresh from the recovered table."""
        self.announced.clear()  # every partition announces itself again at its next tick
        self.told_agents.clear()
        self._forget(partition)

    def revoked(self, partition: int) -> None:
        """Nothing of it is kept: its unacked records are redone by its next owner."""
        self._forget(partition)
        self.checkpoint.drop(partition)

    def _forget(self, partition: int) -> None:
        self.calls.forget_partition(partition)
        self.state.drop(partition)
        self.guard.forget(partition)
        self.pending.drop(partition)
        self.agent_pending.drop(partition)
        self.ends.pop(partition, None)

    # -- records -------------------------------------------------------------------------------

    async def apply(self, message: Any) -> None:
        if not self.registry.loaded:
            await self.registry.load()
        outcome = self.calls.process(message.key, message.value, self.wall(), message.partition)
        new_queues = self.registry.take_unsent()
        for queue in new_queues:  # known to every worker before the record that named it is acked
            await self.outputs.send(self.topics.registry, b"{}", key=queue.encode(), partition=0)
        if new_queues:
            await self.outputs.flush()
        topics = (self.topics.events, self.topics.dead_letter)
        if await divert(self.outputs, self.metrics, topics, message, outcome):
            return
        assert outcome.event is not None
        self.metrics.events.inc(outcome.event.type)
        if outcome.duplicate:
            self.metrics.duplicates.inc()
        if outcome.emission is not None:
            await self.emit(outcome.event.call_id, outcome.emission, message.partition)
        if outcome.for_agents is not None and self.topics.agent_updates is not None:
            self.agent_pending.add_call(
                message.partition, outcome.event.call_id, outcome.for_agents
            )

    async def emit(self, call_id: str, emission: Emission, partition: int) -> None:
        self.pending.add(partition, call_id, emission.contributions)
        if emission.outcome is not None:
            await self.outputs.send(
                self.topics.outcomes, orjson.dumps(emission.outcome), key=call_id.encode()
            )

    def sends_at_once(self, partition: int) -> bool:
        """Whether the partition's contributions, and what its calls mean to agents, go as soon
        as the input buffer runs dry: on a live feed, or caught up. While a backlog is read they
        wait for its checkpoint (a tick, a second at most): small fetches empty the buffer all
        the time, and sent at each such moment a week of the month crossed the hop in 16,800
        records for 47,000 events, each costing the queues stage far more to read than its
        entries to apply (the agents stage sends nothing on before its own checkpoint anyway)."""
        return self.calls.clock_of(partition).live or not self.behind(partition)

    async def send_pending(self, partition: int) -> None:
        """What the partition holds back: before its checkpoint (it must be durable first)."""
        await self.send_contributions(partition)
        await self.send_agent_updates(partition)

    async def send_contributions(self, partition: int) -> None:
        """The partition's pending contributions, one record per queue: before its checkpoint
        (they must be durable first), and when the input buffer runs dry if `sends_at_once`."""
        st, seen_at, behind = self.clock_of(partition)
        for queue, entries in self.pending.take(partition):
            value = orjson.dumps(update_record(queue, entries, partition, st, seen_at, behind))
            await self.outputs.send(self.topics.updates, value, key=queue.encode())

    async def send_agent_updates(self, partition: int) -> set[int]:
        """What the partition's changed calls mean to their agents, one record per agents
        partition: before its checkpoint, and when the input runs dry on a live feed or with
        nothing left to read. Returns the agents partitions it sent to."""
        if self.topics.agent_updates is None:
            self.agent_pending.drop(partition)
            return set()
        pending = self.agent_pending.take(
            partition,
            functools.partial(agent_partition, partitions=self.topics.agent_partitions),
        )
        if not pending:
            return set()
        st, _, behind = self.clock_of(partition)
        told: set[int] = set()
        for to, agents in pending:
            value = orjson.dumps(agent_update_record(agents, st, partition, behind))
            await self.outputs.send(self.topics.agent_updates, value, partition=to)
            told.add(to)
        return told

    async def sweep(self, partition: int) -> None:
        """Retention of the partition when due, from its ticks and its records: in a fast
        replay a tick waits behind a full stream buffer while stream time runs on."""
        st = self.calls.stream_time(partition)
        if st is None or not self.sweeps.due(partition, st, self.wall()):
            return
        swept = self.calls.sweep(partition)
        self.metrics.evicted.inc(swept.evicted)
        for call_id, agents in swept.agents:
            self.agent_pending.settle(partition, call_id, agents)
        for call_id, emission in swept.emissions:
            await self.emit(call_id, emission, partition)

    # -- the partition's clock -----------------------------------------------------------------

    def behind(self, partition: int) -> bool:
        """Whether records of the partition wait to be applied (or nothing is known). The end
        last asked of the consumer is kept: it only grows, so while the position is below it
        the partition is behind without asking again (asking costs a trip through the
        consumer's thread, and a replay asks on every idle moment)."""
        position = self.guard.next_offset(partition)
        end = self.ends.get(partition)
        if end is not None and position < end:
            return True
        highwater = self.highwater(partition)
        if highwater is None:
            return True
        self.ends[partition] = highwater
        return position < highwater

    def clock_of(self, partition: int) -> tuple[int | None, int | None, bool]:
        """What the partition announces: its newest event ts, the wall time it saw it, and
        whether it is behind its input. The queues stage moves these on with the wall clock
        only while no calls partition is behind."""
        clock = self.calls.clock_of(partition)
        return clock.newest, clock.seen_at, self.behind(partition)
