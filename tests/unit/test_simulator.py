"""The simulator: a deterministic model whose events follow the contract, whose own summary
equals what the project's domain computes from the records it sent, faults or not.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.calls import CallState
from stream_app.domain.events import Rejected, parse_event
from stream_app.domain.figures import Figures, contribution_facts, interval_record
from stream_app.domain.model import Event
from stream_app.domain.sla import QueueSla, SlaConfig
from stream_app.simulator import cli
from stream_app.simulator.config import (
    Breach,
    Dist,
    QueueConfig,
    SimConfig,
    SimConfigError,
    default_config,
    load_config,
    parse_breach,
    parse_config,
    parse_duration,
)
from stream_app.simulator.model import (
    CALL_TOPIC,
    MALFORMED_KINDS,
    Fact,
    Record,
    Simulation,
)
from stream_app.simulator.publish import run
from stream_app.simulator.summary import Summary
from tests.common import FIGURE_FIELDS

ROOT = Path(__file__).resolve().parents[2]
T0 = int(datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)  # a Monday, 08:00 UTC
HOUR = 3_600_000
INTERVAL = 15 * 60_000
WALL = T0 + 30 * 24 * HOUR  # the engine's wall clock: later than every simulated event
SLA = SlaConfig(
    default=QueueSla(),
    queues=MappingProxyType({"vip": QueueSla(service_level_seconds=10, short_abandon_seconds=3)}),
)


def simulate(
    config: SimConfig | None = None,
    *,
    seed: int = 1,
    hours: float = 2,
    faults: bool = False,
    start: int = T0,
) -> list[Record]:
    sim = Simulation(
        config or default_config(),
        seed=seed,
        start_ms=start,
        duration_ms=round(hours * HOUR),
        faults=faults,
    )
    return calls_of(sim.records())


def calls_of(records: Iterable[Record]) -> list[Record]:
    """The records to `call-events` (the agents' go to `agent-events`)."""
    return [r for r in records if r.topic == CALL_TOPIC]


def summarize(records: Iterable[Record], sla: SlaConfig = SLA) -> Summary:
    summary = Summary(interval_ms=INTERVAL, sla=sla)
    for record in records:
        summary.add(record)
    return summary


def events_of(records: Iterable[Record]) -> list[Event]:
    """Every record the engine would accept, parsed by the engine's own parser."""
    return [
        parse_event(r.value, now_ms=WALL)
        for r in records
        if r.fault not in MALFORMED_KINDS and r.topic == CALL_TOPIC
    ]


def domain_view(records: list[Record], sla: SlaConfig = SLA) -> tuple[dict[str, Any], Counter[str]]:
    """Per (queue, interval) figures and call outcomes as the engine's domain computes them."""
    states: dict[str, CallState] = {}
    for event in events_of(records):
        states.setdefault(event.call_id, CallState.new(event.call_id)).apply(event)
    buckets: dict[tuple[str, int], Figures] = {}
    for state in states.values():
        for queue, contribution in state.contributions().items():
            for ts, facts in contribution_facts(contribution, sla.for_queue(queue)):
                buckets.setdefault((queue, ts - ts % INTERVAL), Figures()).add(facts)
    intervals = {
        f"{queue}|{start}": interval_record(
            queue, start, start + INTERVAL, figures, sla.for_queue(queue), 0
        )
        for (queue, start), figures in buckets.items()
    }
    outcomes: Counter[str] = Counter()
    for state in states.values():
        outcome = state.outcome(lambda q: sla.for_queue(q).short_abandon_ms)
        outcomes[str(outcome["outcome"]) if outcome else "in_progress"] += 1
    return intervals, outcomes


def open_calls(records: list[Record]) -> list[str]:
    """The calls the engine's domain would keep open: no hang-up known, a caller still waiting
    in a queue, or an answer whose after-call work never ends."""
    states: dict[str, CallState] = {}
    for event in events_of(records):
        states.setdefault(event.call_id, CallState.new(event.call_id)).apply(event)
    return sorted(
        call_id
        for call_id, state in states.items()
        if not state.is_finished()
        or (state.answered and state.wrapup is None)
        or any(c.waiting_since is not None for c in state.contributions().values())
    )


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


def assert_summary_matches_domain(records: list[Record], sla: SlaConfig = SLA) -> Summary:
    summary = summarize(records, sla)
    want, outcomes = domain_view(records, sla)
    got = {}
    for interval in summary.interval_records():
        start = int(datetime.fromisoformat(interval["interval_start"]).timestamp() * 1000)
        got[f"{interval['queue']}|{start}"] = interval
    assert set(got) == set(want)
    problems = [
        f"{key}.{name}: summary {got[key][name]!r}, domain {want[key][name]!r}"
        for key in want
        for name in FIGURE_FIELDS
        if not same(got[key][name], want[key][name])
    ]
    assert not problems, "\n".join(problems[:20])
    o = summary.outcomes
    assert (
        outcomes
        == Counter(
            {
                "answered": o["answered"],
                "abandoned": o["abandoned"] - o["short_abandoned"],
                "short_abandoned": o["short_abandoned"],
                "flowed_out": o["flowed_out"],
                "ivr_only": o["ivr_only"],
            }
        )
        - Counter()
    )  # drop zero counts
    assert summary.total_calls == sum(outcomes.values())
    assert summary.in_progress == 0
    return summary


# -- determinism -------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    first = simulate(seed=42, faults=True)
    assert first == simulate(seed=42, faults=True)
    assert first != simulate(seed=43, faults=True)


def test_faults_change_how_events_are_sent_never_which_calls_happen() -> None:
    clean = simulate(seed=5)
    faulty = simulate(seed=5, faults=True)
    originals = {r.value for r in faulty if r.fault in (None, "late", "reordered")}
    assert originals == {r.value for r in clean}
    assert summarize(clean).to_json()["intervals"] == summarize(faulty).to_json()["intervals"]
    assert summarize(clean).outcomes == summarize(faulty).outcomes


# -- the events follow the contract ----------------------------------------------------------

LETTERS = {
    "call_started": "S",
    "ivr_ended": "I",
    "queue_entered": "Q",
    "agent_offered": "O",
    "call_answered": "A",
    "queue_left": "L",
    "call_abandoned": "X",
    "call_ended": "E",
    "wrapup_ended": "W",
}
# A call: started, maybe the IVR end, then IVR-only, or queue visits (offers that rang out,
# timeouts to the next queue) ending answered, abandoned, or in voicemail after a timeout.
LIFE = re.compile(r"SI?(E|(QO*L)*QO*(AEW|XE|LE))")


def test_every_event_passes_the_engines_validation_and_the_json_schema() -> None:
    import jsonschema

    schema = json.loads((ROOT / "topics" / "call-event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    records = simulate(hours=3, faults=True)
    for record in records:
        if record.fault in MALFORMED_KINDS:
            continue
        event = parse_event(record.value, now_ms=WALL)
        assert record.key == event.call_id
        assert event.ts == record.ts <= record.emit_at
        validator.validate(orjson.loads(record.value))


@pytest.mark.parametrize("ts_format", ["rfc3339", "epoch_ms"])
def test_timestamps_in_either_contract_form(ts_format: str) -> None:
    records = simulate(replace(default_config(), ts_format=ts_format), hours=0.5)
    raw = [orjson.loads(r.value)["ts"] for r in records]
    assert all(isinstance(ts, int if ts_format == "epoch_ms" else str) for ts in raw)
    assert [e.ts for e in events_of(records)] == [r.ts for r in records]


def lives(records: list[Record]) -> dict[str, list[Event]]:
    """Each call's distinct events in the order they happened (the event_id's sequence number;
    events of one instant, like an abandon and its hang-up, keep their order)."""
    calls: dict[str, dict[str, Event]] = {}
    for event in events_of(records):
        calls.setdefault(event.call_id, {}).setdefault(event.event_id, event)
    out = {}
    for call_id, events in calls.items():
        ordered = sorted(events.values(), key=lambda e: int(e.event_id.rsplit("-", 1)[1]))
        assert [e.ts for e in ordered] == sorted(e.ts for e in ordered), call_id
        out[call_id] = ordered
    return out


def busy_config() -> SimConfig:
    """The built-in center with every path common: rings unanswered, overflow, voicemail."""
    config = default_config()
    queues = dict(config.queues)
    queues["sales"] = replace(
        queues["sales"], no_answer=0.3, timeout_seconds=60, overflow="support"
    )
    queues["support"] = replace(queues["support"], timeout_seconds=120)
    return replace(config, queues=MappingProxyType(queues))


def test_each_call_lives_a_valid_life() -> None:
    config = busy_config()
    records = simulate(config, hours=4)
    assert [r.emit_at for r in records] == sorted(r.emit_at for r in records)
    words = []
    for call_id, events in lives(records).items():
        word = "".join(LETTERS[e.type] for e in events)
        assert LIFE.fullmatch(word), f"{call_id}: {word}"
        words.append(word)
        for event in events:
            if event.type in ("queue_entered", "call_answered", "agent_offered", "queue_left"):
                assert event.queue in config.queues
            if event.type in ("agent_offered", "call_answered", "wrapup_ended"):
                assert event.agent_id is not None
                assert event.agent_id.startswith(f"{event.queue}-")
        assert len({e.event_id for e in events}) == len(events)
    # Every ending happens (answered, abandoned, voicemail, IVR-only), and so do rings that
    # went unanswered and calls overflowing into another queue.
    for pattern in ("AEW$", "XE$", "LE$", "^SI?E$", "OO", "LQ"):
        assert any(re.search(pattern, word) for word in words), pattern


def test_sources_without_ivr_or_offer_events() -> None:
    queue = replace(QueueConfig(), arrivals_per_hour=80, emit_offers=False, emit_ivr_ended=False)
    config = SimConfig(queues=MappingProxyType({"q": queue}), profile=(1.0,) * 24)
    records = simulate(config, hours=2)
    types = {e.type for e in events_of(records)}
    assert "ivr_ended" not in types and "agent_offered" not in types
    assert_summary_matches_domain(records)


# -- the summary is what the domain computes from the records --------------------------------


def test_summary_equals_the_domains_figures_interval_by_interval() -> None:
    summary = assert_summary_matches_domain(simulate(hours=6))
    assert summary.outcomes["answered"] > 100
    assert summary.outcomes["abandoned"] > 5
    busy = assert_summary_matches_domain(simulate(busy_config(), hours=4))
    assert busy.per_queue()["sales"]["flowed_out"] > 5 and busy.outcomes["flowed_out"] > 0


def test_summary_equals_the_domains_figures_despite_faults() -> None:
    config = replace(
        busy_config(),
        faults=replace(default_config().faults, duplicate=0.05, reorder=0.1, late=0.05),
    )
    records = simulate(config, hours=4, faults=True)
    summary = assert_summary_matches_domain(records)
    assert all(summary.faults[k] > 10 for k in ("duplicate", "reordered", "late"))


def test_summary_json_and_text() -> None:
    summary = summarize(simulate(hours=1, faults=True))
    data = summary.to_json()
    assert data["calls"] == summary.total_calls > 0
    assert data["queues"]["sales"]["calls"] == summary.calls["sales"]
    assert sum(q["answered"] for q in data["queues"].values()) == data["answered"]
    assert sum(i["answered"] for i in data["intervals"]) == data["answered"]
    assert data["intervals"][0]["interval_start"] == "2026-03-02T08:00:00Z"
    assert data["intervals"][0]["service_level_seconds"] in (20, 10)
    json.dumps(data)
    text = summary.render()
    assert f"{summary.total_calls} calls" in text and "sales" in text and "faults injected" in text


# -- faults --------------------------------------------------------------------------------


def test_duplicates_are_the_same_bytes_and_malformed_records_are_counted() -> None:
    config = replace(
        default_config(), faults=replace(default_config().faults, duplicate=0.05, malformed=0.05)
    )
    records = simulate(config, hours=3, faults=True)
    firsts = {r.value for r in records if r.fault in (None, "late", "reordered")}
    duplicates = [r for r in records if r.fault == "duplicate"]
    assert duplicates and all(r.value in firsts and not r.facts for r in duplicates)
    summary = summarize(records)
    assert summary.faults["duplicate"] == len(duplicates)
    assert summary.events == len(firsts)
    for kind in MALFORMED_KINDS:
        broken = [r for r in records if r.fault == kind]
        assert summary.faults[kind] == len(broken) > 0
        for record in broken:
            with pytest.raises(Rejected) as info:
                parse_event(record.value, now_ms=WALL)
            assert info.value.reason == kind
            assert record.key.startswith("sim1-")
    assert summary.records == len(records)


def test_reordered_and_late_events_are_sent_out_of_event_time_order() -> None:
    config = replace(default_config(), faults=replace(default_config().faults, reorder=0.2))
    records = simulate(config, hours=2, faults=True)
    by_call: dict[str, list[Record]] = {}
    for record in records:
        if record.fault is None or record.fault in ("reordered", "late"):
            by_call.setdefault(record.key, []).append(record)
    swapped = sum(
        1
        for sent in by_call.values()
        for a, b in itertools.pairwise(sent)
        if b.ts < a.ts and b.fault == "reordered"
    )
    assert swapped > 10
    newest = 0
    late_by = []
    for record in records:
        if record.fault == "late":
            late_by.append(newest - record.ts)
        newest = max(newest, record.ts)
    assert late_by and min(late_by) >= 0 and max(late_by) >= 120_000


# -- the model behaves like a call center ---------------------------------------------------


def one_queue(**overrides: Any) -> SimConfig:
    base = replace(QueueConfig(), arrivals_per_hour=60, agents=6, timeout_seconds=None)
    queue = replace(base, **overrides)
    return SimConfig(queues=MappingProxyType({"q": queue}), profile=(1.0,) * 24)


def abandoned_share(config: SimConfig) -> float:
    """Abandons (short ones too) per queued call, over three seeds of 8 hours."""
    summary = Summary(interval_ms=INTERVAL)
    for seed in (1, 2, 3):
        for record in simulate(config, seed=seed, hours=8):
            summary.add(record)
    figures = summary.per_queue()["q"]
    share: float = figures["abandoned"] / (figures["answered"] + figures["abandoned"])
    return share


def test_abandons_rise_when_patience_or_staffing_falls() -> None:
    normal = abandoned_share(one_queue())  # 4.5 erlangs on 6 agents, patience 180 s
    assert 0.03 < normal < 0.2
    assert abandoned_share(one_queue(patience_seconds=Dist.exponential(60))) > normal + 0.03
    assert abandoned_share(one_queue(agents=5)) > normal + 0.03
    assert abandoned_share(one_queue(agents=8)) < normal - 0.03


def test_short_abandons_come_from_impatient_callers() -> None:
    none = summarize(simulate(one_queue(short_abandon_share=0.0), hours=4))
    many = summarize(simulate(one_queue(short_abandon_share=0.3), hours=4))
    # a few patient callers hang up quickly too (some while the first agent rings)
    assert none.outcomes["short_abandoned"] * 5 < many.outcomes["short_abandoned"]


def test_the_time_of_day_profile_shapes_arrivals() -> None:
    profile = tuple([2.0] * 6 + [0.0] * 6 + [0.5] * 12)
    config = replace(one_queue(agents=20), profile=profile)
    start = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
    starts = [r.ts for r in simulate(config, hours=24, start=start) if b'"call_started"' in r.value]
    by_hour = Counter((ts - start) // HOUR for ts in starts)
    busy = sum(by_hour[h] for h in range(6))
    quiet = sum(by_hour[h] for h in range(12, 18))
    assert sum(by_hour[h] for h in range(6, 12)) == 0
    assert 2.5 < busy / quiet < 6  # 4x the rate, up to Poisson noise
    assert 500 < busy < 950  # 6 h at 120 calls/h


def test_the_profile_follows_the_configured_time_zone() -> None:
    profile = tuple([0.0] * 12 + [1.0] * 12)  # calls only in the local afternoon
    config = replace(one_queue(), profile=profile, time_zone="Asia/Tokyo")  # UTC+9
    start = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
    starts = [r.ts for r in simulate(config, hours=24, start=start) if b'"call_started"' in r.value]
    hours = {(ts - start) // HOUR for ts in starts}
    assert hours and hours <= set(range(3, 15))


def test_hourly_staffing() -> None:
    agents = tuple([0] * 12 + [10] * 12)
    records = simulate(one_queue(agents=agents, timeout_seconds=300), hours=24)
    answered = [e.ts for e in events_of(records) if e.type == "call_answered"]
    assert answered and all((ts - T0) // HOUR + 8 >= 12 for ts in answered)


def test_a_breach_understaffs_a_queue_for_a_while_then_it_recovers() -> None:
    config = default_config().with_breaches((Breach("sales", minutes=30),))
    records = simulate(config, hours=2)
    answered = [e for e in events_of(records) if e.type == "call_answered" and e.queue == "sales"]
    assert answered and min(e.ts for e in answered) >= T0 + 30 * 60_000
    intervals = {
        (i["queue"], i["interval_start"]): i for i in summarize(records).interval_records()
    }
    for start in ("08:00", "08:15"):
        breached = intervals[("sales", f"2026-03-02T{start}:00Z")]
        assert breached["answered"] == 0 and breached["service_level"] == 0.0
        assert breached["abandon_rate"] > 0.5
    for start in ("09:00", "09:15", "09:30"):
        assert intervals[("sales", f"2026-03-02T{start}:00Z")]["service_level"] >= 0.7
    assert intervals[("support", "2026-03-02T08:00:00Z")]["service_level"] >= 0.7
    assert_summary_matches_domain(records)


def test_a_breach_can_start_later_and_keep_some_agents() -> None:
    config = replace(
        default_config(), breaches=(Breach("support", minutes=20, agents=1, after_minutes=60),)
    )
    records = simulate(config, hours=2)
    busy_agents = {
        e.agent_id
        for e in events_of(records)
        if e.type == "call_answered"
        and T0 + 62 * 60_000 <= e.ts < T0 + 80 * 60_000
        and e.queue == "support"
    }
    assert busy_agents <= {"support-01"}


def test_a_bounded_run_ends_with_every_call_finished() -> None:
    sim = Simulation(default_config(), seed=2, start_ms=T0, duration_ms=HOUR)
    records = list(sim.records())
    assert sim.pending() == []
    arrivals = [r.ts for r in records if b'"call_started"' in r.value]
    assert max(arrivals) < T0 + HOUR < max(r.ts for r in records)
    assert summarize(records).in_progress == 0


def test_an_endless_run_is_lazy() -> None:
    sim = Simulation(default_config(), seed=2, start_ms=T0, duration_ms=None)
    records = sim.records()
    first = [next(records) for _ in range(500)]
    assert len(first) == 500 and sim.now < T0 + 24 * HOUR


# -- an early stop closes the center ---------------------------------------------------------


def stop_at(sim: Simulation, at: int) -> tuple[list[Record], list[Record], list[Record]]:
    """Run the steps as a sender stopped at simulated `at` does (between two steps, the one it
    waits for due later): (records sent before, records held back then sent, closing ones)."""
    sent: list[Record] = []
    yielded = sim.now
    for step in sim.steps():
        due = step if isinstance(step, int) else step.emit_at
        yielded = max(yielded, due)
        assert sim.now <= yielded  # the model never runs ahead of the steps it yielded
        if due > at:
            if isinstance(step, Record):  # made already (ts <= now): sent at the stop
                sent.append(replace(step, emit_at=at))
            break
        if isinstance(step, Record):
            sent.append(step)
    assert sim.now <= at
    held = sim.pending()
    rest = sim.close(at)
    assert sim.closed_at == at and sim.pending() == [] and list(sim.steps()) == []
    assert [r.value for r in rest[: len(held)]] == [r.value for r in held]
    return sent, rest[: len(held)], rest[len(held) :]


def closing_words(records: list[Record], closing: list[Record]) -> Counter[str]:
    """For each call closed: its events before the stop's last one and the closing ones, as
    letters (`A|EW`: talking when the center closed)."""
    last = {e.event_id for e in events_of(closing)}
    words: Counter[str] = Counter()
    for events in lives(records).values():
        before = [LETTERS[e.type] for e in events if e.event_id not in last]
        after = [LETTERS[e.type] for e in events if e.event_id in last]
        if after:
            words[f"{before[-1]}|{''.join(after)}"] += 1
    return words


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "faults"])
def test_a_stop_mid_run_ends_every_call_in_progress_at_the_stop_time(faults: bool) -> None:
    config = replace(
        busy_config(),
        faults=replace(default_config().faults, duplicate=0.05, reorder=0.1, late=0.05),
    )
    words: Counter[str] = Counter()
    for seed, at in [(1, T0 + 2 * HOUR + 123), (2, T0 + 37 * 60_000), (3, T0 + 3 * HOUR + 7)]:
        sim = Simulation(config, seed=seed, start_ms=T0, faults=faults)  # endless
        sent, held, closing = stop_at(sim, at)
        records = sent + held + closing
        assert closing and all(r.ts == r.emit_at == at and r.fault is None for r in closing)
        assert len({r.value for r in closing}) == len(closing)
        assert all(r.ts <= r.emit_at <= at for r in records)
        assert bool(held) == faults  # held back by a fault: sent at the stop, fault kept
        assert open_calls(sent + held)  # without the closing events, calls stay open
        assert open_calls(records) == []
        for call_id, events in lives(records).items():
            word = "".join(LETTERS[e.type] for e in events)
            assert LIFE.fullmatch(word), f"{call_id}: {word}"
        summary = assert_summary_matches_domain(records)
        assert summary.in_progress == 0 and summary.last_ts == at
        words += closing_words(records, closing)
    # The states a call is in when the center closes: in the IVR (S|E), waiting (Q|XE) or
    # ringing (O|XE), talking (A|EW), in after-call work (E|W). The rarer ones (being routed
    # after the IVR, I|E; leaving a voicemail, L|E) are left to the property test below.
    assert {"S|E", "Q|XE", "O|XE", "A|EW", "E|W"} <= set(words), words


def test_a_talk_cut_short_counts_its_handle_time_up_to_the_stop() -> None:
    sim = Simulation(default_config(), seed=8, start_ms=T0 + 2 * HOUR)
    at = T0 + 3 * HOUR
    sent, held, closing = stop_at(sim, at)
    assert_summary_matches_domain(sent + held + closing)
    answered = {e.call_id: e.ts for e in events_of(sent) if e.type == "call_answered"}
    cut = [r for r in closing if b'"wrapup_ended"' in r.value]
    assert cut
    for record in cut:
        (fact,) = [f for f in record.facts if isinstance(f, Fact)]
        assert (fact.kind, fact.ts, fact.a) == ("handled", at, at - answered[record.key])


def test_close_ends_the_run_and_never_goes_back_in_time() -> None:
    sim = Simulation(default_config(), seed=3, start_ms=T0, duration_ms=HOUR)
    steps = sim.steps()
    for _ in range(300):
        next(steps)
    with pytest.raises(ValueError, match="already at"):
        sim.close(sim.now - 1)
    now = sim.now
    rest = sim.close()  # at the model's current time
    assert sim.closed_at == now and all(r.ts <= now for r in rest)
    assert list(steps) == [] and sim.close() == []  # nothing left to end


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    agents=st.integers(0, 4),
    stop_minutes=st.floats(0, 50),
    timeout=st.none() | st.floats(5, 300),
    faults=st.booleans(),
)
def test_a_stop_at_any_instant_leaves_no_call_open(
    seed: int, agents: int, stop_minutes: float, timeout: float | None, faults: bool
) -> None:
    queues = {
        "a": replace(
            QueueConfig(),
            arrivals_per_hour=120,
            agents=agents,
            no_answer=0.3,
            no_answer_pause_seconds=5,
            timeout_seconds=timeout,
            overflow="b" if timeout is not None else None,
            short_abandon_share=0.1,
        ),
        "b": replace(QueueConfig(), arrivals_per_hour=20, agents=1, emit_offers=False),
        "c": replace(  # a timeout without overflow: voicemail
            QueueConfig(), arrivals_per_hour=30, agents=1, emit_ivr_ended=False, timeout_seconds=30
        ),
    }
    config = SimConfig(
        queues=MappingProxyType(queues),
        profile=(1.0,) * 24,
        faults=replace(SimConfig(queues={}).faults, reorder=0.1, duplicate=0.05, late=0.05),
    )
    sim = Simulation(config, seed=seed, start_ms=T0, duration_ms=HOUR, faults=faults)
    sent, held, closing = stop_at(sim, T0 + round(stop_minutes * 60_000))
    records = sent + held + closing
    assert open_calls(records) == []
    for events in lives(records).values():
        assert LIFE.fullmatch("".join(LETTERS[e.type] for e in events))
    assert_summary_matches_domain(records)


# -- property: any seed, any small center ---------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    agents=st.integers(0, 4),
    patience=st.floats(1, 400),
    no_answer=st.floats(0, 0.5),
    timeout=st.none() | st.floats(5, 300),
    faults=st.booleans(),
)
def test_any_seed_gives_a_consistent_summary(
    seed: int, agents: int, patience: float, no_answer: float, timeout: float | None, faults: bool
) -> None:
    queues = {
        "a": replace(
            QueueConfig(),
            arrivals_per_hour=90,
            agents=agents,
            patience_seconds=Dist.exponential(patience),
            no_answer=no_answer,
            no_answer_pause_seconds=5,
            timeout_seconds=timeout,
            overflow="b" if timeout is not None else None,
            short_abandon_share=0.1,
        ),
        "b": replace(QueueConfig(), arrivals_per_hour=20, agents=2, emit_offers=False),
    }
    config = SimConfig(
        queues=MappingProxyType(queues),
        profile=(1.0,) * 24,
        faults=replace(SimConfig(queues={}).faults, reorder=0.1, duplicate=0.05, late=0.02),
    )
    records = simulate(config, seed=seed, hours=0.5, faults=faults)
    for events in lives(records).values():
        assert LIFE.fullmatch("".join(LETTERS[e.type] for e in events))
    assert_summary_matches_domain(records)


# -- sending ---------------------------------------------------------------------------------


class ListSink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, record: Record) -> None:
        self.records.append(record)

    async def flush(self) -> None:
        pass


def test_run_sends_everything_and_the_summary_counts_what_was_sent() -> None:
    sim = Simulation(default_config(), seed=4, start_ms=T0, duration_ms=HOUR, faults=True)
    sink, summary = ListSink(), Summary(interval_ms=INTERVAL, sla=SLA)
    stopped = asyncio.run(run(sim, summary, sink, speed=None, stop=asyncio.Event()))
    assert not stopped
    assert calls_of(sink.records) == simulate(seed=4, hours=1, faults=True)
    assert summary.records == len(sink.records)


def test_a_stopped_run_closes_the_center_at_the_wall_clock_and_summarizes_what_was_sent() -> None:
    async def go() -> tuple[bool, Simulation, ListSink, Summary]:
        sim = Simulation(default_config(), seed=4, start_ms=T0, duration_ms=HOUR, faults=True)
        sink, summary = ListSink(), Summary(interval_ms=INTERVAL, sla=SLA)
        stop = asyncio.Event()
        # A wall clock 20 simulated minutes in: the run waits there, then is stopped.
        task = asyncio.create_task(
            run(sim, summary, sink, speed=None, stop=stop, clock=lambda: T0 + 20 * 60_000)
        )
        await asyncio.sleep(0.2)
        stop.set()
        return await task, sim, sink, summary

    stopped, sim, sink, summary = asyncio.run(go())
    assert stopped
    # The center closed at the time reached (the wall clock's), not at the next event's.
    assert sim.closed_at == T0 + 20 * 60_000
    assert sink.records and max(r.ts for r in sink.records) == T0 + 20 * 60_000
    assert summary.records == len(sink.records)
    assert summary.total_calls > 0 and summary.in_progress == 0
    assert open_calls(sink.records) == []
    assert_summary_matches_domain(sink.records)


def test_a_paced_run_closes_at_the_paced_time_not_at_the_next_event() -> None:
    speed = 3600.0  # an hour a second

    async def go() -> tuple[bool, Simulation, ListSink, Summary, float]:
        sim = Simulation(default_config(), seed=6, start_ms=T0)  # endless
        sink, summary = ListSink(), Summary(interval_ms=INTERVAL, sla=SLA)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(sim, summary, sink, speed=speed, stop=stop, clock=lambda: WALL)
        )
        started = time.monotonic()
        await asyncio.sleep(0.3)
        stop.set()
        stopped = await task
        return stopped, sim, sink, summary, time.monotonic() - started

    stopped, sim, sink, summary, elapsed = asyncio.run(go())
    assert stopped and sim.closed_at is not None
    assert T0 < sim.closed_at <= T0 + elapsed * speed * 1000
    assert max(r.ts for r in sink.records) == sim.closed_at
    assert summary.in_progress == 0 and open_calls(sink.records) == []
    assert_summary_matches_domain(sink.records)


# -- configuration -------------------------------------------------------------------------


def test_built_in_defaults() -> None:
    config = default_config()
    assert list(config.queues) == ["sales", "support", "vip"]
    assert config.queues["vip"].overflow == "support"
    assert len(config.profile) == 24 and max(config.profile) == 1.0
    assert load_config(None) == config == load_config("")
    assert parse_config(None, source="x") == config
    assert parse_config({}, source="x") == config


def test_the_printed_configuration_loads_back(tmp_path: Path) -> None:
    config = default_config().with_breaches((Breach("vip", minutes=10, agents=1),))
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(config.to_data(), sort_keys=False))
    assert load_config(path) == config


def test_the_example_file_is_the_built_in_center() -> None:
    assert load_config(ROOT / "simulator.example.yaml") == default_config()


def test_a_file_overrides_defaults_and_replaces_queues(tmp_path: Path) -> None:
    yaml_file = tmp_path / "sim.yaml"
    yaml_file.write_text(
        "defaults:\n  talk_seconds: {dist: exponential, mean: 100}\n"
        "queues:\n  billing: {agents: 3}\n  tech:\n    agents: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,"
        " 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]\n    ring_seconds: 4\n"
        "breaches:\n  - {queue: tech, minutes: 15}\n"
    )
    config = load_config(yaml_file)
    assert list(config.queues) == ["billing", "tech"]
    assert config.queues["billing"].talk_seconds == Dist.exponential(100)
    assert config.queues["tech"].agents_at(5) == 2
    assert config.queues["tech"].ring_seconds == Dist.constant(4)
    assert config.breaches == (Breach("tech", minutes=15),)
    toml_file = tmp_path / "sim.toml"
    toml_file.write_text(
        'ts_format = "epoch_ms"\n[defaults]\nivr_only = 0.5\n[queues.sales]\nagents = 2\n'
        'timeout_seconds = "none"\n'
    )
    config = load_config(toml_file)
    assert config.ts_format == "epoch_ms"
    assert config.queues["sales"].ivr_only == 0.5 and config.queues["sales"].timeout_seconds is None


def test_the_file_s_defaults_apply_to_the_built_in_queues() -> None:
    config = parse_config({"defaults": {"no_answer": 0.2, "talk_seconds": 99}}, source="s")
    assert all(q.no_answer == 0.2 for q in config.queues.values())
    # a built-in queue's own setting wins over the file's defaults
    assert config.queues["sales"].talk_seconds == Dist.constant(99)
    assert config.queues["support"].talk_seconds == Dist.lognormal(420, 240, max=3600)
    assert config.queues["vip"].ivr_only == 0.02


def error_of(data: object) -> str:
    with pytest.raises(SimConfigError) as info:
        parse_config(data, source="sim.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "sim.yaml: the top level must be a mapping"),
        ({"queue": {}}, "unknown key queue (did you mean 'queues'?)"),
        ({"queues": {"s": {"agent": 3}}}, "unknown key queues.s.agent (did you mean 'agents'?)"),
        ({"queues": {}}, "queues must name at least one queue"),
        ({"queues": {"s": {"agents": -1}}}, "queues.s.agents must be an integer >= 0"),
        ({"queues": {"s": {"agents": [1, 2]}}}, "queues.s.agents must be an integer or a list of 24"),
        ({"queues": {"s": {"agents": [1] * 23 + [True]}}}, "queues.s.agents[23] must be an integer"),
        ({"queues": {"s": {"ivr_only": 1.5}}}, "queues.s.ivr_only must be a ratio from 0 to 1"),
        ({"queues": {"s": {"arrivals_per_hour": "many"}}}, "queues.s.arrivals_per_hour must be"),
        ({"queues": {"s": {"emit_offers": "yes"}}}, "queues.s.emit_offers must be true or false"),
        ({"queues": {"s": {"talk_seconds": {"dist": "gamma"}}}}, "queues.s.talk_seconds.dist must be one of"),
        ({"queues": {"s": {"talk_seconds": {"dist": "lognormal", "mean": 5}}}}, "queues.s.talk_seconds.sd is required"),
        ({"queues": {"s": {"talk_seconds": {"dist": "exponential", "mean": 0}}}}, "talk_seconds.mean must be a positive number"),
        ({"queues": {"s": {"talk_seconds": {"dist": "uniform", "low": 5, "high": 1}}}}, "talk_seconds.high must be >= low"),
        ({"queues": {"s": {"talk_seconds": {"dist": "uniform", "low": 1, "high": 2, "max": 3}}}}, "unknown key queues.s.talk_seconds.max"),
        ({"queues": {"s": {"talk_seconds": -3}}}, "queues.s.talk_seconds must be seconds"),
        ({"queues": {"s": {"overflow": "t", "timeout_seconds": 9}}}, "queues.s.overflow names no queue: 't'"),
        ({"queues": {"s": {"overflow": "s", "timeout_seconds": 9}}}, "must name another queue"),
        ({"queues": {"s": {}, "t": {"overflow": "s"}}}, "queues.t.overflow needs timeout_seconds"),
        ({"profile": [1] * 23}, "profile must be a list of 24 hourly multipliers"),
        ({"profile": [0] * 24}, "profile must have at least one hour above 0"),
        ({"profile": [1] * 12 + [-1] * 12}, "profile[12] must be a number >= 0"),
        ({"time_zone": "Mars/Olympus"}, "time_zone must be an IANA time zone"),
        ({"ts_format": "iso"}, "ts_format must be one of rfc3339, epoch_ms"),
        ({"breaches": {"queue": "sales"}}, "breaches must be a list"),
        ({"breaches": [{"queue": "sales"}]}, "breaches[0].minutes is required"),
        ({"breaches": [{"queue": "nope", "minutes": 5}]}, "breaches[0].queue names no queue: 'nope'"),
        ({"breaches": [{"queue": "sales", "minutes": 5, "agent": 1}]}, "unknown key breaches[0].agent"),
        ({"faults": {"duplicates": 0.1}}, "unknown key faults.duplicates (did you mean 'duplicate'?)"),
        ({"faults": {"late": 2}}, "faults.late must be a ratio from 0 to 1"),
    ],
)  # fmt: skip
def test_every_mistake_is_named(data: object, message: str) -> None:
    assert message in error_of(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(SimConfigError, match=r"unsupported format \.json"):
        load_config(tmp_path / "sim.json")
    dup = tmp_path / "dup.yaml"
    dup.write_text("ts_format: rfc3339\nts_format: epoch_ms\n")
    with pytest.raises(SimConfigError, match="duplicate key 'ts_format'"):
        load_config(dup)
    bad = tmp_path / "bad.toml"
    bad.write_text("queues = [")
    with pytest.raises(SimConfigError, match="not valid TOML"):
        load_config(bad)


def test_durations_and_breaches_from_the_command_line() -> None:
    assert parse_duration("90m") == 90 * 60_000
    assert parse_duration("1h30m") == 90 * 60_000
    assert parse_duration("2h") == 2 * HOUR
    assert parse_duration("45s") == 45_000
    assert parse_duration("1d") == 24 * HOUR
    for bad in ("", "2", "h", "2x", "-1h", "0m", "2h junk"):
        with pytest.raises(SimConfigError):
            parse_duration(bad)
    assert parse_breach("sales") == Breach("sales", minutes=30, agents=0)
    assert parse_breach("vip:10:1") == Breach("vip", minutes=10, agents=1)
    for bad in (":5", "sales:x", "sales:5:-1", "sales:0", "a:1:2:3"):
        with pytest.raises(SimConfigError):
            parse_breach(bad)
    with pytest.raises(SimConfigError, match="--breach: no queue 'nope'"):
        default_config().with_breaches((Breach("nope", minutes=1),))


# -- the command line ------------------------------------------------------------------------


def options(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_plan_defaults_keep_faster_runs_in_the_past() -> None:
    now = T0 + 123_456
    live = cli.plan(options("--seed", "1"), now)
    assert (live.start_ms, live.speed, live.duration_ms) == (T0 + 123_000, 1.0, None)
    fast = cli.plan(options("--fast", "--duration", "1h"), now)
    assert fast.speed is None and fast.start_ms + HOUR + cli.PAST_MARGIN_MS <= now
    assert cli.plan(options("--speed", "0", "--duration", "1h"), now).speed is None
    endless = cli.plan(options("--speed", "60"), now)
    assert endless.start_ms <= now - cli.CATCH_UP_MS and endless.speed == 60
    at = cli.plan(options("--start", "2026-03-02T09:00:00+01:00", "--duration", "2h"), now)
    assert at.start_ms == T0
    assert cli.plan(options("--start", "now-6h"), now).start_ms == now - 6 * HOUR - 456
    assert cli.plan(options("--start=-6h"), now).start_ms == now - 6 * HOUR - 456
    assert cli.plan(options("--breach", "vip:5"), now).config.breaches == (Breach("vip", 5.0),)
    for argv, message in [
        (("--fast",), "needs --duration"),
        (("--fast", "--speed", "3", "--duration", "1h"), "contradict"),
        (("--speed", "-1"), "--speed must be"),
        (("--start", "2026-03-02T09:00:00"), "--start needs an offset"),
        (("--start", "yesterday"), "--start must be ISO 8601"),
        (("--breach", "nope"), "no queue 'nope'"),
    ]:
        with pytest.raises(SimConfigError, match=message):
            cli.plan(options(*argv), now)


def test_backfill_starts_in_the_past_at_full_speed_with_no_end() -> None:
    now = T0 + 123_456
    backfill = cli.plan(options("--backfill", "2h"), now)
    assert (backfill.start_ms, backfill.speed, backfill.duration_ms) == (
        now - 2 * HOUR - 456,
        None,
        None,
    )
    for argv in (("--fast",), ("--speed", "2"), ("--start", "now-1h")):
        with pytest.raises(SimConfigError, match="--backfill sets the start"):
            cli.plan(options("--backfill", "2h", *argv), now)


def test_a_backfill_sends_the_past_at_once_then_waits_for_the_wall_clock() -> None:
    wall = T0 + 2 * HOUR

    async def go() -> tuple[list[Record], list[Record]]:
        sim = Simulation(default_config(), seed=5, start_ms=T0, duration_ms=None, faults=False)
        sink, summary = ListSink(), Summary(interval_ms=INTERVAL, sla=SLA)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(sim, summary, sink, speed=None, stop=stop, clock=lambda: wall)
        )
        for _ in range(200):  # the past goes out without waiting for anything
            await asyncio.sleep(0.01)
            if sink.records and max(r.ts for r in sink.records) > wall - 10 * 60_000:
                break
        before_stop = list(sink.records)
        await asyncio.sleep(0.2)  # then it waits for the wall clock: nothing more is sent
        held = list(sink.records)
        stop.set()
        await task
        return before_stop, held

    before_stop, held = asyncio.run(go())
    assert min(r.ts for r in before_stop) < T0 + 10 * 60_000
    assert max(r.ts for r in before_stop) > wall - 10 * 60_000
    assert max(r.ts for r in held) <= wall  # never ahead of the wall clock: live from there


def test_dry_run_prints_the_records_and_writes_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLA_CONFIG", raising=False)
    monkeypatch.delenv("INTERVAL_MINUTES", raising=False)
    out = tmp_path / "summary.json"
    argv = ["--dry-run", "--fast", "--seed", "9", "--duration", "30m", "--faults"]
    argv += ["--start", "2026-03-02T08:00:00Z", "--summary-json", str(out)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(out.read_text())
    assert summary["records"] == len(lines) > 0
    assert summary["seed"] == 9 and summary["start_ms"] == T0
    keyed = 0
    for line in lines:  # keyed by call_id, or agent_id for agent events
        key, value = line.split("\t", 1)
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # a malformed copy
        keyed += key in (event.get("call_id"), event.get("agent_id"))
    assert keyed >= summary["events"] + summary["agent_events"]
    assert sum('"agent_logged_in"' in line for line in lines) == summary["agents"] > 0


def test_print_config_and_bad_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLA_CONFIG", raising=False)
    assert cli.main(["--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert parse_config(printed, source="printed") == default_config()
    assert cli.main(["--fast"]) == 2
    assert "needs --duration" in capsys.readouterr().err
