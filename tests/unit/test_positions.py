"""The input position: every record of a partition applied once, in offset order, whatever the
consumer delivers (stale records fetched before a seek, replays, holes in the log)."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.positions import Position, Step


def first_at(log: list[int], start: int) -> int | None:
    i = bisect_left(log, start)
    return log[i] if i < len(log) else None


def test_the_record_at_the_position_is_applied_and_the_position_moves_on() -> None:
    position = Position(next=5)
    assert position.step(5) is Step.APPLY
    position.applied(5)
    assert position.next == 6


def test_a_record_behind_the_position_is_already_applied() -> None:
    assert Position(next=10).step(3) is Step.SKIP


def test_a_record_ahead_asks_the_broker_first() -> None:
    assert Position(next=10).step(12) is Step.PROBE


def test_a_hole_in_the_log_is_crossed_once_the_broker_confirms_it() -> None:
    position = Position(next=10)
    position.probed(first=12, offset=12)  # offsets 10 and 11 do not exist (transaction markers)
    assert position.step(12) is Step.APPLY
    position.applied(12)
    assert position.next == 13 and not position.rewinding


def test_skipped_records_send_the_consumer_back() -> None:
    position = Position(next=10)
    position.probed(first=10, offset=40)  # offset 10 exists: 40 arrived too early
    assert position.step(40) is Step.REWIND
    assert position.rewinding and position.first == 10
    assert position.step(41) is Step.REWIND  # more of the stale batch: still dropped
    assert position.step(10) is Step.APPLY


def test_a_fresh_partition_starts_where_the_log_starts() -> None:
    position = Position()
    assert position.step(0) is Step.APPLY
    later = Position()
    assert later.step(500) is Step.PROBE  # retention deleted 0..499, or they were skipped
    later.probed(first=500, offset=500)
    assert later.step(500) is Step.APPLY


def test_the_broker_answering_with_the_record_in_hand_lets_it_apply() -> None:
    position = Position(next=7)
    position.probed(first=9, offset=9)
    assert position.step(9) is Step.APPLY


@settings(max_examples=300, deadline=None)
@given(
    holes=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=40),
    start=st.integers(min_value=0, max_value=5),
    noise=st.lists(
        st.tuples(st.sampled_from(["stale", "replay", "none"]), st.integers(0, 200)),
        max_size=120,
    ),
)
def test_every_record_is_applied_exactly_once_in_offset_order(
    holes: list[int], start: int, noise: list[tuple[str, int]]
) -> None:
    log: list[int] = []
    offset = start
    for gap in holes:
        log.append(offset)
        offset += gap  # gaps of 2+ are holes in the log (markers, compaction)
    position = Position()
    fetch = 0  # the consumer's fetch position
    applied: list[int] = []
    noise_left = list(noise)
    for _ in range(10 * len(log) + 10 * len(noise) + 10):
        if len(applied) == len(log):
            break
        kind, pick = noise_left.pop() if noise_left else ("none", 0)
        if kind == "stale":
            delivered = log[pick % len(log)]  # fetched before a seek: anywhere in the log
        elif kind == "replay" and applied:
            delivered = applied[pick % len(applied)]
        else:
            nxt = first_at(log, fetch)
            if nxt is None:
                fetch = 0  # nothing more from here: a real consumer would idle; go round
                continue
            delivered, fetch = nxt, nxt + 1
        step = position.step(delivered)
        if step is Step.PROBE:
            first = first_at(log, position.next)
            assert first is not None  # the delivered record is in the log, at or after next
            position.probed(first, delivered)
            step = position.step(delivered)
        if step is Step.APPLY:
            applied.append(delivered)
            position.applied(delivered)
        elif step is Step.REWIND:
            assert position.first is not None
            fetch = position.first
    assert applied == log
