"""The worker's output producer on the real broker: what `flush()` vouches for, and a record
the broker refuses stopping the flush instead of being lost silently."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.outputs import OutputLost, Outputs
from tests.support import consume_all, kafka_options, unique_prefix


async def create_topic(name: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


def test_flushed_records_are_on_the_topic_in_order() -> None:
    topic = unique_prefix("outputs") + "ok"

    async def run() -> None:
        await create_topic(topic)
        outputs = Outputs(kafka_options())
        try:
            for n in range(500):
                await outputs.send(topic, str(n).encode(), key=b"k", headers=[("h", b"v")])
            await outputs.flush()
        finally:
            await outputs.stop()

    asyncio.run(run())
    records = consume_all(topic, expect=500, timeout=30)
    assert [r.value for r in records] == [str(n).encode() for n in range(500)]
    assert all(r.headers == {"h": b"v"} for r in records)


def test_a_record_the_broker_refuses_fails_the_flush() -> None:
    topic = unique_prefix("outputs") + "small"

    async def run() -> None:
        await create_topic(topic, **{"max.message.bytes": "2000"})
        outputs = Outputs(kafka_options())
        try:
            await outputs.send(topic, b"x" * 10_000)  # the client takes it; the broker does not
            with pytest.raises(OutputLost, match="did not take 1 of 1 records"):
                await outputs.flush()
            await outputs.flush()  # what failed was reported once; nothing is pending now
            await outputs.send(topic, b"fits")
            await outputs.flush()
        finally:
            await outputs.stop()

    asyncio.run(run())
    assert [r.value for r in consume_all(topic, timeout=10)] == [b"fits"]


def test_neither_a_flush_nor_an_acknowledged_send_waits_out_the_linger() -> None:
    """A checkpoint waits for the broker, not for the producer's linger (aiokafka's own flush
    waits it out): with a linger of a minute, both return in seconds."""
    topic = unique_prefix("outputs") + "linger"

    async def run() -> list[int]:
        await create_topic(topic)
        outputs = Outputs(kafka_options(), linger_ms=60_000)
        try:
            await outputs.send(topic, b"output")
            await asyncio.wait_for(outputs.flush(), timeout=20)
            acked = await asyncio.wait_for(
                asyncio.gather(
                    *(outputs.send_acked(topic, b"%d" % n, key=b"k", partition=0) for n in range(3))
                ),
                timeout=20,
            )
            return [meta.offset for meta in acked]
        finally:
            await outputs.stop()

    assert asyncio.run(run()) == [1, 2, 3]
    assert [r.value for r in consume_all(topic, expect=4, timeout=30)] == [
        b"output",
        b"0",
        b"1",
        b"2",
    ]
