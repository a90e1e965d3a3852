"""The centre now, as a wallboard sees it: the latest `queue-live` record of every queue (and
`agent-status` record of every agent, once something publishes them), read from the
beginning and then followed.

No consumer group: every reader (each worker, each `stream-app wallboard`) reads every
partition itself, so it shows all queues of the deployment whichever worker owns which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.domain.clock import wall_ms
from stream_app.domain.live import STALE_AFTER_MS

log = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = (
    1000  # changes a slow page may fall behind before it is cut off (it reconnects)
)
TOPIC_CHECK_S = 30.0  # how often a topic that did not exist yet is looked for again
KINDS = ("queue", "agent")  # queue-live records, agent-status records

Change = tuple[str, dict[str, Any]]  # (SSE event name, data)


def instant_ms(text: object) -> int | None:
    """An RFC 3339 instant of a record (`as_of`), in epoch ms; None when missing or invalid."""
    if not isinstance(text, str):
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


class LiveView:
    """The latest record per key of both topics, and the pages listening to its changes."""

    def __init__(self, clock: Callable[[], int] = wall_ms) -> None:
        self.clock = clock
        self.records: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.loaded = False  # the topics were read to their end once
        self.closed = asyncio.Event()
        self._subscribers: set[asyncio.Queue[Change | None]] = set()

    # -- what readers see -------------------------------------------------------------------------

    def apply(self, kind: str, key: bytes | None, value: bytes | None) -> None:
        """One record of `kind`'s topic: the latest per key wins, a tombstone removes it; a
        record that is not a JSON object is skipped (a wallboard must not die of one)."""
        if key is None:
            return
        name = key.decode(errors="replace")
        if value is None:
            if self.records[kind].pop(name, None) is not None:
                self._tell((f"{kind}_removed", {"key": name}))
            return
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("wallboard: %s record for %r is not JSON; skipped", kind, name)
            return
        if not isinstance(record, dict):
            return
        self.records[kind][name] = record
        self._tell((kind, record))

    def stale(self, now_ms: int | None = None) -> list[str]:
        """Queues whose last record is older than STALE_AFTER_MS by its `as_of`: their owner
        stopped publishing (it is down, or cut off from the broker), or this reader is."""
        now = self.clock() if now_ms is None else now_ms
        return sorted(
            queue
            for queue, record in self.records["queue"].items()
            if (as_of := instant_ms(record.get("as_of"))) is None or now - as_of > STALE_AFTER_MS
        )

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "now": now,
            "stale_after_ms": STALE_AFTER_MS,
            "loaded": self.loaded,
            "stale": self.stale(now),
            "queues": [self.records["queue"][q] for q in sorted(self.records["queue"])],
            "agents": [self.records["agent"][a] for a in sorted(self.records["agent"])],
        }

    def heartbeat(self) -> dict[str, Any]:
        now = self.clock()
        return {"now": now, "loaded": self.loaded, "stale": self.stale(now)}

    # -- pages listening --------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Change | None]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        self._subscribers.discard(queue)

    def _tell(self, change: Change) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:  # cut off; its page reconnects and gets a snapshot
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    def close(self) -> None:
        """The server stops: every stream ends now (not after the server's shutdown timeout)."""
        self.closed.set()
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()


class LiveReader:
    """Feeds a LiveView from Kafka: every partition of the topics, from the beginning, then live."""

    def __init__(self, view: LiveView, topics: dict[str, str], client_options: dict[str, Any]):
        self.view = view
        self.topics = topics  # kind → topic name
        self.client_options = client_options

    async def run(self) -> None:
        """Until cancelled; a failed consumer is replaced (the view keeps what it has)."""
        while True:
            consumer = AIOKafkaConsumer(
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **self.client_options,
            )
            try:
                await consumer.start()
                await self._read(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wallboard: reading the live topics failed; retrying")
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        await consumer._client.force_metadata_update()
        found = []
        for topic in self.topics.values():
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                found.append(TopicPartition(topic, partition))
        return found

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        kind_of = {topic: kind for kind, topic in self.topics.items()}
        assigned: list[TopicPartition] = []
        ends: dict[TopicPartition, int] = {}
        checked = 0.0
        while True:
            if time.monotonic() - checked > (TOPIC_CHECK_S if assigned else 2.0):
                checked = time.monotonic()
                found = await self._partitions(consumer)
                if set(found) != set(assigned):
                    positions = {tp: await consumer.position(tp) for tp in assigned}
                    consumer.assign(found)
                    for tp in found:
                        if tp in positions:
                            consumer.seek(tp, positions[tp])
                        else:
                            await consumer.seek_to_beginning(tp)
                    fresh = [tp for tp in found if tp not in positions]
                    ends.update(await consumer.end_offsets(fresh) if fresh else {})
                    assigned = found
                    log.info("wallboard: reading %d partitions of %s", len(found), self.topics)
            if not assigned:
                await asyncio.sleep(1)
                continue
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    self.view.apply(kind_of[tp.topic], record.key, record.value)
            if not self.view.loaded and ends and await self._reached(consumer, ends):
                self.view.loaded = True
                ends = {}

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        return all([await consumer.position(tp) >= end for tp, end in ends.items()])
