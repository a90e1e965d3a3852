"""The data flow as Faust agents: call-events → calls → queue-updates → queues → queue-metrics.

Both agents also read a tick topic co-partitioned with their input, so housekeeping (closing
intervals of idle queues on a live feed, retiring calls, retention) runs in stream context on
the partition it concerns (the Kafka Streams punctuator idea). concurrency=1 on both: they
write tables (faust-streaming #606).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import faust
import orjson
from faust.streams import Stream

from stream_app.domain.calls import Emission
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.model import Contribution
from stream_app.domain.positions import POSITION_KEY
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from stream_app.domain.windows import StreamClock
from stream_app.exporter import QueueCollector
from stream_app.input_guard import InputGuard, LogProbe
from stream_app.kafka_clients import client_options
from stream_app.queue_registry import QueueRegistry
from stream_app.tables import BufferedStore, create_tables

if TYPE_CHECKING:
    from stream_app.app import Pipeline

SWEEP_EVERY_MS = 60_000  # wall-clock throttle on retention scans, per partition (and stream time)
FLUSH_EVERY = 2000  # records of one partition between table flushes (a tick flushes too)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def own_headers(headers: Any) -> list[tuple[str, bytes]]:
    """The input record's headers as (name, value) pairs, whichever form the client gave."""
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(str(name), bytes(value or b"")) for name, value in headers]


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
    call_outcomes = app.topic(topic("call-outcomes"), **raw)
    queue_metrics = app.topic(topic("queue-metrics"), **raw)
    dlq = app.topic(topic("call-events-dlq"), **raw)
    registry_out = app.topic(topic("queue-registry"), **raw)

    calls_table, queues_table = create_tables(
        app,
        calls_partitions=pipeline.partitions[topic("call-events")],
        queue_partitions=pipeline.partitions[topic("queue-updates")],
    )
    clock = StreamClock()
    # A flush ends with the input position, which vouches for everything before it.
    calls_store = BufferedStore(calls_table, flush_rank=lambda key: int(key == POSITION_KEY))
    queues_store = BufferedStore(
        queues_table,
        flush_rank=lambda key: 9 if key == POSITION_KEY else QueueStage.flush_rank(key),
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
    # Records processed but not acked yet, per (stage, partition): acked after their writes
    # are flushed to the table, so a crash redoes exactly the records whose effects it lost.
    pending: dict[tuple[str, int], list[Any]] = {}

    async def settle(
        stage: str, store: BufferedStore, guard: InputGuard, event: Any, *, force: bool
    ) -> None:
        """Hold a processed record; every FLUSH_EVERY records (and on a tick) make its partition's
        effects durable in order (outputs, then state, then the input position) and ack them.

        Faust's own flush before a commit gives up after 0.1 s, and its buffer hands changelog
        records to the client in a background task, so nothing here trusts either: the outputs
        are flushed from the client, the changelog sends are awaited one by one."""
        partition = event.message.partition
        held = pending.setdefault((stage, partition), [])
        held.append(event)
        if force or len(held) >= FLUSH_EVERY:
            epoch = guard.epoch(partition)
            await app.producer.flush()
            if guard.epoch(partition) != epoch:
                return  # revoked meanwhile: the held records and their effects were dropped
            guard.save(partition)
            await store.flush()  # changelog acknowledged, then the local store
            for record in held:
                record.ack()
            held.clear()

    collector = QueueCollector(app, queues, clock, pipeline.sla, topic("queue-updates"))
    metrics.registry.register(collector)
    # Sweeps by the wall clock and by stream time: a fast replay keeps no more than the retention
    # plus a stream period (stream_app.domain.sweeps).
    calls_sweeps = SweepSchedule(
        wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(settings.retention_ms)
    )
    queues_sweeps = SweepSchedule(
        wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(windows.retention_ms)
    )

    # Per queue partition: the stream time each calls partition last reported (records and
    # watermarks). Its minimum bounds what a calls partition can still accept, so sweeps below
    # it never delete a bucket a record in flight still needs.
    source_times: dict[int, dict[int, int]] = {}

    def queues_stream_time() -> float | None:
        """How far the queues stage got: the least low watermark of its partitions (seconds)."""
        lows = [min(s.values()) for s in source_times.values() if len(s) == calls_partitions]
        return min(lows) / 1000 if lows else None

    calls_partitions = pipeline.partitions[topic("call-events")]
    pipeline.probes["queues_stream_time_s"] = queues_stream_time
    broadcast: dict[
        int, tuple[int, int]
    ] = {}  # per calls partition: (stream time, wall) last announced

    def stream_now() -> int | None:
        now = clock.now(wall_ms())
        if now is not None:
            metrics.stream_time.set(now / 1000)
        return now

    async def send_emission(call_id: str, emission: Emission, partition: int) -> None:
        st = calls.stream_time(partition)
        for queue, contribution in emission.contributions.items():
            value = orjson.dumps(
                {"q": queue, "c": call_id, "x": contribution.to_json(), "sp": partition, "st": st}
            )
            await queue_updates.send(key=queue.encode(), value=value)
        if emission.outcome is not None:
            await call_outcomes.send(key=call_id.encode(), value=orjson.dumps(emission.outcome))

    async def calls_tick(partition: int) -> None:
        """Housekeeping of one calls partition, and its stream time to every queue partition."""
        st = calls.stream_time(partition)
        if st is None:
            return
        calls.save_stream_time(partition)
        last = broadcast.get(partition)
        wall = wall_ms()
        # Announce a new stream time at once, an unchanged one once a minute (for a queue
        # partition that moved to a worker which has not heard it yet).
        if last is None or last[0] != st or wall - last[1] >= SWEEP_EVERY_MS:
            broadcast[partition] = (st, wall)
            watermark = orjson.dumps({"sp": partition, "st": st})
            for target in range(pipeline.partitions[topic("queue-updates")]):
                await queue_updates.send(key=None, value=watermark, partition=target)
        await sweep_calls(partition)

    async def sweep_calls(partition: int) -> None:
        """Retention of one calls partition when due, from its ticks and its records: in a
        fast replay a tick waits behind a full stream buffer while stream time runs on."""
        st = calls.stream_time(partition)
        if st is None or not calls_sweeps.due(partition, st, wall_ms()):
            return
        swept = calls.sweep(partition)
        metrics.evicted.inc(swept.evicted)
        for call_id, emission in swept.emissions:
            await send_emission(call_id, emission, partition)

    async def handle_call_event(message: Any) -> None:
        if not registry.loaded:
            await registry.load()
        outcome = calls.process(message.key, message.value, wall_ms(), message.partition)
        for queue in registry.take_unsent():  # a new queue: known to every worker before the ack
            await (await registry_out.send(key=queue.encode(), value=b"{}", partition=0))
        if outcome.reject is not None:
            metrics.rejected.labels(reason=outcome.reject).inc()
            if outcome.late:
                metrics.late.inc()
            headers = [
                *own_headers(message.headers),
                ("reason", outcome.reject.encode()),
                ("detail", outcome.detail.encode()[:1000]),
            ]
            await dlq.send(key=message.key, value=message.value, headers=headers)
            return
        if outcome.rekey is not None:
            await call_events.send(
                key=outcome.rekey.encode(), value=message.value, headers=message.headers
            )
            return
        assert outcome.event is not None
        metrics.events.labels(type=outcome.event.type).inc()
        if outcome.duplicate:
            metrics.duplicates.inc()
        if outcome.emission is not None:
            await send_emission(outcome.event.call_id, outcome.emission, message.partition)

    @app.agent(events_in, concurrency=1)
    async def process_calls(stream: faust.StreamT[bytes]) -> None:
        async for event in cast(Stream[bytes], stream).noack().events():
            message = event.message
            tick = message.topic != call_events.get_topic_name()
            if tick:
                await calls_guard.retry(message.partition)
                await calls_tick(message.partition)
            elif not await calls_guard.process(message, handle_call_event):
                continue  # dropped unacked: it is delivered again
            else:
                await sweep_calls(message.partition)
            await settle("calls", calls_store, calls_guard, event, force=tick)

    seen_partitions: set[int] = set()
    settled_at: dict[int, int] = {}

    async def close(queue: str, now: int) -> None:
        for key, record in queues.close_due(queue, now):
            await queue_metrics.send(key=key.encode(), value=orjson.dumps(record))

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
            for queue in collector.queues_on(partition):
                await close(queue, settled)
        sweep_queues(partition)

    def sweep_queues(partition: int) -> None:
        """Retention of one queue partition when due (from its ticks and its records)."""
        sources = source_times.get(partition, {})
        if len(sources) == calls_partitions:
            low_watermark = min(sources.values())
            if queues_sweeps.due(partition, low_watermark, wall_ms()):
                queues.sweep(low_watermark)

    async def handle_update(message: Any) -> None:
        partition = message.partition
        update = orjson.loads(message.value)
        if update["st"] is not None:
            clock.observe(update["st"], wall_ms())
            sources = source_times.setdefault(partition, {})
            sources[update["sp"]] = max(sources.get(update["sp"], 0), update["st"])
        queue = update.get("q")
        if queue is None:
            return  # a watermark
        collector.owns(queue, partition)
        applied = queues.apply(
            queue, update["c"], Contribution.from_json(update["x"]), message.offset
        )
        for speed_ms in applied.new_answer_speeds_ms:
            metrics.answer_speed.labels(queue=queue).observe(speed_ms / 1000)

    @app.agent(updates_in, concurrency=1)
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
                    await queue_metrics.send(key=key.encode(), value=orjson.dumps(record))
            tick = message.topic != queue_updates.get_topic_name()
            if tick:
                await queues_guard.retry(partition)
                await queue_tick(partition)
            elif not await queues_guard.process(message, handle_update):
                continue
            else:
                sweep_queues(partition)
            await settle("queues", queues_store, queues_guard, event, force=tick)

    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == call_events.get_topic_name():
                calls.forget_partition(tp.partition)
                calls_store.drop(tp.partition)
                calls_guard.forget(tp.partition)
                pending.pop(("calls", tp.partition), None)
            if tp.topic == queue_updates.get_topic_name():
                queues_store.drop(tp.partition)
                queues_guard.forget(tp.partition)
                pending.pop(("queues", tp.partition), None)
                seen_partitions.discard(tp.partition)
                collector.disown(tp.partition)

    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        for tp in assigned:
            if tp.topic == call_events.get_topic_name():
                calls.forget_partition(tp.partition)  # re-read from the recovered table
                calls_store.drop(tp.partition)
                calls_guard.forget(tp.partition)
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
