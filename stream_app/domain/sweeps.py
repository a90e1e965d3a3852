"""When a partition's retention sweep runs: by stream time as well as by the wall clock.

A sweep scans the whole partition, so it is throttled. A throttle by the wall clock alone
(once a minute) lets a replay that moves stream time on by days a minute keep days of state
past the retention between two sweeps: the state then grows with the replay's speed, not with
the retention. Counting stream time as well bounds the state at any speed to the retention
plus one stream period, and costs a sweep per stream period (a fixed share of the events).
"""

from __future__ import annotations

from collections.abc import Hashable


class SweepSchedule:
    """Per partition: due once `wall_every_ms` of wall clock passed since its last sweep (live
    feeds: retirement on time) or its stream time moved `stream_every_ms` past the stream time
    of its last sweep (replays: state bounded whatever the speed)."""

    def __init__(self, *, wall_every_ms: int, stream_every_ms: int) -> None:
        if wall_every_ms <= 0 or stream_every_ms <= 0:
            raise ValueError("sweep periods must be positive")
        self.wall_every_ms = wall_every_ms
        self.stream_every_ms = stream_every_ms
        self._last: dict[Hashable, tuple[int, int]] = {}  # partition → (wall, stream) of last sweep

    def due(self, partition: Hashable, stream_ms: int, wall_ms: int) -> bool:
        """Whether to sweep now; a True is taken as the sweep having run at these times."""
        last = self._last.get(partition)
        if (
            last is not None
            and wall_ms - last[0] < self.wall_every_ms
            and stream_ms - last[1] < self.stream_every_ms
        ):
            return False
        self._last[partition] = (wall_ms, stream_ms)
        return True

    def forget(self, partition: Hashable) -> None:
        """A partition reassigned: sweep at its first chance (its state may be new here)."""
        self._last.pop(partition, None)


def stream_period_ms(retention_ms: int) -> int:
    """An eighth of the retention: state stays within 9/8 of it, and a replay sweeps each
    partition eight times per retention of stream time."""
    return max(retention_ms // 8, 60_000)
