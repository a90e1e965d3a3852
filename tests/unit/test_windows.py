"""Window arithmetic and stream time: intervals, rolling minutes, local days, closing, clock."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.windows import (
    MINUTE_MS,
    close_time,
    day_end,
    day_start,
    floor_to,
    interval_closed,
    interval_start,
    minutes_in,
    rolling_minutes,
)

HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z
Y2040 = 2_208_988_800_000

TIMESTAMPS = st.integers(min_value=-(10**15), max_value=10**15)
SIZES = st.sampled_from([1, 1000, MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, DAY_MS]) | st.integers(
    min_value=1, max_value=10**10
)


# -- intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [
        (T0, 15 * MINUTE_MS, T0),
        (T0 + 1, 15 * MINUTE_MS, T0),
        (T0 + 15 * MINUTE_MS - 1, 15 * MINUTE_MS, T0),
        (T0 + 15 * MINUTE_MS, 15 * MINUTE_MS, T0 + 15 * MINUTE_MS),
        (0, MINUTE_MS, 0),
        (-1, MINUTE_MS, -MINUTE_MS),
        (-MINUTE_MS, MINUTE_MS, -MINUTE_MS),
        (-MINUTE_MS - 1, MINUTE_MS, -2 * MINUTE_MS),
    ],
)
def test_interval_start(ts: int, size: int, start: int) -> None:
    assert floor_to(ts, size) == interval_start(ts, size) == start


@given(ts=TIMESTAMPS, size=SIZES)
def test_every_ts_lies_in_exactly_one_aligned_interval(ts: int, size: int) -> None:
    start = interval_start(ts, size)
    assert start % size == 0
    assert start <= ts < start + size
    assert floor_to(ts, size) == start
    # Exactly one: the neighbours do not contain it.
    assert not (start - size <= ts < start) and not (start + size <= ts < start + 2 * size)


@given(ts=TIMESTAMPS, size=SIZES)
def test_intervals_tile(ts: int, size: int) -> None:
    start = interval_start(ts, size)
    assert interval_start(start, size) == start
    assert interval_start(start + size - 1, size) == start
    assert interval_start(start + size, size) == start + size
    assert interval_start(start - 1, size) == start - size


# -- closing ------------------------------------------------------------------------------------


def test_an_interval_closes_once_stream_time_is_past_end_plus_grace() -> None:
    interval, grace = 15 * MINUTE_MS, 2 * MINUTE_MS
    end = T0 + interval
    assert not interval_closed(T0, interval, grace, end)
    assert not interval_closed(T0, interval, grace, end + grace)
    assert interval_closed(T0, interval, grace, end + grace + 1)
    assert close_time(T0, interval, grace) == end + grace + 1
    assert interval_closed(T0, interval, 0, end + 1)
    assert not interval_closed(T0, interval, 0, end)


@given(
    start=TIMESTAMPS,
    interval=SIZES,
    grace=st.integers(min_value=0, max_value=10**9),
    stream_time=TIMESTAMPS,
)
def test_closed_iff_stream_time_past_end_plus_grace(
    start: int, interval: int, grace: int, stream_time: int
) -> None:
    closed = interval_closed(start, interval, grace, stream_time)
    assert closed == (stream_time > start + interval + grace)
    assert closed == (stream_time >= close_time(start, interval, grace))


@given(start=TIMESTAMPS, interval=SIZES, grace=st.integers(min_value=0, max_value=10**9))
def test_close_time_is_the_first_closed_stream_time(start: int, interval: int, grace: int) -> None:
    first = close_time(start, interval, grace)
    assert interval_closed(start, interval, grace, first)
    assert not interval_closed(start, interval, grace, first - 1)


# -- rolling windows and minute buckets ---------------------------------------------------------


def test_rolling_minutes_example() -> None:
    now = T0 + 30_250
    assert rolling_minutes(now, 3 * MINUTE_MS) == [T0 - 2 * MINUTE_MS, T0 - MINUTE_MS, T0]
    assert rolling_minutes(T0, MINUTE_MS) == [T0]
    assert len(rolling_minutes(now, HOUR_MS)) == 60


@pytest.mark.parametrize("window", [0, -MINUTE_MS, MINUTE_MS + 1, 90_000, 1])
def test_rolling_window_must_be_whole_minutes(window: int) -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        rolling_minutes(T0, window)


@given(stream_time=TIMESTAMPS, minutes=st.integers(min_value=1, max_value=24 * 60))
def test_rolling_minutes_cover_the_current_minute_and_those_before(
    stream_time: int, minutes: int
) -> None:
    buckets = rolling_minutes(stream_time, minutes * MINUTE_MS)
    assert len(buckets) == minutes
    assert buckets[-1] == floor_to(stream_time, MINUTE_MS)  # the current, partial minute
    assert buckets[-1] <= stream_time < buckets[-1] + MINUTE_MS
    assert all(b % MINUTE_MS == 0 for b in buckets)
    assert all(b - a == MINUTE_MS for a, b in itertools.pairwise(buckets))
    # Together they hold the last `minutes` minutes of events, and nothing newer.
    assert buckets[0] <= stream_time - (minutes - 1) * MINUTE_MS


def test_minutes_in_examples() -> None:
    assert list(minutes_in(T0, T0 + 3 * MINUTE_MS)) == [T0, T0 + MINUTE_MS, T0 + 2 * MINUTE_MS]
    assert list(minutes_in(T0 + 1, T0 + MINUTE_MS + 1)) == [T0, T0 + MINUTE_MS]
    assert list(minutes_in(T0, T0 + 1)) == [T0]
    assert list(minutes_in(T0, T0)) == []
    assert list(minutes_in(T0 + 30_000, T0 + 20_000)) == []
    assert list(minutes_in(-1, 1)) == [-MINUTE_MS, 0]


@given(start=TIMESTAMPS, length=st.integers(min_value=-10 * MINUTE_MS, max_value=DAY_MS))
def test_minutes_in_cover_exactly_the_span(start: int, length: int) -> None:
    end = start + length
    minutes = list(minutes_in(start, end))
    if end <= start:
        assert minutes == []
        return
    assert minutes[0] <= start < minutes[0] + MINUTE_MS
    assert minutes[-1] < end <= minutes[-1] + MINUTE_MS
    assert all(b - a == MINUTE_MS for a, b in itertools.pairwise(minutes))
    assert all(m % MINUTE_MS == 0 for m in minutes)


@given(stream_time=TIMESTAMPS, minutes=st.integers(min_value=1, max_value=120))
def test_rolling_minutes_are_the_minutes_in_their_span(stream_time: int, minutes: int) -> None:
    buckets = rolling_minutes(stream_time, minutes * MINUTE_MS)
    assert list(minutes_in(buckets[0], stream_time + 1)) == buckets


# -- local days ---------------------------------------------------------------------------------


def local_ms(zone: str, iso: str, fold: int = 0) -> int:
    return (
        int(datetime.fromisoformat(iso).replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp())
        * 1000
    )


def local_iso(zone: str, ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, ZoneInfo(zone)).isoformat()


@pytest.mark.parametrize(
    ("zone", "day", "start", "end"),
    [
        ("UTC", "2026-03-02", "2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00"),
        # DST days are 23 and 25 hours long.
        ("Europe/Berlin", "2026-03-29", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
        ("Europe/Berlin", "2026-10-25", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"),
        (
            "America/New_York",
            "2026-03-08",
            "2026-03-08T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
        ),
        # Midnight does not exist: the day starts when the clocks jump, at 01:00.
        (
            "America/Santiago",
            "2026-09-06",
            "2026-09-06T01:00:00-03:00",
            "2026-09-07T00:00:00-03:00",
        ),
        (
            "America/Santiago",
            "2026-09-05",
            "2026-09-05T00:00:00-04:00",
            "2026-09-06T01:00:00-03:00",
        ),
        ("Asia/Beirut", "2026-03-29", "2026-03-29T01:00:00+03:00", "2026-03-30T00:00:00+03:00"),
        ("America/Havana", "2026-03-08", "2026-03-08T01:00:00-04:00", "2026-03-09T00:00:00-04:00"),
        # The clocks go back to 23:00 of the day before: that day has 25 hours.
        ("Asia/Beirut", "2026-10-24", "2026-10-24T00:00:00+03:00", "2026-10-25T00:00:00+02:00"),
        (
            "America/Santiago",
            "2026-04-04",
            "2026-04-04T00:00:00-03:00",
            "2026-04-05T00:00:00-04:00",
        ),
        # Back from 01:00 to 00:00: midnight happens twice, the day starts at the first.
        ("America/Havana", "2026-11-01", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"),
        # Half-hour DST.
        (
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-05T00:00:00+11:00",
            "2026-04-06T00:00:00+10:30",
        ),
        # Samoa skipped 30 December 2011 entirely.
        ("Pacific/Apia", "2011-12-29", "2011-12-29T00:00:00-10:00", "2011-12-31T00:00:00+14:00"),
        ("Pacific/Apia", "2011-12-31", "2011-12-31T00:00:00+14:00", "2012-01-01T00:00:00+14:00"),
    ],
)
def test_local_days(zone: str, day: str, start: str, end: str) -> None:
    noon = local_ms(zone, f"{day}T12:00:00")
    assert local_iso(zone, day_start(noon, ZoneInfo(zone))) == start
    assert local_iso(zone, day_end(noon, ZoneInfo(zone))) == end


def test_a_day_whose_first_minute_is_lived_twice() -> None:
    """America/Goose_Bay until 2010 fell back from 00:01 to 23:01 the day before.

    The local date goes 28 → 29 → 28 → 29. Days still tile: the first pass through
    00:00-00:01 on the 29th belongs to the 28th, whose 25 hours end at the second midnight.
    """
    zone, tz = "America/Goose_Bay", ZoneInfo("America/Goose_Bay")
    first_pass = local_ms(zone, "2000-10-29T00:00:30", fold=0)
    second_pass = local_ms(zone, "2000-10-29T00:00:30", fold=1)
    repeated_evening = local_ms(zone, "2000-10-28T23:30:00", fold=1)
    start_28 = local_ms(zone, "2000-10-28T00:00:00")
    start_29 = local_ms(zone, "2000-10-29T00:00:00", fold=1)
    for ts in (first_pass, repeated_evening):
        assert (day_start(ts, tz), day_end(ts, tz)) == (start_28, start_29)
    assert day_start(second_pass, tz) == start_29
    assert start_29 - start_28 == 25 * HOUR_MS


# Zones with DST gaps and overlaps at or across midnight, odd offsets and skipped days.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "Asia/Beirut",
    "America/Havana",
    "America/Asuncion",
    "America/Goose_Bay",
    "America/Moncton",
    "America/St_Johns",
    "Antarctica/Casey",
    "Pacific/Apia",
    "Pacific/Kwajalein",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Africa/Cairo",
    "Asia/Tehran",
    "Pacific/Kiritimati",
]


def starts_a_local_day(start: int, tz: ZoneInfo) -> bool:
    """At a local midnight, or where the clocks jumped over it (the end of a DST gap)."""
    local = datetime.fromtimestamp(start // 1000, tz)
    before = datetime.fromtimestamp(start // 1000 - 1, tz)
    at_midnight = (local.hour, local.minute, local.second) == (0, 0, 0)
    return at_midnight or (before.utcoffset() != local.utcoffset() and before.date() < local.date())


@given(ts=st.integers(min_value=0, max_value=Y2040), zone=st.sampled_from(ZONES))
def test_day_start_and_end_surround_every_ts(ts: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    start, end = day_start(ts, tz), day_end(ts, tz)
    assert start <= ts < end
    # Tiling: the day before ends where this one starts, the next starts where it ends.
    assert day_start(start, tz) == start
    assert day_end(start - 1, tz) == start
    assert day_start(end, tz) == end
    assert day_start(end - 1, tz) == start
    assert starts_a_local_day(start, tz)
    assert 17 * HOUR_MS <= end - start <= 31 * HOUR_MS


@pytest.mark.parametrize("zone", ZONES)
def test_days_tile_from_2000_to_2035(zone: str) -> None:
    tz = ZoneInfo(zone)
    start = day_start(946_684_800_000, tz)
    while start < 2_082_758_400_000:
        end = day_end(start, tz)
        assert end > start
        assert day_start(end - 1, tz) == start
        assert day_start(end, tz) == end
        assert starts_a_local_day(start, tz)
        start = end


def test_day_functions_handle_timestamps_before_1970() -> None:
    tz = ZoneInfo("Europe/Berlin")
    assert day_start(-1, tz) == -HOUR_MS  # 1970-01-01T00:00+01:00
    assert day_end(-1, tz) == DAY_MS - HOUR_MS
