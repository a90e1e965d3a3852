"""Send the simulation's records, paced by simulated time, to Kafka (or to a stream).

Pacing: a record due at simulated instant T goes out at `wall0 + (T - start) / speed`, and
never before the wall clock reaches T: a real source cannot send what has not happened yet,
and the engine rejects events more than 5 minutes ahead of its clock. The model itself is
paced the same way (`Simulation.steps`): it moves to instant T only once T is due, so it never
runs ahead of the simulated time the sending has reached.

On stop (Ctrl-C, SIGTERM) the center closes at that simulated time, the stop time: the
instant the pacing had reached when the stop came (at N x real time, `start + elapsed * N`;
never past the wall clock, nor past the step it was waiting for), not the time of the next
event. Every call in progress ends then (`Simulation.close`), the records already made but
held back by a fault are sent, and so are the closing events: no call is left open in the
pipeline, and the summary (fed only what was sent) describes exactly what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, TextIO

from stream_app.settings import Settings
from stream_app.simulator.model import AGENT_TOPIC, CALL_TOPIC, Record, Simulation
from stream_app.simulator.summary import Summary

PENDING_LIMIT = 10_000  # unacknowledged sends before waiting for the broker


class Sink(Protocol):
    async def send(self, record: Record) -> None: ...
    async def flush(self) -> None: ...


class KafkaSink:
    """A long-lived idempotent producer to `call-events` (keyed by call_id) and `agent-events`
    (keyed by agent_id)."""

    def __init__(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaProducer

        from stream_app.kafka_clients import client_options

        self.topics = {name: settings.topic(name) for name in (CALL_TOPIC, AGENT_TOPIC)}
        self.producer = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            linger_ms=20,
            max_batch_size=512 * 1024,
            enable_idempotence=True,
        )
        self.pending: list[asyncio.Future[Any]] = []
        self.acknowledged = 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, record: Record) -> None:
        topic = self.topics[record.topic]
        future = await self.producer.send(topic, key=record.key.encode(), value=record.value)
        self.pending.append(future)
        if len(self.pending) >= PENDING_LIMIT:
            await self._settle(wait=True)
        elif len(self.pending) % 500 == 0:
            await self._settle(wait=False)

    async def flush(self) -> None:
        await self.producer.flush()
        await self._settle(wait=True)

    async def _settle(self, *, wait: bool) -> None:
        """Count the acknowledged sends; a failed one raises (nothing is lost silently)."""
        if wait:
            await asyncio.gather(*self.pending)
            done, self.pending = self.pending, []
        else:
            done = [f for f in self.pending if f.done()]
            self.pending = [f for f in self.pending if not f.done()]
        for future in done:
            future.result()
        self.acknowledged += len(done)


class StreamSink:
    """`--dry-run`: one record per line, `key<TAB>value` (malformed values may not be UTF-8)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout

    async def send(self, record: Record) -> None:
        self.out.write(f"{record.key}\t{record.value.decode('utf-8', 'replace')}\n")

    async def flush(self) -> None:
        self.out.flush()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def run(
    sim: Simulation,
    summary: Summary,
    sink: Sink,
    *,
    speed: float | None,
    stop: asyncio.Event,
    clock: Callable[[], int] = wall_ms,
) -> bool:
    """Send until the simulation ends or `stop` is set; True when stopped early: the center
    was then closed at the stop time, every call in progress ended (see the module's doc).

    `speed` None is as fast as possible (still never ahead of the wall clock).
    """
    started = time.monotonic()

    def reached() -> int:
        """The simulated instant the pacing has reached now."""
        wall = clock()
        if not speed:
            return wall
        return min(wall, sim.start_ms + int((time.monotonic() - started) * 1000 * speed))

    horizon = reached()  # a step due by then needs no wait (nor a look at the clocks)
    for step, item in enumerate(sim.steps(), start=1):
        due = item if isinstance(item, int) else item.emit_at
        if due > horizon:
            delay = (due - clock()) / 1000  # never ahead of the wall clock
            if speed:
                paced = (due - sim.start_ms) / 1000 / speed - (time.monotonic() - started)
                delay = max(delay, paced)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            horizon = reached()
        if stop.is_set():
            # Between two steps: the model is at or before the instant reached, and the step
            # waited for (maybe cut short) is not past it. Everything made so far has ts <= at.
            at = max(sim.now, min(due, reached()))
            current = [] if isinstance(item, int) else [replace(item, emit_at=min(due, at))]
            for record in [*current, *sim.close(at)]:
                await sink.send(record)
                summary.add(record)
            await sink.flush()
            return True
        if isinstance(item, Record):
            await sink.send(item)
            summary.add(item)
        if step % 1000 == 0:
            await asyncio.sleep(0)  # let a signal handler run during a fast run
    await sink.flush()
    return False
