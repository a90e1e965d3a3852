"""The data flow as Faust agents: call-events → calls → queue-updates → queues → queue-metrics,
and agent-events (+ agent-updates from calls) → agents → queue-updates → queues.

The calls stage combines what crosses to the queues stage: each call's latest contribution per
queue, one record per queue, before each checkpoint and, on a live feed, whenever its input
buffer runs dry (stream_app.domain.hop): Faust's cost is per record.

Both agents also read a tick topic co-partitioned with their input, so housekeeping (closing
intervals of idle queues on a live feed, retiring calls, retention) runs in stream context on
the partition it concerns (the Kafka Streams punctuator idea). concurrency=1 on both: they
write tables (faust-streaming #606).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import faust
from faust.streams import Stream
from faust.types import TP

from stream_app import fetch_loop
from stream_app.agents_processor import UPDATES_POSITION_KEY, AgentsProcessor, AgentsTopics
from stream_app.calls_processor import CallsProcessor, CallsTopics
from stream_app.checkpoint import stop_on_failure
from stream_app.domain.agents_stage import AgentsStage
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import EventClock
from stream_app.domain.positions import POSITION_KEY
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from stream_app.exporter import QueueCollector
from stream_app.input_guard import InputGuard, LogProbe, end_offset
from stream_app.kafka_clients import client_options
from stream_app.live_state import LivePublisher
from stream_app.outputs import Outputs
from stream_app.queue_registry import QueueRegistry
from stream_app.queues_processor import QueuesProcessor
from stream_app.recovery_watch import RecoveryWatch
from stream_app.settings import longest_day_ms
from stream_app.tables import BufferedStore, Records, changelog_table, create_tables

if TYPE_CHECKING:
    from stream_app.app import Pipeline

SWEEP_EVERY_MS = 60_000  # wall-clock throttle on retention scans, per partition (and stream time)


def _busy() -> bool:
    """More records of the batch in hand follow: the input buffer is not empty yet."""
    return False


def sweep_schedule(retention_ms: int) -> SweepSchedule:
    """Each stage's retention scans: once a minute of wall clock, or per period of stream."""
    return SweepSchedule(
        wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(retention_ms)
    )


def register(pipeline: Pipeline) -> None:
    app, settings, metrics = pipeline.app, pipeline.settings, pipeline.metrics
    topic = settings.topic
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }

    events_in = app.topic(topic("call-events"), topic("calls-ticks"), **raw)
    updates_in = app.topic(topic("queue-updates"), topic("queue-ticks"), **raw)
    call_events = app.topic(topic("call-events"), **raw)
    calls_ticks = app.topic(topic("calls-ticks"), **raw)
    queue_ticks = app.topic(topic("queue-ticks"), **raw)
    queue_updates = app.topic(topic("queue-updates"), **raw)
    agents_in = app.topic(
        topic("agent-events"), topic("agent-updates"), topic("agent-ticks"), **raw
    )
    agent_events = app.topic(topic("agent-events"), **raw)
    agent_ticks = app.topic(topic("agent-ticks"), **raw)
    # Records to other topics and the tables' changelogs go through the worker's own producer,
    # the outputs flushed before the state that relies on them (stream_app.outputs); ticks alone
    # use Faust's.
    outputs = Outputs(client_options(settings))

    calls_table, queues_table = create_tables(
        app,
        calls_partitions=pipeline.partitions[topic("call-events")],
        queue_partitions=pipeline.partitions[topic("queue-updates")],
    )
    agents_table = changelog_table(
        app, "agents", pipeline.partitions[topic("agent-events")], "agent activity, by agent_id"
    )
    clock = EventClock()  # the worker's: its calls events, and what calls partitions announce

    def send_changelog(changelog: str, partition: int, records: Records) -> Any:
        return outputs.send_all_acked(changelog, records, partition=partition)

    # A flush ends with the input position, which vouches for everything before it.
    calls_store = BufferedStore(
        calls_table, flush_rank=lambda key: int(key == POSITION_KEY), send=send_changelog
    )
    queues_store = BufferedStore(
        queues_table,
        flush_rank=lambda key: 9 if key == POSITION_KEY else QueueStage.flush_rank(key),
        send=send_changelog,
    )
    agents_store = BufferedStore(
        agents_table,
        flush_rank=lambda key: int(key in (POSITION_KEY, UPDATES_POSITION_KEY)),
        send=send_changelog,
    )
    probe = LogProbe(settings)
    calls_guard = InputGuard(app, calls_store, topic("call-events"), probe)
    queues_guard = InputGuard(app, queues_store, topic("queue-updates"), probe)
    registry = QueueRegistry(
        topic("queue-registry"),
        settings.max_queues,
        client_options(settings),
    )
    calls = CallsStage(
        calls_store,
        pipeline.sla,
        clock,
        max_event_bytes=settings.max_event_bytes,
        retention_ms=settings.retention_ms,
        call_ttl_ms=settings.call_ttl_ms,
        admit_queue=registry.admit,
    )
    windows = WindowConfig(
        interval_ms=settings.interval_ms,
        grace_ms=settings.grace_ms,
        retention_ms=settings.retention_ms + settings.interval_ms,
        zone=settings.zone,
    )
    queues = QueueStage(queues_store, windows, pipeline.sla)
    collector = QueueCollector(
        app,
        queues,
        lambda: queues_processor.stream_now(),
        pipeline.sla,
        topic("queue-updates"),
        reading=queues_store.reading,
    )
    metrics.registry.register(collector)
    live = LivePublisher(queues, pipeline.sla, outputs, topic("queue-live"))  # wallboards' feed
    # Records are acked once their outputs and state are durable, so a crash redoes exactly the
    # records whose effects it may have lost (stream_app.checkpoint). Faust's own flush before
    # a commit gives up after 0.1 s and its buffer hands changelog records to the client in a
    # background task, so neither is trusted. Sweeps by the wall clock and by stream time: a
    # fast replay keeps no more than the retention plus a stream period (domain.sweeps).
    queues_processor = QueuesProcessor(
        queues,
        queues_store,
        outputs,
        queues_guard,
        collector,
        metrics,
        clock,
        metrics_topic=topic("queue-metrics"),
        calls_partitions=pipeline.partitions[topic("call-events")],
        agents_partitions=pipeline.partitions[topic("agent-updates")],
        sweeps=sweep_schedule(windows.retention_ms),
        live=live,
    )
    pipeline.probes["queues_stream_time_s"] = queues_processor.stream_time_s
    pipeline.probes["calls_partitions_behind"] = queues_processor.calls_partitions_behind

    calls_processor = CallsProcessor(
        calls,
        calls_store,
        outputs,
        calls_guard,
        registry,
        metrics,
        CallsTopics(
            events=topic("call-events"),
            dead_letter=topic("call-events-dlq"),
            outcomes=topic("call-outcomes"),
            updates=topic("queue-updates"),
            registry=topic("queue-registry"),
            update_partitions=pipeline.partitions[topic("queue-updates")],
            agent_updates=topic("agent-updates"),
            agent_partitions=pipeline.partitions[topic("agent-updates")],
        ),
        highwater=lambda partition: end_offset(
            app.consumer, TP(call_events.get_topic_name(), partition)
        ),
        sweeps=sweep_schedule(settings.retention_ms),
    )

    agents_guards = (
        InputGuard(app, agents_store, topic("agent-events"), probe),
        InputGuard(
            app, agents_store, topic("agent-updates"), probe, position_key=UPDATES_POSITION_KEY
        ),
    )

    def agents_caught_up(partition: int) -> bool:
        """Both inputs of an agents partition read to their ends (as the consumer knows)."""
        return all(guard.read_to_end(partition) for guard in agents_guards)

    agents_processor = AgentsProcessor(
        AgentsStage(
            agents_store,
            max_event_bytes=settings.max_event_bytes,
            retention_ms=settings.retention_ms,
            # A late call event revises a queue's interval up to the retention back: its agent
            # figures need the agents' timelines that far too.
            horizon_ms=max(
                settings.retention_ms,
                longest_day_ms(settings.zone) + 2 * settings.interval_ms + settings.grace_ms,
            ),
            interval_ms=settings.interval_ms,
            grace_ms=settings.grace_ms,
        ),
        agents_store,
        outputs,
        *agents_guards,
        metrics,
        AgentsTopics(
            events=topic("agent-events"),
            dead_letter=topic("agent-events-dlq"),
            updates=topic("agent-updates"),
            queue_updates=topic("queue-updates"),
            status=topic("agent-status"),
            metrics=topic("agent-metrics"),
            queue_partitions=pipeline.partitions[topic("queue-updates")],
            calls_partitions=pipeline.partitions[topic("call-events")],
        ),
        sweeps=sweep_schedule(settings.retention_ms),
        worker_clock=clock,
        caught_up=agents_caught_up,
    )

    # Each poll's records of a partition of these come as one event (stream_app.fetch_loop);
    # ticks one by one.
    for batched in ("call-events", "queue-updates", "agent-events", "agent-updates"):
        fetch_loop.batch(app, topic(batched))

    @app.agent(events_in, concurrency=1)
    @stop_on_failure("calls")
    async def process_calls(stream: faust.StreamT[bytes]) -> None:
        empty = cast(Any, stream).channel.queue.empty  # the stage's input buffer holds nothing
        async for event in cast(Stream[bytes], stream).noack().events():
            for record, last in fetch_loop.records(event, app):
                tick = record.message.topic != call_events.get_topic_name()
                await calls_processor.on_record(record, tick=tick, idle=empty if last else _busy)

    @app.agent(updates_in, concurrency=1)
    @stop_on_failure("queues")
    async def process_queues(stream: faust.StreamT[bytes]) -> None:
        async for event in cast(Stream[bytes], stream).noack().events():
            for record, _ in fetch_loop.records(event, app):
                tick = record.message.topic != queue_updates.get_topic_name()
                await queues_processor.on_record(record, tick=tick)

    @app.agent(agents_in, concurrency=1)
    @stop_on_failure("agents")
    async def process_agents(stream: faust.StreamT[bytes]) -> None:
        empty = cast(Any, stream).channel.queue.empty
        async for event in cast(Stream[bytes], stream).noack().events():
            for record, last in fetch_loop.records(event, app):
                await agents_processor.on_record(record, idle=empty if last else _busy)

    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == call_events.get_topic_name():
                calls_processor.revoked(tp.partition)
            if tp.topic == queue_updates.get_topic_name():
                queues_processor.revoked(tp.partition)
            if tp.topic == agent_events.get_topic_name():
                agents_processor.revoked(tp.partition)

    recovery_watch = RecoveryWatch(app)

    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        recovery_watch.start()
        for tp in assigned:
            if tp.topic == call_events.get_topic_name():
                calls_processor.assigned(tp.partition)
            if tp.topic == queue_updates.get_topic_name():
                queues_processor.assigned(tp.partition)
            if tp.topic == queue_ticks.get_topic_name():
                queues_processor.assigned_ticks(tp.partition)
            if tp.topic == agent_events.get_topic_name():
                agents_processor.assigned(tp.partition)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    @app.timer(interval=1.0, on_leader=True)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """Ticks into every partition of both stages, so idle partitions still close and sweep."""
        for ticks, name in (
            (calls_ticks, "call-events"),
            (queue_ticks, "queue-updates"),
            (agent_ticks, "agent-events"),
        ):
            for partition in range(pipeline.partitions[topic(name)]):
                await ticks.send(key=b"tick", value=b"", partition=partition)
