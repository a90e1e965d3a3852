"""The fetch loop's delivery of a record: inline while the callback does not suspend, Faust's
race against the flow's suspension once it does, with the callback's result, errors and
cancellation intact either way."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
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
