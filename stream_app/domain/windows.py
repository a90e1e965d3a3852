"""Window arithmetic and stream time, in event time (contract §3).

Semantics, precisely (all values integer epoch ms):

* Intervals are tumbling and aligned to the epoch in UTC: the interval of `ts` is
  `[start, start + interval)` with `start = ts - ts % interval` (Python's floor modulo, so
  negative `ts` floor too). Every ts lies in exactly one interval; intervals tile.
* Stream time is the largest event `ts` the worker has seen, never arrival order. While
  the feed is live (the newest event was near the wall clock when it arrived), the wall
  clock also moves stream time on, so idle queues still close; a replay of old data is
  never live, so only its own events close its windows and it reproduces the live figures.
* An interval is closed once stream time is past its end plus the grace period:
  `stream_time > start + interval + grace`. Until then an event for it is merged; after
  that it has been published and a later event re-publishes it with the next revision.
  (Kafka Streams closes one millisecond earlier, at `stream_time >= end + grace`; we
  follow the contract's "past".)
* A rolling window of W minutes at stream time T is the sum of W minute buckets: the
  current, partial minute `floor(T)` and the W-1 whole minutes before it, so it advances
  every minute and never averages averages.
* "Today" is the local calendar day in the configured time zone: from its first instant
  (local midnight, or the end of a DST gap where midnight does not exist) to the next one,
  so DST days last 23 or 25 hours.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
_DAY = timedelta(days=1)


def floor_to(ts: int, size_ms: int) -> int:
    """The epoch-aligned multiple of `size_ms` at or before `ts` (`size_ms` > 0)."""
    return ts - ts % size_ms


def interval_start(ts: int, interval_ms: int) -> int:
    return ts - ts % interval_ms


def interval_closed(start: int, interval_ms: int, grace_ms: int, stream_time: int) -> bool:
    """Past its end plus the grace period: its figures are final (until a late revision)."""
    return stream_time > start + interval_ms + grace_ms


def with_intervals(starts: list[int], first: int, last: int, interval_ms: int) -> list[int]:
    """Sorted interval `starts` with those from `first` to `last` joined (all aligned): the
    list itself when it holds them already, appended to when they all come after it (a stream
    marks the same or later intervals again and again), the sorted union otherwise."""
    span = range(first, last + 1, interval_ms)
    if not starts or starts[-1] < first:
        return [*starts, *span]
    if bisect.bisect_right(starts, last) - bisect.bisect_left(starts, first) == len(span):
        return starts  # aligned starts: a count tells they are all there
    return sorted({*starts, *span})


def close_time(start: int, interval_ms: int, grace_ms: int) -> int:
    """The first stream time at which `interval_closed` holds: when to publish."""
    return start + interval_ms + grace_ms + 1


def rolling_minutes(stream_time: int, window_ms: int) -> list[int]:
    """Minute bucket starts of the rolling window at `stream_time`, oldest first."""
    if window_ms <= 0 or window_ms % MINUTE_MS:
        raise ValueError(f"a rolling window must be a whole number of minutes, got {window_ms} ms")
    current = stream_time - stream_time % MINUTE_MS
    first = current - window_ms + MINUTE_MS
    return list(range(first, current + 1, MINUTE_MS))


def minutes_in(start: int, end: int) -> range:
    """Starts of the minute buckets that overlap `[start, end)`; empty when `end <= start`."""
    first = start - start % MINUTE_MS
    return range(first, end if end > start else first, MINUTE_MS)


def day_start(ts: int, tz: ZoneInfo) -> int:
    """The first instant of the local day containing `ts`."""
    return _day_of(ts, tz)[1]


def day_end(ts: int, tz: ZoneInfo) -> int:
    """The first instant of the next local day: `day_start` of the day after."""
    day, _ = _day_of(ts, tz)
    return _first_instant(day + _DAY, tz)


def _local_date(ts: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts // 1000, tz).date()


def _day_of(ts: int, tz: ZoneInfo) -> tuple[date, int]:
    day = _local_date(ts, tz)
    start = _first_instant(day, tz)
    # Where the clocks fall back across midnight (America/Moncton until 2006 went back from
    # 00:01 to 23:01), the first minute of a day belongs to the day before, since the
    # local date goes back to it: days then still tile, with no overlap.
    while start > ts:
        day -= _DAY
        start = _first_instant(day, tz)
    return day, start


@lru_cache(maxsize=4096)
def _first_instant(day: date, tz: ZoneInfo) -> int:
    """Epoch ms from which the local date is `day` or later for good."""
    midnight = datetime(day.year, day.month, day.day)
    early = int(midnight.replace(tzinfo=tz).timestamp())  # fold=0: first reading
    late = int(midnight.replace(tzinfo=tz, fold=1).timestamp())  # fold=1: second reading
    if late == early:
        return early * 1000
    if late > early:  # midnight happens twice: take the later one if the date went back between
        return (late if _local_date(late * 1000 - 1, tz) < day else early) * 1000
    # Midnight falls in a DST gap (America/Santiago, Asia/Beirut): the day starts when the
    # clocks jump, somewhere in (late, early]; find that second by bisection.
    lo, hi = late, early
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local_date(mid * 1000, tz) < day:
            lo = mid
        else:
            hi = mid
    return hi * 1000
