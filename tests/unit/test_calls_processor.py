"""The calls stage's processor without a broker: what a batch of records sends and when it is
acked, ticks, a revocation in the middle of a batch, a failure at each step of a checkpoint,
and rejected records (stream_app.calls_processor)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from stream_app.calls_processor import (
    AGENTS_CLOCK_EVERY_MS,
    CallsProcessor,
    CallsTopics,
    Headers,
)
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import REANNOUNCE_EVERY_MS, EventClock
from stream_app.domain.hop import Update
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics
from tests.unit.dict_store import PartitionedStore
from tests.unit.test_calls_stage import MAX_BYTES, RETENTION, TTL, WALL, at, record

TOPICS = CallsTopics(
    events="call-events",
    dead_letter="call-events-dlq",
    outcomes="call-outcomes",
    updates="queue-updates",
    registry="queue-registry",
    update_partitions=3,
)


class Failure(Exception):
    pass


@dataclass
class World:
    """Every step the processor takes, in order, and what it sent; fails at a named step."""

    log: list[str] = field(default_factory=list)
    sent: list[tuple[str, bytes | None, bytes | None, int | None, Headers]] = field(
        default_factory=list
    )
    fail_at: str | None = None
    store: PartitionedStore = field(default_factory=PartitionedStore)
    positions: dict[int, int] = field(default_factory=dict)
    epochs: dict[int, int] = field(default_factory=dict)
    highwaters: dict[int, int] = field(default_factory=dict)

    def step(self, name: str) -> None:
        if self.fail_at == name:
            raise Failure(name)
        self.log.append(name)

    # outputs
    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.sent.append((topic, key, value, partition, list(headers or [])))
        self.log.append(f"send {topic}")

    async def flush(self) -> None:
        await asyncio.sleep(0)
        self.step("flush outputs")

    def updates(self) -> list[Update]:
        return [
            Update.from_json(orjson.loads(v or b""))
            for t, _, v, _, _ in self.sent
            if t == TOPICS.updates
        ]


class State:
    def __init__(self, world: World) -> None:
        self.world = world

    async def flush(self) -> None:
        self.world.step("flush state")

    def drop(self, partition: int) -> None:
        self.world.log.append(f"drop state {partition}")


class Guard:
    """Applies every record in order; keeps the positions like the input guard."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def process(self, message: Any, apply: Callable[[Any], Awaitable[None]]) -> bool:
        epoch = self.epoch(message.partition)
        self.world.store.current = message.partition  # Faust's current event
        await apply(message)
        if self.epoch(message.partition) != epoch:
            return False
        self.world.positions[message.partition] = message.offset + 1
        return True

    async def watch(self, partition: int) -> None:
        pass

    def next_offset(self, partition: int) -> int:
        return self.world.positions.get(partition, 0)

    def epoch(self, partition: int) -> int:
        return self.world.epochs.get(partition, 0)

    def save(self, partition: int) -> None:
        self.world.step(f"save position {partition}")

    def forget(self, partition: int) -> None:
        self.world.positions.pop(partition, None)
        self.world.epochs[partition] = self.epoch(partition) + 1


class Registry:
    loaded = True

    def __init__(self) -> None:
        self.unsent: list[str] = []

    async def load(self) -> None:
        pass

    def take_unsent(self) -> list[str]:
        unsent, self.unsent = self.unsent, []
        return unsent


@dataclass
class Event:
    """A Faust event as the agent sees it: its message, and an ack."""

    world: World
    topic: str
    partition: int
    offset: int
    key: bytes = b""
    value: bytes = b""
    headers: Headers = field(default_factory=list)

    @property
    def message(self) -> Event:
        return self

    def ack(self) -> bool:
        self.world.log.append(f"ack {self.partition}:{self.offset}")
        return True


def processor(world: World, flush_every: int = 4) -> CallsProcessor:
    calls = CallsStage(
        world.store,
        SlaConfig(),
        EventClock(),
        max_event_bytes=MAX_BYTES,
        retention_ms=RETENTION,
        call_ttl_ms=TTL,
    )
    return CallsProcessor(
        calls,
        State(world),
        world,
        Guard(world),
        Registry(),
        Metrics.create([20.0]),
        TOPICS,
        highwater=lambda partition: world.highwaters.get(partition),
        sweeps=SweepSchedule(wall_every_ms=2**62, stream_every_ms=2**62),
        wall=lambda: WALL,
        flush_every=flush_every,
    )


def feed(
    proc: CallsProcessor,
    world: World,
    records: list[tuple[bytes, bytes]],
    *,
    partition: int = 0,
    first: int = 0,
    idle: bool = False,
) -> None:
    async def run() -> None:
        for offset, (key, value) in enumerate(records, first):
            event = Event(world, TOPICS.events, partition, offset, key, value)
            await proc.on_record(event, tick=False, idle=lambda: idle)

    asyncio.run(run())


def tick(proc: CallsProcessor, world: World, partition: int = 0) -> None:
    event = Event(world, "calls-ticks", partition, 0)
    asyncio.run(proc.on_record(event, tick=True, idle=lambda: False))


CALL = [
    record("queue_entered", at(0), queue="sales"),
    record("call_answered", at(12), queue="sales", agent_id="a1"),
    record("call_ended", at(100), queue="sales"),
]


def test_a_batch_sends_each_calls_latest_contribution_once_then_makes_it_durable_then_acks() -> (
    None
):
    world = World()
    proc = processor(world, flush_every=3)
    feed(proc, world, CALL[:2])
    assert world.updates() == []  # held to be combined
    assert not any(step.startswith("ack") for step in world.log)
    feed(proc, world, CALL[2:], first=2)
    [update] = world.updates()
    assert update.queue == "sales" and [call for call, _ in update.entries] == ["c1"]
    [(_, contribution)] = update.entries
    assert contribution.answered == (at(12), 12_000, 12_000) and contribution.waiting_since is None
    assert update.stream_time == at(100) and update.source == 0
    steps = [s for s in world.log if not s.startswith("send call-outcomes")]
    assert steps == [
        "send queue-updates",
        "flush outputs",
        "save position 0",
        "flush state",
        "ack 0:0",
        "ack 0:1",
        "ack 0:2",
    ]


def test_caught_up_contributions_go_as_soon_as_the_input_buffer_is_empty() -> None:
    world = World()
    world.highwaters[0] = 1  # the record fed is the partition's last
    proc = processor(world, flush_every=100)
    feed(proc, world, CALL[:1], idle=True)
    [update] = world.updates()
    assert update.entries[0][1].waiting_since == at(0)
    assert not any(step.startswith("ack") for step in world.log)  # durable at the checkpoint


def test_in_a_backlog_contributions_wait_for_the_checkpoint_even_when_the_buffer_is_empty() -> None:
    """Small fetches empty the input buffer all the time while a backlog is read: a send at
    each idle moment would cross the hop a record or more per call."""
    world = World()
    world.highwaters[0] = 1_000  # far more to read
    proc = processor(world, flush_every=100)
    feed(proc, world, CALL, idle=True)
    assert world.updates() == []
    tick(proc, world)
    [update] = [u for u in world.updates() if u.queue is not None]
    assert [call for call, _ in update.entries] == ["c1"]


def test_a_tick_sends_the_contributions_before_the_clock_that_vouches_for_them() -> None:
    world = World()
    proc = processor(world, flush_every=100)
    feed(proc, world, CALL[:2], partition=1)
    world.highwaters[1] = 2  # nothing more on the broker: not behind
    tick(proc, world, partition=1)
    topics = [(t, p) for t, _, _, p, _ in world.sent if t == TOPICS.updates]
    assert topics == [(TOPICS.updates, None)] + [(TOPICS.updates, p) for p in range(3)]
    watermark = world.updates()[1]
    assert watermark.queue is None and watermark.stream_time == at(12) and not watermark.behind
    assert "ack 1:0" in world.log and "ack 1:1" in world.log
    world.sent.clear()
    tick(proc, world, partition=1)
    assert world.sent == []  # an unchanged clock is told again only after a minute…
    proc.assigned(2)
    tick(proc, world, partition=1)
    assert len(world.updates()) == 3  # …or after a rebalance


def test_a_partition_behind_its_input_says_so() -> None:
    world = World()
    proc = processor(world, flush_every=100)
    feed(proc, world, CALL[:1])
    world.highwaters[0] = 5
    tick(proc, world)
    assert all(u.behind for u in world.updates())


def test_a_revocation_in_the_middle_of_a_batch_sends_and_acks_nothing_of_it() -> None:
    world = World()
    proc = processor(world, flush_every=3)
    feed(proc, world, CALL[:2])
    proc.revoked(0)
    assert world.log[-1] == "drop state 0"
    proc.assigned(0)  # it comes back: redone from the stored position
    world.log.clear()
    feed(proc, world, [record("queue_entered", at(5), call="c2", queue="vip")], first=7)
    assert world.log == []  # a new batch: the held records of before are gone
    tick(proc, world)
    assert [u.queue for u in world.updates() if u.queue] == ["vip"]
    assert [s for s in world.log if s.startswith("ack")] == ["ack 0:7", "ack 0:0"]


def test_a_record_whose_partition_moved_while_it_was_processed_sends_nothing_of_it() -> None:
    """The group rebalanced while the record waited (revoked, then assigned here again): the
    contributions it computed came from state being recovered; they are forgotten, not sent,
    and the record is not acked (it comes again)."""
    world = World()
    proc = processor(world, flush_every=1)

    class MovingGuard(Guard):
        async def process(self, message: Any, apply: Callable[[Any], Awaitable[None]]) -> bool:
            proc.revoked(0)
            proc.assigned(0)
            return await super().process(message, apply)

    proc.guard = MovingGuard(world)
    feed(proc, world, CALL[:1], idle=True)
    assert proc.pending.partitions() == [] and world.updates() == []
    assert world.log == ["drop state 0"] * 3  # revoked, assigned, and after the record


def entered(call: str, seconds: float) -> list[tuple[bytes, bytes]]:
    """A call entering the sales queue, `seconds` after the tests' origin."""
    return [record("queue_entered", at(seconds), call=call, queue="sales")]


def test_a_partition_moved_while_another_sends_at_an_idle_moment_keeps_its_own_clock() -> None:
    """At an idle moment every caught-up partition sends what it holds. A send can span a
    rebalance that takes a partition away and gives it back: it then holds nothing, and its
    clock is not known. Read then, it was read from the table of the record in hand (another
    partition's) and announced as its own (test_crash: calls partition 3 announced 02-07,
    partition 5's time, while reading 02-05; the queues stage swept by it)."""
    world = World()
    proc = processor(world, flush_every=100)
    feed(proc, world, CALL, partition=3)
    world.store.current = 3
    world.highwaters[3] = 3
    tick(proc, world, partition=3)  # partition 3's time, at(100), in its table
    feed(proc, world, entered("c7", 9000), partition=1)
    world.store.current = 1
    world.highwaters[1] = 2
    tick(proc, world, partition=1)  # partition 1's, at(9000), in its own
    feed(proc, world, entered("c8", 200), partition=3, first=3)
    world.highwaters[3] = 4
    sends = world.send

    async def send_and_rebalance(topic: str, value: bytes | None, **kwargs: Any) -> None:
        if proc.pending.partitions() == [3]:  # partition 1's went: 3 moves away and back
            proc.revoked(3)
            proc.assigned(3)
        await sends(topic, value, **kwargs)

    world.send = send_and_rebalance  # type: ignore[method-assign]
    feed(proc, world, entered("c9", 9001), partition=1, first=1, idle=True)
    assert proc.pending.partitions() == []
    world.store.current = 3  # its next record, or tick
    assert proc.calls.stream_time(3) == at(100)


@pytest.mark.parametrize("failing", ["flush outputs", "save position 0", "flush state"])
def test_a_failure_at_any_step_of_a_checkpoint_acks_nothing(failing: str) -> None:
    world = World()
    proc = processor(world, flush_every=3)
    world.fail_at = failing
    with pytest.raises(Failure):
        feed(proc, world, CALL)
    assert not any(step.startswith("ack") for step in world.log)


def test_a_bad_record_goes_to_the_dead_letter_topic_with_its_headers_and_the_reason() -> None:
    world = World()
    proc = processor(world, flush_every=1)
    event = Event(world, TOPICS.events, 0, 0, b"c9", b"{not json", [("trace", b"t-1")])
    asyncio.run(proc.on_record(event, tick=False, idle=lambda: False))
    [(_, key, value, _, headers)] = [s for s in world.sent if s[0] == TOPICS.dead_letter]
    assert (key, value) == (b"c9", b"{not json")
    assert headers[0] == ("trace", b"t-1") and headers[1] == ("reason", b"invalid_json")
    assert "ack 0:0" in world.log  # rejected is done: it is not redone
    sample = proc.metrics.rejected.labels(reason="invalid_json")._value.get()
    assert sample == 1


def test_a_record_naming_a_new_queue_announces_it_before_anything_else() -> None:
    world = World()
    proc = processor(world, flush_every=100)
    registry = proc.registry
    assert isinstance(registry, Registry)
    registry.unsent = ["sales"]
    feed(proc, world, CALL[:1])
    assert world.log[:2] == ["send queue-registry", "flush outputs"]


def test_the_end_of_the_input_is_asked_again_only_once_the_position_reaches_it() -> None:
    """The end on the broker only grows: below the last one known the partition is behind
    without a trip through the consumer's thread (a replay asks on every idle moment)."""
    world = World()
    proc = processor(world, flush_every=100)
    asked: list[int] = []

    def highwater(partition: int) -> int | None:
        asked.append(partition)
        return world.highwaters.get(partition)

    proc.highwater = highwater
    assert proc.behind(0) and asked == [0]  # nothing known: behind
    world.highwaters[0] = 3
    feed(proc, world, CALL[:1])
    assert proc.behind(0) and proc.behind(0) and asked == [0, 0]  # 1 < 3: not asked again
    feed(proc, world, CALL[1:], first=1)
    assert not proc.behind(0) and asked == [0, 0, 0]  # at the end known: asked
    world.highwaters[0] = 9  # more came
    assert proc.behind(0) and asked == [0, 0, 0, 0]
    proc.revoked(0)
    proc.assigned(0)
    world.highwaters[0] = 3  # another owner's view: nothing kept from before
    assert proc.behind(0) and asked[-1] == 0 and len(asked) == 5


def test_a_tick_tells_every_agents_partition_the_time_once() -> None:
    """Each agents partition learns each calls partition's time: with the facts sent to it at
    the tick, else alone, so it can tell the queues stage up to when its facts are in."""
    world = World()
    proc = processor(world, flush_every=100)
    proc.topics = dataclasses.replace(TOPICS, agent_updates="agent-updates", agent_partitions=3)
    feed(proc, world, CALL[:2], partition=1)
    world.highwaters[1] = 2
    tick(proc, world, partition=1)
    records = [(p, orjson.loads(v or b"")) for t, _, v, p, _ in world.sent if t == "agent-updates"]
    assert sorted(p or 0 for p, _ in records) == [0, 1, 2]
    assert all(r["st"] == at(12) and r["sp"] == 1 for _, r in records)
    [with_facts] = [p for p, r in records if r["g"]]
    assert [r["g"] for p, r in records if p != with_facts] == [[], []]


def test_in_a_replay_the_agents_partitions_hear_the_time_every_few_seconds() -> None:
    """A replay's agents stage checkpoints every few seconds: a newer time goes to it at most
    every AGENTS_CLOCK_EVERY_MS, an unchanged one once a minute."""
    world = World()
    proc = processor(world, flush_every=100)
    proc.topics = dataclasses.replace(TOPICS, agent_updates="agent-updates", agent_partitions=2)
    wall = [WALL]
    proc.wall = lambda: wall[0]

    def clocks() -> list[int | None]:
        out = [orjson.loads(v or b"")["st"] for t, _, v, _, _ in world.sent if t == "agent-updates"]
        world.sent.clear()
        return out

    feed(proc, world, [record("queue_entered", at(0), queue="sales")])
    tick(proc, world)
    assert clocks() == [at(0), at(0)]
    feed(proc, world, [record("queue_entered", at(30), call="c2", queue="sales")], first=1)
    wall[0] += 1_000
    tick(proc, world)
    assert clocks() == []  # newer, but told a second ago
    wall[0] += AGENTS_CLOCK_EVERY_MS
    tick(proc, world)
    assert clocks() == [at(30), at(30)]
    wall[0] += AGENTS_CLOCK_EVERY_MS
    tick(proc, world)
    assert clocks() == []  # unchanged
    wall[0] += REANNOUNCE_EVERY_MS
    tick(proc, world)
    assert clocks() == [at(30), at(30)]
