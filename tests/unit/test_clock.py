"""The event clock of an input partition, and when the queues stage may close an interval."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.clock import Announcement, EventClock, SourceTimes

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z


def test_no_stream_time_before_the_first_event() -> None:
    clock = EventClock()
    assert clock.now(T0, caught_up=True) is None
    assert clock.newest is None
    assert not clock.live


def test_an_idle_live_feed_moves_with_the_wall_clock() -> None:
    clock = EventClock()
    clock.observe(T0 - 200, wall_ms=T0)  # produced 200 ms before it was applied
    assert clock.live
    assert clock.now(T0, caught_up=True) == T0 - 200
    assert clock.now(T0 + HOUR_MS, caught_up=True) == T0 + HOUR_MS - 200  # idle queues close
    assert clock.newest == T0 - 200


def test_a_lagging_consumer_keeps_the_time_of_what_it_applied() -> None:
    """Three minutes behind a live feed: the wall clock must not close intervals whose records
    are still in the backlog."""
    clock = EventClock()
    clock.observe(T0 - 3 * MINUTE_MS, wall_ms=T0)
    assert clock.live  # current enough to count as live ...
    assert clock.now(T0 + 30_000, caught_up=False) == T0 - 3 * MINUTE_MS  # ... but behind
    clock.observe(T0 - 2 * MINUTE_MS, wall_ms=T0 + 60_000)
    assert clock.now(T0 + 60_000, caught_up=False) == T0 - 2 * MINUTE_MS
    # caught up: from the newest event on, by the wall time since it was seen
    assert clock.now(T0 + 70_000, caught_up=True) == T0 - 2 * MINUTE_MS + 10_000


def test_a_replay_is_never_moved_by_the_wall_clock() -> None:
    clock = EventClock()
    clock.observe(T0, wall_ms=T0 + 300_001)
    assert not clock.live
    assert clock.now(T0 + DAY_MS, caught_up=True) == T0
    clock.observe(T0 + 5000, wall_ms=T0 + DAY_MS)
    assert clock.now(T0 + DAY_MS, caught_up=True) == T0 + 5000


def test_an_event_slightly_ahead_of_the_wall_clock_leads() -> None:
    clock = EventClock()
    clock.observe(T0 + 2000, wall_ms=T0)
    assert clock.live
    assert clock.now(T0, caught_up=True) == T0 + 2000
    assert clock.now(T0 + 1000, caught_up=True) == T0 + 3000


def test_live_is_decided_by_the_event_that_set_the_newest_ts() -> None:
    clock = EventClock()
    clock.observe(T0, wall_ms=T0 + 300_000)  # exactly at the edge: live
    assert clock.live
    clock.observe(T0 - HOUR_MS, wall_ms=T0 + 400_000)  # an old, out-of-order event: no change
    assert clock.live and clock.newest == T0
    clock.observe(T0 + 1, wall_ms=T0 + DAY_MS)  # newer, but old on arrival: a replay now
    assert not clock.live


def test_stream_time_never_goes_back() -> None:
    clock = EventClock()
    clock.observe(T0, wall_ms=T0)
    assert clock.now(T0 + MINUTE_MS, caught_up=True) == T0 + MINUTE_MS
    assert clock.now(T0 + 1000, caught_up=True) == T0 + MINUTE_MS  # NTP stepped the clock back
    assert clock.now(T0 + 2 * MINUTE_MS, caught_up=False) == T0 + MINUTE_MS  # a backlog came
    clock.observe(T0 + 30_000, wall_ms=T0 + 2 * MINUTE_MS)  # older than what was shown
    assert clock.now(T0 + 2 * MINUTE_MS, caught_up=True) == T0 + MINUTE_MS


def test_a_restart_resumes_the_clock() -> None:
    clock = EventClock()
    clock.observe(T0, wall_ms=T0)
    clock.now(T0 + 5000, caught_up=True)
    resumed = EventClock.from_json(clock.to_json())
    assert resumed == clock
    # down for a minute on an idle live feed: it resumes where the wall clock has got to
    assert resumed.now(T0 + MINUTE_MS, caught_up=True) == T0 + MINUTE_MS


def test_a_version_1_stream_time_never_moves_with_the_wall_clock() -> None:
    clock = EventClock.from_json(T0)  # version 1 stored the newest ts alone
    assert clock.newest == T0 and not clock.live
    assert clock.now(T0 + HOUR_MS, caught_up=True) == T0
    clock.observe(T0 + 1, wall_ms=T0 + 1)  # the next event decides
    assert clock.live


_STEPS = st.lists(
    st.tuples(
        st.booleans(),  # observe (True) or ask for now (False)
        st.integers(min_value=-DAY_MS, max_value=DAY_MS),  # ts relative to T0
        st.integers(min_value=-HOUR_MS, max_value=DAY_MS),  # wall relative to T0
        st.booleans(),  # caught up
    ),
    max_size=40,
)


@given(steps=_STEPS, live_window=st.integers(min_value=0, max_value=HOUR_MS))
def test_the_clock_never_goes_back_and_moves_on_only_when_caught_up_and_live(
    steps: list[tuple[bool, int, int, bool]], live_window: int
) -> None:
    clock = EventClock(live_window_ms=live_window)
    last: int | None = None
    newest: int | None = None
    for observe, ts, wall, caught_up in steps:
        if observe:
            clock.observe(T0 + ts, T0 + wall)
            newest = T0 + ts if newest is None else max(newest, T0 + ts)
            assert clock.newest == newest
            continue
        before = clock.high
        now = clock.now(T0 + wall, caught_up=caught_up)
        if newest is None:
            assert now is None
            continue
        assert now is not None and now >= newest
        if last is not None:
            assert now >= last
        if not caught_up or not clock.live:
            assert now == max(newest, before if before is not None else newest)
        last = now


# -- the queues stage: what each calls partition announced -------------------------------------


def test_a_partition_reading_a_backlog_holds_closing_back() -> None:
    times = SourceTimes(sources=2)
    times.hear(Announcement(0, T0 + HOUR_MS, behind=False))
    times.hear(Announcement(1, T0, behind=True))
    assert times.closing_time(T0 + HOUR_MS) == T0
    times.hear(Announcement(1, T0 + HOUR_MS - 1000, behind=False))  # it caught up
    assert times.closing_time(T0 + HOUR_MS) == T0 + HOUR_MS


def test_closing_follows_the_stream_time_when_no_partition_is_behind() -> None:
    """A finished replay: every partition at the end of its input, each at its own newest ts."""
    times = SourceTimes(sources=2)
    times.hear(Announcement(0, T0, behind=False))
    times.hear(Announcement(1, T0 + HOUR_MS, behind=False))
    assert times.closing_time(T0 + HOUR_MS) == T0 + HOUR_MS


def test_the_low_watermark_waits_for_every_partition() -> None:
    times = SourceTimes(sources=2)
    times.hear(Announcement(0, T0 + HOUR_MS, behind=False))
    assert times.low_watermark() is None
    times.hear(Announcement(1, T0, behind=False))
    assert times.low_watermark() == T0
    times.hear(Announcement(1, T0 - HOUR_MS, behind=True))  # an older time never moves it back
    assert times.low_watermark() == T0
    assert times.closing_time(T0 + HOUR_MS) == T0  # but the news of a backlog is kept


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),
            st.none() | st.integers(min_value=0, max_value=DAY_MS),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_closing_never_passes_a_partition_that_is_behind(
    heard: list[tuple[int, int | None, bool]],
) -> None:
    times = SourceTimes(sources=4)
    for source, time, behind in heard:
        times.hear(Announcement(source, None if time is None else T0 + time, behind))
    stream_now = T0 + DAY_MS
    closing = times.closing_time(stream_now)
    if closing is None:
        assert not times.complete or any(a.behind and a.time is None for a in times.heard.values())
    else:
        assert times.complete and closing <= stream_now
        for announcement in times.heard.values():
            if announcement.behind:
                assert announcement.time is not None and closing <= announcement.time
    low = times.low_watermark()
    known = [a.time for a in times.heard.values() if a.time is not None]
    if low is not None:
        assert times.complete and len(known) == 4 and low == min(known)
    else:
        assert not times.complete or len(known) < 4


def test_nothing_closes_before_every_partition_was_heard() -> None:
    times = SourceTimes(sources=2)
    times.hear(Announcement(0, T0, behind=False))
    assert times.closing_time(T0 + HOUR_MS) is None
    times.hear(Announcement(1, None, behind=False))  # an empty partition, at the end of its input
    assert times.closing_time(T0 + HOUR_MS) == T0 + HOUR_MS
    assert times.low_watermark() is None  # it may still send anything
    times.hear(Announcement(1, None, behind=True))  # reading its first records
    assert times.closing_time(T0 + HOUR_MS) is None


def test_agents_partitions_gate_closing_but_not_the_low_watermark() -> None:
    """Agents' timelines come two hops after the calls' figures: an agents partition still
    working through a replay holds closing back to the time its facts were sent for; one
    never heard holds everything; none of them moves the low watermark (sweeps)."""
    times = SourceTimes(sources=1, gates=2)
    times.hear(Announcement(0, T0 + HOUR_MS, behind=True))
    times.hear_gate(Announcement(0, T0 + HOUR_MS // 2, behind=True))
    assert times.low_watermark() == T0 + HOUR_MS
    assert times.closing_time(T0 + HOUR_MS) is None  # agents partition 1 not heard yet
    times.hear_gate(Announcement(1, None, behind=False))  # it never had a fact: no hold
    assert times.closing_time(T0 + HOUR_MS) == T0 + HOUR_MS // 2
    times.hear_gate(Announcement(0, T0 + HOUR_MS, behind=False))  # caught up on a live feed
    assert times.closing_time(T0 + 2 * HOUR_MS) == T0 + HOUR_MS  # the calls partition's hold
    times.hear_gate(Announcement(1, None, behind=True))  # input left to read, time unknown
    assert times.closing_time(T0 + 2 * HOUR_MS) is None
