"""The fetch loop's delivery of a record: inline while the callback does not suspend, Faust's
race against the flow's suspension once it does, with the callback's result, errors and
cancellation intact either way."""

from __future__ import annotations

import asyncio
import types
from typing import Any, cast

import faust
import pytest
from faust.types import TP
from mode import Service

from stream_app import fetch_loop


class Consumer(Service):  # type: ignore[misc]
    """What `deliver` needs of Faust's consumer: mode's `wait_first` and the flow's event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.raced = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.raced += 1
        return await super().wait_first(*coros, timeout=timeout)


async def test_a_callback_that_does_not_suspend_runs_inline() -> None:
    consumer, done = Consumer(), []

    settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    settled.set_result(None)

    async def callback() -> None:
        await settled  # an await that does not suspend: its future is done
        done.append(asyncio.current_task())

    await fetch_loop.deliver(consumer, callback())
    assert done == [asyncio.current_task()]  # ran in this task: no task of its own
    assert consumer.raced == 0


async def test_a_callback_that_suspends_is_finished_before_delivery_returns() -> None:
    consumer, steps = Consumer(), list[Any]()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        steps.append("first step")
        steps.append(await ready)

    asyncio.get_running_loop().call_later(0.01, ready.set_result, 42)
    await fetch_loop.deliver(consumer, callback())
    assert steps == ["first step", 42]
    assert consumer.raced == 1


async def test_a_callback_yielding_bare_turns_is_driven_to_its_end() -> None:
    consumer, turns = Consumer(), []

    async def callback() -> None:
        for turn in range(3):
            await asyncio.sleep(0)
            turns.append(turn)

    await fetch_loop.deliver(consumer, callback())
    assert turns == [0, 1, 2]


async def test_the_flow_suspended_while_the_callback_waits_cancels_it_as_faust_does() -> None:
    consumer = Consumer()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        await never

    asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
    await asyncio.wait_for(fetch_loop.deliver(consumer, callback()), timeout=5)
    await asyncio.sleep(0)  # the cancellation reaches the callback's task
    assert never.cancelled()


@pytest.mark.parametrize("suspends", [False, True])
async def test_an_error_of_the_callback_reaches_the_loop(suspends: bool) -> None:
    consumer = Consumer()

    async def callback() -> None:
        if suspends:
            await asyncio.sleep(0.001)
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await fetch_loop.deliver(consumer, callback())


async def test_a_cancelled_delivery_cancels_the_callback_where_it_waits() -> None:
    cleaned: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        try:
            await never
        finally:
            cleaned.append("finally")

    coro = callback()
    awaiting = coro.send(None)  # the first step, as deliver runs it
    task = asyncio.ensure_future(fetch_loop.finish(coro, awaiting))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]
    assert never.cancelled()


async def test_a_value_sent_back_and_an_error_thrown_in_reach_the_callback() -> None:
    received: list[Any] = []

    async def callback() -> str:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[str] = loop.create_future()
        second: asyncio.Future[str] = loop.create_future()
        loop.call_soon(first.set_result, "value")
        received.append(await first)
        loop.call_soon(second.set_exception, KeyError("thrown"))
        try:
            await second
        except KeyError as exc:
            received.append(exc.args[0])
        return "returned"

    coro = callback()
    assert await fetch_loop.finish(coro, coro.send(None)) == "returned"
    assert received == ["value", "thrown"]


async def test_an_awaitable_other_than_a_coroutine_is_raced_as_faust_does() -> None:
    consumer = Consumer()
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(ready.set_result, None)
    await fetch_loop.deliver(consumer, ready)
    assert consumer.raced == 1


def test_an_app_given_the_transport_consumes_with_this_loop() -> None:
    app = faust.App("fetch-loop-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    fetch_loop.install(app)
    assert isinstance(app.consumer, fetch_loop.Consumer)


# -- batches ---------------------------------------------------------------------------------


class Message:
    """What the batch path uses of Faust's ConsumerMessage: its generation, refcount and ack."""

    def __init__(self, offset: int, generation: int = 1) -> None:
        self.topic, self.partition, self.offset = "events", 0, offset
        self.generation_id = generation
        self.refcount = 0
        self.acked_by: list[Any] = []

    def incref(self, n: int = 1) -> None:
        self.refcount += n

    def ack(self, consumer: Any, n: int = 1) -> bool:
        self.acked_by.append(consumer)
        return True


class Channel:
    def __init__(self, maxsize: int = 1000) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)


class Flow:
    async def acquire(self) -> None:
        pass


class BatchApp:
    """What the batch path uses of the app: generation, consumer, channels, transport."""

    def __init__(self, channels: list[Channel]) -> None:
        self.consumer_generation_id = 1
        self.consumer = BatchConsumer(self)
        self.topics = types.SimpleNamespace(_topic_name_index={"events": channels})
        self.transport = types.SimpleNamespace(batched={"events"})
        self.flow_control = Flow()


class BatchConsumer(Consumer):
    """Faust's consumer as the batch path uses it: the partitions paused for a full buffer
    (`_buffered_partitions`, kept by `on_buffer_full` and `on_buffer_drop`) and tracking."""

    def __init__(self, app: BatchApp) -> None:
        super().__init__()
        self.app = app
        self._buffered_partitions: set[TP] = set()
        self.full: list[TP] = []
        self.dropped: list[TP] = []
        self.tracked: list[Any] = []

    def track_message(self, message: Any) -> None:
        self.tracked.append(message)

    def on_buffer_full(self, tp: TP) -> None:
        self._buffered_partitions.add(tp)
        self.full.append(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        if tp in self._buffered_partitions:
            self._buffered_partitions.discard(tp)
            self.dropped.append(tp)


TP0 = TP("events", 0)


async def deliver_batch(app: BatchApp, messages: list[Any]) -> None:
    consumer = app.consumer
    await fetch_loop.Consumer._deliver_batch(cast(Any, consumer), TP0, messages)


async def test_a_batch_reaches_each_channel_as_one_event_and_its_records_one_by_one() -> None:
    channel = Channel()
    app = BatchApp([channel])
    messages = [Message(offset) for offset in range(3)]
    await deliver_batch(app, messages)
    assert channel.queue.qsize() == 1
    assert app.consumer.tracked == messages  # Faust still tracks each record
    event = channel.queue.get_nowait()
    assert event.message is messages[-1]
    got = list(fetch_loop.records(event, app))
    assert [(record.message, last) for record, last in got] == [
        (messages[0], False),
        (messages[1], False),
        (messages[2], True),
    ]
    assert got[1][0].ack()
    assert messages[1].acked_by == [app.consumer]  # acked through the consumer, as Faust acks
    assert all(message.refcount == 0 for message in messages)  # one channel: no extra count


async def test_a_record_of_another_generation_ends_its_batch_unacked() -> None:
    app = BatchApp([Channel()])
    messages = [Message(offset) for offset in range(4)]
    await deliver_batch(app, messages)
    event = app.topics._topic_name_index["events"][0].queue.get_nowait()
    taken = []
    for record, _ in fetch_loop.records(event, app):
        taken.append(record.message.offset)
        if record.message.offset == 1:
            app.consumer_generation_id = 2  # a rebalance while record 1 was applied
    assert taken == [0, 1]  # records 2 and 3 are the next owner's (or read again here)
    assert all(not message.acked_by for message in messages)


async def test_an_event_that_is_not_a_batch_is_its_own_record() -> None:
    app = BatchApp([Channel()])
    tick = types.SimpleNamespace(value=b"", message=Message(7))
    assert list(fetch_loop.records(tick, app)) == [(tick, True)]


async def test_two_channels_each_get_the_batch_and_each_record_counts_both_acks() -> None:
    first, second = Channel(), Channel()
    app = BatchApp([first, second])
    messages = [Message(0), Message(1)]
    await deliver_batch(app, messages)
    assert first.queue.qsize() == second.queue.qsize() == 1
    assert [message.refcount for message in messages] == [2, 2]


async def test_a_partition_pauses_when_its_agent_lags_and_resumes_when_it_caught_up() -> None:
    channel = Channel()
    app = BatchApp([channel])
    for offset in range(fetch_loop.PAUSE_AT):
        await deliver_batch(app, [Message(offset)])
    assert app.consumer.full == [TP0]  # paused once, at the threshold
    await deliver_batch(app, [Message(99)])
    assert app.consumer.full == [TP0]
    while channel.queue.qsize() > fetch_loop.RESUME_AT + 1:
        list(fetch_loop.records(channel.queue.get_nowait(), app))
    assert app.consumer.dropped == []  # still more than RESUME_AT waiting
    list(fetch_loop.records(channel.queue.get_nowait(), app))
    list(fetch_loop.records(channel.queue.get_nowait(), app))  # taking one checks
    assert app.consumer.dropped == [TP0]
    assert not app.consumer._buffered_partitions


async def test_the_fetch_loop_resumes_a_partition_whose_agent_drained_on_ticks_alone() -> None:
    channel = Channel()
    app = BatchApp([channel])
    for offset in range(fetch_loop.PAUSE_AT):
        await deliver_batch(app, [Message(offset)])
    while not channel.queue.empty():
        channel.queue.get_nowait()  # taken without `records` (as a tick event would be)
    fetch_loop.resume(app)  # what the fetch loop does before each poll
    assert app.consumer.dropped == [TP0]


async def test_a_full_buffer_waits_for_room_or_for_the_flow_to_stop() -> None:
    channel = Channel(maxsize=1)
    app = BatchApp([channel])
    await deliver_batch(app, [Message(0)])
    waiting = asyncio.ensure_future(deliver_batch(app, [Message(1)]))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # no room: it waits, as Faust's conductor does
    channel.queue.get_nowait()
    await asyncio.wait_for(waiting, timeout=5)
    assert channel.queue.get_nowait().message.offset == 1
    await deliver_batch(app, [Message(2)])
    stuck = asyncio.ensure_future(deliver_batch(app, [Message(3)]))
    await asyncio.sleep(0.01)
    app.consumer.suspend_flow.set()  # a rebalance: the batch is given up (read again later)
    await asyncio.wait_for(stuck, timeout=5)
    assert channel.queue.get_nowait().message.offset == 2
    assert channel.queue.empty()


# -- commits ----------------------------------------------------------------------------------


async def test_acks_are_committed_soon_after_once_not_at_the_next_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpoint acks its records together: one commit follows, `COMMIT_SOON_S` later, for
    all of them; the next acks plan the next one."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    acked: list[Any] = []

    def faust_ack(self: Any, message: Any) -> bool:
        acked.append(message)
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "ack", faust_ack)
    monkeypatch.setattr(fetch_loop.Consumer, "should_stop", False)
    consumer: Any = fetch_loop.Consumer.__new__(fetch_loop.Consumer)
    commits: list[float] = []
    loop = asyncio.get_running_loop()

    async def commit() -> bool:
        commits.append(loop.time())
        return True

    consumer.commit = commit
    consumer.add_future = asyncio.ensure_future
    started = loop.time()
    assert consumer.ack("a") and consumer.ack("b") and acked == ["a", "b"]
    await asyncio.sleep(fetch_loop.COMMIT_SOON_S / 2)
    assert commits == []
    await asyncio.sleep(fetch_loop.COMMIT_SOON_S)
    assert len(commits) == 1 and commits[0] - started >= fetch_loop.COMMIT_SOON_S
    consumer.ack("c")
    await asyncio.sleep(fetch_loop.COMMIT_SOON_S * 1.5)
    assert len(commits) == 2
