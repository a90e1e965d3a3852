"""The supervisor dashboard: trends per window, today per queue, the answer-speed distribution."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, gauge, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from grafana.common import (
    ANSWERING_STATES,
    BUSY_STATES,
    NEUTRAL,
    PROMETHEUS,
    TAG,
    UIDS,
    PanelBuilder,
    agents_in,
    dashed_targets,
    finish,
    last_value,
    links,
    matchers,
    merged_table,
    per_queue,
    query,
    queue_variable,
    stacked,
    steps,
    table_panel,
    trend,
    window_variable,
)

# Today's figures per queue: (refId, column name, metric, window or None, unit).
TODAY_COLUMNS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("offered", "Offered", "callcenter_calls_offered", "today", "none"),
    ("answered", "Answered", "callcenter_calls_answered", "today", "none"),
    ("abandoned", "Abandoned", "callcenter_calls_abandoned", "today", "none"),
    ("flowed", "Flowed out", "callcenter_calls_flowed_out", "today", "none"),
    ("sl", "Service level", "callcenter_service_level_ratio", "today", "percentunit"),
    ("sl_target", "SL target", "callcenter_sla_target_service_level_ratio", None, "percentunit"),
    ("asa", "ASA", "callcenter_asa_seconds", "today", "s"),
    ("asa_target", "ASA target", "callcenter_sla_target_asa_seconds", None, "s"),
    ("awt", "AWT", "callcenter_awt_seconds", "today", "s"),
    ("aht", "AHT", "callcenter_aht_seconds", "today", "s"),
    ("abandon", "Abandon rate", "callcenter_abandon_ratio", "today", "percentunit"),
    (
        "abandon_target",
        "Abandon target",
        "callcenter_sla_target_abandon_ratio",
        None,
        "percentunit",
    ),
    ("longest", "Longest wait", "callcenter_longest_wait_seconds", "today", "s"),
    ("waiting", "Waiting now", "callcenter_calls_waiting", None, "none"),
)

ANSWER_SPEED = "callcenter_answer_speed_seconds"


def _with_target(
    title: str, unit: str, metric: str, target_metric: str, description: str
) -> timeseries.Panel:
    """A figure per queue over time, each queue's target beside it as a dashed line."""
    panel = (
        trend(title, unit, description=description)
        .with_target(query(per_queue(metric, window="$window"), "A", "{{queue}}"))
        .with_target(query(per_queue(target_metric), "B", "{{queue}} target"))
    )
    return dashed_targets(panel)


def _trends() -> list[PanelBuilder]:
    return [
        _with_target(
            "Service level ($window)",
            "percentunit",
            "callcenter_service_level_ratio",
            "callcenter_sla_target_service_level_ratio",
            "Answered within the service-level threshold / offered; dashed: the queue's target.",
        )
        .min(0)
        .max(1)
        .span(12)
        .height(8),
        _with_target(
            "ASA ($window)",
            "s",
            "callcenter_asa_seconds",
            "callcenter_sla_target_asa_seconds",
            "Average speed of answer; dashed: the queue's target.",
        )
        .min(0)
        .span(12)
        .height(8),
        _with_target(
            "Abandon rate ($window)",
            "percentunit",
            "callcenter_abandon_ratio",
            "callcenter_sla_target_abandon_ratio",
            "(Abandoned - short abandoned) / offered; dashed: the queue's target.",
        )
        .min(0)
        .span(12)
        .height(8),
        trend("Calls offered and abandoned ($window)", "none")
        .with_target(
            query(per_queue("callcenter_calls_offered", window="$window"), "A", "{{queue}} offered")
        )
        .with_target(
            query(
                per_queue("callcenter_calls_abandoned", window="$window"),
                "B",
                "{{queue}} abandoned",
            )
        )
        .min(0)
        .span(12)
        .height(8),
        # Two panels, not one: AHT (minutes) on AWT's axis would flatten AWT (seconds).
        trend("AWT ($window)", "s", description="Average queue wait of answered calls.")
        .with_target(query(per_queue("callcenter_awt_seconds", window="$window"), "A", "{{queue}}"))
        .min(0)
        .span(12)
        .height(8),
        trend(
            "AHT ($window)",
            "s",
            description="Average handle time: answer to the end of after-call work.",
        )
        .with_target(query(per_queue("callcenter_aht_seconds", window="$window"), "A", "{{queue}}"))
        .min(0)
        .span(12)
        .height(8),
        trend("Calls waiting and oldest waiting (now)", "none")
        .with_target(query(per_queue("callcenter_calls_waiting"), "A", "{{queue}} waiting"))
        .with_target(
            query(per_queue("callcenter_oldest_waiting_seconds"), "B", "{{queue}} oldest (s)")
        )
        .override_by_regexp(
            r".* oldest \(s\)$",
            [
                model.DynamicConfigValue(id_val="unit", value="s"),
                model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        )
        .min(0)
        .span(24)
        .height(8),
    ]


def _staffing() -> list[PanelBuilder]:
    occupancy = (
        _with_target(
            "Occupancy ($window)",
            "percentunit",
            "callcenter_occupancy_ratio",
            "callcenter_sla_max_occupancy_ratio",
            "Busy time / (busy + available time) of the queue's agents; not-ready time "
            "excluded. Dashed: the queue's limit (SLA_CONFIG max_occupancy).",
        )
        .min(0)
        .max(1)
        .span(12)
        .height(8)
    )
    staffed = dashed_targets(
        trend(
            "Agents answering against required (now)",
            "none",
            description="Agents available or busy per queue, and the fewest Erlang C says "
            "meet the queue's service-level target with the last 15 minutes' calls and the "
            "last hour's AHT (dashed).",
        )
        .with_target(query(agents_in(*ANSWERING_STATES), "A", "{{queue}}"))
        .with_target(query(per_queue("callcenter_agents_required"), "B", "{{queue}} required")),
        suffix="required",
    )
    by_state = trend(
        "Agents by state (now, selected queues)",
        "none",
        description="Agents serving the selected queues per state; one serving two counts twice.",
    ).stacking(stacked())
    for ref, state in zip("ABCDE", ("available", *BUSY_STATES, "not_ready"), strict=True):
        by_state = by_state.with_target(
            query(f"sum({agents_in(state)})", ref, state.replace("_", " "))
        )
    return [occupancy, staffed.min(0).span(12).height(8), by_state.min(0).span(24).height(8)]


def _today_table() -> PanelBuilder:
    panel = table_panel(
        "Today per queue",
        description="Today's figures (the workers' `today` window) and the queues' targets.",
    )
    for ref, _, metric, window, _ in TODAY_COLUMNS:
        panel = panel.with_target(
            query(per_queue(metric, window=window), ref, instant=True, as_table=True)
        )
    for transformation in merged_table([(ref, name) for ref, name, *_ in TODAY_COLUMNS]):
        panel = panel.with_transformation(transformation)
    for _, name, _, _, unit in TODAY_COLUMNS:
        properties = [model.DynamicConfigValue(id_val="unit", value=unit)]
        if unit == "percentunit":
            properties.append(model.DynamicConfigValue(id_val="decimals", value=1))
        elif unit == "s":
            properties.append(model.DynamicConfigValue(id_val="decimals", value=0))
        panel = panel.override_by_name(name, properties)
    return panel.span(24).height(9)


def _answer_speed() -> list[PanelBuilder]:
    buckets = f"{ANSWER_SPEED}_bucket{matchers(queue='$queue')}"
    quantiles = trend(
        "Answer speed quantiles",
        "s",
        description="From the answer-speed histogram over all workers (counters: summed). "
        "Each bucket bound is a standard bound or a queue's service-level threshold.",
    ).min(0)
    for i, q in enumerate((0.5, 0.8, 0.95)):
        quantiles = quantiles.with_target(
            query(
                f"histogram_quantile({q}, sum by (queue, le) (rate({buckets}[$__rate_interval])))",
                "ABC"[i],
                f"{{{{queue}}}} p{round(q * 100)}",
            )
        )
    share = (
        gauge.Panel()
        .title("Answered calls: share answered within … (time range)")
        .description(
            "Of the calls answered in the dashboard's time range (selected queues), the share "
            "whose answer speed was at most each bucket bound: the cumulative distribution. "
            "Answered calls only: abandoned calls are not counted, so this is not the service "
            "level (answered within the threshold / offered; see the Service level panels)."
        )
        .datasource(PROMETHEUS)
        .unit("percentunit")
        .decimals(0)
        .min(0)
        .max(1)
        .with_target(
            query(
                # sort(): by value, which for a cumulative distribution is by bucket bound.
                f'sort(sum by (le) (increase({ANSWER_SPEED}_bucket{{queue=~"$queue", le!="+Inf"}}[$__range]))'
                f" / ignoring (le) group_left"
                f' sum(increase({ANSWER_SPEED}_count{{queue=~"$queue"}}[$__range])))',
                "A",
                "≤ {{le}} s",
                instant=True,
            )
        )
        .show_threshold_labels(False)
        .show_threshold_markers(False)
        .sizing(common.BarGaugeSizing.AUTO)
        .min_viz_width(75)
        .min_viz_height(75)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(last_value())
        # Neutral: a share within one bound is no target met or missed.
        .thresholds(steps((None, NEUTRAL)))
    )
    return [quantiles.span(12).height(9), share.span(12).height(9)]


def build() -> model.Dashboard:
    board = (
        dashboard.Dashboard("Call center supervisor")
        .uid(UIDS["supervisor"])
        .description(
            "Per-queue trends against targets, today's figures per queue, answer-speed distribution."
        )
        .tags([TAG, "supervisor"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(links())
        .with_variable(queue_variable())
        .with_variable(window_variable("15m"))
        .with_row(dashboard.Row("Trends ($window window)"))
    )
    for panel in _trends():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Agents and staffing"))
    for panel in _staffing():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Today per queue")).with_panel(_today_table())
    board = board.with_row(dashboard.Row("Answer speed"))
    for panel in _answer_speed():
        board = board.with_panel(panel)
    return finish(board)
