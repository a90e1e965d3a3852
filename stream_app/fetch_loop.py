"""Faust's fetch loop, handing what a poll brought to the stages in batches, not record by record.

A topic registered with `batch` (the stages' inputs) skips Faust's per-record delivery: the
records a poll brought of one of its partitions reach the agent as one event (`Batch`), and the
agent applies them one by one (`records`). Faust's conductor, stream iterator and stream sensors
run once per poll and partition; each record is still tracked and acked through Faust's
consumer, so its commits and gaps work as before. Flow control counts the events waiting in the
agent's buffer: a partition's fetching pauses at `PAUSE_AT` and resumes at `RESUME_AT`, through
Faust's own pause for a full buffer (its `_buffered_partitions` say which are paused). On the
month this took a quarter off the worker's CPU, and Faust's own per-record share from about a
tenth to 2 % (bench/RESULTS.md).

The other topics (the ticks) go record by record through Faust's callback, which passes each
to the stage's buffer through `Service.wait_first(callback(message), suspend_flow.wait())`:
four tasks and an `asyncio.wait` per record. The callback almost never has to wait, so this
loop runs it inline and falls back to Faust's wait only when it suspends (`deliver`).
Everything else is Faust's loop as it is (faust-streaming is pinned below 0.16 for this).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator, Iterator
from typing import Any, cast

import faust
from faust.events import Event
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

PAUSE_AT = 32  # events (batches of up to a fetch each) waiting in a batched agent's buffer
RESUME_AT = 8
COMMIT_SOON_S = 0.1  # from a checkpoint's acks to their commit (a few commits a second at most)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], awaiting: Any) -> Generator[Any, Any, Any]:
    """Go on with `coro` where its first step suspended (on `awaiting`), as `await` would."""
    while True:
        try:
            sent = yield awaiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation (or any error) thrown into the waiter
            try:
                awaiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                awaiting = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def finish(coro: Coroutine[Any, Any, Any], awaiting: Any) -> Any:
    """The rest of a coroutine whose first step already ran, as a coroutine a task can run."""
    return await _resume(coro, awaiting)


async def deliver(consumer: Any, callback: Awaitable[Any]) -> None:
    """Run `callback` (the consumer's, for one record): inline while it does not suspend;
    once it does, the rest as Faust would, racing the flow's suspension (a rebalance)."""
    if type(callback) is not types.CoroutineType:  # not a coroutine: Faust's way throughout
        await consumer.wait_first(callback, consumer.suspend_flow.wait())
        return
    coro = cast(Coroutine[Any, Any, Any], callback)
    try:
        awaiting = coro.send(None)
    except StopIteration:
        return
    await consumer.wait_first(finish(coro, awaiting), consumer.suspend_flow.wait())


class Batch:
    """The records one poll brought of one partition of a batched topic, in offset order."""

    __slots__ = ("messages",)

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages


class Delivered:
    """One record of a batch, as a stage holds it until its checkpoint acks it."""

    __slots__ = ("consumer", "message")

    def __init__(self, message: Any, consumer: Any) -> None:
        self.message = message
        self.consumer = consumer

    def ack(self) -> bool:
        return bool(self.message.ack(self.consumer))


def records(event: Any, app: Any) -> Iterator[tuple[Any, bool]]:
    """The records an agent's event holds, each with whether it is the event's last: a
    batch's records, checked one by one, as Faust's stream checks each event, against the
    consumer's generation (a record of an earlier one is left unacked, and so is the rest of
    its batch: the partition was revoked or assigned since, and its owner reads them again);
    else the event itself. Each has `message` and `ack()`."""
    value = event.value
    if type(value) is not Batch:
        yield event, True
        return
    resume(app)
    consumer = app.consumer
    messages = value.messages
    last = len(messages) - 1
    for index, message in enumerate(messages):
        if message.generation_id != app.consumer_generation_id:
            return
        yield Delivered(message, consumer), index == last


def batch(app: faust.App, topic: str) -> None:
    """Deliver `topic`'s records to its agents in batches (before the worker starts)."""
    batched_topics(app).add(topic)


def resume(app: Any) -> None:
    """Fetch again the partitions of batched topics paused for their agent's buffer (Faust's
    own set of partitions paused for a full buffer) once that buffer is short enough."""
    consumer = app.consumer
    paused = consumer._buffered_partitions
    if not paused:
        return
    batched = batched_topics(app)
    for tp in [tp for tp in paused if tp.topic in batched]:
        for channel in cast(Any, app.topics)._topic_name_index.get(tp.topic, ()):
            if channel.queue.qsize() > RESUME_AT:
                break
        else:
            consumer.on_buffer_drop(tp)


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    _commit_soon: asyncio.TimerHandle | None = None

    def ack(self, message: Any) -> bool:
        """Faust's ack, and a commit `COMMIT_SOON_S` after the first ack since the last one
        (not at Faust's next interval, up to `broker_commit_interval` later): a stage acks at
        its checkpoint, when what the records did is durable, so the group's lag follows the
        checkpoints, and a drained backlog shows no lag at once."""
        acked = bool(super().ack(message))
        if acked and self._commit_soon is None:
            self._commit_soon = asyncio.get_running_loop().call_later(
                COMMIT_SOON_S, self._commit_acked
            )
        return acked

    def _commit_acked(self) -> None:
        self._commit_soon = None
        if not self.should_stop:
            self.add_future(self.commit())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (Faust's loop)
        """Faust's loop with a batch per partition for batched topics (module docstring)."""
        app = self.app
        batched = batched_topics(app)
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = app.topics.acks_enabled_for
        to_message = self._to_message
        fetching = faust_consumer.CONSUMER_FETCHING
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(fetching)
                resume(app)  # also here: the agent may have drained its buffer on ticks alone
                fetched, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not fetched or self.should_stop or not self.flow_active:
                    unset_flag(fetching)
                    continue
                generation = app.consumer_generation_id
                for fetched_tp, fetched_records in fetched.items():
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break
                    tp = TP(fetched_tp.topic, fetched_tp.partition)
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    read = get_read_offset(tp)
                    messages = [
                        to_message(tp, record)
                        for record in fetched_records
                        if read is None or record.offset >= read
                    ]
                    if not messages:
                        continue
                    if acks_enabled_for(tp.topic):
                        for message in messages:
                            offset = message.offset
                            if read and offset - read > 1:
                                await self._add_gap(tp, read + 1, offset)
                            read = offset
                    if tp.topic in batched:
                        await self._deliver_batch(tp, messages)
                        set_read_offset(tp, messages[-1].offset)
                    else:
                        for message in messages:
                            await deliver(self, callback(message))
                            set_read_offset(tp, message.offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await asyncio.sleep(0)  # the stages take what came before the next poll
                unset_flag(fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(fetching)

    async def _deliver_batch(self, tp: TP, messages: list[Any]) -> None:
        """One event holding the batch to each channel of the topic, racing the flow's
        suspension (a rebalance) when a buffer is full, as Faust's conductor does."""
        channels = cast(Any, self.app.topics)._topic_name_index.get(tp.topic, ())
        for message in messages:
            self.track_message(message)
            if len(channels) > 1:
                message.incref(len(channels))  # acked once per agent, as Faust counts
        await self.app.flow_control.acquire()
        for channel in channels:
            event = Event(self.app, None, Batch(messages), None, messages[-1])
            queue = channel.queue
            if queue.full():
                await self.wait_first(queue.put(event), self.suspend_flow.wait())
            else:
                queue.put_nowait(event)
            if queue.qsize() >= PAUSE_AT and tp not in self._buffered_partitions:
                self.on_buffer_full(tp)


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = Consumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batched: set[str] = set()  # the topics delivered in batches (`batch`)


def batched_topics(app: Any) -> set[str]:
    return cast(Transport, app.transport).batched


def install(app: faust.App) -> None:
    """Give `app` this transport (before anything created its consumer)."""
    app.transport = Transport(app.conf.broker_consumer, app)
