"""Which local stores a start keeps: only one whose changelog still holds, at the marked offset,
the record it was written up to (the broker's answers given; the broker itself in
tests/integration/test_restore.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from stream_app.local_stores import LocalStore, judge
from stream_app.tables import ChangelogMark

TOPIC = "p-ccm-calls-changelog"
KEY, VALUE, TS = b"\x00position", b"120", 1_700_000_000_123
MARK = ChangelogMark.of(TOPIC, 41, KEY, VALUE)


def store(mark: ChangelogMark | None = MARK, persisted: int | None = 41) -> LocalStore:
    return LocalStore(Path("/nowhere/calls-3.db"), TOPIC, 3, mark, persisted)


def record(
    offset: int = 41, key: bytes = KEY, value: bytes | None = VALUE, ts: int = TS
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 3, offset, ts, 0, key, value, None, len(key), 0, ())  # type: ignore[arg-type]


def test_a_store_whose_changelog_holds_its_last_record_is_kept() -> None:
    verdict = judge(store(), (0, 60), record())
    assert verdict.kept, verdict.reason


@pytest.mark.parametrize(
    ("local", "log_range", "found", "why"),
    [
        (store(mark=None, persisted=None), (0, 60), None, "no changelog mark"),
        (LocalStore(Path("/nowhere"), TOPIC, 3, None, None, empty=True), None, None, "empty"),
        (store(mark=None), (0, 60), None, "no changelog mark"),  # an older version's store
        (
            store(ChangelogMark.of("old-ccm-calls-changelog", 41, KEY, VALUE)),
            (0, 60),
            record(),
            "another changelog",
        ),  # TOPIC_PREFIX changed: same DATA_DIR, another log
        (store(persisted=50), (0, 60), record(), "not the mark's"),
        (store(), None, None, "does not exist"),  # the changelog was deleted
        (store(), (0, 41), None, "past the changelog's end"),  # recreated, shorter
        (store(), (0, 0), None, "past the changelog's end"),  # recreated, empty
        (store(), (42, 60), None, "before the changelog's start"),
        (store(), (0, 60), None, "no longer holds"),  # not read in time
        (store(), (0, 60), record(offset=43), "no longer holds"),  # compacted away
        (store(), (0, 60), record(value=b"121"), "not the one"),  # recreated, longer
        (store(), (0, 60), record(value=None), "not the one"),
        (store(), (0, 60), record(key=b"call-7"), "not the one"),
    ],
)
def test_a_store_written_from_another_log_is_not_trusted(
    local: LocalStore,
    log_range: tuple[int, int] | None,
    found: ConsumerRecord[bytes, bytes] | None,
    why: str,
) -> None:
    verdict = judge(local, log_range, found)
    assert not verdict.kept
    assert why in verdict.reason
