"""The simulator's agents (contract §6): the agent events it sends, and its own account of the
agents' figures, which must equal what the project's domain computes from the records sent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.agent_activity import (
    AgentActivity,
    agent_calls,
    agent_interval_record,
    queue_state_time,
    staffed_average,
)
from stream_app.domain.agent_events import parse_agent_event
from stream_app.domain.calls import CallState
from stream_app.domain.events import format_ts, parse_event, parse_ts
from stream_app.simulator.config import (
    Breach,
    Break,
    QueueConfig,
    SimConfig,
    SimConfigError,
    default_config,
    parse_config,
)
from stream_app.simulator.model import AGENT_TOPIC, CALL_TOPIC, MALFORMED_KINDS, Record, Simulation
from stream_app.simulator.summary import AGENT_STATES, Summary
from tests.unit.test_simulator import HOUR, INTERVAL, SLA, T0, WALL, calls_of, stop_at

FAR = T0 + 1000 * HOUR  # `now` for the domain: every span the records show is closed by then


def run(
    config: SimConfig | None = None, *, seed: int = 1, hours: float = 2, **kw: Any
) -> list[Record]:
    sim = Simulation(
        config or default_config(), seed=seed, start_ms=T0, duration_ms=round(hours * HOUR), **kw
    )
    return list(sim.records())


def agent_events(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The agent events sent, each with its `ts` in epoch ms as `ms`."""
    events = [orjson.loads(r.value) for r in records if r.topic == AGENT_TOPIC]
    return [{**e, "ms": parse_ts(e["ts"])} for e in events]


def summarize(records: Iterable[Record]) -> Summary:
    summary = Summary(interval_ms=INTERVAL, sla=SLA)
    for record in records:
        summary.add(record)
    return summary


def domain_agents(records: list[Record]) -> dict[str, AgentActivity]:
    """Every agent's activity as the engine's domain derives it from the records sent."""
    agents: dict[str, AgentActivity] = {}
    calls: dict[str, CallState] = {}
    for record in records:
        if record.fault in MALFORMED_KINDS:
            continue
        if record.topic == AGENT_TOPIC:
            event = parse_agent_event(record.value, now_ms=WALL)
            agents.setdefault(event.agent_id, AgentActivity(event.agent_id)).apply(event)
        else:
            call = parse_event(record.value, now_ms=WALL)
            calls.setdefault(call.call_id, CallState.new(call.call_id)).apply(call)
    for call_id, state in calls.items():
        for agent_id, meaning in agent_calls(state).items():
            agents.setdefault(agent_id, AgentActivity(agent_id)).set_call(call_id, meaning)
    return agents


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def assert_agent_figures_match_domain(records: list[Record]) -> Summary:
    summary = summarize(records)
    agents = domain_agents(records)
    first, last = min(r.ts for r in records), max(r.ts for r in records)
    starts = range(first - first % INTERVAL, last + 1, INTERVAL)
    problems: list[str] = []
    # Per agent and interval with staffed time: the agent-metrics records (revision aside).
    got = {(r["agent_id"], r["interval_start"]): r for r in summary.agent_records()}
    want: dict[tuple[str, str], dict[str, object]] = {}
    for agent_id, activity in agents.items():
        for start in starts:
            if activity.state_time(start, start + INTERVAL, FAR).staffed_ms:
                record = agent_interval_record(activity, start, start + INTERVAL, FAR, 0)
                want[(agent_id, format_ts(start))] = record
    assert set(got) == set(want), sorted(set(got) ^ set(want))[:10]
    for key, record in want.items():
        for name, value in record.items():
            if name != "revision" and not same(got[key][name], value):
                problems.append(f"{key}.{name}: summary {got[key][name]!r}, domain {value!r}")
    # Per queue and interval with agents: seconds per state, occupancy, agents staffed.
    rows = {(r["queue"], r["interval_start"]): r for r in summary.queue_agent_records()}
    queues = {queue for span in _spans(agents) for queue in span}
    for queue in queues:
        for start in starts:
            time = queue_state_time(agents.values(), queue, start, start + INTERVAL, FAR)
            row = rows.pop((queue, format_ts(start)), None)
            if row is None:
                if time.staffed_ms:
                    problems.append(f"{queue}@{format_ts(start)}: missing from the summary")
                continue
            expected: dict[str, float | None] = {s: time.ms[s] / 1000 for s in AGENT_STATES}
            expected["occupancy"] = time.occupancy
            expected["agents_staffed_avg"] = staffed_average(time, start, start + INTERVAL, FAR)
            for name, value in expected.items():
                if not same(row[name], value):
                    problems.append(
                        f"{queue}@{format_ts(start)}.{name}: {row[name]!r} != {value!r}"
                    )
    assert not rows, f"queue intervals the domain does not know: {sorted(rows)[:5]}"
    assert not problems, "\n".join(problems[:20])
    return summary


def _spans(agents: dict[str, AgentActivity]) -> list[tuple[str, ...]]:
    """The queues of every span of every agent."""
    return [span.queues for activity in agents.values() for span in activity.timeline()]


# -- the events ----------------------------------------------------------------------------------


def test_agent_events_are_valid_unique_keyed_by_agent_and_deterministic() -> None:
    records = run(hours=3, faults=True)
    agent_records = [r for r in records if r.topic == AGENT_TOPIC]
    assert agent_records and all(r.fault is None for r in agent_records)  # sent clean
    events = [parse_agent_event(r.value, now_ms=WALL) for r in agent_records]
    assert all(r.key == e.agent_id for r, e in zip(agent_records, events, strict=True))
    assert len({e.event_id for e in events}) == len(events)
    assert Counter(e.type for e in events).keys() >= {
        "agent_logged_in",
        "agent_not_ready",
        "agent_ready",
        "agent_logged_out",
    }
    again = [r for r in run(hours=3, faults=True) if r.topic == AGENT_TOPIC]
    assert [r.value for r in again] == [r.value for r in agent_records]
    other = [r for r in run(seed=2, hours=3, faults=True) if r.topic == AGENT_TOPIC]
    assert {r.value for r in other}.isdisjoint(r.value for r in agent_records)


def test_agents_do_not_change_the_calls_of_a_seed() -> None:
    """Breaks and shared queues off (the default), the calls are those of a center whose model
    has no agent events: the same as with agents that never pause after a ring-out."""
    records = calls_of(run(hours=2))
    assert [r.value for r in records] == [r.value for r in calls_of(run(hours=2))]
    assert all(r.topic == CALL_TOPIC for r in records)


def test_logins_follow_the_staffing_plan_and_everyone_logs_out_at_the_end() -> None:
    agents = tuple([2] * 9 + [4] * 15)  # 2 agents until 09:00 local, then 4
    config = SimConfig(
        queues=MappingProxyType({"q": replace(QueueConfig(), arrivals_per_hour=30, agents=agents)}),
        profile=(1.0,) * 24,
    )
    events = agent_events(run(config, hours=3))
    logins = [e for e in events if e["type"] == "agent_logged_in"]
    assert [(e["agent_id"], e["ms"]) for e in logins[:2]] == [("q-01", T0), ("q-02", T0)]
    assert {e["agent_id"] for e in logins if e["ms"] == T0 + HOUR} == {
        "q-03",
        "q-04",
    }
    assert all(e["queues"] == ["q"] for e in logins)
    on: set[str] = set()
    for event in events:  # never logged in twice, never out without being in
        if event["type"] == "agent_logged_in":
            assert event["agent_id"] not in on
            on.add(event["agent_id"])
        elif event["type"] == "agent_logged_out":
            on.remove(event["agent_id"])
        else:
            assert event["agent_id"] in on
    assert on == set()


def test_a_breach_keeps_the_queue_s_agents_out_then_they_log_in() -> None:
    config = default_config().with_breaches((Breach("sales", minutes=30, after_minutes=30),))
    records = run(config, hours=2)
    events = [e for e in agent_events(records) if e["agent_id"].startswith("sales-")]
    begin, end = T0 + 30 * 60_000, T0 + 60 * 60_000
    on_at_begin = {
        e["agent_id"] for e in events if e["type"] == "agent_logged_in" and e["ms"] < begin
    }
    first_out: dict[str, int] = {}
    for e in events:
        if e["type"] == "agent_logged_out" and e["ms"] >= begin:
            first_out.setdefault(e["agent_id"], e["ms"])
    # Each leaves: at once when idle, after the call's work when busy.
    assert all(first_out[agent] < end for agent in on_at_begin)
    assert not [e for e in events if begin <= e["ms"] < end and e["type"] == "agent_logged_in"]
    assert [e for e in events if e["ms"] == end and e["type"] == "agent_logged_in"]
    summary = assert_agent_figures_match_domain(records)
    sales = {r["interval_start"]: r for r in summary.queue_agent_records() if r["queue"] == "sales"}
    assert "2026-03-02T08:45:00Z" not in sales  # nobody at all in the breach's second quarter


def test_a_ring_out_makes_the_agent_not_ready_then_ready() -> None:
    config = SimConfig(
        queues=MappingProxyType(
            {"q": replace(QueueConfig(), arrivals_per_hour=60, agents=3, no_answer=0.3)}
        ),
        profile=(1.0,) * 24,
    )
    records = run(config, hours=2)
    events = agent_events(records)
    pauses = [e for e in events if e["type"] == "agent_not_ready"]
    assert pauses and all(e["reason"] == "no_answer" for e in pauses)
    readies = [e for e in events if e["type"] == "agent_ready"]
    assert 0 < len(readies) <= len(pauses)
    summary = assert_agent_figures_match_domain(records)
    reasons = Counter[str]()
    for row in summary.agent_records():
        reasons.update(row["not_ready_reasons"].keys())
    assert set(reasons) == {"no_answer"}


def test_breaks_with_reasons_staggered_over_the_team() -> None:
    breaks = (
        Break(after_minutes=60, minutes=15),
        Break(after_minutes=120, minutes=30, reason="lunch"),
    )
    config = SimConfig(
        queues=MappingProxyType(
            {
                "q": replace(
                    QueueConfig(), arrivals_per_hour=40, agents=5, no_answer=0.0, breaks=breaks
                )
            }
        ),
        profile=(1.0,) * 24,
    )
    records = run(config, hours=5)
    pauses = [e for e in agent_events(records) if e["type"] == "agent_not_ready"]
    by_reason = Counter(e["reason"] for e in pauses)
    assert by_reason == {"break": 5, "lunch": 5}
    first_break = sorted(e["ms"] for e in pauses if e["reason"] == "break")
    assert first_break[0] >= T0 + HOUR
    assert len(set(first_break)) > 1  # staggered: not the whole team at once
    summary = assert_agent_figures_match_domain(records)
    seconds = Counter[str]()
    for row in summary.agent_records():
        seconds.update(row["not_ready_reasons"])
    assert seconds["break"] == pytest.approx(5 * 15 * 60)
    assert seconds["lunch"] == pytest.approx(5 * 30 * 60)


def test_agents_serving_several_queues_and_changing_them() -> None:
    base = replace(QueueConfig(), arrivals_per_hour=30, agents=3, timeout_seconds=None)
    config = SimConfig(
        queues=MappingProxyType(
            {
                "sales": replace(base, also_serves=("support",), also_serves_hours=(9,)),
                "support": replace(base, arrivals_per_hour=60, agents=2),
            }
        ),
        profile=(1.0,) * 24,
    )
    records = run(config, hours=3)
    events = [e for e in agent_events(records) if e["agent_id"].startswith("sales-")]
    changes = [e for e in events if e["type"] == "agent_queues"]
    assert {e["ms"] for e in changes} == {T0 + HOUR, T0 + 2 * HOUR}
    assert {tuple(e["queues"]) for e in changes} == {("sales", "support"), ("sales",)}
    helped = [
        e
        for e in (orjson.loads(r.value) for r in calls_of(records))
        if e["type"] == "call_answered"
        and e["queue"] == "support"
        and e["agent_id"].startswith("sales-")
    ]
    assert helped and all(T0 + HOUR <= parse_ts(e["ts"]) < T0 + 2 * HOUR for e in helped)
    summary = assert_agent_figures_match_domain(records)
    support_09 = next(
        r
        for r in summary.queue_agent_records()
        if r["queue"] == "support" and r["interval_start"] == "2026-03-02T09:00:00Z"
    )
    assert support_09["agents_staffed_avg"] == pytest.approx(5.0)  # its 2 and sales' 3


def test_shared_queues_and_breaks_are_validated() -> None:
    with pytest.raises(SimConfigError, match=r"queues.a.also_serves must name other queues"):
        parse_config({"queues": {"a": {"also_serves": ["b"]}}}, source="f")
    with pytest.raises(SimConfigError, match=r"also_serves_hours must be a list of local hours"):
        parse_config({"queues": {"a": {"also_serves_hours": [24]}}}, source="f")
    with pytest.raises(SimConfigError, match=r"breaks\[0\].minutes is required"):
        parse_config({"defaults": {"breaks": [{"after_minutes": 10}]}}, source="f")
    with pytest.raises(SimConfigError, match=r"breaks\[0\].reason must be a printable name"):
        parse_config(
            {"defaults": {"breaks": [{"after_minutes": 1, "minutes": 1, "reason": "a|b"}]}},
            source="f",
        )
    config = parse_config(
        {"defaults": {"breaks": [{"after_minutes": 90, "minutes": 10, "reason": "coffee"}]}},
        source="f",
    )
    assert config.queues["sales"].breaks == (Break(90, 10, "coffee"),)
    assert parse_config(config.to_data(), source="again") == config


# -- the summary's account equals the domain's ---------------------------------------------------


def test_agent_figures_equal_the_domains_interval_by_interval() -> None:
    summary = assert_agent_figures_match_domain(run(hours=4, faults=True))
    assert summary.agent_records() and summary.queue_agent_records()
    json = summary.to_json()
    assert json["agent_events"] > 0 and json["agents"] == len(
        {r["agent_id"] for r in json["agent_intervals"]}
    )


def test_time_in_states_adds_up_to_the_staffed_time() -> None:
    summary = summarize(run(hours=3))
    for row in summary.queue_agent_records():
        total = sum(row[state] for state in AGENT_STATES)
        assert total == pytest.approx(row["agents_staffed_avg"] * INTERVAL / 1000)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    stop_minutes=st.floats(1, 150),
    no_answer=st.sampled_from([0.0, 0.2]),
    faults=st.booleans(),
    offers=st.booleans(),
)
def test_a_stop_at_any_instant_gives_the_domains_agent_figures(
    seed: int, stop_minutes: float, no_answer: float, faults: bool, offers: bool
) -> None:
    breaks = (Break(after_minutes=30, minutes=10),)
    base = replace(QueueConfig(), arrivals_per_hour=60, agents=3, no_answer=no_answer)
    config = SimConfig(
        queues=MappingProxyType(
            {
                "a": replace(base, breaks=breaks, emit_offers=offers, also_serves=("b",)),
                "b": replace(base, agents=1, timeout_seconds=120, overflow="a"),
            }
        ),
        profile=(1.0,) * 24,
    )
    sim = Simulation(config, seed=seed, start_ms=T0, faults=faults)
    sent, held, closing = stop_at(sim, T0 + round(stop_minutes * 60_000))
    records = sent + held + closing
    assert_agent_figures_match_domain(records)
    assert [e for e in agent_events(closing) if e["type"] == "agent_logged_out"]


@pytest.mark.parametrize(("seed", "faults"), [(0, False), (3, True)])
def test_the_built_in_center_with_breaks_shared_queues_and_a_breach(
    seed: int, faults: bool
) -> None:
    """Overflows offered at the instant they leave a queue, breaks taken after a call, agents
    helping another queue some hours, a queue emptied for a while: the figures still agree."""
    base = default_config()
    queues = dict(base.queues)
    queues["sales"] = replace(
        queues["sales"],
        breaks=(Break(60, 15), Break(180, 30, "lunch")),
        also_serves=("vip",),
        also_serves_hours=(9, 10, 14),
    )
    queues["support"] = replace(queues["support"], breaks=(Break(90, 10),), no_answer=0.1)
    config = replace(
        base, queues=MappingProxyType(queues), breaches=(Breach("support", 20, 0, 100),)
    )
    summary = assert_agent_figures_match_domain(run(config, seed=seed, hours=8, faults=faults))
    reasons = {reason for row in summary.agent_records() for reason in row["not_ready_reasons"]}
    assert reasons == {"break", "lunch", "no_answer"}
