"""Agents on a running worker and the real broker (contract §6): agent events and the calls that
name agents, through the agents stage to the queues stage's gauges, with hand-computed answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from stream_app.domain.events import format_ts
from tests.integration.engine import Calls, gauge, past_interval, send, wait_for
from tests.support import Worker, consume_all, produce, started, unique_prefix

S = 1000


def agent_events(t0: int) -> list[tuple[str, dict[str, Any]]]:
    def event(agent: str, type_: str, seconds: int, **fields: Any) -> tuple[str, dict[str, Any]]:
        ts = format_ts(t0 + seconds * S)
        return agent, {
            "event_id": f"{agent}:{type_}:{seconds}",
            "agent_id": agent,
            "type": type_,
            "ts": ts,
            **fields,
        }

    return [
        event("a1", "agent_logged_in", 0, queues=["sales"]),
        event("a2", "agent_logged_in", 0, queues=["sales", "support"]),
        event("a2", "agent_not_ready", 300, reason="break"),
    ]


def calls_scenario(t0: int) -> Calls:
    calls = Calls()
    # c1: offered to a1 at 60 s, answered at 70 s, ended at 360 s, after-call work to 420 s.
    calls.add("c1", "call_started", t0 + 55 * S, queue="sales")
    calls.add("c1", "queue_entered", t0 + 58 * S, queue="sales")
    calls.add("c1", "agent_offered", t0 + 60 * S, agent_id="a1")
    calls.add("c1", "call_answered", t0 + 70 * S, agent_id="a1")
    calls.add("c1", "call_ended", t0 + 360 * S)
    calls.add("c1", "wrapup_ended", t0 + 420 * S)
    # c2: answered at 540 s by a3, who sends no agent events; still talking at 600 s.
    calls.add("c2", "call_started", t0 + 480 * S, queue="sales")
    calls.add("c2", "queue_entered", t0 + 480 * S, queue="sales")
    calls.add("c2", "call_answered", t0 + 540 * S, agent_id="a3")
    # An IVR-only call: stream time is 600 s.
    calls.add("tail", "call_started", t0 + 599 * S)
    calls.add("tail", "call_ended", t0 + 600 * S)
    return calls


def test_agent_gauges_from_agent_events_and_calls(tmp_path: Path, workers: list[Worker]) -> None:
    prefix = unique_prefix("agents")
    worker = started(workers, tmp_path, prefix)
    t0 = past_interval()
    events = agent_events(t0)
    bad = ("a9", b'{"event_id": "x", "agent_id": "a9"}')  # no type, no ts
    produce(
        prefix + "agent-events",
        [(key, orjson.dumps(value)) for key, value in [*events, *events]] + [bad],
    )
    send(prefix, calls_scenario(t0).events)

    # At 600 s: a1 available again (its after-call work ended at 420 s), a2 on a break, a3
    # talking on c2. Sales: all three; support: a2 only.
    want_sales = {"available": 1, "ringing": 0, "on_call": 1, "after_call_work": 0, "not_ready": 1}
    want_support = {
        "available": 0,
        "ringing": 0,
        "on_call": 0,
        "after_call_work": 0,
        "not_ready": 1,
    }

    def agents(queue: str) -> dict[str, float | None]:
        return {
            state: gauge(worker, "callcenter_agents", queue=queue, state=state)
            for state in want_sales
        }

    wait_for(
        lambda: agents("sales") == want_sales and agents("support") == want_support,
        timeout=90,
        message=f"agents by state: {agents('sales')} {agents('support')}",
    )
    # Occupancy in the interval up to 600 s (and in 15m, 1h, today: nothing came before):
    # a1 busy 10 ringing + 290 talking + 60 after-call work = 360 s, available 60 + 180 = 240 s;
    # a2 available 300 s (not ready after: excluded); a3 busy 60 s (logged out before: excluded).
    # Sales: 420 / (420 + 540). Support: a2 available 300 s, never busy: 0.
    for window in ("interval", "15m", "1h", "today"):
        occupancy = gauge(worker, "callcenter_occupancy_ratio", queue="sales", window=window)
        assert occupancy is not None and abs(occupancy - 420 / 960) < 1e-9, window
        support = gauge(worker, "callcenter_occupancy_ratio", queue="support", window=window)
        assert support == 0.0, window
    # Nobody waits and one agent is available: a caller would be answered at once.
    assert gauge(worker, "callcenter_expected_wait_seconds", queue="sales") == 0.0
    # Erlang C: offered(15m) 2, AHT(1h) 350 s (c1: 70 s to 420 s), A = 700/900 = 0.778 Erlang;
    # target 80 % within 20 s: N=2 gives C = 0.2178 and 1 - C·e^(-1.222·20/350) = 0.797 < 0.8;
    # N=3 gives 0.957. So 3.
    assert gauge(worker, "callcenter_agents_required", queue="sales") == 3.0

    dead = wait_for(
        lambda: consume_all(prefix + "agent-events-dlq", idle=1.0, timeout=10),
        message="the bad agent event in agent-events-dlq",
    )
    assert [r.headers["reason"] for r in dead] == [b"missing_field"]
