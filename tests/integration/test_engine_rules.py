"""Contract rules on a running worker and the real broker, with hand-computed answers."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from stream_app.domain.events import format_ts
from tests.integration.engine import Calls, past_interval, queue_metrics, send, wait_for
from tests.support import Worker, consume_all, same, started, unique_prefix

S = 1000
MIN = 60 * S


def contract_scenario(t0: int) -> Calls:
    calls = Calls()
    # c1: IVR 30 s (excluded), offered after 10 s in queue, answered 5 s later: speed 15, wait 10.
    calls.add("c1", "call_started", t0, queue="sales")
    calls.add("c1", "ivr_ended", t0 + 30 * S)
    calls.add("c1", "queue_entered", t0 + 30 * S, queue="sales")
    calls.add("c1", "agent_offered", t0 + 40 * S, agent_id="a1")
    calls.add("c1", "call_answered", t0 + 45 * S, agent_id="a1", queue="sales")
    calls.add("c1", "call_ended", t0 + 5 * MIN)
    calls.add("c1", "wrapup_ended", t0 + 6 * MIN, agent_id="a1")  # handle 315 s
    # c2: a short abandon (3 s in queue).
    calls.add("c2", "call_started", t0 + 60 * S)
    calls.add("c2", "ivr_ended", t0 + 70 * S)
    calls.add("c2", "queue_entered", t0 + 70 * S, queue="sales")
    calls.add("c2", "call_abandoned", t0 + 73 * S)
    # c3: no IVR event; hangs up by call_ended after 48 s in queue: an abandon.
    calls.add("c3", "call_started", t0 + 100 * S)
    calls.add("c3", "queue_entered", t0 + 100 * S, queue="sales")
    calls.add("c3", "call_ended", t0 + 148 * S)
    # c4: answered after 25 s on the line (outside the 20 s threshold), no offer event: wait 23.
    calls.add("c4", "call_started", t0 + 200 * S)
    calls.add("c4", "ivr_ended", t0 + 210 * S)
    calls.add("c4", "queue_entered", t0 + 212 * S, queue="sales")
    calls.add("c4", "call_answered", t0 + 235 * S, agent_id="a2")
    # c5: IVR only: in no queue's figures.
    calls.add("c5", "call_started", t0 + 300 * S, queue="sales")
    calls.add("c5", "call_ended", t0 + 320 * S)
    # c6: times out of sales (flowed out there), answered in support: speed 45 (from IVR end), wait 9.
    calls.add("c6", "call_started", t0 + 390 * S)
    calls.add("c6", "ivr_ended", t0 + 395 * S)
    calls.add("c6", "queue_entered", t0 + 400 * S, queue="sales")
    calls.add("c6", "queue_left", t0 + 430 * S, queue="sales", reason="timeout")
    calls.add("c6", "queue_entered", t0 + 431 * S, queue="support")
    calls.add("c6", "call_answered", t0 + 440 * S, agent_id="a3")
    return calls


def expected(t0: int) -> dict[str, dict[str, object]]:
    start, end = format_ts(t0), format_ts(t0 + 15 * MIN)
    return {
        f"sales|{start}": {
            "queue": "sales", "interval_start": start, "interval_end": end,
            "offered": 3, "answered": 2, "abandoned": 2, "short_abandoned": 1, "flowed_out": 1,
            "answered_within_threshold": 1, "service_level_seconds": 20,
            "asa_seconds": 20.0, "awt_seconds": 16.5, "aht_seconds": 315.0, "longest_wait_seconds": 48.0,
            "service_level": 1 / 3, "abandon_rate": 1 / 3, "revision": 0,
        },
        f"support|{start}": {
            "queue": "support", "interval_start": start, "interval_end": end,
            "offered": 1, "answered": 1, "abandoned": 0, "short_abandoned": 0, "flowed_out": 0,
            "answered_within_threshold": 0, "service_level_seconds": 20,
            "asa_seconds": 45.0, "awt_seconds": 9.0, "aht_seconds": None, "longest_wait_seconds": 45.0,
            "service_level": 0.0, "abandon_rate": 0.0, "revision": 0,
        },
    }  # fmt: skip


def advance(calls: Calls, ts: int) -> None:
    """An IVR-only call far enough on to move stream time past the interval's end plus grace."""
    calls.add("advance", "call_started", ts)
    calls.add("advance", "call_ended", ts + S)


@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "shuffled-with-duplicates"])
def test_interval_figures_follow_the_contract(
    tmp_path: Path, workers: list[Worker], shuffled: bool
) -> None:
    prefix = unique_prefix("rules")
    worker = started(workers, tmp_path, prefix)
    t0 = past_interval()
    calls = contract_scenario(t0)
    events = list(calls.events)
    if shuffled:
        rng = random.Random(7)
        events += rng.sample(events, 12)  # producers retry: duplicates happen
        rng.shuffle(events)
    tail = Calls()
    advance(tail, t0 + 18 * MIN)
    send(prefix, events)
    send(prefix, tail.events)
    want = expected(t0)
    got = queue_metrics(prefix, set(want))
    assert {k: {f: got[k][f] for f in want[k]} for k in want} == want
    # The agent figures (contract §6) of agents known only through calls: busy, never
    # available, so occupancy 1. Staffed in sales: a1 rings 5 s, talks 255 s, wraps up 60 s;
    # a2 talks from 235 s to the interval's end (665 s): 985 s over 900. Support: a3 talks
    # from 440 s: 460 s.
    agent_figures = {
        f"sales|{format_ts(t0)}": {"occupancy": 1.0, "agents_staffed_avg": 985 / 900},
        f"support|{format_ts(t0)}": {"occupancy": 1.0, "agents_staffed_avg": 460 / 900},
    }
    wait_for(
        lambda: all(
            all(same(r.get(f), v) for f, v in agent_figures[k].items())
            for k, r in queue_metrics(prefix, set(want)).items()
            if k in agent_figures
        ),
        message="queue-metrics agent figures",
    )
    # The rolling hour and today at stream time hold the same calls (the interval is inside both).
    answered = wait_for(
        lambda: worker.metrics().get(
            ("callcenter_calls_answered", (("queue", "sales"), ("window", "1h")))
        ),
        message="1h gauge",
    )
    assert answered == 2
    assert (
        worker.metrics()[("callcenter_asa_seconds", (("queue", "sales"), ("window", "1h")))] == 20.0
    )
    outcomes = {r.key: r.json() for r in consume_all(prefix + "call-outcomes", idle=1.0)}
    assert outcomes[b"c2"]["outcome"] == "short_abandoned"
    assert outcomes[b"c3"]["outcome"] == "abandoned" and outcomes[b"c3"]["abandon_seconds"] == 48.0
    assert outcomes[b"c5"]["outcome"] == "ivr_only"
    assert outcomes[b"c6"]["queue"] == "support" and outcomes[b"c6"]["answer_seconds"] == 45.0
    assert outcomes[b"c1"]["handle_seconds"] == 315.0 and outcomes[b"c1"]["ivr_seconds"] == 30.0
    exposition_is_clean(worker)


def exposition_is_clean(worker: Worker) -> None:
    """The exposition passes promtool's lint, and the answer-speed histogram has a bound at 20 s."""
    status, body = worker.get("/metrics")
    assert status == 200
    text = body.decode()
    assert 'callcenter_answer_speed_seconds_bucket{le="20.0",queue="sales"} 1.0' in text
    assert 'window="15m"' in text and 'window="today"' in text and 'window="interval"' in text
    if shutil.which("promtool") is None:
        pytest.skip(
            "promtool is not installed (scripts/install-tools.sh installs it where allowed)"
        )
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
