"""Prometheus and Alertmanager files: valid for the real tools, unit-tested, and naming only metrics
the worker exports.

Runs Debian's `promtool` (package prometheus) and `amtool` (package prometheus-alertmanager),
installed by `make tools`. Without them these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from grafana.queries import PROMETHEUS_METRICS, metric_names
from stream_app.exporter import QueueCollector
from stream_app.metrics import FaustRelay, Metrics
from tests.common import tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"

SEVERITIES = {"warning", "critical"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def load(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in load(path)["groups"]:
            yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def records() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


# --- the real tools ---------------------------------------------------------------------------


def test_the_files_exist() -> None:
    assert PROMETHEUS_CONFIG.is_file()
    assert ALERTMANAGER_CONFIG.is_file()
    assert [p.name for p in RULE_FILES] == ["alerts.yml", "recording.yml"]
    assert RULE_TESTS


def test_promtool_accepts_the_config_and_its_rule_files() -> None:
    result = run(tool("promtool"), "check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    # The config loads the rule files by a glob relative to itself: all of them, once.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_rules() -> None:
    result = run(tool("promtool"), "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=CallcenterServiceLevelBelowTarget", "queue=sales", "severity=warning"], "callcenter-team"),
        (["alertname=CallcenterServiceLevelBelowTarget", "queue=sales", "severity=critical"], "callcenter-oncall"),
        (["alertname=CallcenterWorkerDown", "job=callcenter", "instance=w1:6066", "severity=warning"], "callcenter-team"),
        (["alertname=CallcenterAllWorkersDown", "job=callcenter", "severity=critical"], "callcenter-oncall"),
        (["alertname=SomebodyElsesAlert", "severity=critical"], "null"),
    ],
)  # fmt: skip
def test_alertmanager_routes(labels: list[str], receiver: str) -> None:
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_alertmanager_groups_queue_alerts_by_queue() -> None:
    config = load(ALERTMANAGER_CONFIG)
    queue_route = config["route"]["routes"][0]
    assert queue_route["group_by"] == ["queue"]
    assert any(
        rule["source_matchers"] == ['severity="critical"']
        and rule["target_matchers"] == ['severity="warning"']
        and {"alertname", "queue"} <= set(rule["equal"])
        for rule in config["inhibit_rules"]
    )


# --- the rules name only what the worker exports ----------------------------------------------


def sample_names(family: Metric) -> set[str]:
    if family.type == "counter":
        return {f"{family.name}_total"}
    if family.type == "histogram":
        return {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
    if family.type == "summary":
        return {family.name, f"{family.name}_count", f"{family.name}_sum"}
    return {family.name}


def exported_names() -> set[str]:
    """Every series name a worker's GET /metrics can carry, from the worker's own code."""
    families: list[Metric] = []
    families += Metrics.create([20.0]).registry.collect()
    # The per-queue collector builds all its families even before the first event.
    families += QueueCollector(
        cast(Any, None), cast(Any, None), lambda: None, cast(Any, None), "queue-updates"
    ).collect()
    faust_registry = CollectorRegistry(auto_describe=True)
    FaustMetrics.create(faust_registry, "faust")  # as app.py: name_prefix="faust"
    families += FaustRelay(faust_registry).collect()
    names: set[str] = set()
    for family in families:
        names |= sample_names(family)
    return names


def template_queries(rule: dict[str, Any]) -> list[str]:
    """The PromQL queries of an alert's annotations (`query` template function)."""
    return [
        query
        for text in rule.get("annotations", {}).values()
        for query in re.findall(r"`([^`]*)`", text)
        if "{" in query  # a query, not a literal such as `stream-app worker`
    ]


def test_metric_name_extraction() -> None:
    assert metric_names(
        'sum by (job, reason) (increase(callcenter_events_rejected_total{reason="late"}[15m])) > 0'
    ) == {"callcenter_events_rejected_total"}
    assert metric_names(
        "a:b:max{window=\"15m\"} < on (queue) group_left () c and on (queue) d >= 5 or absent(up{job='x'})"
    ) == {"a:b:max", "c", "d", "up"}


def test_every_series_the_rules_read_is_exported_or_recorded() -> None:
    exported = exported_names()
    recorded = {rule["record"] for rule in records()}
    assert "callcenter_calls_waiting" in exported
    assert "faust_topic_partition_end_offset" in exported
    unknown: dict[str, set[str]] = {}
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        for expr in [rule["expr"], *template_queries(rule)]:
            for metric in metric_names(expr):
                if metric not in exported | recorded | PROMETHEUS_METRICS:
                    unknown.setdefault(name, set()).add(metric)
    assert unknown == {}, f"series no worker exports and no rule records: {unknown}"


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in records():
        level, metric, operations = rule["record"].split(":")
        assert level and metric and operations, rule["record"]


# --- what every alert carries, and that every rule is unit-tested -----------------------------


def test_every_alert_has_a_severity_and_human_annotations() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["alert"].startswith("Callcenter"), rule["alert"]  # Alertmanager routes on it
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]


def test_queue_alerts_compare_deduplicated_series_and_bridge_rebalances() -> None:
    """A queue alert reads only the per-queue records, never a worker's series."""
    per_queue = {rule["record"] for rule in records() if rule["record"].startswith("queue")}
    for rule in alerts():
        names = metric_names(rule["expr"])
        if names & per_queue:
            assert names <= per_queue, rule["alert"]
            assert "keep_firing_for" in rule, rule["alert"]
            assert "for" in rule, rule["alert"]


def unit_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in load(path)["tests"]]


def test_every_alert_and_severity_is_unit_tested() -> None:
    fired: set[tuple[str, str]] = set()
    checked_silent: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            if not case["exp_alerts"]:
                checked_silent.add(case["alertname"])
            for alert in case["exp_alerts"]:
                fired.add((case["alertname"], alert["exp_labels"]["severity"]))
    wanted = {(rule["alert"], rule["labels"]["severity"]) for rule in alerts()}
    assert wanted - fired == set(), "alerts never seen firing in prometheus/tests"
    assert {name for name, _ in wanted} - checked_silent == set(), "alerts never seen silent"


def test_every_recording_rule_is_unit_tested() -> None:
    tested = {
        metric
        for test in unit_tests()
        for case in test.get("promql_expr_test", [])
        if case["exp_samples"]
        for metric in metric_names(case["expr"])
    }
    assert {rule["record"] for rule in records()} - tested == set()


def test_the_unit_tests_order_the_rule_groups() -> None:
    """Without group_eval_order promtool evaluates the groups in a random order: flaky tests."""
    groups = [group["name"] for path in RULE_FILES for group in load(path)["groups"]]
    record_groups = [g for g in groups if g.endswith("-records")]
    for path in RULE_TESTS:
        order = load(path).get("group_eval_order", [])
        assert order[: len(record_groups)] == record_groups, path.name
