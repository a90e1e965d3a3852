"""The agents stage's processor: what an `agent-events` record, an `agent-updates` record (what
calls mean to an agent, from the calls stage), a tick, an assignment and a revocation of an
agents partition do. Its Faust agent (stream_app.agents) only loops over records; the processor
is tested without a broker (tests/unit/test_agents_processor.py).

Both inputs are keyed by agent_id and co-partitioned, each with its own input position in the
stage's table (two `InputGuard`s), both saved by one checkpoint. A record changes the agent's
facts only; the changed agents' projected timelines go to the queues stage (on `queue-updates`,
one record per queue, stream_app.domain.queue_agents), and their status to `agent-status`,
before each checkpoint of the partition and whenever the input runs dry, so a burst of an
agent's records crosses the hop once; retention runs right after them. A tick publishes the partition's closed agent intervals
(`agent-metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.calls_processor import (
    FLUSH_EVERY,
    Guard,
    Sender,
    State,
    divert,
)
from stream_app.checkpoint import Checkpoint
from stream_app.domain.agents_stage import AgentsStage, agent_calls_entries
from stream_app.domain.clock import Announced, EventClock, wall_ms
from stream_app.domain.hop import ENTRIES_PER_RECORD
from stream_app.domain.queue_agents import QueueSpan
from stream_app.domain.sweeps import SweepSchedule
from stream_app.domain.windows import interval_start
from stream_app.metrics import Metrics

UPDATES_POSITION_KEY = "\x00position-agent-updates"  # the second input's position
REPLAY_CHECKPOINT_MS = 5_000  # in a replay, a partition's ticks checkpoint it this often


@dataclass(frozen=True, slots=True)
class AgentsTopics:
    events: str
    dead_letter: str
    updates: str  # agent-updates: this stage's second input
    queue_updates: str  # to the queues stage
    status: str  # agent-status
    metrics: str  # agent-metrics
    queue_partitions: int = 0  # of queue-updates: each hears the partition's clock
    calls_partitions: int = 0  # of call-events: each tells the partition its time


class BothPositions:
    """The two input guards of the stage as one for its checkpoint: a change of either
    partition's epoch drops the checkpoint, and both positions are saved."""

    def __init__(self, *guards: Guard) -> None:
        self.guards = guards

    def epoch(self, partition: int) -> int:
        return sum(guard.epoch(partition) for guard in self.guards)

    def save(self, partition: int) -> None:
        for guard in self.guards:
            guard.save(partition)


def agent_entries_record(
    queue: str, entries: list[tuple[str, list[QueueSpan], int | None]]
) -> bytes:
    """A `queue-updates` record of agents' projections: {"q": queue, "g": [[agent, spans,
    from when the spans tell the timeline (null: whole)]]}."""
    return orjson.dumps({"q": queue, "g": [list(entry) for entry in entries]})


class AgentsProcessor:
    def __init__(
        self,
        agents: AgentsStage,
        state: State,
        outputs: Sender,
        events_guard: Guard,
        updates_guard: Guard,
        metrics: Metrics,
        topics: AgentsTopics,
        *,
        sweeps: SweepSchedule,
        wall: Callable[[], int] = wall_ms,
        flush_every: int = FLUSH_EVERY,
        replay_checkpoint_ms: int = REPLAY_CHECKPOINT_MS,
        worker_clock: EventClock | None = None,
        caught_up: Callable[[int], bool] = lambda partition: True,
    ) -> None:
        self.agents = agents
        self.worker_clock = worker_clock  # the worker's stream time (its calls partitions)
        self.caught_up = caught_up  # whether a partition's inputs are read to their end
        self.unclosed: set[int] = set()  # partitions whose facts changed since their last close
        self.closed_upto: dict[int, int] = {}  # per partition: the last closable interval seen
        self.state = state
        self.outputs = outputs
        self.events_guard = events_guard
        self.updates_guard = updates_guard
        self.metrics = metrics
        self.topics = topics
        self.sweeps = sweeps
        self.wall = wall
        self.replay_checkpoint_ms = replay_checkpoint_ms
        self.checkpointed_at: dict[int, int] = {}  # per partition: its last tick checkpoint
        self.changed: dict[int, set[str]] = {}  # per partition: agents whose facts changed
        self.announced = Announced()  # each partition's clock, as told the queue partitions
        # per partition: each calls partition's time and backlog as last sent ("sp", "st", "b")
        self.delivered: dict[int, dict[int, tuple[int | None, bool]]] = {}
        self.checkpoint = Checkpoint(
            outputs,
            state,
            BothPositions(events_guard, updates_guard),
            every=flush_every,
            forget=self._forget,
            before=self.send_pending,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_record(self, event: Any, *, idle: Callable[[], bool] = lambda: False) -> None:
        """One record of either input, or a tick (told apart by its topic). What changed is
        sent at the partition's next checkpoint (its next tick on a live feed, within
        `replay_checkpoint_ms` in a replay), or at once on a live feed when `idle` says the
        input buffer is empty. Not at once in a replay: deriving
        an agent's timeline costs far more than applying a fact, and a backlog brings each
        agent's facts many times a second."""
        message = event.message
        partition = message.partition
        since = self.checkpoint.epoch(partition)
        if message.topic == self.topics.events:
            if not await self.events_guard.process(message, self.apply_event):
                self.checkpoint.moved(partition, since)
                return  # dropped unacked: it is delivered again
        elif message.topic == self.topics.updates:
            if not await self.updates_guard.process(message, self.apply_update):
                self.checkpoint.moved(partition, since)
                return
        else:
            await self.events_guard.watch(partition)
            await self.updates_guard.watch(partition)
            if self.checkpoint.moved(partition, since):
                return  # the partition moved while its stall watch waited
            self.agents.save_stream_time(partition)
            if not self.tick_checkpoints(partition):
                await self.checkpoint.hold(partition, event, since=since)
                return
            await self.close(partition)
            if await self.checkpoint.hold(partition, event, since=since, now=True):
                await self.announce(partition)
            return
        if (
            not await self.checkpoint.hold(partition, event, since=since)
            and self.agents.clock_of(partition).live
            and idle()
        ):
            await self.send_pending(partition)  # writes: only on a record of that partition

    def tick_checkpoints(self, partition: int) -> bool:
        """Whether this tick closes, checkpoints and announces the partition: every tick on a
        live feed; in a replay once per `replay_checkpoint_ms` of wall time, since each
        checkpoint there re-derives and re-sends every agent the last second changed; and every
        tick again once the replay is read (its inputs to their ends, no calls partition behind):
        nothing more is coming, and waiting only held the last figures back."""
        wall = self.wall()
        last = self.checkpointed_at.get(partition)
        if (
            self.agents.clock_of(partition).live
            or last is None
            or wall - last >= self.replay_checkpoint_ms
            or (self.caught_up(partition) and self._backlog_times(partition) == [])
        ):
            self.checkpointed_at[partition] = wall
            return True
        return False

    def assigned(self, partition: int) -> None:
        self.announced.clear()  # every partition announces itself again at its next tick
        self._forget(partition)

    def revoked(self, partition: int) -> None:
        self._forget(partition)
        self.checkpoint.drop(partition)

    def _forget(self, partition: int) -> None:
        self.unclosed.add(partition)  # its dirty intervals are read afresh from the table
        self.agents.forget_partition(partition)
        self.state.drop(partition)
        self.events_guard.forget(partition)
        self.updates_guard.forget(partition)
        self.changed.pop(partition, None)
        self.delivered.pop(partition, None)
        self.checkpointed_at.pop(partition, None)

    # -- records -------------------------------------------------------------------------------

    async def apply_event(self, message: Any) -> None:
        outcome = self.agents.process(message.key, message.value, self.wall(), message.partition)
        topics = (self.topics.events, self.topics.dead_letter)
        if await divert(self.outputs, self.metrics, topics, message, outcome):
            return
        assert outcome.event is not None
        self.metrics.events.inc(outcome.event.type)
        if outcome.duplicate:
            self.metrics.duplicates.inc()
            # A crash may have lost the projections a kept state change called for: re-sent.
        self.changed.setdefault(message.partition, set()).add(outcome.event.agent_id)
        self.unclosed.add(message.partition)

    async def apply_update(self, message: Any) -> None:
        data = orjson.loads(message.value)
        st = data.get("st")
        if st is not None:  # a calls partition's time, with or without facts
            self.agents.clock_of(message.partition).observe(st, self.wall())
        if "sp" in data:  # the calls partition's latest news: its time, and its backlog
            self.delivered.setdefault(message.partition, {})[data["sp"]] = (st, bool(data.get("b")))
        changed = self.changed.setdefault(message.partition, set())
        for agent_id, entries in data["g"]:
            self.agents.apply_calls(agent_id, agent_calls_entries(entries), message.partition)
            # Sent even when nothing changed: a replayed record repairs a send a crash lost.
            changed.add(agent_id)
        if data["g"]:
            self.unclosed.add(message.partition)

    async def send_pending(self, partition: int) -> None:
        """The changed agents' projections, one record per queue (and chunk of entries), and
        the status of each whose status changed."""
        agents = self.changed.pop(partition, set())
        since = self.agents.since(partition, self.low_watermark(partition))
        by_queue: dict[str, list[tuple[str, list[QueueSpan], int | None]]] = {}
        for agent_id in sorted(agents):
            start, projections, status = self.agents.projections(
                agent_id, partition, self.wall(), since
            )
            for queue, spans in projections:
                by_queue.setdefault(queue, []).append((agent_id, spans, start))
            if status is not None:
                value = orjson.dumps(status)
                await self.outputs.send(self.topics.status, value, key=agent_id.encode())
        for queue, entries in by_queue.items():
            for first in range(0, len(entries), ENTRIES_PER_RECORD):
                value = agent_entries_record(queue, entries[first : first + ENTRIES_PER_RECORD])
                await self.outputs.send(self.topics.queue_updates, value, key=queue.encode())
        self.sweep(partition)
        self.agents.save(partition)

    async def announce(self, partition: int) -> None:
        """From a tick, after the checkpoint sent what changed: the partition's clock to every
        queue partition, which closes no interval past it while it is behind. Behind: input
        left to read, a replay (its projections wait for the checkpoint), or not every calls
        partition has told it its time yet (a worker starting on a backlog: the queues stage
        would close its first intervals before any agent's timeline came)."""
        clock = self.agents.clock_of(partition)
        behind = (
            not self.caught_up(partition)
            or (clock.newest is not None and not clock.live)
            or (self.topics.calls_partitions > 0 and self._told(partition) is None)
        )
        st = self.delivered_time(partition)
        if not self.announced.due(partition, st, behind, self.wall()):
            return  # the same news, told less than a minute ago
        value = orjson.dumps({"ap": partition, "st": st, "b": behind})
        for target in range(self.topics.queue_partitions):
            await self.outputs.send(self.topics.queue_updates, value, partition=target)

    def delivered_time(self, partition: int) -> int | None:
        """Up to when every calls partition has delivered its facts to this one: the least time
        of those still reading a backlog, as they last sent it (None until each has sent); when
        none is behind, or there are no calls partitions, its own time."""
        if not self.topics.calls_partitions:
            return self.agents.stream_time(partition)
        times = self._backlog_times(partition)
        if times is None:
            return None
        return min(times) if times else self.agents.stream_time(partition)

    def _backlog_times(self, partition: int) -> list[int] | None:
        """The times of the calls partitions still reading a backlog, as they last told this
        one (empty: none is behind); None until each has told, or while one with a backlog has
        no event yet (its facts may be any time)."""
        told = self._told(partition)
        if told is None:
            return None
        behind = [st for st, backlog in told if backlog]
        if None in behind:
            return None
        return [st for st in behind if st is not None]

    async def close(self, partition: int) -> None:
        """From a tick: the partition's agent intervals closed by stream time, published. The
        agents' scan runs only when facts changed or another interval became closable."""
        now = self.closing_time(partition)
        if now is None:
            return
        boundary = interval_start(now - self.agents.grace_ms - 1, self.agents.interval_ms)
        if partition not in self.unclosed and self.closed_upto.get(partition) == boundary:
            return
        self.unclosed.discard(partition)
        self.closed_upto[partition] = boundary
        for key, record in self.agents.close_due(partition, now):
            await self.outputs.send(self.topics.metrics, orjson.dumps(record), key=key.encode())

    def closing_time(self, partition: int) -> int | None:
        """The partition's stream time, or the worker's when that is later and the partition
        has nothing left to read: an agent's partition hears only of its own calls, so in a
        replay it would otherwise wait for its agent's next fact to close anything. Never past
        the time of a calls partition still reading a backlog (its agents' facts after that
        are still to come: an interval closed before them would be published again), nor
        before every calls partition told its time."""
        own = self.agents.stream_time(partition)
        worker = self.worker_clock.newest if self.worker_clock is not None else None
        now = own
        if worker is not None and (own is None or own < worker) and self.caught_up(partition):
            now = worker
        if now is None or not self.topics.calls_partitions:
            return now
        times = self._backlog_times(partition)
        return None if times is None else min([now, *times])

    def sweep(self, partition: int) -> None:
        """Retention, counted from the least time of the calls partitions (as the queues
        stage's sweeps are): a calls partition drained slower delivers facts of days its
        agents' timelines must still cover, which the partition's own (newest) time would
        already have forgotten. Run right after the changed agents' projections went out: a
        fact is told the queues stage before it is forgotten (in a replay the low watermark
        moves hours between two checkpoints)."""
        low = self.low_watermark(partition)
        if low is None or not self.sweeps.due(partition, low, self.wall()):
            return
        for agent_id in self.agents.sweep(partition, low):
            self.changed.setdefault(partition, set()).add(agent_id)

    def low_watermark(self, partition: int) -> int | None:
        """The least time every calls partition has told this one (those without events
        aside); None until each has told it (then nothing is forgotten); without calls
        partitions, its own time."""
        if not self.topics.calls_partitions:
            return self.agents.stream_time(partition)
        told = self._told(partition)
        if told is None:
            return None
        times = [st for st, _ in told if st is not None]
        return min(times) if times else self.agents.stream_time(partition)

    def _told(self, partition: int) -> list[tuple[int | None, bool]] | None:
        """What each calls partition last told this one (time, backlog); None until all have."""
        delivered = self.delivered.get(partition, {})
        if len(delivered) < self.topics.calls_partitions:
            return None
        return list(delivered.values())
