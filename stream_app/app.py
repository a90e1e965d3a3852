"""The Faust application: configuration, the web endpoints, and the stages wired onto it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from aiohttp import web
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app import diagnostics, fetch_loop
from stream_app.domain.sla import SlaConfig
from stream_app.kafka_clients import faust_broker_options
from stream_app.metrics import (
    FaustRelay,
    Metrics,
    PublishingRegistry,
    TalliedMonitor,
    look_up_labels_once,
    stream_label_once,
)
from stream_app.settings import Settings

FETCH_BYTES_PER_PARTITION = 64 * 1024  # about 200 call events


@dataclass
class Pipeline:
    """Everything a worker holds: the app, its settings and the metrics it exports."""

    app: faust.App
    settings: Settings
    sla: SlaConfig
    metrics: Metrics
    partitions: dict[str, int]
    # Figures the stages report on /debug/state (name → how to read it now).
    probes: dict[str, Callable[[], Any]] = field(default_factory=dict)


def create_app(settings: Settings, sla: SlaConfig, partitions: dict[str, int]) -> Pipeline:
    app = faust.App(
        settings.faust_id,
        **faust_broker_options(settings),  # broker and credentials (KAFKA_SECURITY_PROTOCOL…)
        store="rocksdb://",  # backed by rocksdict (faust-streaming picks it when installed)
        datadir=str(settings.data_dir),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        # Records are acked once their table writes are flushed (stream_app.checkpoint); a rebalance
        # must not wait for acks of a partition that will get no more records here.
        stream_wait_empty=False,
        # A worker that died is noticed within 6 s (not Faust's 60 s; the broker's least by
        # default), so its partitions move on, or it rejoins after a crash, that much sooner.
        # The heartbeats come from the consumer's own thread: a busy stage does not miss them.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=2.0,
        # Throughput (bench/RESULTS.md): deeper stream buffers, commits by time rather than
        # count, and sends of consecutive records sharing a request. Fetches stay small: Faust
        # hands everything a poll returned to the stages before it polls again, and waits
        # whenever a stage's buffer is full, so a poll holding a partition's whole backlog
        # starved every other input (the queues stage, the ticks) until the calls stage had
        # worked through it; with small polls its flow control pauses the busy partitions.
        stream_buffer_maxsize=32768,
        broker_commit_every=100_000,
        # A commit follows each checkpoint's acks (stream_app.fetch_loop.Consumer.ack); this is
        # the backstop for acks a commit in progress left out (Faust: 2.8 s).
        broker_commit_interval=1.0,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        producer_linger_ms=20,
        # A topic the broker did not show yet when the group formed (Faust creates its
        # changelogs just before joining) is noticed, and assigned, within 30 s, not 5 minutes.
        consumer_metadata_max_age_ms=30_000,
        autodiscover=False,
    )
    fetch_loop.install(app)  # records reach the stages without four tasks each
    thresholds = [sla.default.service_level_seconds] + [
        q.service_level_seconds for q in sla.queues.values()
    ]
    metrics = Metrics.create(thresholds)
    pipeline = Pipeline(app=app, settings=settings, sla=sla, metrics=metrics, partitions=partitions)
    if settings.faust_metrics:
        # Faust's own sensor on a dedicated registry, relayed under the faust_ prefix on
        # /metrics with its millisecond histograms in seconds (so promtool's lint passes).
        # Counted per record in plain integers, published to its metrics at each scrape
        # (TalliedMonitor); FAUST_METRICS=false leaves Faust's plain monitor.
        faust_registry = PublishingRegistry(auto_describe=True)
        setup_prometheus_sensors(
            app, pattern="/metrics/faust", registry=faust_registry, name_prefix="faust"
        )
        monitor = TalliedMonitor(look_up_labels_once(cast(Any, app.monitor)._metrics))
        cast(Any, monitor)._stream_label = stream_label_once(monitor._stream_label)
        app.monitor = monitor
        faust_registry.before_collect = monitor.publish
        metrics.registry.register(FaustRelay(faust_registry))
    _add_pages(pipeline)

    @app.task  # type: ignore[untyped-decorator]
    async def answer_sigusr2() -> None:
        diagnostics.install(app)

    from stream_app import (
        agents,
    )  # the stages need the pipeline; import late to keep this module thin

    agents.register(pipeline)
    return pipeline


def _add_pages(pipeline: Pipeline) -> None:
    app = pipeline.app

    @app.page("/metrics")
    class Exposition(View):  # type: ignore[misc]
        async def get(self, request: Request) -> Response:
            body = generate_latest(pipeline.metrics.registry)
            response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
            return cast(Response, response)

    @app.page("/health")
    class Health(View):  # type: ignore[misc]
        async def get(self, request: Request) -> Response:
            body: dict[str, Any] = {
                "status": "ok",
                "app_id": pipeline.settings.faust_id,
                "assigned_partitions": len(app.assignor.assigned_actives()),
                "rebalancing": bool(app.rebalancing),
            }
            return self.json(body)

    from stream_app.wallboard.pages import mount

    mount(pipeline)  # GET /wallboard, /api/queues, /api/live

    @app.page("/debug/state")
    class State(View):  # type: ignore[misc]
        async def get(self, request: Request) -> Response:
            return self.json(state_report(pipeline))


def state_report(pipeline: Pipeline) -> dict[str, Any]:
    """What this worker holds, for the soak benchmark (bench/soak.py): the stream time, each
    table's keys counted on disk (a full scan of the owned partitions: it blocks the worker for
    as long, so it is for debugging, not for scraping) and RocksDB's own memory figures."""
    stream_time = next(iter(pipeline.metrics.stream_time.collect())).samples[0].value
    tables: dict[str, dict[str, int]] = {}
    for name, table in pipeline.app.tables.items():
        figures = dict.fromkeys(("partitions", "keys", *ROCKSDB_PROPERTIES.values()), 0)
        for db in cast(Any, table).data._dbs.values():
            figures["partitions"] += 1
            figures["keys"] += sum(1 for _ in db.keys())  # noqa: SIM118 (an Rdict in raw mode cannot iterate itself)
            for prop, figure in ROCKSDB_PROPERTIES.items():
                figures[figure] += db.property_int_value(prop) or 0
        tables[name] = figures
    return {
        "stream_time_s": stream_time,
        **{name: probe() for name, probe in pipeline.probes.items()},
        "tables": tables,
        # Not gc.get_objects(): it would hand out tuples that the consumer thread is still building.
        "python_blocks": sys.getallocatedblocks(),
    }


ROCKSDB_PROPERTIES = {
    "rocksdb.cur-size-all-mem-tables": "memtable_bytes",
    "rocksdb.block-cache-usage": "block_cache_bytes",
    "rocksdb.estimate-table-readers-mem": "table_readers_bytes",
    "rocksdb.total-sst-files-size": "sst_bytes",
}
