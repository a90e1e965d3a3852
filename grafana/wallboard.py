"""The wallboard: a TV screen, one row of big tiles per queue, each coloured against that queue's target."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from grafana.common import (
    BUSY_STATES,
    GREEN,
    RED,
    TAG,
    UIDS,
    PanelBuilder,
    against_limits,
    against_target,
    agents_in,
    big_stat,
    finish,
    links,
    matchers,
    per_queue,
    query,
    queue_variable,
    steps,
    window_variable,
)

TILE_W, TILE_H, HEADER_H = 3, 5, 4


def _header() -> list[PanelBuilder]:
    """The centre as a whole: calls waiting, the oldest of them, SLA alerts firing."""
    waiting_now = per_queue("callcenter_calls_waiting")
    # No call waiting anywhere: no oldest-waiting series; show 0 s (a centre at rest is fine).
    oldest_now = f"{per_queue('callcenter_oldest_waiting_seconds')} or on (queue) {waiting_now} * 0"
    waiting = (
        against_limits(
            "Calls waiting (all queues)",
            "none",
            f"sum({waiting_now})",
            waiting_now,
            per_queue("callcenter_sla_max_calls_waiting"),
            decimals=0,
            description="Calls in queue now, all selected queues. Red while any queue has "
            "more waiting than its own limit (SLA_CONFIG max_calls_waiting).",
        )
        .height(HEADER_H)
        .span(8)
    )
    oldest = (
        against_limits(
            "Oldest waiting call",
            "s",
            f"max({oldest_now})",
            oldest_now,
            per_queue("callcenter_sla_max_oldest_waiting_seconds"),
            decimals=0,
            description="The longest any caller has been waiting now, all selected queues. "
            "Red while any queue's oldest call is past its own limit "
            "(SLA_CONFIG max_oldest_waiting_seconds).",
        )
        .height(HEADER_H)
        .span(8)
    )
    alerts = (
        big_stat("SLA alerts firing", "none", decimals=0)
        .description("Alerts firing now for the selected queues (Prometheus' ALERTS series).")
        .with_target(
            query(
                f"count(ALERTS{matchers(alertstate='firing', queue='$queue')}) or vector(0)",
                instant=True,
            )
        )
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, GREEN), (1, RED)))
        .height(HEADER_H)
        .span(8)
    )
    return [waiting, oldest, alerts]


def _tiles() -> list[PanelBuilder]:
    """One queue's tiles (the row repeats them per selected queue)."""
    tiles = [
        against_target(
            "Service level ($window)",
            "percentunit",
            per_queue("callcenter_service_level_ratio", window="$window"),
            per_queue("callcenter_sla_target_service_level_ratio"),
            higher_is_better=True,
            decimals=1,
            description="Answered within the queue's service-level threshold / offered. "
            "Green: at or above the queue's target; red: below it.",
        ),
        against_target(
            "ASA ($window)",
            "s",
            per_queue("callcenter_asa_seconds", window="$window"),
            per_queue("callcenter_sla_target_asa_seconds"),
            higher_is_better=False,
            decimals=0,
            description="Average speed of answer. Green: at or below the queue's target.",
        ),
        big_stat("AWT ($window)", "s", decimals=0)
        .description("Average queue wait of answered calls (no target of its own: neutral).")
        .with_target(query(per_queue("callcenter_awt_seconds", window="$window"), instant=True)),
        against_target(
            "Calls waiting",
            "none",
            per_queue("callcenter_calls_waiting"),
            per_queue("callcenter_sla_max_calls_waiting"),
            higher_is_better=False,
            decimals=0,
            description="Calls in queue now. Green: at or below the queue's limit.",
        ),
        against_target(
            "Oldest waiting",
            "s",
            # No call waiting: no oldest-waiting series; show 0 s (a queue at rest is fine).
            f"{per_queue('callcenter_oldest_waiting_seconds')}"
            f" or on (queue) {per_queue('callcenter_calls_waiting')} * 0",
            per_queue("callcenter_sla_max_oldest_waiting_seconds"),
            higher_is_better=False,
            decimals=0,
            description="Age of the oldest call now waiting. Green: at or below the queue's limit.",
        ),
        against_target(
            "Abandon rate ($window)",
            "percentunit",
            per_queue("callcenter_abandon_ratio", window="$window"),
            per_queue("callcenter_sla_target_abandon_ratio"),
            higher_is_better=False,
            decimals=1,
            description="(Abandoned - short abandoned) / offered. Green: at or below the queue's target.",
        ),
        big_stat("Agents", "none", decimals=0)
        .description(
            "Agents serving the queue now: available, busy (ringing, on a call or in after-call "
            "work) and not ready. An agent serving several queues counts in each."
        )
        .with_target(query(agents_in("available"), "A", "available", instant=True))
        .with_target(query(agents_in(*BUSY_STATES), "B", "busy", instant=True))
        .with_target(query(agents_in("not_ready"), "C", "not ready", instant=True))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME),
        big_stat("Expected wait", "s", decimals=0)
        .description(
            "What a caller joining now can expect to wait: 0 while agents available outnumber "
            "the calls waiting, else from the calls ahead, the agents answering and the last "
            "hour's AHT. Empty without agents answering or calls handled in the last hour."
        )
        .with_target(query(per_queue("callcenter_expected_wait_seconds"), instant=True)),
    ]
    return [tile.height(TILE_H).span(TILE_W) for tile in tiles]


def build() -> model.Dashboard:
    board = (
        dashboard.Dashboard("Call center wallboard")
        .uid(UIDS["wallboard"])
        .description(
            "For a TV (open with ?kiosk): one row per queue, each tile green when the queue "
            "meets its own SLA target (SLA_CONFIG, exported by the workers) and red when not."
        )
        .tags([TAG, "wallboard"])
        .time("now-15m", "now")
        .refresh("10s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.OFF)
        .timepicker(dashboard.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m"]))
        .links(links())
        .with_variable(queue_variable())
        .with_variable(window_variable("today"))
    )
    for panel in _header():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("$queue").repeat("queue"))
    for tile in _tiles():
        board = board.with_panel(tile)
    return finish(board)
