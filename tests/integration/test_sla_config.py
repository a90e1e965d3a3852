"""Per-queue thresholds and targets from SLA_CONFIG change how calls count, and are exported."""

from __future__ import annotations

from pathlib import Path

from stream_app.domain.events import format_ts
from tests.integration.engine import Calls, past_interval, queue_metrics, send
from tests.support import ROOT, Worker, started, unique_prefix

S = 1000
MIN = 60 * S


def test_per_queue_thresholds_count_and_targets_are_exported(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("sla")
    worker = started(workers, tmp_path, prefix, SLA_CONFIG=str(ROOT / "sla.example.yaml"))
    t0 = past_interval()
    calls = Calls()
    for queue in ("vip", "support", "other"):
        # Answered after 15 s (within 20 and 60, not within vip's 10); abandoned after 4 s
        # (short by the default 5 s, not by vip's 3 s).
        calls.add(f"{queue}-a", "call_started", t0, queue=queue)
        calls.add(f"{queue}-a", "queue_entered", t0, queue=queue)
        calls.add(f"{queue}-a", "call_answered", t0 + 15 * S, agent_id="a")
        calls.add(f"{queue}-b", "queue_entered", t0 + MIN, queue=queue)
        calls.add(f"{queue}-b", "call_abandoned", t0 + MIN + 4 * S)
    calls.add("advance", "call_started", t0 + 20 * MIN)
    send(prefix, calls.events)
    start = format_ts(t0)
    got = queue_metrics(prefix, {f"{q}|{start}" for q in ("vip", "support", "other")})
    vip, support, other = (got[f"{q}|{start}"] for q in ("vip", "support", "other"))
    assert (vip["service_level_seconds"], vip["answered_within_threshold"]) == (10, 0)
    assert (vip["short_abandoned"], vip["offered"], vip["service_level"], vip["abandon_rate"]) == (
        0,
        2,
        0.0,
        0.5,
    )
    assert (support["service_level_seconds"], support["answered_within_threshold"]) == (60, 1)
    assert (support["short_abandoned"], support["offered"], support["service_level"]) == (1, 1, 1.0)
    assert (
        other["service_level_seconds"],
        other["answered_within_threshold"],
        other["offered"],
    ) == (20, 1, 1)

    metrics = worker.metrics()
    assert metrics[("callcenter_sla_target_service_level_ratio", (("queue", "vip"),))] == 0.95
    assert metrics[("callcenter_sla_max_calls_waiting", (("queue", "support"),))] == 25
    assert metrics[("callcenter_sla_service_level_threshold_seconds", (("queue", "other"),))] == 20
    # The answer-speed histogram has a bound at every configured threshold.
    bounds = {
        dict(labels)["le"]
        for (name, labels) in metrics
        if name == "callcenter_answer_speed_seconds_bucket"
    }
    assert {"10.0", "20.0", "60.0"} <= bounds
