"""Faust's fetch loop, handing each record to the stages without four tasks per record.

Faust's consumer passes every fetched record to the stages' buffers through
`Service.wait_first(callback(message), suspend_flow.wait())`: four tasks and an
`asyncio.wait` per record, about a tenth of a worker's CPU on the month (bench/RESULTS.md).
The callback almost never has to wait (a full buffer pauses its partition's fetching instead of
blocking), so this loop runs it inline and falls back to Faust's wait only when it suspends.
Everything else is Faust's loop as it is (faust-streaming is pinned below 0.16 for this).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, cast

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka


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


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (Faust's loop)
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetching = faust_consumer.CONSUMER_FETCHING
        yield_every = 100
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(fetching)
                batch = getmany(timeout=1.0)
                await self.sleep(0)  # getmany can loop without giving the event loop a turn
                if not self.should_stop:
                    async for tp, message in batch:
                        since_yield += 1
                        if since_yield > yield_every:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read = get_read_offset(tp)
                        if read is None or offset >= read:
                            if read and offset - read > 1 and acks_enabled_for(message.topic):
                                await self._add_gap(tp, read + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await deliver(self, callback(message))
                            set_read_offset(tp, offset)
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


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = Consumer


def install(app: faust.App) -> None:
    """Give `app` this transport (before anything created its consumer)."""
    app.transport = Transport(app.conf.broker_consumer, app)
