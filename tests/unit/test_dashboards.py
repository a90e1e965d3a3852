"""The Grafana dashboards, without a Grafana: well-typed, up to date, parseable, wired to provisioning.

Their shape is checked through the grafana-foundation-sdk's own types (grafana/sdk_types.py:
decoded and re-encoded unchanged, every value of its field's type), not a copied JSON Schema:
no installable package ships Grafana's dashboard schema. What the SDK's models leave open
(`options` of an override, a transformation's `options`) is not checked by that; the
overrides' colours are pinned by the wallboard test below. Every metric name they use is
checked against a running worker in tests/integration/test_dashboards_live.py.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import build, sdk_types
from grafana.common import UIDS
from grafana.queries import (
    PROMETHEUS_METRICS,
    VARIABLE_SAMPLES,
    datasource_uids,
    expressions,
    iter_panels,
    iter_targets,
    metric_names,
    substitute,
    variables_used,
)
from stream_app.domain.events import REJECT_REASONS
from stream_app.exporter import SLA_GAUGES, WINDOW_GAUGES
from tests.common import tool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
NAMES = ("wallboard", "supervisor", "operations")
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
# Per-queue gauges: a queue can be exported by two workers for a moment during a rebalance.
PER_QUEUE_GAUGES = {name for name, _, _ in WINDOW_GAUGES + SLA_GAUGES} | {
    "callcenter_calls_waiting",
    "callcenter_oldest_waiting_seconds",
}


@cache
def dashboard(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_the_three_dashboards_are_committed() -> None:
    assert sorted(p.stem for p in DASHBOARDS.glob("*.json")) == sorted(NAMES)


def test_regenerating_the_dashboards_changes_nothing() -> None:
    rendered = build.render()
    assert sorted(rendered) == sorted(f"{n}.json" for n in NAMES)
    for file_name, text in rendered.items():
        committed = (DASHBOARDS / file_name).read_text(encoding="utf-8")
        assert committed == text, (
            f"grafana/dashboards/{file_name} differs from its builder: run `python -m grafana.build`"
        )
    assert build.render() == rendered, "two renders differ: the output is not stable"


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_conforms_to_the_sdk_types(name: str) -> None:
    assert sdk_types.problems(dashboard(name)) == []
    assert dashboard(name)["uid"] == UIDS[name]
    ids = [panel["id"] for panel in iter_panels(dashboard(name))]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in iter_panels(dashboard(name)):
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel.get('title')}: a panel without queries"


def test_the_sdk_type_check_finds_what_is_wrong() -> None:
    """The check above can fail: a dashboard with one mistake of each kind gets each reported."""
    board = copy.deepcopy(dashboard("wallboard"))
    tile = next(p for p in board["panels"] if p["type"] == "stat")
    tile["options"]["colourMode"] = "background"  # a misspelt option
    tile["options"]["colorMode"] = "purple"  # not one of the enum's values
    tile["gridPos"]["w"] = "wide"  # a string for a number
    tile["targets"][0]["exp"] = tile["targets"][0].pop("expr")  # a misspelt query field
    board["graphTooltip"] = 7
    found = "\n".join(sdk_types.problems(board))
    for what in ("colourMode", "color_mode: 'purple'", "grid_pos.w: 'wide'", "/exp:", "7 is not"):
        assert what in found, f"{what!r} not reported in:\n{found}"
    board = copy.deepcopy(dashboard("wallboard"))
    tile = next(p for p in board["panels"] if p["type"] == "stat")
    tile["type"] = "no-such-panel"
    assert any("no panel kind 'no-such-panel'" in p for p in sdk_types.problems(board))


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {ds["uid"]: ds for ds in data["datasources"]}


def test_provisioning_declares_prometheus_and_alertmanager_with_fixed_uids() -> None:
    sources = provisioned_datasources()
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["alertmanager"]["type"] == "alertmanager"
    assert sources["alertmanager"]["url"] == "http://alertmanager:9093"
    assert sources["alertmanager"]["jsonData"]["implementation"] == "prometheus"


@pytest.mark.parametrize("name", NAMES)
def test_every_datasource_uid_is_provisioned(name: str) -> None:
    sources = provisioned_datasources()
    used = datasource_uids(dashboard(name))
    assert used, "no datasource at all"
    assert used <= set(sources), f"not provisioned: {used - set(sources)}"
    for panel, target in iter_targets(dashboard(name)):
        for ref in (panel.get("datasource"), target.get("datasource")):
            assert ref is not None, f"{panel['title']}: query {target['refId']} names no datasource"
            assert ref["type"] == sources[ref["uid"]]["type"], panel["title"]


def test_the_dashboards_provider_reads_where_compose_mounts_them() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_a_query_uses_is_defined(name: str) -> None:
    defined = {v["name"] for v in dashboard(name).get("templating", {}).get("list", [])}
    for expr in expressions(dashboard(name)):
        unknown = variables_used(expr) - defined - GRAFANA_BUILTINS
        assert not unknown, f"{expr}: undefined variables {unknown}"
        assert variables_used(expr) <= set(VARIABLE_SAMPLES), expr


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool")
    rules = []
    for name in NAMES:
        for i, expr in enumerate(expressions(dashboard(name))):
            concrete = substitute(expr)
            assert "$" not in concrete, expr
            rules.append({"record": f"dashboard:{name}_{i}:query", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_metric_names_are_the_workers_or_prometheus_own() -> None:
    """Each name is a worker's (callcenter_*, faust_*; checked live elsewhere) or Prometheus' own."""
    for name in NAMES:
        for expr in expressions(dashboard(name)):
            for metric in metric_names(expr):
                assert (
                    metric.startswith(("callcenter_", "faust_")) or metric in PROMETHEUS_METRICS
                ), f"{name}: {metric!r} in {expr}"


def test_metric_names_are_read_from_the_queries() -> None:
    expr = (
        'sort(sum by (le) (increase(a_bucket{queue=~"$queue", le!="+Inf"}[$__range]))'
        ' / ignoring (le) group_left sum(rate(b_count{x="y"}[5m] offset 1h)))'
        " or on (queue) count(ALERTS) * 0 and vector(1) > bool inf"
    )
    assert metric_names(expr) == {"a_bucket", "b_count", "ALERTS"}


@pytest.mark.parametrize("name", NAMES)
def test_per_queue_gauges_are_deduplicated_by_queue(name: str) -> None:
    """Two workers can briefly export one queue: every per-queue gauge is read through
    `max by (queue) (...)`, never summed or shown per worker."""
    for expr in expressions(dashboard(name)):
        if expr.startswith("callcenter_sla_target_service_level_ratio"):
            continue  # the queue variable's label_values(): only the label values matter
        for metric in metric_names(expr) & PER_QUEUE_GAUGES:
            for match in re.finditer(rf"\b{metric}\b", expr):
                before = expr[: match.start()]
                assert before.endswith(("max by (queue) (", "max by (queue, state) (")), (
                    f"{metric} not deduplicated in {expr}"
                )


def test_the_wallboard_is_one_row_of_tiles_per_queue_for_a_tv() -> None:
    board = dashboard("wallboard")
    assert board["refresh"] in {"5s", "10s"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["queue"]["multi"] and variables["queue"]["includeAll"]
    panels = board["panels"]
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    assert len(rows) == 1 and panels[rows[0]]["repeat"] == "queue"
    tiles = panels[rows[0] + 1 :]
    titles = [t["title"].split(" (")[0] for t in tiles]
    assert titles == [
        "Service level",
        "ASA",
        "AWT",
        "Calls waiting",
        "Oldest waiting",
        "Abandon rate",
        "Agents",
        "Expected wait",
    ]
    assert sum(t["gridPos"]["w"] for t in tiles) == 24, "one screen-wide row per queue"
    for tile in tiles:
        assert tile["type"] == "stat" and tile["options"]["colorMode"] == "background"
        refs = [t["refId"] for t in tile["targets"]]
        if tile["title"].startswith(("AWT", "Agents", "Expected wait")):
            continue  # no target of their own: neutral
        # Coloured against the queue's own target: one query per outcome, a colour each.
        assert refs == ["ok", "breach"], tile["title"]
        colours = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in tile["fieldConfig"]["overrides"]
        }
        assert colours == {"ok": "green", "breach": "red"}
        ok, breach = (t["expr"] for t in tile["targets"])
        assert "on (queue)" in ok and "callcenter_sla_" in ok
        assert ok.replace(">=", "<").replace("<=", ">") == breach


def test_the_wallboard_headline_is_coloured_against_each_queues_limits() -> None:
    """8 minutes of waiting against a 120 s limit must not look normal: the headline figures
    turn red while any selected queue is past its own limit (the exported SLA_CONFIG limits)."""
    headline = {p["title"]: p for p in dashboard("wallboard")["panels"][:3]}
    limits = {
        "Calls waiting (all queues)": "callcenter_sla_max_calls_waiting",
        "Oldest waiting call": "callcenter_sla_max_oldest_waiting_seconds",
    }
    for title, limit in limits.items():
        tile = headline[title]
        assert [t["refId"] for t in tile["targets"]] == ["ok", "breach"], title
        colours = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in tile["fieldConfig"]["overrides"]
        }
        assert colours == {"ok": "green", "breach": "red"}
        ok, breach = (t["expr"] for t in tile["targets"])
        assert limit in ok and "> on (queue)" in ok
        assert ok.replace(" unless on () ", " and on () ") == breach


def test_no_series_is_shown_twice_in_a_legend() -> None:
    """A reject reason's series (legend `{{reason}}`) is not repeated by another query."""
    for name in NAMES:
        for panel in iter_panels(dashboard(name)):
            legends = [t.get("legendFormat", "") for t in panel.get("targets", [])]
            literal = [text for text in legends if "{{" not in text and text]
            assert len(literal) == len(set(literal)), f"{panel['title']}: {legends}"
            if "{{reason}}" in legends:
                assert not set(literal) & REJECT_REASONS, f"{panel['title']}: {legends}"


def test_durations_of_different_scales_do_not_share_an_axis() -> None:
    """AHT (minutes) on AWT's axis flattened AWT (seconds): each has its own panel."""
    for panel in iter_panels(dashboard("supervisor")):
        exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []))
        if panel["type"] == "timeseries":
            assert not ("callcenter_awt_seconds" in exprs and "callcenter_aht_seconds" in exprs)
