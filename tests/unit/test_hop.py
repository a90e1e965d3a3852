"""The hop between the stages (stream_app.domain.hop): contributions combined per queue, then
applied entry by entry; the figures are those of each call's final contribution applied once,
however the changes were cut into records, and through crashes in the middle of a record."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.hop import (
    ENTRIES_PER_RECORD,
    POSITIONS_PER_OFFSET,
    Pending,
    Update,
    entry_position,
    update_record,
)
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.queues import QueueStage
from tests.unit.test_queues import (
    answered,
    check_crashes_and_replays,
    check_final,
    histories,
    make,
)

A = Contribution(waiting_since=1)
B = Contribution(answered=answered(60, 3, 2))

HopRecord = tuple[int, str, list[tuple[str, Contribution]]]  # offset, queue, entries


def test_a_call_changed_several_times_crosses_the_hop_once_with_its_latest_contribution() -> None:
    pending = Pending()
    pending.add(0, "c1", {"sales": A})
    pending.add(0, "c2", {"sales": A, "vip": A})
    pending.add(0, "c1", {"sales": B})
    pending.add(3, "c9", {"vip": EMPTY})
    assert sorted(pending.partitions()) == [0, 3]
    assert list(pending.take(0)) == [("sales", [("c2", A), ("c1", B)]), ("vip", [("c2", A)])]
    assert pending.partitions() == [3]
    assert list(pending.take(0)) == []
    pending.drop(3)
    assert pending.partitions() == []


def test_a_large_batch_is_cut_into_records_of_at_most_the_limit() -> None:
    pending = Pending()
    for n in range(ENTRIES_PER_RECORD * 2 + 1):
        pending.add(1, f"c{n}", {"sales": A})
    sizes = [len(entries) for _, entries in pending.take(1)]
    assert sizes == [ENTRIES_PER_RECORD, ENTRIES_PER_RECORD, 1]
    assert ENTRIES_PER_RECORD < POSITIONS_PER_OFFSET  # positions of two records never meet


def test_records_read_back_in_every_form() -> None:
    record = orjson.loads(orjson.dumps(update_record("sales", [("c1", B)], 2, 500, 600, True)))
    assert Update.from_json(record) == Update(2, 500, 600, True, "sales", [("c1", B)])
    v1 = {"q": "sales", "c": "c1", "x": B.to_json(), "sp": 2, "st": 500}
    assert Update.from_json(v1) == Update(2, 500, None, False, "sales", [("c1", B)])
    watermark = {"sp": 4, "st": None, "sa": 7, "b": False}
    assert Update.from_json(watermark) == Update(4, None, 7, False, None, [])


def test_positions_increase_along_entries_and_records() -> None:
    assert entry_position(7, 0) < entry_position(7, ENTRIES_PER_RECORD - 1) < entry_position(8, 0)


def hop_records(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> list[HopRecord]:
    """The history's changes in an interleaved order, combined into records at random cuts."""
    remaining = {pair: list(versions) for pair, versions in history.items()}
    pending = Pending()
    records: list[HopRecord] = []
    offset = 0

    def send() -> None:
        nonlocal offset
        for queue, entries in pending.take(0):
            offset += data.draw(st.integers(1, 3))
            records.append((offset, queue, entries))

    while remaining:
        pair = data.draw(st.sampled_from(sorted(remaining)))
        pending.add(0, pair[1], {pair[0]: remaining[pair].pop(0)})
        if not remaining[pair]:
            del remaining[pair]
        if data.draw(st.booleans()):
            send()
    send()
    return records


def apply_record(stage: QueueStage, record: HopRecord) -> None:
    offset, queue, entries = record
    for index, (call_id, contribution) in enumerate(entries):
        stage.apply(queue, call_id, contribution, entry_position(offset, index))


@settings(max_examples=150, deadline=None)
@given(histories(), st.data())
def test_combined_records_give_the_final_contributions_figures(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    stage = make()
    for record in hop_records(history, data):
        apply_record(stage, record)
    check_final(stage, history)


@settings(max_examples=100, deadline=None)
@given(histories(), st.data())
def test_a_crash_in_the_middle_of_a_combined_record_then_a_replay_gives_the_same_state(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    records = hop_records(history, data)
    check_crashes_and_replays(history, records, apply_record, data, 30)
