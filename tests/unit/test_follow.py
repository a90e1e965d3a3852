"""Following a log like `tail -F`: appends, partial lines, rotation, truncation, and restarts
from the state file that neither lose nor repeat a line. No sleeping: each test polls."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stream_app.sources.follow import Batch, Follower, Position


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def texts(batch: Batch | None) -> list[str]:
    return [] if batch is None else [line.text for line in batch.lines]


def drain(follower: Follower, *, commit: bool = False) -> list[str]:
    """Poll until two polls in a row bring nothing; optionally commit each batch."""
    out: list[str] = []
    quiet = 0
    while quiet < 2:
        batch = follower.poll_once()
        if batch is None:
            quiet += 1
            continue
        quiet = 0
        out.extend(line.text for line in batch.lines)
        if commit:
            follower.commit(batch.position)
    return out


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "queue_log"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue_log.json"


def test_appended_lines_come_in_order_with_their_numbers(log: Path) -> None:
    log.write_text("a\nb\n")
    follower = Follower(log)
    batch = follower.poll_once()
    assert batch is not None
    assert [(line.number, line.text) for line in batch.lines] == [(1, "a"), (2, "b")]
    assert batch.source == str(log)
    assert follower.poll_once() is None
    append(log, "c\r\n")
    batch = follower.poll_once()
    assert batch is not None
    assert [(line.number, line.text) for line in batch.lines] == [(3, "c")]
    assert batch.position == Position(os.stat(log).st_ino, 7, 3, batch.position.fingerprint)
    assert batch.position.fingerprint


def test_a_missing_file_is_waited_for(log: Path) -> None:
    follower = Follower(log)
    assert follower.poll_once() is None
    log.write_text("a\n")
    assert texts(follower.poll_once()) == ["a"]


def test_a_partial_line_waits_until_it_is_complete(log: Path) -> None:
    log.write_text("a\nb")
    follower = Follower(log)
    assert texts(follower.poll_once()) == ["a"]
    assert follower.poll_once() is None
    append(log, "c")
    assert follower.poll_once() is None
    append(log, "d\ne\n")
    assert texts(follower.poll_once()) == ["bcd", "e"]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal(log: Path) -> None:
    log.write_bytes(b"M\xfcller\n")
    assert texts(Follower(log).poll_once()) == ["M\ufffdller"]


def test_a_batch_is_bounded_and_the_rest_follows(log: Path) -> None:
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    follower = Follower(log, max_batch_bytes=64)
    lines = drain(follower)
    assert lines == [f"line {n}" for n in range(100)]


def test_rotation_finishes_the_old_file_then_switches_to_the_new_one(log: Path) -> None:
    log.write_text("1\n2\n")
    follower = Follower(log)
    assert texts(follower.poll_once()) == ["1", "2"]
    append(log, "3\n4")  # not read yet, and its last line still open
    log.rename(log.with_name("queue_log.1"))
    log.write_text("new 1\nnew 2\n")
    batch = follower.poll_once()
    assert texts(batch) == ["3"]
    assert batch is not None and batch.source == f"{log} (rotated)"
    # The writer moved on: the old file's last line will never be completed.
    assert drain(follower) == ["4", "new 1", "new 2"]
    append(log, "new 3\n")
    batch = follower.poll_once()
    assert batch is not None
    assert [(line.number, line.text) for line in batch.lines] == [(3, "new 3")]
    assert batch.source == str(log)


def test_after_a_rename_the_old_file_is_read_until_the_writer_reopens_the_name(log: Path) -> None:
    log.write_text("1\n")
    follower = Follower(log)
    assert texts(follower.poll_once()) == ["1"]
    with log.open("a") as writer:  # like a logger that keeps its file open
        log.rename(log.with_name("queue_log.1"))
        log.touch()  # logrotate's `create`: an empty file at the name
        writer.write("2\n")
        writer.flush()
        assert texts(follower.poll_once()) == ["2"]
        assert follower.poll_once() is None  # the new file is empty: the writer may go on
        writer.write("3\n")
    assert texts(follower.poll_once()) == ["3"]
    append(log, "new 1\n")  # the writer reopened the name
    assert drain(follower) == ["new 1"]


def test_copytruncate_starts_the_file_over(log: Path) -> None:
    log.write_text("1\n2\n3\n")
    follower = Follower(log)
    assert texts(follower.poll_once()) == ["1", "2", "3"]
    log.with_name("queue_log.1").write_bytes(log.read_bytes())
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, "4\n")
    batch = follower.poll_once()
    assert batch is not None
    assert [(line.number, line.text) for line in batch.lines] == [(1, "4")]


def test_a_truncated_file_that_regrew_past_the_position_is_recognised_by_its_first_line(
    log: Path,
) -> None:
    log.write_text("1\n2\n")
    follower = Follower(log)
    assert texts(follower.poll_once()) == ["1", "2"]
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, "one\ntwo\nthree\n")  # longer than what was read before
    assert texts(follower.poll_once()) == ["one", "two", "three"]


# -- restarts -----------------------------------------------------------------------------------


def test_a_restart_resumes_at_the_committed_position(log: Path, state: Path) -> None:
    log.write_text("1\n2\n")
    first = Follower(log, state)
    batch = first.poll_once()
    assert batch is not None
    first.commit(batch.position, {"open": 1})
    first.close()
    append(log, "3\n")
    second = Follower(log, state)
    assert second.saved == {"open": 1}
    batch = second.poll_once()
    assert batch is not None
    assert [(line.number, line.text) for line in batch.lines] == [(3, "3")]
    assert second.poll_once() is None


def test_lines_not_committed_are_read_again_after_a_restart(log: Path, state: Path) -> None:
    log.write_text("1\n2\n")
    first = Follower(log, state)
    committed = first.poll_once()
    assert committed is not None
    first.commit(committed.position)
    append(log, "3\n4\n")
    assert texts(first.poll_once()) == ["3", "4"]  # handed out, never acknowledged
    first.close()
    second = Follower(log, state)
    assert texts(second.poll_once()) == ["3", "4"]


def test_the_state_file_is_replaced_atomically_and_holds_the_position(
    log: Path, state: Path
) -> None:
    log.write_text("1\n")
    follower = Follower(log, state)
    batch = follower.poll_once()
    assert batch is not None
    follower.commit(batch.position, {"k": [1, 2]})
    saved = json.loads(state.read_text())
    assert saved == {
        "version": 1,
        "path": str(log),
        "inode": os.stat(log).st_ino,
        "offset": 2,
        "line": 1,
        "fingerprint": batch.position.fingerprint,
        "extra": {"k": [1, 2]},
    }
    assert sorted(p.name for p in state.parent.iterdir()) == ["queue_log.json"]  # no temp left


def test_a_file_rotated_while_stopped_is_finished_before_the_new_one(
    log: Path, state: Path
) -> None:
    log.write_text("1\n2\n")
    first = Follower(log, state)
    batch = first.poll_once()
    assert batch is not None
    first.commit(batch.position)
    first.close()
    append(log, "3\n")  # written before the rotation, never delivered
    log.rename(log.with_name("queue_log.1"))
    log.write_text("new 1\n")
    second = Follower(log, state)
    assert drain(second, commit=True) == ["3", "new 1"]
    second.close()
    third = Follower(log, state)  # committed in the new file now
    assert drain(third) == []


def test_a_restart_into_a_truncated_file_reads_it_from_the_start(log: Path, state: Path) -> None:
    log.write_text("1\n2\n3\n")
    first = Follower(log, state)
    assert drain(first, commit=True) == ["1", "2", "3"]
    first.close()
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, "a\nb\nc\nd\n")  # regrew past the saved offset: only the first line tells
    assert drain(Follower(log, state)) == ["a", "b", "c", "d"]


def test_a_restart_after_the_file_vanished_reads_the_new_one_from_the_start(
    log: Path, state: Path
) -> None:
    log.write_text("1\n")
    first = Follower(log, state)
    assert drain(first, commit=True) == ["1"]
    first.close()
    log.unlink()
    log.write_text("x\n")
    assert drain(Follower(log, state)) == ["x"]


def test_a_state_file_of_another_log_is_refused(log: Path, state: Path, tmp_path: Path) -> None:
    log.write_text("1\n")
    first = Follower(log, state)
    assert drain(first, commit=True) == ["1"]
    with pytest.raises(ValueError, match="follows"):
        Follower(tmp_path / "other_log", state)
    state.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        Follower(log, state)
