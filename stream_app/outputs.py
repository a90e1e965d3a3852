"""The stages' records to other topics, through one Kafka producer of the worker's own.

A stage sends without waiting and makes everything sent so far durable at once, with `flush()`,
before the state that relies on it is written and its input acked. `flush()` fails on any
record the broker did not take: a worker never acks input whose outputs may be lost (it stops;
its successor redoes the input). The tables' changelog records go through it too, each
flush acknowledged as one group (`send_all_acked`): their offsets are needed.

Records are not handed to the client one by one: aiokafka's `send` costs a future, a partition
lookup and an accumulator append per record, about a twentieth of the month's CPU
(bench/RESULTS.md). They are queued per topic in order, and the queue becomes one closed batch per
partition (`create_batch`/`send_batch`) when it is due: at a `flush()`, a linger after the first
record sent, at once for acknowledged sends. Submissions run one after another, so the records
of a partition reach the broker in the order they were sent.

Neither waits out a linger before sending what a checkpoint needs: aiokafka's own `flush()`
does, so every checkpoint (one per tick and partition, a dozen a second) cost two lingers.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.structs import RecordMetadata

Headers = Sequence[tuple[str, bytes]]
OUTAGE_TOLERANCE_MS = 120_000
MAX_BATCH_BYTES = 1024 * 1024


@dataclass(slots=True, eq=False)
class Group:
    """Records acknowledged together (a table's flush, or one record): `acked` settles with
    the metadata of the last of them once the broker took every batch holding one, or with
    the first failure. One future and one settlement per batch, not per record."""

    acked: asyncio.Future[RecordMetadata]
    batches: int = 0  # holding its records, not answered yet (final before any is sent)
    last: RecordMetadata | None = None

    def fail(self, error: BaseException) -> None:
        if not self.acked.done():
            self.acked.set_exception(error)

    def settle(self, sent: asyncio.Future[RecordMetadata], relative: int) -> None:
        """A batch's outcome; `relative`: the offset of the group's last record in it."""
        if self.acked.done():
            return
        if sent.cancelled():
            self.acked.cancel()
            return
        if (error := sent.exception()) is not None:
            self.fail(error)
            return
        metadata = sent.result()
        offset = metadata.offset + relative
        if self.last is None or offset > self.last.offset:
            self.last = metadata._replace(offset=offset)
        self.batches -= 1
        if self.batches == 0:
            self.acked.set_result(self.last)


@dataclass(slots=True)
class Queued:
    """A record sent and not handed to the client yet (`group`: acknowledged with others)."""

    value: bytes | None
    key: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]] | None
    group: Group | None = None


@dataclass(slots=True)
class Batch:
    """One partition's records in one closed batch: what `flush()` waits for."""

    topic: str
    partition: int
    builder: Any  # aiokafka's BatchBuilder
    groups: dict[Group, int] = field(default_factory=dict)  # each one's last record in it

    def add(self, record: Queued) -> bool:
        """Append `record` (its group settles with its offset); False when full."""
        metadata = self.builder.append(
            timestamp=None, key=record.key, value=record.value, headers=record.headers
        )
        if metadata is None:
            return False
        if (group := record.group) is not None:
            if group not in self.groups:
                group.batches += 1
            self.groups[group] = metadata.offset
        return True


class OutputLost(RuntimeError):
    """The broker did not take a record the worker sent: the input it came from is not acked."""


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """A record key's murmur2, as Kafka's default partitioner takes it. aiokafka's is pure
    Python, and keys repeat (queues, agents): remembered."""
    return int(murmur2(key) & 0x7FFFFFFF)


def partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """Kafka's default partitioner (aiokafka's, the Java client's): murmur2 of the key."""
    if key is None:
        return random.choice(partitions)
    return partitions[_key_hash(key) % len(partitions)]


def _settle(batch: Batch, sent: asyncio.Future[RecordMetadata]) -> None:
    """The broker's outcome of a batch, passed on to each group with records in it."""
    for group, relative in batch.groups.items():
        group.settle(sent, relative)


class Outputs:
    def __init__(self, client_options: dict[str, Any], *, linger_ms: int = 20) -> None:
        self.options = client_options
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._queued: dict[str, list[Queued]] = {}  # per topic, in the order sent
        self._due: asyncio.TimerHandle | None = None  # the next submission, when planned
        self._submitting: asyncio.Task[None] | None = None  # the latest submission
        # Not reported by a flush yet: each batch handed over, with the broker's answer to come,
        # and the records that never reached the client (why, how many).
        self._sent: list[tuple[asyncio.Future[RecordMetadata], int]] = []
        self._unsent: list[tuple[BaseException, int]] = []

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._starting:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        **self.options,
                        acks="all",
                        enable_idempotence=True,  # a retried request never writes a record twice
                        linger_ms=0,  # batches are closed when handed over
                        max_batch_size=MAX_BATCH_BYTES,
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
        """Queue a record (partition None: by its key, as Kafka's default partitioner does);
        `flush()` says whether the broker took it."""
        self._queue(topic, Queued(value, key, partition, list(headers) if headers else None))
        if self._due is None:
            self._plan(self.linger_ms / 1000)

    def send_acked(
        self, topic: str, value: bytes | None, *, key: bytes, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        """Send a record; the future is the broker's acknowledgement (its offset). The records
        sent in the same turn of the event loop go to the client together, without lingering."""
        return self.send_all_acked(topic, [(key, value)], partition=partition)

    def send_all_acked(
        self, topic: str, records: Sequence[tuple[bytes, bytes | None]], *, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        """`send_acked` for records of one partition, in order (a table's flush): one future,
        the last record's acknowledgement once the broker took every one."""
        if not records:
            raise ValueError("no records to acknowledge")
        group = Group(asyncio.get_running_loop().create_future())
        for key, value in records:
            self._queue(topic, Queued(value, key, partition, None, group=group))
        if self._due is None or self._due.when() > asyncio.get_running_loop().time():
            self._plan(0.0)
        return group.acked

    def _queue(self, topic: str, record: Queued) -> None:
        queued = self._queued.get(topic)
        if queued is None:
            self._queued[topic] = [record]
        else:
            queued.append(record)

    def _plan(self, delay: float) -> None:
        if self._due is not None:
            self._due.cancel()
        self._due = asyncio.get_running_loop().call_later(delay, self._submit_queued)

    def _submit_queued(self) -> None:
        """Hand what is queued to the client, after the submission before it."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        self._submitting = asyncio.ensure_future(self._submit(queued, self._submitting))

    async def _hand_over(self) -> None:
        """Submit what is queued now, and wait until every submission so far is done."""
        self._submit_queued()
        if self._submitting is not None:
            await asyncio.wait([self._submitting])

    async def _submit(
        self, queued: dict[str, list[Queued]], previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        batches: list[Batch] = []
        built = False
        handed = 0
        try:
            producer = await self._started()
            for topic, records in queued.items():
                batches.extend(await self._batches(producer, topic, records))
            built = True
            for batch in batches:
                batch.builder.close()
                sent = await producer.send_batch(
                    batch.builder, batch.topic, partition=batch.partition
                )
                sent.add_done_callback(functools.partial(_settle, batch))
                self._sent.append((sent, batch.builder.record_count()))
                handed += 1
        except BaseException as error:  # every record not handed over fails, none hangs
            if built:  # the batches not handed over
                for batch in batches[handed:]:
                    for group in batch.groups:
                        group.fail(error)
                count = sum(batch.builder.record_count() for batch in batches[handed:])
            else:
                records = [record for records in queued.values() for record in records]
                for record in records:
                    if record.group is not None:
                        record.group.fail(error)
                count = len(records)
            self._unsent.append((error, count))
            if not isinstance(error, Exception):
                raise

    @staticmethod
    async def _batches(
        producer: AIOKafkaProducer, topic: str, records: list[Queued]
    ) -> list[Batch]:
        """The topic's records as batches, each partition's in the order sent."""
        partitions = sorted(await producer.partitions_for(topic))
        open_: dict[int, Batch] = {}
        batches: list[Batch] = []
        for record in records:
            partition = record.partition
            if partition is None:
                partition = partition_of(record.key, partitions)
            batch = open_.get(partition)
            if batch is None or not batch.add(record):  # none open, or full: a new one
                batch = open_[partition] = Batch(topic, partition, producer.create_batch())
                batches.append(batch)
                batch.add(record)  # a record always fits an empty batch
        return batches

    async def flush(self) -> None:
        """Wait until the broker took every record sent so far; raise `OutputLost` otherwise.
        (Every flush waits for all of them, those a concurrent flush waits for too.)"""
        await self._hand_over()
        sent, unsent = list(self._sent), list(self._unsent)
        if sent:
            await asyncio.wait([future for future, _ in sent])
        self._sent = [item for item in self._sent if item not in sent]
        self._unsent = [item for item in self._unsent if item not in unsent]
        records = sum(count for _, count in sent) + sum(count for _, count in unsent)
        failed = list(unsent)
        for future, count in sent:
            if future.cancelled():
                failed.append((asyncio.CancelledError(), count))
            elif (error := future.exception()) is not None:
                failed.append((error, count))
        if failed:
            error = failed[0][0]
            raise OutputLost(
                f"the broker did not take {sum(n for _, n in failed)} of {records} records: "
                f"{error!r}"
            ) from error

    async def stop(self) -> None:
        """Hand over what is queued, then stop the client (which sends what it holds)."""
        await self._hand_over()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
