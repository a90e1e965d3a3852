"""The stages' records to other topics, through one Kafka producer of the worker's own.

A stage sends without waiting (the client batches consecutive records into one request) and
makes everything sent so far durable at once, with `flush()`, before the state that relies on
it is written and its input acked. `flush()` fails on any record the broker did not take: a
worker never acks input whose outputs may be lost (it stops; its successor redoes the input).
The tables' changelog records go through it too (`send_acked`): their offsets are needed.

Neither waits out the linger: aiokafka's own `flush()` does, so every checkpoint (one per tick
and partition, a dozen a second) cost two lingers of the worker's time.

Faust's own send path (`Topic.send`: a `FutureMessage`, sensors and callbacks per record) cost
about a quarter of the calls stage's time, and its producer flush before a commit gives up after
a timeout without saying what was lost; this is leaner and fails closed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

Headers = Sequence[tuple[str, bytes]]
# send_acked's record: topic, value, key, partition, and its acknowledgement to settle
Queued = tuple[str, bytes | None, bytes, int, "asyncio.Future[RecordMetadata]"]
OUTAGE_TOLERANCE_MS = 120_000


def _settle(acked: asyncio.Future[RecordMetadata], sent: asyncio.Future[RecordMetadata]) -> None:
    """The client's outcome of a record, passed on to its acknowledgement."""
    if acked.done():
        return
    if sent.cancelled():
        acked.cancel()
    elif (error := sent.exception()) is not None:
        acked.set_exception(error)
    else:
        acked.set_result(sent.result())


class OutputLost(RuntimeError):
    """The broker did not take a record the worker sent: the input it came from is not acked."""


class Outputs:
    def __init__(self, client_options: dict[str, Any], *, linger_ms: int = 20) -> None:
        self.options = client_options
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []
        self._kick_planned = False
        self._kicks: set[asyncio.Future[None]] = set()
        self._queued: list[Queued] = []  # send_acked's records, handed over at the next kick

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._starting:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        **self.options,
                        acks="all",
                        enable_idempotence=True,  # a retried request never writes a record twice
                        linger_ms=self.linger_ms,
                        max_batch_size=1024 * 1024,
                        # A record waits this long for a broker that went away (a restart, a
                        # leader moving) before the flush reports it lost and the worker exits.
                        request_timeout_ms=OUTAGE_TOLERANCE_MS,
                    )
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Hand a record to the client; `flush()` says whether the broker took it."""
        producer = await self._started()
        future = await producer.send(
            topic, value, key=key, partition=partition, headers=list(headers or []) or None
        )
        self._pending.append(future)

    def send_acked(
        self, topic: str, value: bytes | None, *, key: bytes, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        """Send a record; the future is the broker's acknowledgement (its offset). The records
        sent in the same turn of the event loop go to the client in order, by one task (not a
        task each: a checkpoint writes hundreds), and in one request, without lingering."""
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[RecordMetadata] = loop.create_future()
        self._queued.append((topic, value, key, partition, acked))
        if not self._kick_planned:
            self._kick_planned = True
            loop.call_soon(self._kick)
        return acked

    def _kick(self) -> None:
        self._kick_planned = False
        queued, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send_queued(queued))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)

    async def _send_queued(self, queued: list[Queued]) -> None:
        try:
            producer = await self._started()
            for topic, value, key, partition, acked in queued:
                sent = await producer.send(topic, value, key=key, partition=partition)
                sent.add_done_callback(functools.partial(_settle, acked))
        except BaseException as error:  # every record not handed over fails, none hangs
            for *_, acked in queued:
                if not acked.done():
                    acked.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        await self._send_now(producer)

    @staticmethod
    async def _send_now(producer: AIOKafkaProducer) -> None:
        """Close the batches the producer holds and wake its sender (what aiokafka does before a
        transaction's commit), then wait until the broker answered for them."""
        await producer._message_accumulator.flush_for_commit()

    async def flush(self) -> None:
        """Wait until the broker took every record sent so far; raise `OutputLost` otherwise."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        assert self._producer is not None
        await self._send_now(self._producer)
        if any(not f.done() or f.cancelled() for f in pending):
            raise OutputLost("a record was neither taken nor refused by the producer's flush")
        errors = [error for f in pending if (error := f.exception()) is not None]
        if errors:
            raise OutputLost(
                f"the broker did not take {len(errors)} of {len(pending)} records: {errors[0]!r}"
            ) from errors[0]

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
