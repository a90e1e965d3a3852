"""The operations dashboard: the pipeline itself (throughput, rejects, lag, worker health, alerts)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from grafana.common import (
    GREEN,
    NEUTRAL,
    PROMETHEUS,
    RED,
    TAG,
    UIDS,
    PanelBuilder,
    finish,
    fixed,
    job_variable,
    last_value,
    links,
    query,
    stacked,
    steps,
    sum_rate,
    table_panel,
    trend,
)

JOB = {"job": "$job"}


def _small_stat(title: str, unit: str, *, description: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .text_mode(common.BigValueTextMode.AUTO)
        .wide_layout(True)
        .show_percent_change(False)
        .percent_change_color_mode(common.PercentChangeColorMode.STANDARD)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(last_value())
        .height(4)
        .span(4)
    )


def _status() -> list[PanelBuilder]:
    up = 'up{job=~"$job"}'
    return [
        _small_stat("Events/s", "ops", description="Valid call events processed per second.")
        .with_target(query(sum_rate("callcenter_events_total", **JOB), legend="events/s"))
        .color_scheme(fixed(NEUTRAL)),
        _small_stat("Rejected/s", "ops", description="Input records sent to the dead-letter topic.")
        .with_target(
            query(sum_rate("callcenter_events_rejected_total", **JOB), legend="rejected/s")
        )
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, GREEN), (0.001, RED))),
        _small_stat("Workers up", "none", description="Worker scrape targets answering now.")
        .with_target(query(f"sum({up})", legend="up"))
        .color_scheme(fixed(NEUTRAL)),
        _small_stat("Workers down", "none", description="Worker scrape targets not answering.")
        .with_target(query(f"count({up} == 0) or vector(0)", legend="down"))
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, GREEN), (1, RED))),
        _small_stat("Consumer lag", "short", description="Records not yet committed, all topics.")
        .with_target(query(f"sum({_lag_by_partition()})", legend="records"))
        .color_scheme(fixed(NEUTRAL)),
        _small_stat("Alerts firing", "none", description="All alerts firing now (ALERTS).")
        .with_target(query('count(ALERTS{alertstate="firing"}) or vector(0)', legend="alerts"))
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, GREEN), (1, RED))),
    ]


def _lag_by_partition() -> str:
    """Kafka records not committed yet, per topic and partition (Faust's sensor, on /metrics).

    `max by (topic, partition)` on both sides: after a rebalance the former owner keeps
    exporting its last (older) offsets until it restarts; the newest is the owner's.
    """
    end = 'max by (topic, partition) (faust_topic_partition_end_offset{job=~"$job"})'
    done = 'max by (topic, partition) (faust_topic_partition_offset_commited{job=~"$job"})'
    return f"clamp_min({end} - {done}, 0)"


def _throughput() -> list[PanelBuilder]:
    return [
        trend("Events/s by type", "ops")
        .with_target(
            query(sum_rate("callcenter_events_total", by=["type"], **JOB), legend="{{type}}")
        )
        .stacking(stacked())
        .min(0)
        .span(12)
        .height(8),
        trend(
            "Rejected and ignored events/s",
            "ops",
            description="Rejects by reason (to the dead-letter topic; late events are the "
            "reason `late`), duplicates ignored, calls evicted after CALL_TTL_HOURS of silence.",
        )
        .with_target(
            query(
                sum_rate("callcenter_events_rejected_total", by=["reason"], **JOB),
                "A",
                "{{reason}}",
            )
        )
        .with_target(query(sum_rate("callcenter_events_duplicate_total", **JOB), "B", "duplicate"))
        .with_target(query(sum_rate("callcenter_calls_evicted_total", **JOB), "C", "evicted"))
        .min(0)
        .span(12)
        .height(8),
    ]


def _lag() -> list[PanelBuilder]:
    return [
        trend("Consumer lag by topic", "short", description="Records not yet committed per topic.")
        .with_target(query(f"sum by (topic) ({_lag_by_partition()})", legend="{{topic}}"))
        .min(0)
        .span(8)
        .height(8),
        trend(
            "Stream time behind the wall clock",
            "s",
            description="Now minus each worker's stream time (the newest event time it has "
            "seen, moved on by the wall clock on a live feed): how far behind it processes.",
        )
        .with_target(
            query(
                'time() - max by (instance) (callcenter_stream_time_seconds{job=~"$job"} > 0)',
                legend="{{instance}}",
            )
        )
        .min(0)
        .span(8)
        .height(8),
        trend(
            "Kafka latency p99",
            "s",
            description="Faust's sensor: producer send (from send to the broker's ack) and "
            "offset commit, per worker. (Faust's per-event runtime is not shown: its sensor "
            "never sees an event finish on these streams.)",
        )
        .with_target(query(_p99("faust_producer_send_latency_seconds"), "A", "{{instance}} send"))
        .with_target(
            query(_p99("faust_consumer_commit_latency_seconds"), "B", "{{instance}} commit")
        )
        .min(0)
        .span(8)
        .height(8),
    ]


def _p99(histogram: str) -> str:
    return (
        "histogram_quantile(0.99, sum by (instance, le) "
        f'(rate({histogram}_bucket{{job=~"$job"}}[$__rate_interval])))'
    )


def _health() -> list[PanelBuilder]:
    workers = (
        _small_stat("Worker health", "none", description="1 = the scrape answered, 0 = down.")
        .with_target(query('up{job=~"$job"}', legend="{{instance}}", instant=True))
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, RED), (1, GREEN)))
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="DOWN", color=RED, index=0),
                        "1": model.ValueMappingResult(text="UP", color=GREEN, index=1),
                    }
                )
            ]
        )
        .span(8)
        .height(8)
    )
    alerts = (
        table_panel(
            "Alerts firing",
            description="Every alert Prometheus evaluates as firing now (also in Alertmanager).",
        )
        .with_target(query('ALERTS{alertstate="firing"}', instant=True, as_table=True))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "alertstate": True,
                    },
                    "indexByName": {"alertname": 0, "severity": 1, "queue": 2},
                    "renameByName": {},
                },
            )
        )
        .span(16)
        .height(8)
    )
    return [workers, alerts]


def build() -> model.Dashboard:
    board = (
        dashboard.Dashboard("Call center operations")
        .uid(UIDS["operations"])
        .description(
            "The pipeline: throughput, rejects, consumer lag, worker health, firing alerts."
        )
        .tags([TAG, "operations"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(links())
        .with_variable(job_variable())
    )
    for panel in _status():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Throughput"))
    for panel in _throughput():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Lag"))
    for panel in _lag():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Worker health and alerts"))
    for panel in _health():
        board = board.with_panel(panel)
    return finish(board)
