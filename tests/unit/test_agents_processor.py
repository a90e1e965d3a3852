"""The agents stage's processor without a broker, and the whole hop chain it sits in: calls →
agent-updates → agents → queue-updates → queues, with hand-computed agent counts and occupancy;
rejected, wrongly keyed and duplicate agent events; what a checkpoint makes durable and when.
(stream_app.agents_processor)"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from stream_app.agents_processor import AgentsProcessor, AgentsTopics
from stream_app.calls_processor import CallsProcessor
from stream_app.domain.agents_stage import AgentsStage
from stream_app.domain.events import format_ts
from stream_app.domain.live import QueueNow, queue_now
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics
from stream_app.queues_processor import QueuesProcessor
from tests.unit import test_calls_processor as calls_test
from tests.unit import test_queues_processor as queues_test
from tests.unit.test_calls_processor import Event, Guard, State, World
from tests.unit.test_calls_stage import MAX_BYTES, RETENTION, WALL, at, record

TOPICS = AgentsTopics(
    events="agent-events",
    dead_letter="agent-events-dlq",
    updates="agent-updates",
    queue_updates="queue-updates",
)
HOUR = 3_600_000


def agents_processor(world: World, flush_every: int = 100) -> AgentsProcessor:
    stage = AgentsStage(
        world.store, max_event_bytes=MAX_BYTES, retention_ms=RETENTION, horizon_ms=26 * HOUR
    )
    return AgentsProcessor(
        stage,
        State(world),
        world,
        Guard(world),
        Guard(world),
        Metrics.create([20.0]),
        TOPICS,
        sweeps=SweepSchedule(wall_every_ms=2**62, stream_every_ms=2**62),
        wall=lambda: WALL,
        flush_every=flush_every,
    )


def agent_event(
    agent: str, type_: str, seconds: float, eid: str | None = None, **fields: Any
) -> tuple[bytes, bytes]:
    value = {
        "event_id": eid or f"{agent}:{type_}:{seconds}",
        "agent_id": agent,
        "type": type_,
        "ts": format_ts(at(seconds)),
        **fields,
    }
    return agent.encode(), orjson.dumps(value)


def run(proc: AgentsProcessor, world: World, records: list[tuple[str, bytes, bytes]]) -> None:
    """(topic, key, value) records of partition 0, each topic numbered from offset 0; the input
    runs dry after the last one."""

    async def go() -> None:
        offsets: dict[str, int] = {}
        for n, (topic, key, value) in enumerate(records):
            offset = offsets[topic] = offsets.get(topic, -1) + 1
            event = Event(world, topic, 0, offset, key, value)
            await proc.on_record(event, idle=lambda n=n: n == len(records) - 1)  # type: ignore[misc]

    asyncio.run(go())


def sent(world: World, topic: str) -> list[tuple[bytes, bytes]]:
    return [(k or b"", v or b"") for t, k, v, _, _ in world.sent if t == topic]


CALLS = [
    # c1: offered to a1 at 60 s, answered at 70 s, ended at 360 s, wrap-up until 420 s
    record("call_started", at(55), call="c1", queue="sales"),
    record("queue_entered", at(58), call="c1", queue="sales"),
    record("agent_offered", at(60), call="c1", agent_id="a1"),
    record("call_answered", at(70), call="c1", agent_id="a1"),
    record("call_ended", at(360), call="c1"),
    record("wrapup_ended", at(420), call="c1"),
    # c2: a3 (no agent events of its own) answers at 540 s; still talking at 600 s
    record("call_started", at(480), call="c2", queue="sales"),
    record("queue_entered", at(480), call="c2", queue="sales"),
    record("call_answered", at(540), call="c2", agent_id="a3"),
]
AGENT_EVENTS = [
    agent_event("a1", "agent_logged_in", 0, queues=["sales"]),
    agent_event("a2", "agent_logged_in", 0, queues=["sales", "support"]),
    agent_event("a2", "agent_not_ready", 300, reason="break"),
]


def chain(agent_records: list[tuple[bytes, bytes]], now: float = 600) -> dict[str, QueueNow]:
    """Calls through the calls stage, its agent-updates and `agent_records` through the agents
    stage, its queue-updates through the queues stage: each queue's figures at `now`."""
    calls_world = World()
    calls = calls_test.processor(calls_world, flush_every=1000)
    calls.topics = dataclasses.replace(calls_test.TOPICS, agent_updates="agent-updates")
    calls_test.feed(calls, calls_world, CALLS, idle=True)
    assert isinstance(calls, CallsProcessor)

    agents_world = World()
    agents = agents_processor(agents_world)
    records = [(TOPICS.events, k, v) for k, v in agent_records]
    records += [(TOPICS.updates, k, v) for k, v in sent(calls_world, "agent-updates")]
    run(agents, agents_world, records)

    queues_world = World()
    queues = queues_test.processor(queues_world)
    assert isinstance(queues, QueuesProcessor)

    async def go() -> None:
        for offset, (key, value) in enumerate(sent(agents_world, TOPICS.queue_updates)):
            event = Event(queues_world, "queue-updates", 0, offset, key, value)
            await queues.on_record(event, tick=False)

    asyncio.run(go())
    stage = queues.queues
    return {q: queue_now(stage, SlaConfig(), q, at(now)) for q in ("sales", "support")}


def test_agents_by_state_and_occupancy_from_agent_events_and_calls() -> None:
    figures = chain(AGENT_EVENTS)
    sales, support = figures["sales"], figures["support"]
    # At 600 s: a1 available again (wrap-up ended at 420 s), a2 on a break, a3 on c2.
    assert sales.agents == {
        "available": 1,
        "ringing": 0,
        "on_call": 1,
        "after_call_work": 0,
        "not_ready": 1,
    }
    assert support.agents == dict(sales.agents, available=0, on_call=0)
    # Interval 10:00-10:15 up to 600 s. a1: ringing 10 + talk 290 + wrap 60 = 360 busy,
    # available 60 + 180 = 240; a2: available 300 (then not ready: excluded); a3: talk 60
    # (logged out before: excluded). 420 / (420 + 540).
    assert sales.occupancy["interval"] == 420 / 960
    assert support.occupancy["interval"] == 0.0  # a2 was available 300 s, never busy


def test_order_and_duplicates_of_agent_events_change_nothing() -> None:
    once = chain(AGENT_EVENTS)
    again = chain([*reversed(AGENT_EVENTS), *AGENT_EVENTS])
    assert again["sales"].agents == once["sales"].agents
    assert again["sales"].occupancy == once["sales"].occupancy


def test_an_agent_known_only_through_calls_counts_while_busy_only() -> None:
    figures = chain([], now=450)  # no agent events: a1 logged out after its wrap-up at 420 s
    assert figures["sales"].agents is not None
    assert figures["sales"].agents["available"] == 0
    assert sum(figures["sales"].agents.values()) == 0
    assert figures["sales"].occupancy["interval"] == 1.0  # busy only, never available
    assert figures["support"].agents is None  # no agent ever served it: no gauge at all


def test_rejected_rekeyed_and_duplicate_agent_events() -> None:
    world = World()
    proc = agents_processor(world)
    good = agent_event("a1", "agent_ready", 10)
    run(
        proc,
        world,
        [
            (TOPICS.events, b"a1", b'{"event_id": "x",'),
            (TOPICS.events, b"a1", orjson.dumps({"event_id": "y", "agent_id": "a1", "ts": 1})),
            (TOPICS.events, b"other", good[1]),
            (TOPICS.events, *good),
            (TOPICS.events, *good),
        ],
    )
    dead = [(k, h) for t, k, _, _, h in world.sent if t == TOPICS.dead_letter]
    assert [dict(h)["reason"] for _, h in dead] == [b"invalid_json", b"missing_field"]
    assert sent(world, TOPICS.events) == [(b"a1", good[1])]  # sent back under its agent_id
    assert proc.metrics.duplicates._value.get() == 1
    stored = world.store.partitions[0].get("a1")
    assert stored is not None and len(stored["e"]) == 1  # the duplicate is not kept twice


def test_a_checkpoint_sends_the_projections_then_flushes_then_acks() -> None:
    world = World()
    proc = agents_processor(world, flush_every=2)
    run(proc, world, [(TOPICS.events, *AGENT_EVENTS[0]), (TOPICS.events, *AGENT_EVENTS[1])])
    assert world.log[:2] == ["send queue-updates", "send queue-updates"]  # sales, support
    assert world.log[2:] == [
        "flush outputs",
        "save position 0",
        "save position 0",
        "flush state",
        "ack 0:0",
        "ack 0:1",
    ]
    records = [orjson.loads(v) for _, v in sent(world, TOPICS.queue_updates)]
    assert [(r["q"], [a for a, _ in r["g"]]) for r in records] == [
        ("sales", ["a1", "a2"]),
        ("support", ["a2"]),
    ]
