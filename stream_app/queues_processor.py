"""The queues stage's processor: what a `queue-updates` record, a tick, an assignment and a
revocation of a queue partition do. Its Faust agent (stream_app.agents) only loops over
records; the processor is tested without a broker (tests/unit/test_queues_processor.py).

A record: the calls partition's clock heard (`SourceTimes`), the calls' contributions applied
to the queue's buckets (each entry at its own position: stream_app.domain.hop), then held for
the partition's checkpoint. A tick: intervals closed by the stream time of the previous tick
and published, retention below the low watermark of the calls partitions, and the queues'
figures now to `queue-live` (stream_app.live_state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from stream_app.calls_processor import FLUSH_EVERY, Guard, Sender, State
from stream_app.checkpoint import Checkpoint
from stream_app.domain.clock import Announcement, EventClock, SourceTimes, wall_ms
from stream_app.domain.hop import Update, entry_position
from stream_app.domain.queue_agents import apply_agent
from stream_app.domain.queues import QueueStage, Store
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics


class Live(Protocol):
    """The queues' figures now, for wallboards (stream_app.live_state.LivePublisher)."""

    async def publish(self, queues: Iterable[str], stream_now: int) -> int: ...


class Owners(Protocol):
    """Which queues this worker exports, by queue partition (stream_app.exporter)."""

    def owns(self, queue: str, partition: int) -> None: ...
    def queues_on(self, partition: int) -> list[str]: ...
    def disown(self, partition: int) -> None: ...


@dataclass
class QueuesProcessor:
    queues: QueueStage
    state: State
    outputs: Sender
    guard: Guard
    owners: Owners
    metrics: Metrics
    clock: EventClock  # the worker's: what the calls partitions announce
    metrics_topic: str
    calls_partitions: int  # how many calls partitions feed each queue partition
    sweeps: SweepSchedule
    agents_partitions: int = 0  # how many agents partitions do (their clocks gate closing)
    live: Live | None = None
    wall: Callable[[], int] = wall_ms
    flush_every: int = FLUSH_EVERY
    # Per queue partition: the clock each calls partition last announced (with its records and
    # watermarks). Their minimum bounds what a calls partition can still send, so sweeps below
    # it never delete a bucket a record in flight still needs; a partition still reading a
    # backlog holds closing back (stream_app.domain.clock).
    source_times: dict[int, SourceTimes] = field(default_factory=dict)
    settled_at: dict[int, int] = field(default_factory=dict)  # per partition: the last tick's time
    seen: set[int] = field(default_factory=set)  # partitions that had a record since assigned
    checkpoint: Checkpoint = field(init=False)

    @property
    def state_store(self) -> Store:
        return self.queues.store

    def __post_init__(self) -> None:
        self.checkpoint = Checkpoint(
            self.outputs, self.state, self.guard, every=self.flush_every, forget=self._forget
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_record(self, event: Any, *, tick: bool) -> None:
        partition = event.message.partition
        since = self.checkpoint.epoch(partition)
        if partition not in self.seen:
            await self.resume(partition)
        if tick:
            await self.guard.watch(partition)
            if self.checkpoint.moved(partition, since):
                return  # the partition moved while its stall watch waited
            await self.punctuate(partition)
        elif not await self.guard.process(event.message, self.apply):
            self.checkpoint.moved(partition, since)
            return  # dropped unacked: it is delivered again
        else:
            self.sweep(partition)
        await self.checkpoint.hold(partition, event, since=since, now=tick)

    async def resume(self, partition: int) -> None:
        """First record since the partition was assigned: learn its queues, and re-send what
        it published (a crash may have lost a send whose state change was kept)."""
        self.seen.add(partition)
        for queue in self.queues.queues():
            self.owners.owns(queue, partition)
        for key, record in self.queues.published():
            await self.outputs.send(self.metrics_topic, orjson.dumps(record), key=key.encode())

    async def punctuate(self, partition: int) -> int | None:
        """A tick: close what is due, and retention. Returns the stream time it acted on."""
        now = self.stream_now()
        if now is None:
            return None
        # Close by the stream time of the previous tick, not this instant's: records fetched
        # from other partitions before stream time jumped get a tick's time to be applied, so
        # an interval is not published early and then revised for no late event at all.
        settled = self.settled_at.get(partition)
        self.settled_at[partition] = now
        if settled is not None:
            times = self.source_times.get(partition)
            closing = None if times is None else times.closing_time(settled)
            if closing is not None:
                for queue in self.owners.queues_on(partition):
                    await self.close(queue, closing)
        self.sweep(partition)
        if self.live is not None:
            await self.live.publish(self.owners.queues_on(partition), now)
        return now

    def assigned(self, partition: int) -> None:
        self._forget(partition)

    def assigned_ticks(self, partition: int) -> None:
        self.seen.discard(partition)

    def revoked(self, partition: int) -> None:
        """Nothing of it is kept, nor exported: its next owner exports its queues now."""
        self._forget(partition)
        self.checkpoint.drop(partition)
        for queue in self.owners.queues_on(partition):
            with contextlib.suppress(KeyError):
                self.metrics.answer_speed.remove(queue)
        self.owners.disown(partition)
        self.source_times.pop(partition, None)

    def _forget(self, partition: int) -> None:
        """Its state is read afresh from the recovered table, its queues learnt again."""
        self.queues.forget()
        self.state.drop(partition)
        self.guard.forget(partition)
        self.seen.discard(partition)

    # -- records -------------------------------------------------------------------------------

    async def apply(self, message: Any) -> None:
        partition = message.partition
        data = orjson.loads(message.value)
        if "ap" in data:  # an agents partition's clock
            self._times(partition).hear_gate(
                Announcement(data["ap"], data["st"], bool(data.get("b")))
            )
            return
        if "g" in data:  # agents' projected timelines, from the agents stage
            self.owners.owns(data["q"], partition)
            low = self._times(partition).low_watermark()
            for index, (agent_id, spans, told_from) in enumerate(data["g"]):
                position = entry_position(message.offset, index)
                since = apply_agent(
                    self.state_store, data["q"], agent_id, spans, position, told_from
                )
                if since is not None:  # the queue-metrics of the intervals it changed
                    self.queues.mark_dirty(data["q"], since, self.clock.newest, low)
            return
        update = Update.from_json(data)
        if update.stream_time is not None:
            self.clock.observe(update.stream_time, update.seen_at or self.wall())
        self._times(partition).hear(Announcement(update.source, update.stream_time, update.behind))
        queue = update.queue
        if queue is None:
            return  # a watermark
        self.owners.owns(queue, partition)
        for index, (call_id, contribution) in enumerate(update.entries):
            applied = self.queues.apply(
                queue, call_id, contribution, entry_position(message.offset, index)
            )
            for speed_ms in applied.new_answer_speeds_ms:
                self.metrics.answer_speed.labels(queue=queue).observe(speed_ms / 1000)

    def _times(self, partition: int) -> SourceTimes:
        times = self.source_times.get(partition)
        if times is None:
            times = SourceTimes(self.calls_partitions, self.agents_partitions)
            self.source_times[partition] = times
        return times

    async def close(self, queue: str, now: int) -> None:
        for key, record in self.queues.close_due(queue, now):
            await self.outputs.send(self.metrics_topic, orjson.dumps(record), key=key.encode())

    def sweep(self, partition: int) -> None:
        """Retention of the partition when due (from its ticks and its records)."""
        times = self.source_times.get(partition)
        low_watermark = None if times is None else times.low_watermark()
        if low_watermark is not None and self.sweeps.due(partition, low_watermark, self.wall()):
            self.queues.sweep(low_watermark)

    # -- time ----------------------------------------------------------------------------------

    def stream_now(self) -> int | None:
        """The worker's stream time: it moves with the wall clock only while no calls
        partition it hears from is reading a backlog."""
        behind = any(a.behind for t in self.source_times.values() for a in t.heard.values())
        now = self.clock.now(self.wall(), caught_up=not behind)
        if now is not None:
            self.metrics.stream_time.set(now / 1000)
        return now

    def stream_time_s(self) -> float | None:
        """How far the stage got: the least low watermark of its partitions (seconds)."""
        lows = [low for t in self.source_times.values() if (low := t.low_watermark()) is not None]
        return min(lows) / 1000 if lows else None

    def calls_partitions_behind(self) -> dict[int, list[int]]:
        """Per queue partition, the calls partitions it last heard were reading a backlog:
        they hold its closing back (a partition stuck there shows here)."""
        return {
            queue_partition: sorted(a.source for a in t.heard.values() if a.behind)
            for queue_partition, t in sorted(self.source_times.items())
        }
