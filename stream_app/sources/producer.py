"""Send contract events to `call-events` (keyed by call_id) and `agent-events` (keyed by
agent_id), and wait until the broker has them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.domain.events import parse_ts
from stream_app.domain.model import AGENT_EVENT_TYPES
from stream_app.kafka_clients import client_options
from stream_app.settings import Settings


def topic_of(event: dict[str, Any]) -> str:
    """The catalog topic of a contract event: its type says which input it belongs to."""
    return "agent-events" if event.get("type") in AGENT_EVENT_TYPES else "call-events"


async def produce_events(
    settings: Settings, events: Iterable[tuple[str, dict[str, Any]]], *, speed: float | None = None
) -> int:
    """Produce in the given order; with `speed`, pace by event time at `speed`x real time.

    Returns the number of records the broker acknowledged (all of them, or it raises).
    """
    pending: list[asyncio.Future[Any]] = []
    sent = 0
    async with open_producer(settings) as producer:
        first_ts: int | None = None
        started = time.monotonic()
        for key, event in events:
            if speed:
                ts = parse_ts(event["ts"])
                first_ts = ts if first_ts is None else first_ts
                delay = (ts - first_ts) / 1000 / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            topic = settings.topic(topic_of(event))
            pending.append(await producer.send(topic, key=key.encode(), value=orjson.dumps(event)))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
        await producer.flush()
        await asyncio.gather(*pending)
        sent += len(pending)
        return sent


@asynccontextmanager
async def open_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (acks from all replicas, idempotent), stopped on exit: produce_events
    opens one for a batch of events, a connector keeps one for as long as it sends."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        enable_idempotence=True,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def deliver(
    producer: AIOKafkaProducer,
    topics: Mapping[str, str],
    events: Iterable[tuple[str, dict[str, Any]]],
) -> int:
    """Send (key, event) pairs in order, each to `topics[topic_of(event)]` (catalog name to the
    full name); return once the broker acknowledged every one, so the caller may then commit
    its read position. Raises when a send fails."""
    pending = [
        await producer.send(topics[topic_of(event)], key=key.encode(), value=orjson.dumps(event))
        for key, event in events
    ]
    await asyncio.gather(*pending)
    return len(pending)
