"""The data flow as Faust agents: call-events → calls → queue-updates → queues → queue-metrics.

The calls stage combines what crosses to the queues stage: each call's latest contribution per
queue, one record per queue, before each checkpoint and whenever its input buffer runs dry
(stream_app.domain.hop): Faust's cost is per record.

Both agents also read a tick topic co-partitioned with their input, so housekeeping (closing
intervals of idle queues on a live feed, retiring calls, retention) runs in stream context on
the partition it concerns (the Kafka Streams punctuator idea). concurrency=1 on both: they
write tables (faust-streaming #606).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import faust
import orjson
from faust.streams import Stream
from faust.types import TP

from stream_app.calls_processor import FLUSH_EVERY, CallsProcessor, CallsTopics, wall_ms
from stream_app.checkpoint import Checkpoint, stop_on_failure
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import Announcement, EventClock, SourceTimes
from stream_app.domain.hop import Update, entry_position
from stream_app.domain.positions import POSITION_KEY
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from stream_app.exporter import QueueCollector
from stream_app.input_guard import InputGuard, LogProbe
from stream_app.kafka_clients import client_options
from stream_app.outputs import Outputs
from stream_app.queue_registry import QueueRegistry
from stream_app.tables import BufferedStore, create_tables

if TYPE_CHECKING:
    from stream_app.app import Pipeline

SWEEP_EVERY_MS = 60_000  # wall-clock throttle on retention scans, per partition (and stream time)


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
    # Records to other topics and the tables' changelogs go through the worker's own producer,
    # the outputs flushed before the state that relies on them (stream_app.outputs); ticks alone
    # use Faust's.
    outputs = Outputs(client_options(settings))

    calls_table, queues_table = create_tables(
        app,
        calls_partitions=pipeline.partitions[topic("call-events")],
        queue_partitions=pipeline.partitions[topic("queue-updates")],
    )
    clock = EventClock()  # the worker's: its calls events, and what calls partitions announce

    def send_changelog(changelog: str, partition: int, key: bytes, value: bytes | None) -> Any:
        return outputs.send_acked(changelog, value, key=key, partition=partition)

    # A flush ends with the input position, which vouches for everything before it.
    calls_store = BufferedStore(
        calls_table, flush_rank=lambda key: int(key == POSITION_KEY), send=send_changelog
    )
    queues_store = BufferedStore(
        queues_table,
        flush_rank=lambda key: 9 if key == POSITION_KEY else QueueStage.flush_rank(key),
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
    # Records processed but not acked yet: acked once their outputs and state are durable, so a
    # crash redoes exactly the records whose effects it may have lost (stream_app.checkpoint).
    # Faust's own flush before a commit gives up after 0.1 s and its buffer hands changelog
    # records to the client in a background task, so neither is trusted.
    queues_checkpoint = Checkpoint(outputs, queues_store, queues_guard, every=FLUSH_EVERY)

    collector = QueueCollector(
        app, queues, lambda: stream_now(), pipeline.sla, topic("queue-updates")
    )
    metrics.registry.register(collector)
    # Sweeps by the wall clock and by stream time: a fast replay keeps no more than the retention
    # plus a stream period (stream_app.domain.sweeps).
    queues_sweeps = SweepSchedule(
        wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(windows.retention_ms)
    )

    # Per queue partition: the clock each calls partition last announced (with its records and
    # watermarks). Their minimum bounds what a calls partition can still send, so sweeps below
    # it never delete a bucket a record in flight still needs; a partition still reading a
    # backlog holds closing back (stream_app.domain.clock).
    calls_partitions = pipeline.partitions[topic("call-events")]
    source_times: dict[int, SourceTimes] = {}

    def queues_stream_time() -> float | None:
        """How far the queues stage got: the least low watermark of its partitions (seconds)."""
        lows = [low for t in source_times.values() if (low := t.low_watermark()) is not None]
        return min(lows) / 1000 if lows else None

    def calls_partitions_behind() -> dict[int, list[int]]:
        """Per queue partition, the calls partitions it last heard were reading a backlog:
        they hold its closing back (a partition stuck there shows here)."""
        return {
            queue_partition: sorted(a.source for a in t.heard.values() if a.behind)
            for queue_partition, t in sorted(source_times.items())
        }

    pipeline.probes["queues_stream_time_s"] = queues_stream_time
    pipeline.probes["calls_partitions_behind"] = calls_partitions_behind

    def stream_now() -> int | None:
        """The worker's stream time: it moves with the wall clock only while no calls
        partition it hears from is reading a backlog."""
        behind = any(a.behind for t in source_times.values() for a in t.heard.values())
        now = clock.now(wall_ms(), caught_up=not behind)
        if now is not None:
            metrics.stream_time.set(now / 1000)
        return now

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
        ),
        highwater=lambda partition: app.consumer.highwater(
            TP(call_events.get_topic_name(), partition)
        ),
        sweeps=SweepSchedule(
            wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(settings.retention_ms)
        ),
    )

    @app.agent(events_in, concurrency=1)
    @stop_on_failure("calls")
    async def process_calls(stream: faust.StreamT[bytes]) -> None:
        idle = cast(Any, stream).channel.queue.empty  # the stage's input buffer holds nothing
        async for event in cast(Stream[bytes], stream).noack().events():
            tick = event.message.topic != call_events.get_topic_name()
            await calls_processor.on_record(event, tick=tick, idle=idle)

    seen_partitions: set[int] = set()
    settled_at: dict[int, int] = {}

    async def close(queue: str, now: int) -> None:
        for key, record in queues.close_due(queue, now):
            await outputs.send(topic("queue-metrics"), orjson.dumps(record), key=key.encode())

    async def queue_tick(partition: int) -> None:
        now = stream_now()
        if now is None:
            return
        # Close by the stream time of the previous tick, not this instant's: records fetched
        # from other partitions before stream time jumped get a tick's time to be applied, so
        # an interval is not published early and then revised for no late event at all.
        settled = settled_at.get(partition)
        settled_at[partition] = now
        if settled is not None:
            times = source_times.get(partition)
            closing = None if times is None else times.closing_time(settled)
            if closing is not None:
                for queue in collector.queues_on(partition):
                    await close(queue, closing)
        sweep_queues(partition)

    def sweep_queues(partition: int) -> None:
        """Retention of one queue partition when due (from its ticks and its records)."""
        times = source_times.get(partition)
        low_watermark = None if times is None else times.low_watermark()
        if low_watermark is not None and queues_sweeps.due(partition, low_watermark, wall_ms()):
            queues.sweep(low_watermark)

    async def handle_update(message: Any) -> None:
        partition = message.partition
        update = Update.from_json(orjson.loads(message.value))
        if update.stream_time is not None:
            clock.observe(update.stream_time, update.seen_at or wall_ms())
        times = source_times.get(partition)
        if times is None:
            times = source_times[partition] = SourceTimes(calls_partitions)
        times.hear(Announcement(update.source, update.stream_time, update.behind))
        queue = update.queue
        if queue is None:
            return  # a watermark
        collector.owns(queue, partition)
        for index, (call_id, contribution) in enumerate(update.entries):
            applied = queues.apply(
                queue, call_id, contribution, entry_position(message.offset, index)
            )
            for speed_ms in applied.new_answer_speeds_ms:
                metrics.answer_speed.labels(queue=queue).observe(speed_ms / 1000)

    @app.agent(updates_in, concurrency=1)
    @stop_on_failure("queues")
    async def process_queues(stream: faust.StreamT[bytes]) -> None:
        async for event in cast(Stream[bytes], stream).noack().events():
            message = event.message
            partition = message.partition
            if partition not in seen_partitions:
                # First record since this partition was assigned: learn its queues, and re-send
                # what it published (a crash may have lost a send whose state change was kept).
                seen_partitions.add(partition)
                for queue in queues.queues():
                    collector.owns(queue, partition)
                for key, record in queues.published():
                    await outputs.send(
                        topic("queue-metrics"), orjson.dumps(record), key=key.encode()
                    )
            tick = message.topic != queue_updates.get_topic_name()
            if tick:
                await queues_guard.watch(partition)
                await queue_tick(partition)
            elif not await queues_guard.process(message, handle_update):
                continue
            else:
                sweep_queues(partition)
            await queues_checkpoint.hold(partition, event, now=tick)

    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == call_events.get_topic_name():
                calls_processor.revoked(tp.partition)
            if tp.topic == queue_updates.get_topic_name():
                queues_store.drop(tp.partition)
                queues_guard.forget(tp.partition)
                queues_checkpoint.drop(tp.partition)
                seen_partitions.discard(tp.partition)
                for queue in collector.queues_on(tp.partition):  # its new owner exports it now
                    with contextlib.suppress(KeyError):
                        metrics.answer_speed.remove(queue)
                collector.disown(tp.partition)
                source_times.pop(tp.partition, None)

    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        for tp in assigned:
            if tp.topic == call_events.get_topic_name():
                calls_processor.assigned(tp.partition)
            if tp.topic == queue_updates.get_topic_name():
                queues_store.drop(tp.partition)
                queues_guard.forget(tp.partition)
            if tp.topic in (queue_updates.get_topic_name(), queue_ticks.get_topic_name()):
                seen_partitions.discard(tp.partition)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    @app.timer(interval=1.0, on_leader=True)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """Ticks into every partition of both stages, so idle partitions still close and sweep."""
        for ticks, name in ((calls_ticks, "call-events"), (queue_ticks, "queue-updates")):
            for partition in range(pipeline.partitions[topic(name)]):
                await ticks.send(key=b"tick", value=b"", partition=partition)
