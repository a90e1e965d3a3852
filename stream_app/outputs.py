"""The stages' records to other topics, through one Kafka producer of the worker's own.

A stage sends without waiting (the client batches consecutive records into one request) and
makes everything sent so far durable at once, with `flush()`, before the state that relies on
it is written and its input acked. `flush()` fails on any record the broker did not take: a
worker never acks input whose outputs may be lost (it stops; its successor redoes the input).

Faust's own send path (`Topic.send`: a `FutureMessage`, sensors and callbacks per record) cost
about a quarter of the calls stage's time, and its producer flush before a commit gives up after
a timeout without saying what was lost; this is leaner and fails closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

Headers = Sequence[tuple[str, bytes]]


class OutputLost(RuntimeError):
    """The broker did not take a record the worker sent: the input it came from is not acked."""


class Outputs:
    def __init__(self, client_options: dict[str, Any], *, linger_ms: int = 20) -> None:
        self.options = client_options
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []

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

    async def flush(self) -> None:
        """Wait until the broker took every record sent so far; raise `OutputLost` otherwise."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        assert self._producer is not None
        await self._producer.flush()
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
