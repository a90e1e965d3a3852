"""The data flow as Faust agents: call-events → calls → queue-updates → queues → queue-metrics.

Both agents also read a tick topic co-partitioned with their input, so housekeeping (closing
intervals of idle queues on a live feed, retiring calls, retention) runs in stream context on
the partition it concerns (the Kafka Streams punctuator idea). concurrency=1 on both: they
write tables (faust-streaming #606).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import faust
import orjson
from faust.streams import Stream
from faust.types import TP

from stream_app.checkpoint import Checkpoint, stop_on_failure
from stream_app.domain.calls import Emission
from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import Announcement, EventClock, SourceTimes
from stream_app.domain.model import Contribution
from stream_app.domain.positions import POSITION_KEY
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from stream_app.exporter import QueueCollector
from stream_app.input_guard import InputGuard, LogProbe
from stream_app.kafka_clients import client_options
from stream_app.live_state import LivePublisher
from stream_app.outputs import Outputs
from stream_app.queue_registry import QueueRegistry
from stream_app.tables import BufferedStore, create_tables

if TYPE_CHECKING:
    from stream_app.app import Pipeline

SWEEP_EVERY_MS = 60_000  # wall-clock throttle on retention scans, per partition (and stream time)
REANNOUNCE_EVERY_MS = 60_000  # a calls partition's unchanged clock, told again to the queues stage
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
    calls_checkpoint = Checkpoint(outputs, calls_store, calls_guard, every=FLUSH_EVERY)
    queues_checkpoint = Checkpoint(outputs, queues_store, queues_guard, every=FLUSH_EVERY)

    collector = QueueCollector(
        app, queues, lambda: stream_now(), pipeline.sla, topic("queue-updates")
    )
    metrics.registry.register(collector)
    live = LivePublisher(queues, pipeline.sla, outputs, topic("queue-live"))  # wallboards' feed
    # Sweeps by the wall clock and by stream time: a fast replay keeps no more than the retention
    # plus a stream period (stream_app.domain.sweeps).
    calls_sweeps = SweepSchedule(
        wall_every_ms=SWEEP_EVERY_MS, stream_every_ms=stream_period_ms(settings.retention_ms)
    )
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
    # per calls partition: (stream time, behind, wall) last announced
    broadcast: dict[int, tuple[int | None, bool, int]] = {}

    def calls_behind(partition: int, applying: int | None) -> bool:
        """Whether records of this calls partition wait to be applied (or nothing is known);
        `applying`: the offset of the record being applied now."""
        highwater = app.consumer.highwater(TP(call_events.get_topic_name(), partition))
        following = calls_guard.next_offset(partition) if applying is None else applying + 1
        return highwater is None or following < highwater

    def calls_time(
        partition: int, applying: int | None = None
    ) -> tuple[int | None, int | None, bool]:
        """What a calls partition announces: its newest event ts, the wall time it saw it, and
        whether it is behind its input. The queues stage moves these on with the wall clock
        only while no calls partition is behind."""
        clock_p = calls.clock_of(partition)
        return clock_p.newest, clock_p.seen_at, calls_behind(partition, applying)

    def stream_now() -> int | None:
        """The worker's stream time: it moves with the wall clock only while no calls
        partition it hears from is reading a backlog."""
        behind = any(a.behind for t in source_times.values() for a in t.heard.values())
        now = clock.now(wall_ms(), caught_up=not behind)
        if now is not None:
            metrics.stream_time.set(now / 1000)
        return now

    async def send_emission(
        call_id: str, emission: Emission, partition: int, applying: int | None = None
    ) -> None:
        st, seen_at, behind = calls_time(partition, applying)
        for queue, contribution in emission.contributions.items():
            value = orjson.dumps(
                {
                    "q": queue,
                    "c": call_id,
                    "x": contribution.to_json(),
                    "sp": partition,
                    "st": st,
                    "sa": seen_at,
                    "b": behind,
                }
            )
            await outputs.send(topic("queue-updates"), value, key=queue.encode())
        if emission.outcome is not None:
            await outputs.send(
                topic("call-outcomes"), orjson.dumps(emission.outcome), key=call_id.encode()
            )

    async def calls_tick(partition: int) -> None:
        """Housekeeping of one calls partition, and its stream time to every queue partition."""
        st, seen_at, behind = calls_time(partition)
        calls.save_stream_time(partition)
        last = broadcast.get(partition)
        wall = wall_ms()
        # Announce a change at once, the same news after every rebalance (a queue partition
        # that moved to a worker which has not heard it yet closes nothing until then) and
        # once a minute; not more often, or queue-updates would never be read to its end.
        if last is None or last[:2] != (st, behind) or wall - last[2] >= REANNOUNCE_EVERY_MS:
            broadcast[partition] = (st, behind, wall)
            watermark = orjson.dumps({"sp": partition, "st": st, "sa": seen_at, "b": behind})
            for target in range(pipeline.partitions[topic("queue-updates")]):
                await outputs.send(topic("queue-updates"), watermark, partition=target)
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
        new_queues = registry.take_unsent()
        for queue in new_queues:  # known to every worker before the record that named it is acked
            await outputs.send(topic("queue-registry"), b"{}", key=queue.encode(), partition=0)
        if new_queues:
            await outputs.flush()
        if outcome.reject is not None:
            metrics.rejected.labels(reason=outcome.reject).inc()
            if outcome.late:
                metrics.late.inc()
            headers = [
                *own_headers(message.headers),
                ("reason", outcome.reject.encode()),
                ("detail", outcome.detail.encode()[:1000]),
            ]
            await outputs.send(
                topic("call-events-dlq"), message.value, key=message.key, headers=headers
            )
            return
        if outcome.rekey is not None:
            await outputs.send(
                topic("call-events"),
                message.value,
                key=outcome.rekey.encode(),
                headers=own_headers(message.headers),
            )
            return
        assert outcome.event is not None
        metrics.events.labels(type=outcome.event.type).inc()
        if outcome.duplicate:
            metrics.duplicates.inc()
        if outcome.emission is not None:
            await send_emission(
                outcome.event.call_id, outcome.emission, message.partition, message.offset
            )

    @app.agent(events_in, concurrency=1)
    @stop_on_failure("calls")
    async def process_calls(stream: faust.StreamT[bytes]) -> None:
        async for event in cast(Stream[bytes], stream).noack().events():
            message = event.message
            tick = message.topic != call_events.get_topic_name()
            if tick:
                await calls_guard.watch(message.partition)
                await calls_tick(message.partition)
            elif not await calls_guard.process(message, handle_call_event):
                continue  # dropped unacked: it is delivered again
            else:
                await sweep_calls(message.partition)
            await calls_checkpoint.hold(message.partition, event, now=tick)

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
        await live.publish(collector.queues_on(partition), now)

    def sweep_queues(partition: int) -> None:
        """Retention of one queue partition when due (from its ticks and its records)."""
        times = source_times.get(partition)
        low_watermark = None if times is None else times.low_watermark()
        if low_watermark is not None and queues_sweeps.due(partition, low_watermark, wall_ms()):
            queues.sweep(low_watermark)

    async def handle_update(message: Any) -> None:
        partition = message.partition
        update = orjson.loads(message.value)
        if update["st"] is not None:
            clock.observe(update["st"], update.get("sa") or wall_ms())
        times = source_times.get(partition)
        if times is None:
            times = source_times[partition] = SourceTimes(calls_partitions)
        # version 1 records say nothing of a backlog: they never hold closing back
        times.hear(Announcement(update["sp"], update["st"], bool(update.get("b"))))
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
                calls.forget_partition(tp.partition)
                calls_store.drop(tp.partition)
                calls_guard.forget(tp.partition)
                calls_checkpoint.drop(tp.partition)
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
        broadcast.clear()  # every calls partition announces itself again at its next tick
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
