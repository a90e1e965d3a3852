"""The simulator through the real broker and a worker, every fault on: the engine's closed
intervals (calls and agents), call outcomes, dead letters and duplicate count equal the
simulator's own summary, also for a run stopped midway (Ctrl-C), which leaves no call open in
the engine."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stream_app.domain.events import format_ts
from tests.common import FIGURE_FIELDS
from tests.integration.engine import Calls, latest_by_key, past_interval, send
from tests.support import ROOT, Worker, consume_all, same, started, unique_prefix

PYTHON = ROOT / ".venv" / "bin" / "python"
MIN = 60_000

# A flat day (the test runs at any hour), four queues covering every path: overflow both
# ways, voicemail after a timeout, a queue without agent_offered, one without ivr_ended.
CONFIG = """\
profile: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
defaults:
  no_answer: 0.1
  no_answer_pause_seconds: 20
  short_abandon_share: 0.05
queues:
  sales: {arrivals_per_hour: 120, agents: 9, timeout_seconds: 120, overflow: support}
  support:
    arrivals_per_hour: 60
    agents: 6
    timeout_seconds: 300
    patience_seconds: {dist: exponential, mean: 240}
  vip: {arrivals_per_hour: 20, agents: 2, emit_offers: false, ivr_only: 0.2, timeout_seconds: 45, overflow: sales}
  no-ivr: {arrivals_per_hour: 30, agents: 3, emit_ivr_ended: false, wrapup_seconds: 0}
faults:
  duplicate: 0.03
  reorder: 0.05
  late: 0.02
  late_seconds: {dist: uniform, low: 1200, high: 1800}
  malformed: 0.01
"""
COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "flowed_out")


def differences(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for key, fields in want.items():
        record = got.get(key)
        if record is None:
            out.append(f"{key}: not published")
            continue
        out.extend(
            f"{key}: {name} = {record.get(name)!r}, expected {fields[name]!r}"
            for name in FIGURE_FIELDS
            if not same(record.get(name), fields[name])
        )
    for key in sorted(set(got) - set(want)):
        # A correction can leave an interval empty that was published before it (a late
        # answer moving a call out of it): published, but with nothing in it.
        if any(got[key][name] for name in COUNTS):
            out.append(f"{key}: published but not expected: {got[key]}")
    return out


def agent_differences(
    queues: dict[str, dict[str, Any]], agents: dict[str, dict[str, Any]], summary: dict[str, Any]
) -> list[str]:
    """The simulator's agent figures against the engine's: `agent-metrics` per agent and
    interval, and the agent fields of `queue-metrics` per queue and interval."""
    out = []
    want_agents = {f"{r['agent_id']}|{r['interval_start']}": r for r in summary["agent_intervals"]}
    for key, fields in want_agents.items():
        record = agents.get(key)
        if record is None:
            out.append(f"agent {key}: not published")
            continue
        for name, value in fields.items():
            if name == "not_ready_reasons":
                reasons = record.get(name) or {}
                if set(reasons) != set(value) or not all(same(reasons[r], value[r]) for r in value):
                    out.append(f"agent {key}: {name} = {reasons}, expected {value}")
            elif not same(record.get(name), value):
                out.append(f"agent {key}: {name} = {record.get(name)!r}, expected {value!r}")
    for key in sorted(set(agents) - set(want_agents)):
        if any(agents[key][state] for state in ("available", "on_call", "not_ready", "ringing")):
            out.append(f"agent {key}: published but not expected: {agents[key]}")
    want_queues = {
        f"{r['queue']}|{r['interval_start']}": r for r in summary["queue_agent_intervals"]
    }
    for key, record in queues.items():
        fields = want_queues.get(key, {"occupancy": None, "agents_staffed_avg": 0.0})
        for name in ("occupancy", "agents_staffed_avg"):
            if not same(record.get(name) or 0.0, fields[name] or 0.0):
                out.append(f"queue {key}: {name} = {record.get(name)!r}, expected {fields[name]!r}")
    return out


def simulate(
    worker: Worker,
    config: Path,
    start_ms: int,
    summary: Path,
    pace: list[str],
    stop_after: float | None = None,
) -> str:
    """Run the simulator to its end, or Ctrl-C it `stop_after` seconds after it started."""
    argv = ["--config", str(config), "--seed", "11", "--start", format_ts(start_ms)]
    argv += ["--duration", "1h", *pace, "--faults", "--breach", "vip:20"]
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "stream_app.simulator.cli", *argv, "--summary-json", str(summary)],
        env=worker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        if stop_after is not None:
            assert proc.stderr is not None
            first = proc.stderr.readline()  # "simulating from ...": about to send
            assert first.startswith("simulating"), first
            time.sleep(stop_after)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize(
    ("pace", "stop_after"),
    [(["--fast"], None), (["--speed", "120"], None), (["--speed", "240"], 8.0)],
    ids=["fast", "120x", "stopped"],
)
def test_the_engine_reports_the_simulators_own_figures(
    tmp_path: Path, workers: list[Worker], pace: list[str], stop_after: float | None
) -> None:
    """As fast as possible, everything arrives before any interval closes; at 120x (30 s for
    the hour) late events (20-30 simulated minutes late: 10-15 s) land after their interval
    was published, however long the agents partitions hold closing back: corrections. Stopped
    midway (at 240x), the simulator closes the center: the calls in progress end then."""
    prefix = unique_prefix("sim")
    worker = started(workers, tmp_path, prefix)
    config = tmp_path / "sim.yaml"
    config.write_text(CONFIG)
    start = past_interval(hours_ago=6)
    printed = simulate(worker, config, start, tmp_path / "summary.json", pace, stop_after)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"{summary['calls']} calls" in printed
    assert summary["in_progress"] == 0
    if stop_after is None:
        assert not summary["stopped"] and summary["calls"] > 150
        assert all(n > 0 for n in summary["faults"].values()), summary["faults"]
        assert summary["queues"]["vip"]["flowed_out"] > 0
    else:  # stopped midway: the closing events are its last
        assert summary["stopped"] and summary["calls"] > 20
        assert summary["last_event_ms"] == summary["stopped_at_ms"] < start + 60 * MIN
    assert summary["queues"]["vip"]["calls"] > 0
    assert summary["agent_intervals"] and summary["queue_agent_intervals"]

    # Stream time past the last interval's end plus grace: an IVR-only call well after the run.
    tail = Calls()
    after = summary["last_event_ms"] + 20 * MIN
    tail.add("after-the-run", "call_started", after)
    tail.add("after-the-run", "call_ended", after + 1000)
    send(prefix, tail.events)

    want = {f"{i['queue']}|{i['interval_start']}": i for i in summary["intervals"]}
    assert {key.split("|")[0] for key in want} == {"sales", "support", "vip", "no-ivr"}
    problems: list[str] = ["nothing read yet"]
    deadline = time.monotonic() + 90
    while problems and time.monotonic() < deadline:
        if worker.backlog() == 0:  # both stages drained: no revision still on its way
            got = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=20))
            agents = latest_by_key(consume_all(prefix + "agent-metrics", idle=1.0, timeout=20))
            problems = differences(got, want) + agent_differences(got, agents, summary)
        if problems:
            time.sleep(2)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])
    if pace == ["--speed", "120"]:
        assert any(record["revision"] > 0 for record in got.values())

    # The engine's call outcomes are the simulator's.
    outcomes = {r.key: r.json()["outcome"] for r in consume_all(prefix + "call-outcomes", idle=1.0)}
    outcomes.pop(b"after-the-run")
    assert (
        Counter(outcomes.values())
        == Counter(
            {
                "answered": summary["answered"],
                "abandoned": summary["abandoned"] - summary["short_abandoned"],
                "short_abandoned": summary["short_abandoned"],
                "flowed_out": summary["flowed_out"],
                "ivr_only": summary["ivr_only"],
            }
        )
        - Counter()
    )
    assert len(outcomes) == summary["calls"]
    # No caller is left waiting in the engine (a stopped run's too: it closed the center).
    metrics = worker.metrics()
    assert {v for (name, _), v in metrics.items() if name == "callcenter_calls_waiting"} == {0}
    assert not [k for k in metrics if k[0] == "callcenter_oldest_waiting_seconds"]

    # Every malformed record reached the dead-letter topic with its reason; nothing else did.
    dlq = consume_all(prefix + "call-events-dlq", idle=1.0)
    reasons = Counter(r.headers["reason"].decode() for r in dlq)
    faults = summary["faults"]
    assert reasons == Counter(
        {k: faults[k] for k in ("invalid_json", "missing_field", "unknown_type")}
    )
    # Each re-sent event was recognised as a duplicate, once.
    duplicates = worker.metrics()[("callcenter_events_duplicate_total", ())]
    assert duplicates == faults["duplicate"]
