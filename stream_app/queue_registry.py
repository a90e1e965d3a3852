"""The deployment's queues, at most MAX_QUEUES: every queue name becomes Prometheus label values
and window state, so a feed that invents names (a bug, or an attack) must not grow them
without bound.

The registry is a compacted one-partition topic (`queue-registry`, key = queue). Every worker
reads it whole before its first event, then follows it, so a queue admitted by one worker is
known to all. A worker admits a new queue while the registry holds fewer than the limit, and
writes it there (awaited) before the event that named it is acked. Two workers that admit
their last free places at the same instant can overshoot the limit by one queue each: the
bound is a guard against unbounded growth, not a quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


class QueueRegistry:
    def __init__(self, topic: str, limit: int, client_options: dict[str, Any]) -> None:
        self.topic = topic
        self.limit = limit
        self.client_options = client_options
        self.known: set[str] = set()
        self.unsent: list[str] = []
        self.loaded = False
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def admit(self, queue: str) -> bool:
        """True when the queue is known or there is room for it (then it is to be published)."""
        if queue in self.known:
            return True
        if len(self.known) >= self.limit:
            return False
        self.known.add(queue)
        self.unsent.append(queue)
        return True

    async def load(self) -> None:
        """Read the whole registry, then follow it in the background (once per worker)."""
        async with self._lock:
            if self.loaded:
                return
            consumer = AIOKafkaConsumer(
                enable_auto_commit=False, auto_offset_reset="earliest", **self.client_options
            )
            await consumer.start()
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                self._take(await consumer.getmany(tp, timeout_ms=1000))
            self._consumer = consumer
            self._follower = asyncio.create_task(self._follow(tp))
            self.loaded = True
            log.info("queue registry: %d queues known (limit %d)", len(self.known), self.limit)

    def _take(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for record in records:
                if record.key is not None:
                    self.known.add(record.key.decode())

    async def _follow(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        while True:
            try:
                self._take(await self._consumer.getmany(tp, timeout_ms=1000))
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker outage: the consumer reconnects; keep following
                log.exception("queue registry: reading %s failed; retrying", self.topic)
                await asyncio.sleep(1)

    def take_unsent(self) -> list[str]:
        """The queues admitted here since the last call: the caller writes them to the topic
        (key = the queue) and waits for the broker before it acks the records that named them."""
        if not self.unsent:  # every event asks; almost none has a new queue
            return []
        names, self.unsent = self.unsent, []
        return names

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._consumer is not None:
            await self._consumer.stop()
