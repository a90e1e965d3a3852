"""Every metric the dashboards name is exported by a real worker (real broker, real events)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from grafana.queries import PROMETHEUS_METRICS, expressions, metric_names
from stream_app.domain.events import format_ts
from tests.integration.engine import Calls, send, wait_for
from tests.support import Worker, produce, started, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
S = 1000


def dashboard_metrics() -> set[str]:
    """Metric names the dashboards select, less Prometheus' own and recording rules (a:b:c)."""
    names: set[str] = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        for expr in expressions(json.loads(path.read_text(encoding="utf-8"))):
            names |= metric_names(expr)
    return {n for n in names if n not in PROMETHEUS_METRICS and ":" not in n}


def exported(worker: Worker, path: str) -> set[str]:
    """Sample names on a page (so `x_bucket`, `x_count`, `y_total`, as PromQL selects them)."""
    status, body = worker.get(path)
    assert status == 200, body[:500]
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def scenario(t0: int) -> Calls:
    """One of each kind of call, so every per-queue series exists: answered and wrapped up
    (ASA, AWT, AHT, answer-speed histogram), abandoned, flowed out, still waiting (with agent
    `a` logged in and available again: the expected wait)."""
    calls = Calls()
    calls.answered("d1", "dash", t0, 5 * S)
    calls.add("d1", "call_ended", t0 + 30 * S)
    calls.add("d1", "wrapup_ended", t0 + 40 * S, agent_id="a")
    calls.add("d2", "call_started", t0 + 1 * S, queue="dash")
    calls.add("d2", "queue_entered", t0 + 1 * S, queue="dash")
    calls.add("d2", "call_abandoned", t0 + 20 * S)
    calls.add("d3", "call_started", t0 + 2 * S, queue="dash")
    calls.add("d3", "queue_entered", t0 + 2 * S, queue="dash")
    calls.add("d3", "queue_left", t0 + 12 * S, queue="dash", reason="timeout")
    calls.add("d4", "call_started", t0 + 3 * S, queue="dash")
    calls.add("d4", "queue_entered", t0 + 3 * S, queue="dash")  # waits, never answered
    return calls


def test_every_metric_a_dashboard_uses_is_exported_by_a_worker(
    tmp_path: Path, workers: list[Worker]
) -> None:
    wanted = dashboard_metrics()
    assert {"callcenter_service_level_ratio", "faust_topic_partition_end_offset"} <= wanted
    prefix = unique_prefix("dashboards")
    worker = started(workers, tmp_path, prefix)
    t0 = time.time_ns() // 1_000_000 - 60 * S
    login = {
        "event_id": "a:login",
        "agent_id": "a",
        "type": "agent_logged_in",
        "ts": format_ts(t0 - S),
        "queues": ["dash"],
    }
    produce(prefix + "agent-events", [("a", orjson.dumps(login))])
    send(prefix, scenario(t0).events)

    try:
        wait_for(lambda: wanted <= exported(worker, "/metrics"), timeout=90)
    except AssertionError:
        gone = sorted(wanted - exported(worker, "/metrics"))
        raise AssertionError(f"the dashboards use metrics no worker exports: {gone}") from None
    # Prometheus scrapes /metrics only: Faust's own page carries the same sensor in milliseconds.
    faust_page = exported(worker, "/metrics/faust")
    assert any(name.startswith("faust_") for name in faust_page)
