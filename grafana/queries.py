"""Reading dashboards back: their panels, their PromQL, the metric names it uses.

Shared by the builder's self-check and the tests (schema, promtool, metrics a worker exports);
the Prometheus rules' tests read their PromQL with `metric_names` too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Grafana's variables, replaced by values any Prometheus accepts, so promtool can parse a query.
# The dashboards' own variables get a value of their kind; Grafana's built-ins a duration.
VARIABLE_SAMPLES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
    "queue": "sales",
    "window": "today",
    "job": "callcenter",
}

# Metrics that come from Prometheus itself, not from a worker's /metrics.
PROMETHEUS_METRICS: frozenset[str] = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, rows included, and the panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression a dashboard runs: panel queries and query variables."""
    exprs = [target["expr"] for _, target in iter_targets(dashboard) if "expr" in target]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            if isinstance(text, str):
                exprs.append(variable_query_expr(text))
    return exprs


def variable_query_expr(query: str) -> str:
    """The PromQL inside a query variable: `label_values(EXPR, label)` holds EXPR."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    if match:
        return match.group(1)
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    return match.group(1) if match else query


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """The expression with every Grafana variable replaced by its value in `values` (default:
    the sample values; KeyError if one is unknown)."""
    known = VARIABLE_SAMPLES if values is None else values
    return _VARIABLE.sub(lambda m: known[m.group(1) or m.group(2)], expr)


def variables_used(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def datasource_uids(node: Any) -> set[str]:
    """Every datasource uid named anywhere in a dashboard (panels, targets, variables)."""
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            found.add(str(ds["uid"]))
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            found |= datasource_uids(item)
    return found
