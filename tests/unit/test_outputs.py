"""The output producer's batching, against a client that answers when the test says so: the order
of a partition's records, what a flush waits for, and what it reports lost. (On the real broker:
tests/integration/test_outputs.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import RecordMetadata, TopicPartition

from stream_app.outputs import OutputLost, Outputs, partition_of


class Client:
    """Stands in for aiokafka's producer: keeps each batch handed over and its future."""

    def __init__(self, partitions: int = 4, *, batch_bytes: int = 1024 * 1024) -> None:
        self.partitions = set(range(partitions))
        self.batch_bytes = batch_bytes
        self.batches: list[tuple[TopicPartition, BatchBuilder, asyncio.Future[Any]]] = []
        self.offsets: dict[TopicPartition, int] = {}

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert batch.closed()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches.append((TopicPartition(topic, partition), batch, future))
        return future

    def answer(self, error: BaseException | None = None) -> None:
        """The broker's answer to every batch not answered yet."""
        for tp, batch, future in self.batches:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
                continue
            base = self.offsets.get(tp, 0)
            self.offsets[tp] = base + batch.record_count()
            future.set_result(RecordMetadata(tp.topic, tp.partition, tp, base, -1, 0, 0))

    def records(self) -> dict[TopicPartition, list[tuple[bytes | None, bytes | None]]]:
        """What each partition received, in order."""
        got: dict[TopicPartition, list[tuple[bytes | None, bytes | None]]] = {}
        for tp, batch, _ in self.batches:
            for record in DefaultRecordBatch(bytearray(batch._build())):
                got.setdefault(tp, []).append((record.key, record.value))
        return got

    async def stop(self) -> None:
        pass


def outputs_on(client: Client, *, linger_ms: int = 20) -> Outputs:
    outputs = Outputs({}, linger_ms=linger_ms)
    outputs._producer = client  # type: ignore[assignment]
    return outputs


def test_the_default_partitioner_is_kafkas() -> None:
    for key in (b"", b"queue-1", b"a" * 37, "ü".encode()):
        for count in (1, 3, 8):
            partitions = list(range(count))
            assert partition_of(key, partitions) == DefaultPartitioner()(key, partitions, [])


def test_each_partition_gets_its_records_in_the_order_sent_in_few_batches() -> None:
    client = Client()

    async def run() -> None:
        outputs = outputs_on(client)
        for n in range(300):
            # keyed (the partitioner's choice) and explicit partitions, interleaved
            await outputs.send("t", b"%d" % n, key=b"q%d" % (n % 5))
            await outputs.send("t", b"w%d" % n, partition=n % 4)
        flushing = asyncio.ensure_future(outputs.flush())
        await asyncio.sleep(0.01)
        assert client.batches and not flushing.done()  # handed over, waiting for the broker
        client.answer()
        await flushing

    asyncio.run(run())
    expected: dict[TopicPartition, list[tuple[bytes | None, bytes | None]]] = {}
    for n in range(300):
        keyed = TopicPartition("t", partition_of(b"q%d" % (n % 5), [0, 1, 2, 3]))
        expected.setdefault(keyed, []).append((b"q%d" % (n % 5), b"%d" % n))
        expected.setdefault(TopicPartition("t", n % 4), []).append((None, b"w%d" % n))
    assert client.records() == expected
    assert len(client.batches) == 4  # one per partition


def test_a_full_batch_is_followed_by_another_in_order() -> None:
    client = Client(partitions=1, batch_bytes=200)

    async def run() -> None:
        outputs = outputs_on(client)
        for n in range(50):
            await outputs.send("t", b"%03d" % n + b"x" * 20)
        client_answers = asyncio.get_running_loop().call_later(0.05, client.answer)
        await outputs.flush()
        client_answers.cancel()

    asyncio.run(run())
    assert len(client.batches) > 5
    values = [value for _, value in client.records()[TopicPartition("t", 0)]]
    assert values == [b"%03d" % n + b"x" * 20 for n in range(50)]


def test_acknowledged_sends_go_at_once_and_learn_their_offsets() -> None:
    client = Client()

    async def run() -> list[int]:
        outputs = outputs_on(client, linger_ms=60_000)
        await outputs.send("out", b"lingers")
        acked = [outputs.send_acked("log", b"%d" % n, key=b"k", partition=2) for n in range(3)]
        await asyncio.sleep(0.01)
        assert {tp.topic for tp, _, _ in client.batches} == {"out", "log"}  # no linger
        client.answer()
        return [meta.offset for meta in await asyncio.gather(*acked)]

    assert asyncio.run(run()) == [0, 1, 2]


def test_sends_wait_a_linger_then_go_without_a_flush() -> None:
    client = Client()

    async def run() -> None:
        outputs = outputs_on(client, linger_ms=30)
        await outputs.send("t", b"a")
        await asyncio.sleep(0.005)
        assert client.batches == []
        await asyncio.sleep(0.1)
        assert len(client.batches) == 1

    asyncio.run(run())


def test_a_flush_waits_for_records_a_concurrent_flush_took() -> None:
    client = Client()

    async def run() -> None:
        outputs = outputs_on(client)
        await outputs.send("t", b"calls stage's")
        first = asyncio.ensure_future(outputs.flush())
        await asyncio.sleep(0)
        await outputs.send("t", b"queues stage's")  # queued: the next submission takes it
        second = asyncio.ensure_future(outputs.flush())
        await asyncio.sleep(0.01)
        assert not first.done() and not second.done()
        client.answer()
        await asyncio.gather(first, second)

    asyncio.run(run())


def test_a_refused_batch_fails_the_flush_once_and_its_acknowledgements() -> None:
    client = Client()

    async def run() -> None:
        outputs = outputs_on(client)
        await outputs.send("t", b"a", partition=0)
        await outputs.send("t", b"b", partition=1)
        acked = outputs.send_acked("log", b"c", key=b"k", partition=0)
        flushing = asyncio.ensure_future(outputs.flush())
        await asyncio.sleep(0.01)
        client.answer(RuntimeError("refused"))
        with pytest.raises(OutputLost, match="did not take 3 of 3 records"):
            await flushing
        with pytest.raises(RuntimeError, match="refused"):
            await acked
        await outputs.flush()  # reported once; nothing is pending now

    asyncio.run(run())


def test_records_that_never_reach_the_client_fail_the_flush() -> None:
    class Unreachable(Client):
        async def partitions_for(self, topic: str) -> set[int]:
            raise RuntimeError("no metadata for " + topic)

    async def run() -> None:
        outputs = outputs_on(Unreachable())
        await outputs.send("t", b"a")
        acked = outputs.send_acked("log", b"c", key=b"k", partition=0)
        with pytest.raises(OutputLost, match="did not take 2 of 2 records"):
            await outputs.flush()
        with pytest.raises(RuntimeError, match="no metadata"):
            await acked

    asyncio.run(run())


def test_a_topic_the_client_cannot_place_fails_the_records_of_every_topic_queued_with_it() -> None:
    class HalfReachable(Client):
        async def partitions_for(self, topic: str) -> set[int]:
            if topic == "gone":
                raise RuntimeError("no metadata for gone")
            return self.partitions

    client = HalfReachable()

    async def run() -> None:
        outputs = outputs_on(client)
        first = outputs.send_acked("log", b"a", key=b"k", partition=0)
        await outputs.send("gone", b"b")
        last = outputs.send_acked("later", b"c", key=b"k", partition=0)
        with pytest.raises(OutputLost, match="did not take 3 of 3 records"):
            await outputs.flush()
        for acked in (first, last):  # none of them hangs
            with pytest.raises(RuntimeError, match="no metadata"):
                await acked
        assert client.batches == []

    asyncio.run(run())
