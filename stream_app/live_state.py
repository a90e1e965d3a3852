"""The queues stage's `queue-live` records (contract §7): at each tick of a partition, the
record of every queue it owns, when due (stream_app.domain.live). Sent through the stage's
outputs, so the checkpoint that follows the tick makes them durable with the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

from stream_app.domain.clock import wall_ms
from stream_app.domain.live import LiveReadings, LiveThrottle, fingerprint, live_record
from stream_app.domain.queues import QueueStage
from stream_app.domain.sla import SlaConfig
from stream_app.outputs import Outputs


class LivePublisher:
    def __init__(
        self,
        stage: QueueStage,
        sla: SlaConfig,
        outputs: Outputs,
        topic: str,
        *,
        throttle: LiveThrottle | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.readings = LiveReadings(stage, sla)
        self.outputs = outputs
        self.topic = topic
        self.throttle = throttle if throttle is not None else LiveThrottle()
        self.clock = clock

    async def publish(self, queues: Iterable[str], stream_now: int) -> int:
        """Send the records due among `queues` (owned here); return how many were sent."""
        wall = self.clock()
        sent = 0
        for queue in queues:
            now = self.readings.read(queue, stream_now)
            print_ = fingerprint(now)
            if not self.throttle.due(queue, print_, wall):
                continue
            value = orjson.dumps(live_record(now, wall))
            await self.outputs.send(self.topic, value, key=queue.encode())
            self.throttle.sent(queue, print_, wall)
            sent += 1
        return sent
