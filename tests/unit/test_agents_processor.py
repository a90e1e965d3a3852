"""The agents stage's processor without a broker, and the whole hop chain it sits in: calls →
agent-updates → agents → queue-updates → queues, with hand-computed agent counts and occupancy;
rejected, wrongly keyed and duplicate agent events; what a checkpoint makes durable and when.
(stream_app.agents_processor)"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.agents_processor import AgentsProcessor, AgentsTopics
from stream_app.calls_processor import CallsProcessor, agent_partition
from stream_app.domain.agent_activity import AgentCall
from stream_app.domain.agents_stage import AgentPending, AgentsStage, agent_update_record
from stream_app.domain.events import format_ts
from stream_app.domain.hop import ENTRIES_PER_RECORD
from stream_app.domain.live import QueueNow, queue_now
from stream_app.domain.queues import Store
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics
from stream_app.queues_processor import QueuesProcessor
from tests.unit import test_calls_processor as calls_test
from tests.unit import test_queues_processor as queues_test
from tests.unit.dict_store import DictStore
from tests.unit.test_calls_processor import Event, Guard, State, World
from tests.unit.test_calls_stage import MAX_BYTES, RETENTION, WALL, at, record

TOPICS = AgentsTopics(
    events="agent-events",
    dead_letter="agent-events-dlq",
    updates="agent-updates",
    queue_updates="queue-updates",
    status="agent-status",
    metrics="agent-metrics",
)
MIN = 60_000
HOUR = 60 * MIN


def agents_stage(store: Store) -> AgentsStage:
    return AgentsStage(
        store,
        max_event_bytes=MAX_BYTES,
        retention_ms=RETENTION,
        horizon_ms=26 * HOUR,
        interval_ms=15 * MIN,
        grace_ms=2 * MIN,
    )


def agents_processor(world: World, flush_every: int = 100) -> AgentsProcessor:
    return AgentsProcessor(
        agents_stage(world.store),
        State(world),
        world,
        Guard(world),
        Guard(world),
        Metrics.create([20.0]),
        TOPICS,
        sweeps=SweepSchedule(wall_every_ms=2**62, stream_every_ms=2**62),
        wall=lambda: WALL,
        flush_every=flush_every,
        replay_checkpoint_ms=0,  # every tick checkpoints (the wall clock stands still here)
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
    """(topic, key, value) records of partition 0, each topic numbered from offset 0."""

    async def go() -> None:
        offsets: dict[str, int] = {}
        for topic, key, value in records:
            offset = offsets[topic] = offsets.get(topic, -1) + 1
            await proc.on_record(Event(world, topic, 0, offset, key, value))

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
    calls_test.tick(calls, calls_world)  # in a replay, agent-updates wait for the checkpoint
    assert isinstance(calls, CallsProcessor)

    agents_world = World()
    agents = agents_processor(agents_world)
    records = [(TOPICS.events, k, v) for k, v in agent_records]
    records += [(TOPICS.updates, k, v) for k, v in sent(calls_world, "agent-updates")]
    run(agents, agents_world, [*records, ("agent-ticks", b"tick", b"")])  # sends what changed

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
            ("agent-ticks", b"tick", b""),  # a checkpoint: the state to the table
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
    assert sorted(world.log[:4]) == [
        "send agent-status",  # a1, a2
        "send agent-status",
        "send queue-updates",  # sales, support
        "send queue-updates",
    ]
    assert world.log[4:] == [
        "flush outputs",
        "save position 0",
        "save position 0",
        "flush state",
        "ack 0:0",
        "ack 0:1",
    ]
    records = [orjson.loads(v) for _, v in sent(world, TOPICS.queue_updates)]
    assert [(r["q"], [a for a, *_ in r["g"]]) for r in records] == [
        ("sales", ["a1", "a2"]),
        ("support", ["a2"]),
    ]


def agents_after(extra: list[tuple[bytes, bytes]]) -> World:
    """The scenario's agent events and calls, then `extra` agent events, then a tick."""
    calls_world = World()
    calls = calls_test.processor(calls_world, flush_every=1000)
    calls.topics = dataclasses.replace(calls_test.TOPICS, agent_updates="agent-updates")
    calls_test.feed(calls, calls_world, CALLS, idle=True)
    calls_test.tick(calls, calls_world)  # in a replay, agent-updates wait for the checkpoint
    world = World()
    proc = agents_processor(world)
    records = [(TOPICS.events, k, v) for k, v in AGENT_EVENTS]
    records += [(TOPICS.updates, k, v) for k, v in sent(calls_world, "agent-updates")]
    records += [(TOPICS.events, k, v) for k, v in extra]
    run(proc, world, [*records, ("agent-ticks", b"tick", b"")])
    return world


def latest(world: World, topic: str) -> dict[str, Any]:
    return {k.decode(): orjson.loads(v) for k, v in sent(world, topic)}


def test_agent_status_on_every_change() -> None:
    world = agents_after([agent_event("a2", "agent_ready", 1080)])
    status = latest(world, TOPICS.status)
    assert {
        a: (s["state"], s["since"], s["reason"], s["queues"], s["queue"]) for a, s in status.items()
    } == {
        "a1": ("available", format_ts(at(420)), None, ["sales"], None),
        "a2": ("available", format_ts(at(1080)), None, ["sales", "support"], None),
        "a3": ("on_call", format_ts(at(540)), None, ["sales"], "sales"),
    }
    a2 = [orjson.loads(v) for k, v in sent(world, TOPICS.status) if k == b"a2"]
    assert [s["state"] for s in a2] == ["available"]  # one send per agent per checkpoint


def test_agent_metrics_of_a_closed_interval() -> None:
    world = agents_after([agent_event("a2", "agent_ready", 1080)])  # stream time 18 min
    records = latest(world, TOPICS.metrics)
    start = format_ts(at(0))
    assert set(records) == {f"a1|{start}", f"a2|{start}", f"a3|{start}"}
    a1, a2, a3 = (records[f"{a}|{start}"] for a in ("a1", "a2", "a3"))
    # a1: available 60 + 480, ringing 10, talking 290, after-call work 60; c1 handled 350 s.
    assert (a1["available"], a1["ringing"], a1["on_call"], a1["after_call_work"]) == (
        540.0,
        10.0,
        290.0,
        60.0,
    )
    assert (a1["answered"], a1["handle_seconds_sum"], a1["aht_seconds"]) == (1, 350.0, 350.0)
    assert a1["occupancy"] == 360 / 900
    assert (a2["available"], a2["not_ready"], a2["not_ready_reasons"]) == (
        300.0,
        600.0,
        {"break": 600.0},
    )
    assert a2["occupancy"] == 0.0
    # a3: known through c2 only, talking from 540 s to the interval's end; logged out before.
    assert (a3["on_call"], a3["available"], a3["occupancy"], a3["aht_seconds"]) == (
        360.0,
        0.0,
        1.0,
        None,
    )
    assert {r["revision"] for r in records.values()} == {0}


def test_a_late_agent_event_revises_a_published_interval() -> None:
    world = World()
    proc = agents_processor(world)
    first = [
        agent_event("a1", "agent_logged_in", 0, queues=["sales"]),
        agent_event("a1", "agent_ready", 1080),  # stream time 18 min: 10:00-10:15 closes
    ]
    run(proc, world, [*((TOPICS.events, k, v) for k, v in first), ("agent-ticks", b"t", b"")])
    key = f"a1|{format_ts(at(0))}"
    assert latest(world, TOPICS.metrics)[key]["available"] == 900.0
    world.sent.clear()

    async def late() -> None:
        k, v = agent_event("a1", "agent_not_ready", 600, reason="lunch")
        await proc.on_record(Event(world, TOPICS.events, 0, 2, k, v))
        await proc.on_record(Event(world, "agent-ticks", 0, 1, b"t", b""))
        await proc.on_record(Event(world, "agent-ticks", 0, 2, b"t", b""))

    asyncio.run(late())
    revised = [orjson.loads(v) for k, v in sent(world, TOPICS.metrics)]
    assert [(r["revision"], r["available"], r["not_ready"]) for r in revised] == [
        (1, 600.0, 300.0)  # once: an unchanged interval is not published again
    ]


def test_agent_updates_go_one_record_per_agents_partition() -> None:
    """Each record carries only agents of the partition their agent_id key would choose (the
    producer's own partitioner, as agent-events are partitioned), at most ENTRIES_PER_RECORD
    calls per record."""
    partitioner = DefaultPartitioner()
    agents = [f"agent-{n}" for n in range(40)]
    pending = AgentPending()
    call = AgentCall("sales", talk=(1, 2))
    for agent in agents:
        pending.add(0, "c1", {agent: call})
    big = {f"c{n}": call for n in range(ENTRIES_PER_RECORD + 5)}
    for call_id, one in big.items():
        pending.add(0, call_id, {"agent-0": one})
    taken = pending.take(0, functools.partial(agent_partition, partitions=4))
    seen: dict[str, int] = {}
    for to, chunk in taken:
        assert sum(len(entries) for _, entries in chunk) <= ENTRIES_PER_RECORD
        for agent, entries in chunk:
            assert to == partitioner(agent.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
            seen[agent] = seen.get(agent, 0) + len(entries)
    assert seen == {agent: len(big) if agent == "agent-0" else 1 for agent in agents}
    assert len({to for to, _ in taken}) == 4
    assert pending.take(0, lambda agent: 0) == []


def test_agent_updates_wait_for_the_checkpoint_in_a_backlog_not_on_a_live_feed() -> None:
    """An idle input sends the queues' contributions and what calls mean to agents at once on
    a live feed or once the input is read to its end, not while a backlog is read (the agents
    stage would hold it until its checkpoint anyway)."""
    for wall, highwater, at_once in ((WALL, None, False), (at(541), None, True), (WALL, 9, True)):
        world = World()
        if highwater is not None:
            world.highwaters[0] = highwater  # every record of the partition read
        calls = calls_test.processor(world, flush_every=1000)
        calls.topics = dataclasses.replace(calls_test.TOPICS, agent_updates="agent-updates")
        calls.wall = lambda wall=wall: wall  # type: ignore[misc]
        calls_test.feed(calls, world, CALLS, idle=True)
        assert bool(sent(world, calls_test.TOPICS.updates)) == at_once
        assert bool(sent(world, "agent-updates")) == at_once
        calls_test.tick(calls, world)
        updates = [orjson.loads(v) for _, v in sent(world, "agent-updates")]
        assert {agent for record in updates for agent, *_ in record["g"]} == {"a1", "a3"}


def test_a_checkpoint_writes_the_hours_of_the_changed_calls_and_a_restart_reads_them_back() -> None:
    """An agent's calls are stored per hour of their first instants: a save writes the agent's
    value and the hours whose calls changed, each hour once however many of its calls did; a
    stage started afresh on the table has the same facts; a call that moves to another hour
    leaves its old one; an hour whose calls the sweep forgot is deleted from the table."""
    store = DictStore()

    def stage() -> AgentsStage:
        return agents_stage(store)

    def hours() -> dict[str, set[str]]:
        return {k: set(store.get(k) or ()) for k in store.data if k.startswith("a1\x1f")}

    first = stage()
    # Five calls in the first hour, one in the next (at(s): s seconds into the day).
    calls = {f"c{n}": AgentCall("sales", talk=(at(600 * n), at(600 * n + 30))) for n in range(7)}
    first.apply_calls("a1", list(calls.items()), 0)
    first.save(0)
    hour0, hour1 = (f"a1\x1fh{at(3600 * n)}" for n in range(2))
    assert hours() == {hour0: {f"c{n}" for n in range(6)}, hour1: {"c6"}}
    writes = store.writes
    first.apply_calls("a1", [("c4", AgentCall("sales", talk=(at(2400), at(2500))))], 0)
    first.apply_calls("a1", [("c5", AgentCall("sales", talk=(at(3000), at(3100))))], 0)
    first.save(0)
    assert store.writes - writes == 2  # the agent's value and the first hour, once
    # c5's first instant moves into the next hour: it leaves the first.
    first.apply_calls("a1", [("c5", AgentCall("sales", rings=((at(3700), at(3710)),)))], 0)
    first.save(0)
    assert hours() == {hour0: {f"c{n}" for n in range(5)}, hour1: {"c5", "c6"}}
    again = stage()
    activity, _ = again.load("a1", 0)
    assert activity.calls == first.load("a1", 0)[0].calls
    assert activity.calls["c4"].talk == (at(2400), at(2500))
    # Two days on, every call is past the retention: forgotten, and their hours deleted.
    late = AgentCall("sales", talk=(at(2 * 86400), None))
    again.apply_calls("a1", [("c9", late)], 0)
    again.clock_of(0).observe(at(2 * 86400 + 3 * 3600), WALL)
    assert again.sweep(0) == ["a1"]
    again.save(0)
    assert hours() == {f"a1\x1fh{at(2 * 86400)}": {"c9"}}


def test_calls_stored_one_per_key_are_read_and_moved_into_their_hour() -> None:
    """A table written when each call had its own key (agent SEP call_id) is read as before;
    a call saved again moves into its hour, and its own key is deleted."""
    store = DictStore()
    talk = AgentCall("sales", talk=(at(60), at(90)))
    store.set("a1\x1fc1", talk.to_json())
    store.set("a1", {"a": "a1"})
    stage = agents_stage(store)
    assert stage.load("a1", 0)[0].calls == {"c1": talk}
    stage.apply_calls("a1", [("c1", AgentCall("sales", talk=(at(60), at(120))))], 0)
    stage.save(0)
    assert [k for k in store.data if k.startswith("a1\x1f")] == [f"a1\x1fh{at(0)}"]


def test_a_tick_tells_the_queue_partitions_up_to_when_every_calls_partitions_facts_are_in() -> None:
    """The least time the calls partitions still reading a backlog sent (none until each has
    sent), behind in a replay; the same news again only after a minute."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=2, calls_partitions=2)

    def clock(source: int, seconds: float, behind: bool = True) -> tuple[str, bytes, bytes]:
        value = {"g": [], "st": at(seconds), "sp": source, "b": behind}
        return TOPICS.updates, b"", orjson.dumps(value)

    def told() -> list[tuple[int | None, dict[str, Any]]]:
        out = [(p, orjson.loads(v or b"")) for t, _, v, p, _ in world.sent if t == "queue-updates"]
        world.sent.clear()
        return out

    tick = ("agent-ticks", b"tick", b"")
    run(proc, world, [clock(0, 100), tick])
    assert told() == [(p, {"ap": 0, "st": None, "b": True}) for p in (0, 1)]
    run(proc, world, [clock(1, 50), clock(0, 200), tick])
    assert told() == [(p, {"ap": 0, "st": at(50), "b": True}) for p in (0, 1)]
    run(proc, world, [tick])
    assert told() == []
    run(proc, world, [clock(1, 60, behind=False), tick])  # caught up: it holds nothing back
    assert told() == [(p, {"ap": 0, "st": at(200), "b": True}) for p in (0, 1)]


def test_in_a_replay_ticks_checkpoint_once_per_period() -> None:
    """A replay's checkpoint re-derives and re-sends every agent changed since the last one:
    its ticks checkpoint (close, send, announce) once per `replay_checkpoint_ms` only."""
    world = World()
    wall = [WALL]
    proc = agents_processor(world)
    proc.wall = lambda: wall[0]
    proc.replay_checkpoint_ms = 5_000
    proc.caught_up = lambda partition: False  # input left to read

    def facts(call: str, seconds: int) -> tuple[str, bytes, bytes]:
        entry = AgentCall("sales", talk=(at(seconds), at(seconds + 30)))
        value = {"g": [["a1", [[call, entry.to_json()]]]], "st": at(seconds + 30), "sp": 0}
        return TOPICS.updates, b"", orjson.dumps(value)

    def projections() -> int:
        count = len(sent(world, "queue-updates"))
        world.sent.clear()
        return count

    tick = ("agent-ticks", b"tick", b"")
    run(proc, world, [facts("c1", 60), tick])
    assert projections() == 1  # the partition's first tick checkpoints
    run(proc, world, [facts("c2", 120), tick, tick])
    assert projections() == 0 and "ack 0:1" not in world.log  # held
    wall[0] += 5_000
    run(proc, world, [tick])
    assert projections() == 1 and "ack 0:1" in world.log


def test_a_replay_read_to_its_end_checkpoints_every_tick_again() -> None:
    """The period saves re-derivations while a backlog brings facts; once the inputs are read
    and no calls partition is behind, waiting would only hold the last figures back."""
    world = World()
    wall = [WALL]
    ends = {"read": False}
    proc = agents_processor(world)
    proc.wall = lambda: wall[0]
    proc.replay_checkpoint_ms = 5_000
    proc.caught_up = lambda partition: ends["read"]
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=1, calls_partitions=1)

    def facts(call: str, seconds: int, behind: bool) -> tuple[str, bytes, bytes]:
        entry = AgentCall("sales", talk=(at(seconds), at(seconds + 30)))
        value = {"g": [["a1", [[call, entry.to_json()]]]], "st": at(seconds + 30), "sp": 0}
        value["b"] = behind  # the calls partition still reads a backlog
        return TOPICS.updates, b"", orjson.dumps(value)

    def checkpointed() -> bool:
        done = "ack 0:" in " ".join(world.log)
        world.log.clear()
        return done

    tick = ("agent-ticks", b"tick", b"")
    run(proc, world, [facts("c1", 60, behind=True), tick])
    assert checkpointed()  # the partition's first tick
    run(proc, world, [facts("c2", 120, behind=True), tick])
    assert not checkpointed()  # a backlog: held for the period
    ends["read"] = True
    run(proc, world, [tick])
    assert not checkpointed()  # read here, but the calls partition is still behind
    run(proc, world, [facts("c3", 180, behind=False), tick])
    assert checkpointed()  # all read, nothing behind: at once, not 5 s later


def test_a_calls_partition_without_events_holds_nothing_back() -> None:
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=1, calls_partitions=2)
    records = [
        (TOPICS.updates, b"", orjson.dumps({"g": [], "st": None, "sp": 1})),
        (TOPICS.updates, b"", orjson.dumps({"g": [], "st": at(100), "sp": 0})),
        ("agent-ticks", b"tick", b""),
    ]
    run(proc, world, records)
    [told] = [orjson.loads(v or b"") for t, _, v, _, _ in world.sent if t == "queue-updates"]
    assert told == {"ap": 0, "st": at(100), "b": True}


def test_projections_start_a_horizon_before_the_least_time_of_the_calls_partitions() -> None:
    """A replay drains calls partitions unevenly: an agents partition's own time may be days
    past intervals the queues stage has still to close. Its projections say from when they
    tell the timeline (each entry's third element), a horizon before the least time of the
    calls partitions, so the queues stage keeps what lies before; until every calls partition
    told its time, whole."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=1, calls_partitions=2)
    call = AgentCall("sales", talk=(at(60), at(90)))
    facts = agent_update_record([("a1", [("c1", call)])], at(100), 1, True)

    def projected(records: list[tuple[str, bytes, bytes]]) -> list[dict[str, Any]]:
        world.sent.clear()
        run(proc, world, records)
        values = [orjson.loads(v or b"") for t, _, v, _, _ in world.sent if t == "queue-updates"]
        return [value for value in values if "g" in value]

    tick = ("agent-ticks", b"tick", b"")
    [whole] = projected([(TOPICS.updates, b"", orjson.dumps(facts)), tick])
    assert whole["g"][0][2] is None  # calls partition 0 has not told its time yet
    ahead = {"g": [], "st": at(3 * 86_400), "sp": 0, "b": True}
    proc.changed.setdefault(0, set()).add("a1")
    proc.checkpointed_at.clear()
    [cut] = projected([(TOPICS.updates, b"", orjson.dumps(ahead)), tick])
    assert cut["g"][0][2] == at(100) - proc.agents.horizon_ms  # calls partition 1: at 100 s
    assert cut["g"][0][:2] == whole["g"][0][:2] and cut["g"][0][1]


def test_retention_counts_from_the_least_time_of_the_calls_partitions() -> None:
    """A calls partition drained days behind another still delivers facts its agents'
    timelines must cover: the sweep keeps them, where the partition's own (newest) time
    would have forgotten them."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, calls_partitions=2)
    call = AgentCall("sales", talk=(at(60), at(90)))
    late = at(60) + 2 * RETENTION
    records = [
        (TOPICS.updates, b"", orjson.dumps({"g": [], "st": late, "sp": 0, "b": True})),
        (
            TOPICS.updates,
            b"",
            orjson.dumps(agent_update_record([("a1", [("c1", call)])], at(90), 1, True)),
        ),
        ("agent-ticks", b"tick", b""),
    ]
    run(proc, world, records)
    assert proc.low_watermark(0) == at(90)
    assert "c1" in proc.agents.load("a1", 0)[0].calls


def test_an_agent_staffed_without_new_facts_has_every_closed_interval_published() -> None:
    """a1 is available from 420 s on and says nothing more; another agent's event moves the
    partition's stream time two hours on: each interval a1 was staffed in is published."""
    world = agents_after([agent_event("a2", "agent_ready", 2 * 3600)])
    records = latest(world, TOPICS.metrics)
    starts = [at(start) for start in range(0, 2 * 3600 - 15 * 60, 15 * 60)]
    for start in starts[1:]:
        a1 = records.get(f"a1|{format_ts(start)}")
        assert a1 is not None, format_ts(start)
        assert a1["available"] == 900.0


def test_a_jump_of_stream_time_marks_a_staffed_agent_back_to_the_retention_only() -> None:
    """A replay followed by a live feed moves stream time far on: an agent staffed since its
    last fact has its intervals marked as far back as the retention, not every one between."""
    world = agents_after([agent_event("a2", "agent_ready", 20 * 24 * 3600)])
    a1 = [k for k in latest(world, TOPICS.metrics) if k.startswith("a1|")]
    intervals = RETENTION // (15 * MIN)
    assert intervals - 2 <= len(a1) <= intervals + 2  # the first interval, then the last two days


def test_projections_never_reach_before_what_the_sweeps_left_exact() -> None:
    """A sweep forgets facts before the retention: the timelines are exact from there on only,
    so no projection (not even a restarted worker's whole one) tells the queues stage of an
    earlier instant; the cut is kept in the table."""
    world = World()
    proc = agents_processor(world)  # a 26 h horizon, a 48 h retention
    stage = proc.agents
    world.store.current = 0
    stage.apply_calls("a1", [("c1", AgentCall("sales", talk=(at(60), at(90))))], 0)
    assert stage.since(0, None) is None  # nothing forgotten: whole
    low = at(3 * 86_400)
    stage.sweep(0, low)
    assert stage.since(0, None) == low - RETENTION
    assert stage.since(0, low) == low - 26 * HOUR  # the horizon, inside what is exact
    assert stage.since(0, low - 30 * HOUR) == low - RETENTION  # never before it
    restarted = agents_processor(world).agents
    assert restarted.since(0, None) == low - RETENTION


def test_an_agents_partition_not_yet_told_by_every_calls_partition_holds_closing_back() -> None:
    """A worker starting on a backlog: until each calls partition has told an agents partition
    its time, the agents partition cannot say up to when agents' facts are in (test_crash's
    clean run published its first day with no agent figures)."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=1, calls_partitions=2)
    told = (TOPICS.updates, b"", orjson.dumps({"g": [], "st": None, "sp": 0, "b": False}))
    run(proc, world, [told, ("agent-ticks", b"tick", b"")])
    [first] = [orjson.loads(v or b"") for t, _, v, _, _ in world.sent if t == "queue-updates"]
    assert first == {"ap": 0, "st": None, "b": True}


def test_agent_intervals_close_no_later_than_a_calls_partition_still_reading_a_backlog() -> None:
    """A calls partition behind at 10 minutes has not delivered its agents' facts after that:
    the interval from 0 to 15 minutes waits for it, however far the other partition and the
    agents' own events went; it closes once that partition tells a time past its grace."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, calls_partitions=2)

    def told(source: int, seconds: float, behind: bool) -> tuple[str, bytes, bytes]:
        value = {"g": [], "st": at(seconds), "sp": source, "b": behind}
        return TOPICS.updates, b"", orjson.dumps(value)

    tick = ("agent-ticks", b"tick", b"")
    login = agent_event("a1", "agent_logged_in", 0, queues=["sales"])
    ready = agent_event("a1", "agent_not_ready", 1500, reason="break")
    records = [(TOPICS.events, *login), (TOPICS.events, *ready)]
    run(proc, world, [*records, told(0, 1800, True), told(1, 600, True), tick])
    assert sent(world, TOPICS.metrics) == []
    run(proc, world, [told(1, 1100, False), tick])
    assert [k.decode() for k, _ in sent(world, TOPICS.metrics)] == [f"a1|{format_ts(at(0))}"]


def test_a_projection_reaches_back_to_its_agents_earliest_change() -> None:
    """After a crash the stage re-applies facts whose projections went out before it; one sent
    from facts not all re-read yet is repaired by the next, whatever the horizon is by then
    (test_crash: a queue's agent figures short of the clean run's)."""
    world = World()
    proc = agents_processor(world)
    proc.topics = dataclasses.replace(TOPICS, queue_partitions=1, calls_partitions=1)
    late = at(30 * 3600)  # past the 26 h horizon, within the 48 h retention
    call = AgentCall("sales", talk=(at(60), at(90)))
    facts = agent_update_record([("a1", [("c1", call)])], late, 0, True)
    tick = ("agent-ticks", b"tick", b"")

    def entries(records: list[tuple[str, bytes, bytes]]) -> list[list[Any]]:
        world.sent.clear()
        run(proc, world, records)
        values = [orjson.loads(v or b"") for t, _, v, _, _ in world.sent if t == "queue-updates"]
        return [entry for value in values for entry in value.get("g", [])]

    [[agent, spans, start]] = entries([(TOPICS.updates, b"", orjson.dumps(facts)), tick])
    assert (agent, start) == ("a1", at(60)) and spans[0][0] == at(60)
    proc.changed.setdefault(0, set()).add("a1")  # sent again, nothing changed: the horizon
    proc.checkpointed_at.clear()
    [[_, _, again]] = entries([tick])
    assert again == late - proc.agents.horizon_ms


def test_facts_are_told_the_queues_stage_before_the_sweep_forgets_them() -> None:
    """In a replay the low watermark moves hours between two checkpoints: a call applied after
    the last one and past the retention by the next is projected first, then forgotten (a
    sweep on the record that moved the watermark lost it, and test_crash's agent figures)."""
    world = World()
    proc = agents_processor(world)
    proc.sweeps = SweepSchedule(wall_every_ms=1, stream_every_ms=1)  # due whenever asked
    proc.topics = dataclasses.replace(TOPICS, calls_partitions=2)
    call = AgentCall("sales", talk=(at(60), at(90)))
    late = at(90) + 2 * RETENTION
    records = [
        (
            TOPICS.updates,
            b"",
            orjson.dumps(agent_update_record([("a1", [("c1", call)])], at(90), 0, True)),
        ),
        (TOPICS.updates, b"", orjson.dumps({"g": [], "st": late, "sp": 0, "b": True})),
        (TOPICS.updates, b"", orjson.dumps({"g": [], "st": late, "sp": 1, "b": True})),
        ("agent-ticks", b"tick", b""),
    ]
    run(proc, world, records)
    [told] = [orjson.loads(v) for _, v in sent(world, TOPICS.queue_updates) if b'"g"' in v]
    assert told["q"] == "sales" and told["g"][0][1][0] == [at(60), "on_call", None]
    assert "c1" not in proc.agents.load("a1", 0)[0].calls  # forgotten afterwards


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-3, 12)), max_size=12))
def test_an_agents_dirty_intervals_are_the_sorted_union_of_what_was_marked(
    marks: list[tuple[int, int]],
) -> None:
    """Marking skips the union when nothing new is marked or only later intervals are: the
    list is what sorting the union would give."""
    size = 15 * 60_000
    stage: Any = AgentsStage.__new__(AgentsStage)
    stage.interval_ms = size
    extras: dict[str, Any] = {}
    union: set[int] = set()
    for first, length in marks:
        stage._dirty(extras, first * size, (first + length) * size)
        union.update(range(first * size, (first + length) * size + 1, size))
        assert extras.get("d", []) == sorted(union)
