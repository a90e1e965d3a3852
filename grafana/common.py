"""Building blocks of the dashboards: datasources, PromQL, queries, variables and panel presets."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

# A fixed uid: file provisioning does not resolve `${DS_PROMETHEUS}`-style inputs
# (grafana/provisioning/datasources/datasources.yml declares it, and the Alertmanager's).
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")

TAG = "callcenter"
UIDS = {
    "wallboard": "callcenter-wallboard",
    "supervisor": "callcenter-supervisor",
    "operations": "callcenter-operations",
}
# The contract's windows (§4), in the order a picker shows them.
WINDOWS = ("today", "1h", "15m", "interval")

GREEN, RED, NEUTRAL = "green", "red", "blue"

# Any panel builder (stat, timeseries, …): what Dashboard.with_panel takes.
PanelBuilder = cogbuilder.Builder[model.Panel]


# -- PromQL -----------------------------------------------------------------------------------


# Multi-value variables: Grafana writes several values (or All) as a regex, so they need `=~`.
MULTI_VALUE = frozenset({"$queue", "$job"})


def matchers(**labels: str) -> str:
    """`{queue=~"$queue", window="today"}`: `=~` for a multi-value variable, `=` otherwise."""
    parts = []
    for name, value in labels.items():
        op = "=~" if value in MULTI_VALUE else "="
        parts.append(f'{name}{op}"{value}"')
    return "{" + ", ".join(parts) + "}"


def per_queue(metric: str, *, window: str | None = None) -> str:
    """A per-queue gauge of the selected queues, one series per queue.

    `max by (queue)`: while a rebalance moves a queue, Prometheus can hold it from two workers
    for a scrape interval (the former owner's last scrape and the new owner's first); the two
    series differ by `instance` only, so a panel still shows one figure per queue.
    """
    labels = {"queue": "$queue"}
    if window is not None:
        labels["window"] = window
    return f"max by (queue) ({metric}{matchers(**labels)})"


BUSY_STATES = ("ringing", "on_call", "after_call_work")  # contract §6: busy
ANSWERING_STATES = ("available", *BUSY_STATES)  # agents who can answer (Erlang C counts them)


def agents_in(*states: str) -> str:
    """Agents serving each selected queue now in any of `states` (one series per queue; as
    `per_queue`, a queue held by two workers for a scrape counts once)."""
    selector = f'callcenter_agents{{queue=~"$queue", state=~"{"|".join(states)}"}}'
    return f"sum by (queue) (max by (queue, state) ({selector}))"


def sum_rate(metric: str, by: Sequence[str] = (), **labels: str) -> str:
    """A counter's rate summed over the workers (each event is counted by one worker only)."""
    grouping = f" by ({', '.join(by)})" if by else ""
    selector = metric + (matchers(**labels) if labels else "")
    return f"sum{grouping} (rate({selector}[$__rate_interval]))"


# -- queries and variables ----------------------------------------------------------------------


def query(
    expr: str,
    ref_id: str = "A",
    legend: str | None = None,
    *,
    instant: bool = False,
    as_table: bool = False,
) -> prometheus.Dataquery:
    q = (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
        .editor_mode(prom_model.QueryEditorMode.CODE)
    )
    q = q.instant() if instant else q.range()
    if legend is not None:
        q = q.legend_format(legend)
    if as_table:
        q = q.format(prom_model.PromQueryFormat.TABLE)
    return q


def _label_variable(
    name: str, label: str, query: str, sort: model.VariableSort
) -> dashboard.QueryVariable:
    """A multi-select variable over a label's values, All by default."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(sort)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def queue_variable() -> dashboard.QueryVariable:
    """`$queue`: every queue some worker exports targets for (multi-select, All by default)."""
    return _label_variable(
        "queue",
        "Queue",
        "label_values(callcenter_sla_target_service_level_ratio, queue)",
        model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC,
    )


def window_variable(default: str) -> dashboard.CustomVariable:
    """`$window`: which of the contract's windows the per-queue figures show."""
    return (
        dashboard.CustomVariable("window")
        .label("Window")
        .values(",".join(WINDOWS))
        .current(model.VariableOption(selected=True, text=default, value=default))
        .options([model.VariableOption(selected=w == default, text=w, value=w) for w in WINDOWS])
    )


def job_variable() -> dashboard.QueryVariable:
    """`$job`: the scrape jobs that hold workers (any job exporting the worker's stream time)."""
    return _label_variable(
        "job",
        "Job",
        "label_values(callcenter_stream_time_seconds, job)",
        model.VariableSort.ALPHABETICAL_ASC,
    )


def links() -> list[cogbuilder.Builder[model.DashboardLink]]:
    """A drop-down to the other callcenter dashboards, keeping time range and variables."""
    return [
        dashboard.DashboardLink("Call center")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
        .icon("external link")
        .tooltip("")
        .target_blank(False)
    ]


# -- colours and options ------------------------------------------------------------------------


def fixed(color: str) -> dashboard.FieldColor:
    return dashboard.FieldColor().mode(model.FieldColorModeId.FIXED).fixed_color(color)


def color_value(color: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds; the first pair's value is None (Grafana's -Infinity base)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in pairs])
    )


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def legend(
    *, as_table: bool = False, calcs: Sequence[str] = ()
) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE if as_table else common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


def stacked() -> common_builders.StackingConfig:
    return common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A")


def tooltip() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


# -- panel presets ------------------------------------------------------------------------------


def big_stat(title: str, unit: str, *, decimals: int | None = None) -> stat.Panel:
    """A large single figure for a TV: background colour, value only, no sparkline."""
    panel = (
        stat.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .text_mode(common.BigValueTextMode.VALUE)
        .wide_layout(True)
        .show_percent_change(False)
        .percent_change_color_mode(common.PercentChangeColorMode.STANDARD)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(last_value())
        .color_scheme(fixed(NEUTRAL))
        .no_value("\N{EN DASH}")
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def against_target(
    title: str,
    unit: str,
    figure: str,
    target: str,
    *,
    higher_is_better: bool,
    decimals: int | None = None,
    description: str = "",
) -> stat.Panel:
    """A figure coloured against its queue's own target: green when met, red when missed.

    Grafana's thresholds are fixed numbers per panel, while every queue has its own target.
    So the comparison is PromQL's: query `ok` returns the figure only where it meets the target,
    query `breach` only where it misses it (each a filtering comparison with `on (queue)`),
    and each query's frames get a fixed colour. Exactly one of them returns the figure.
    """
    ok_op, breach_op = (">=", "<") if higher_is_better else ("<=", ">")
    return ok_or_breach(
        big_stat(title, unit, decimals=decimals).description(description),
        f"({figure}) {ok_op} on (queue) ({target})",
        f"({figure}) {breach_op} on (queue) ({target})",
    )


def ok_or_breach(panel: stat.Panel, ok: str, breach: str) -> stat.Panel:
    """Two instant queries of which one returns the figure: `ok` drawn green, `breach` red."""
    return (
        panel.with_target(query(ok, "ok", instant=True))
        .with_target(query(breach, "breach", instant=True))
        .override_by_query("ok", [color_value(GREEN)])
        .override_by_query("breach", [color_value(RED)])
    )


def against_limits(
    title: str,
    unit: str,
    figure: str,
    per_queue_figure: str,
    limit: str,
    *,
    decimals: int | None = None,
    description: str = "",
) -> stat.Panel:
    """A figure over all selected queues, red while any queue is past its own limit.

    As `against_target`, two queries that each return the figure or nothing: `and on ()`
    keeps it when the per-queue comparison finds a queue over its limit, `unless on ()` when
    it finds none.
    """
    over = f"({per_queue_figure}) > on (queue) ({limit})"
    return ok_or_breach(
        big_stat(title, unit, decimals=decimals).description(description),
        f"({figure}) unless on () ({over})",
        f"({figure}) and on () ({over})",
    )


def trend(title: str, unit: str, *, description: str = "") -> timeseries.Panel:
    """A time series with the dashboards' legend and tooltip."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .legend(legend())
        .tooltip(tooltip())
        .line_width(2)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
    )


def dashed_targets(panel: timeseries.Panel, suffix: str = "target") -> timeseries.Panel:
    """Series whose legend ends in `suffix` drawn as thin dashed lines."""
    return panel.override_by_regexp(
        f".* {suffix}$",
        [
            model.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
            model.DynamicConfigValue(id_val="custom.lineWidth", value=1),
            model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        ],
    )


def table_panel(title: str, *, description: str = "") -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .frame_index(0)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .align(common.FieldTextAlignment.AUTO)
        .inspect(False)
        .footer(common_builders.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False))
    )


def merged_table(columns: Sequence[tuple[str, str]]) -> list[model.DataTransformerConfig]:
    """Instant table queries (one per column, refId = key) joined on their labels.

    `merge` joins the frames on their common label columns (here `queue`); `organize` drops the
    time column, orders the columns and names them. Every value column is `Value #<refId>`.
    """
    order = {"queue": 0} | {f"Value #{ref}": i + 1 for i, (ref, _) in enumerate(columns)}
    names = {"queue": "Queue"} | {f"Value #{ref}": name for ref, name in columns}
    return [
        model.DataTransformerConfig(id_val="merge", options={}),
        model.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True},
                "indexByName": order,
                "renameByName": names,
            },
        ),
    ]


def finish(builder: dashboard.Dashboard) -> model.Dashboard:
    """Build, and number the panels 1..n in reading order (rows and their panels included)."""
    built = builder.build()
    next_id = 1
    for panel in built.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    return built
