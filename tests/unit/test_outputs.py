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


def test_records_acknowledged_together_settle_with_the_last_once_every_batch_is_in() -> None:
    """A table's flush: one acknowledgement for its records, the last one's offset, given only
    when the broker took each batch they fill."""
    client = Client(partitions=1, batch_bytes=200)

    async def run() -> None:
        outputs = outputs_on(client, linger_ms=60_000)
        await outputs.send("log", b"before", key=b"k", partition=0)  # offset 0
        records = [(b"k%02d" % n, b"x" * 20) for n in range(30)]
        acked = outputs.send_all_acked("log", records, partition=0)
        await asyncio.sleep(0.01)
        assert len(client.batches) > 3  # no linger, several batches
        _, _, first = client.batches[0]
        first.set_result(RecordMetadata("log", 0, TopicPartition("log", 0), 0, -1, 0, 0))
        await asyncio.sleep(0.01)
        assert not acked.done()  # the other batches are not answered yet
        client.offsets[TopicPartition("log", 0)] = client.batches[0][1].record_count()
        client.answer()
        assert (await acked).offset == 30
        assert [key for key, _ in client.records()[TopicPartition("log", 0)]] == [
            b"k",
            *(key for key, _ in records),
        ]

    asyncio.run(run())


def test_records_acknowledged_together_fail_with_any_batch_of_theirs() -> None:
    client = Client(partitions=1, batch_bytes=200)

    async def run() -> None:
        outputs = outputs_on(client)
        acked = outputs.send_all_acked("log", [(b"k", b"x" * 50)] * 8, partition=0)
        await asyncio.sleep(0.01)
        assert len(client.batches) > 1
        _, _, second = client.batches[1]
        second.set_exception(RuntimeError("refused"))
        with pytest.raises(RuntimeError, match="refused"):
            await acked
        client.answer()
        with pytest.raises(OutputLost):
            await outputs.flush()

    asyncio.run(run())


def test_records_acknowledged_together_that_never_reach_the_client_fail() -> None:
    class Unreachable(Client):
        async def partitions_for(self, topic: str) -> set[int]:
            raise RuntimeError("no metadata")

    async def run() -> None:
        outputs = outputs_on(Unreachable())
        acked = outputs.send_all_acked("log", [(b"k", b"v")] * 3, partition=0)
        with pytest.raises(OutputLost, match="did not take 3 of 3 records"):
            await outputs.flush()
        with pytest.raises(RuntimeError, match="no metadata"):
            await acked

    asyncio.run(run())
