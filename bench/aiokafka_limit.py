"""The ceiling under any Python runtime here: aiokafka alone reading, parsing, producing.

    .venv/bin/python bench/aiokafka_limit.py --topic PREFIXcall-events --out TOPIC --expect N

Reads every partition of the input from the beginning (`getmany`), parses each value with
orjson and produces one record per event (acks=all, keyed like the input) to `--out`; the
time runs from the first record read to the broker's acknowledgement of the last record sent.
Prints one JSON line: the rate, peak RSS and CPU time of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import peak_rss_kib
from tests.support import kafka_options


async def run(topic: str, out: str, expect: int) -> dict[str, object]:
    consumer = AIOKafkaConsumer(
        **kafka_options(), enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    producer = AIOKafkaProducer(**kafka_options(), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        first: float | None = None
        read = 0
        pending: list[asyncio.Future[object]] = []
        while read < expect:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                if first is None:
                    first = time.monotonic()
                for record in records:
                    event = orjson.loads(record.value)
                    value = orjson.dumps({"call_id": event["call_id"], "ts": event["ts"]})
                    pending.append(await producer.send(out, value, key=record.key))
                read += len(records)
            if len(pending) > 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        done = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
    assert first is not None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": read,
        "rate": read / max(done - first, 1e-9),
        "peak_rss_kib": peak_rss_kib(os.getpid()),  # not ru_maxrss: fork inherits it
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args.topic, args.out, args.expect))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
