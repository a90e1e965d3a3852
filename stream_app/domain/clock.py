"""Event time: how far each input partition got, and when an interval may close.

Stream time is the newest event `ts` seen (contract §3). On a live feed an idle queue must still
close its intervals, so the wall clock moves stream time on, but only where that cannot run
ahead of records not yet applied: the clock of an input partition advances by the wall time
elapsed since its newest event was seen while that event was current when seen (a replay of old
data never moves with the wall clock) and the partition has nothing left to read (a consumer
lagging behind its input keeps the time of the records it applied, so it never closes an
interval before the records that belong in it). The idea is bytewax's event clock; its state is
kept with the stage's state, so a restart resumes it.

The queues stage hears the calls partitions' clocks through their records and watermarks
(`Announcement`), and the agents partitions' through theirs. It closes nothing before it has
heard every one, and then only up to where each partition still reading a backlog has got: a
partition drained unevenly holds closing back instead of having its records revise published
intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

LIVE_WINDOW_MS = 300_000  # an event this close to the wall clock is current


def wall_ms() -> int:
    """The wall clock in milliseconds (the domain takes it as an argument; the runtime reads it)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class EventClock:
    """Stream time of one input (a partition, or a worker's view of several)."""

    newest: int | None = None  # the newest event ts seen
    seen_at: int | None = None  # wall ms when `newest` was seen (None: not known, never live)
    high: int | None = None  # the largest time `now` returned: never go back
    live_window_ms: int = LIVE_WINDOW_MS

    def observe(self, ts: int, wall_ms: int) -> None:
        """An event with this `ts` was applied at wall time `wall_ms`."""
        if self.newest is None or ts > self.newest:
            self.newest = ts
            self.seen_at = wall_ms

    @property
    def live(self) -> bool:
        """Whether the newest event was current when it was seen."""
        return (
            self.newest is not None
            and self.seen_at is not None
            and self.newest >= self.seen_at - self.live_window_ms
        )

    def now(self, wall_ms: int, *, caught_up: bool) -> int | None:
        """Stream time at `wall_ms`; None before any event. `caught_up`: nothing is waiting to
        be read, so the wall time since the newest event is time in which nothing happened."""
        if self.newest is None:
            return None
        current = self.newest
        if caught_up and self.live and self.seen_at is not None and wall_ms > self.seen_at:
            current += wall_ms - self.seen_at
        if self.high is not None and self.high > current:
            current = self.high
        self.high = current
        return current

    def to_json(self) -> list[int | None]:
        return [self.newest, self.seen_at, self.high]

    @classmethod
    def from_json(cls, value: Any) -> EventClock:
        """From `to_json`, or from a bare newest ts (what version 1 stored): its wall time is
        unknown, so it does not move with the wall clock before the next event."""
        if isinstance(value, int):
            return cls(newest=value)
        newest, seen_at, high = value
        return cls(newest=newest, seen_at=seen_at, high=high)


REANNOUNCE_EVERY_MS = 60_000  # unchanged news of a partition's clock, told again this often


class Announced:
    """Per partition, the news of its clock last told (time, backlog) and when: new news goes
    at once (or after `min_gap_ms`, for a change of time alone), the same again only after
    REANNOUNCE_EVERY_MS (a partition that moved to a worker which has not heard it yet)."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[int | None, bool, int]] = {}

    def due(
        self, partition: int, time: int | None, behind: bool, wall: int, min_gap_ms: int = 0
    ) -> bool:
        """Whether to tell it now; a True is taken as told."""
        last = self.last.get(partition)
        if last is not None and wall - last[2] < REANNOUNCE_EVERY_MS:
            if last[:2] == (time, behind):
                return False
            if last[1] == behind and wall - last[2] < min_gap_ms:
                return False
        self.last[partition] = (time, behind, wall)
        return True

    def clear(self) -> None:
        """Every partition tells its news again at its next chance (after a rebalance)."""
        self.last.clear()


@dataclass(frozen=True, slots=True)
class Announcement:
    """A calls partition's clock as it told the queues stage: its stream time, and whether it
    was still reading a backlog (then records before that time may still be on their way)."""

    source: int
    time: int | None  # None: the partition has not seen an event yet
    behind: bool


@dataclass(slots=True)
class SourceTimes:
    """What one queues partition heard from each calls partition, and from each agents
    partition (`gates`): agents' timelines cross two hops more than calls' figures, so in a
    replay an interval closed by the calls partitions' clocks alone would be published before
    its agent figures came, and then again with them."""

    sources: int  # how many calls partitions feed it
    gates: int = 0  # how many agents partitions feed it
    heard: dict[int, Announcement] = field(default_factory=dict)
    gated: dict[int, Announcement] = field(default_factory=dict)  # from agents partitions

    def hear(self, announcement: Announcement) -> None:
        _hear(self.heard, announcement)

    def hear_gate(self, announcement: Announcement) -> None:
        """An agents partition's clock: it holds closing back like a calls partition's, but
        not the low watermark (an agents partition may have no time at all)."""
        _hear(self.gated, announcement)

    @property
    def complete(self) -> bool:
        return len(self.heard) == self.sources

    def low_watermark(self) -> int | None:
        """The oldest time of any calls partition: none of them can still send a record for
        a bucket older than this minus its lateness bound (None until all have seen events)."""
        times = [a.time for a in self.heard.values()]
        if not self.complete or None in times:
            return None
        return min(t for t in times if t is not None)

    def closing_time(self, stream_now: int) -> int | None:
        """How far intervals may close: the worker's stream time, held back by every calls or
        agents partition that is still reading a backlog (None: nothing may close yet)."""
        if not self.complete or len(self.gated) < self.gates:
            return None
        announced = (*self.heard.values(), *self.gated.values())
        behind = [a.time for a in announced if a.behind]
        if None in behind:
            return None
        return min([stream_now, *(t for t in behind if t is not None)])


def _hear(heard: dict[int, Announcement], announcement: Announcement) -> None:
    last = heard.get(announcement.source)
    if last is None or last.time is None or (announcement.time or 0) >= last.time:
        heard[announcement.source] = announcement
    elif announcement.behind != last.behind:  # an older time, newer news about the backlog
        heard[announcement.source] = Announcement(last.source, last.time, announcement.behind)


PARTITION_TIME_KEY = "\x00stream-time"  # NUL-led: no real call or agent id looks like it


class ClockStore(Protocol):
    """The stage's table, on the partition of the record being processed."""

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class PartitionClocks:
    """Each input partition's event clock, kept in the stage's table (a stage's base class)."""

    store: ClockStore
    clocks: dict[int, EventClock]

    def clock_of(self, partition: int) -> EventClock:
        """The partition's event clock (restored from the table after a restart)."""
        clock = self.clocks.get(partition)
        if clock is None:
            stored = self.store.get(PARTITION_TIME_KEY)
            clock = EventClock() if stored is None else EventClock.from_json(stored)
            self.clocks[partition] = clock
        return clock

    def stream_time(self, partition: int) -> int | None:
        """The newest event ts seen on this partition: what lateness and retention count from."""
        return self.clock_of(partition).newest

    def save_stream_time(self, partition: int) -> None:
        """Persist the partition's clock (from a tick: cheap, once a second at most)."""
        clock = self.clocks.get(partition)
        if clock is not None and clock.newest is not None:
            value = clock.to_json()
            if self.store.get(PARTITION_TIME_KEY) != value:
                self.store.set(PARTITION_TIME_KEY, value)
