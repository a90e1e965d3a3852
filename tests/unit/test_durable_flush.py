"""A flush reaches the local store only once its changelog records are acknowledged, in one
write batch with the changelog offset it reaches; a restart then restores only what follows.

Real rocksdict databases (the tables' own store, in a temp dir); the changelog is a list
standing in for the broker, whose sends can fail at any step. A kill at any point of a flush is
a flush cut there: the changelog holds what was acknowledged, the store what it wrote, and
Faust's recovery from the store's persisted offset must give the state a whole replay gives.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event

from stream_app.domain.positions import POSITION_KEY
from stream_app.tables import (
    MARK_KEY,
    BufferedStore,
    ChangelogMark,
    ChangelogSend,
    ChangelogTable,
    RocksDBStore,
    TableStore,
    create_tables,
    last_acknowledged,
)

PARTITION = 1


@dataclass(frozen=True)
class Sent:
    offset: int


class Failed(Exception):
    pass


@dataclass
class Changelog:
    """One changelog partition: what the broker acknowledged, in order. `fail_at` (a step of
    the next sends, from 0) fails that send and every later one, as a broker gone away does."""

    topic: str
    records: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    fail_at: int | None = None
    step: int = 0

    def send(self, partition: int, key: bytes, value: bytes | None) -> Awaitable[Sent]:
        assert partition == PARTITION
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        if self.fail_at is not None and self.step >= self.fail_at:
            future.set_exception(Failed(f"send {self.step} refused"))
        else:
            self.records.append((key, value))
            offset = len(self.records) - 1
            future.set_result(Sent(offset))
        self.step += 1
        return future

    def events(self, start: int) -> list[Any]:
        """The records from `start` on, as Faust's recovery hands them to the store."""
        return [
            Event(Message(self.topic, PARTITION, offset, key, value, timestamp(offset) / 1000))
            for offset, (key, value) in enumerate(self.records)
            if offset >= start
        ]


def each(send: Callable[[int, bytes, bytes | None], Awaitable[Any]]) -> ChangelogSend:
    """A changelog taking records one by one, as the worker's flush hands them over: together."""
    return lambda partition, records: last_acknowledged(
        send(partition, key, value) for key, value in records
    )


def timestamp(offset: int) -> int:
    return 1_700_000_000_000 + 7 * offset


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    timestamp: float


@dataclass
class Event:
    message: Message


def open_store(path: Path) -> tuple[Any, RocksDBStore]:
    app = faust.App("durable-flush", store="rocksdb://", datadir=str(path))
    calls, _ = create_tables(app, calls_partitions=2, queue_partitions=2)
    store = calls.data
    assert isinstance(store, RocksDBStore)
    store._db_for_partition(PARTITION)  # opened, as on assignment
    return calls, store


def contents(store: RocksDBStore) -> dict[bytes, bytes]:
    return dict(store._visible_items(store._db_for_partition(PARTITION)))


def restore(store: RocksDBStore, changelog: Changelog) -> None:
    """Faust's recovery: the changelog from the persisted offset on (the record at it again)."""
    persisted = store.persisted_offset(faust.types.TP(changelog.topic, PARTITION))
    start = 0 if persisted is None else persisted
    store.apply_changelog_batch(changelog.events(start), lambda k: k, lambda v: v)


FIRST: list[tuple[bytes, bytes | None]] = [
    (b"call-1", b'{"n":1}'),
    (b"call-2", b'{"n":2}'),
    (POSITION_KEY.encode(), b"10"),
]
SECOND: list[tuple[bytes, bytes | None]] = [
    (b"call-1", b'{"n":3}'),
    (b"call-2", None),
    (b"call-3", b'{"n":4}'),
    (POSITION_KEY.encode(), b"20"),
]


def test_a_flush_reaches_the_local_store_only_once_the_changelog_acknowledged_it(
    tmp_path: Path,
) -> None:
    table, store = open_store(tmp_path)
    pending: list[asyncio.Future[Sent]] = []

    def send(partition: int, key: bytes, value: bytes | None) -> Awaitable[Sent]:
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        pending.append(future)
        return future

    async def run() -> None:
        flush = asyncio.create_task(store.write_durably(PARTITION, FIRST, each(send)))
        await asyncio.sleep(0.01)
        assert len(pending) == len(FIRST)
        for offset, future in enumerate(pending[:-1]):
            future.set_result(Sent(offset))
        await asyncio.sleep(0.01)
        assert contents(store) == {}  # one acknowledgement missing: nothing written
        assert store.persisted_offset(faust.types.TP(table.changelog_topic_name, PARTITION)) is None
        pending[-1].set_result(Sent(2))
        await flush

    asyncio.run(run())
    assert contents(store) == {key: value for key, value in FIRST if value is not None}
    assert store.persisted_offset(faust.types.TP(table.changelog_topic_name, PARTITION)) == 2
    assert store.changelog_mark(PARTITION) == ChangelogMark.of(
        table.changelog_topic_name, 2, *FIRST[-1]
    )


@pytest.mark.parametrize("fail_at", range(len(SECOND)))
def test_a_failed_send_at_any_step_writes_nothing_locally(tmp_path: Path, fail_at: int) -> None:
    table, store = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    asyncio.run(store.write_durably(PARTITION, FIRST, each(changelog.send)))
    before = contents(store), store.changelog_mark(PARTITION)
    changelog.fail_at = changelog.step + fail_at
    with pytest.raises(Failed):
        asyncio.run(store.write_durably(PARTITION, SECOND, each(changelog.send)))
    assert (contents(store), store.changelog_mark(PARTITION)) == before
    assert len(changelog.records) == len(FIRST) + fail_at  # what the broker took stays there


def killed(*_: object) -> None:
    raise Failed("killed before the local write")


@pytest.mark.parametrize("cut", [*range(len(SECOND) + 1), "after the local write"])
def test_a_kill_anywhere_in_a_flush_restores_to_the_state_of_the_whole_changelog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int | str
) -> None:
    table, store = open_store(tmp_path / "worker")
    changelog = Changelog(table.changelog_topic_name)
    asyncio.run(store.write_durably(PARTITION, FIRST, each(changelog.send)))
    if cut == "after the local write":
        asyncio.run(store.write_durably(PARTITION, SECOND, each(changelog.send)))
    else:  # the kill: `cut` records acknowledged, the local write never done
        assert isinstance(cut, int)
        changelog.fail_at = changelog.step + cut
        if cut == len(SECOND):  # every one acknowledged: killed just before the write
            monkeypatch.setattr(store, "_write", killed)
        with pytest.raises(Failed):
            asyncio.run(store.write_durably(PARTITION, SECOND, each(changelog.send)))
        monkeypatch.undo()
    persisted = store.persisted_offset(faust.types.TP(changelog.topic, PARTITION))
    assert persisted is not None and persisted <= len(changelog.records) - 1

    restore(store, changelog)
    _, fresh = open_store(tmp_path / "fresh")  # another worker restoring the whole changelog
    restore(fresh, changelog)
    assert contents(store) == contents(fresh)
    assert store.changelog_mark(PARTITION) == fresh.changelog_mark(PARTITION)
    last = len(changelog.records) - 1
    assert store.persisted_offset(faust.types.TP(changelog.topic, PARTITION)) == last
    key, value = changelog.records[last]
    assert store.changelog_mark(PARTITION) == ChangelogMark.of(changelog.topic, last, key, value)


def test_a_partition_revoked_during_a_flush_is_left_to_recovery(tmp_path: Path) -> None:
    table, store = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    asyncio.run(store.write_durably(PARTITION, FIRST, each(changelog.send)))

    def send_then_revoke(partition: int, key: bytes, value: bytes | None) -> Awaitable[Sent]:
        store.revoke_partitions(table, {faust.types.TP(changelog.topic, partition)})
        return changelog.send(partition, key, value)

    asyncio.run(store.write_durably(PARTITION, SECOND, each(send_then_revoke)))
    assert PARTITION not in store._dbs  # not opened again behind Faust's back
    assert store.persisted_offset(faust.types.TP(changelog.topic, PARTITION)) == 2  # reopened
    restore(store, changelog)  # assigned again: the tail from the persisted offset
    assert contents(store) == {b"call-1": b'{"n":3}', b"call-3": b'{"n":4}', b"\x00position": b"20"}


def test_the_table_persists_no_offset_when_a_send_is_acknowledged(tmp_path: Path) -> None:
    """Faust's callback would record the offset before the flush wrote the record locally."""
    table, store = open_store(tmp_path)
    assert isinstance(table, ChangelogTable)
    tp = faust.types.TP(table.changelog_topic_name, PARTITION)

    async def acknowledged() -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(faust.types.RecordMetadata(tp.topic, PARTITION, tp, 41, None))
        return future

    sent = asyncio.run(acknowledged())
    table._on_changelog_sent(sent)
    assert store.persisted_offset(tp) is None
    faust.Table._on_changelog_sent(table, sent)  # Faust's own, for contrast
    assert store.persisted_offset(tp) == 41


class CurrentRecord:
    """The record an agent is processing, as Faust's stream sets it (its partition)."""

    def __init__(self, partition: int) -> None:
        self.message = Message("call-events", partition, 0, b"", b"", 0.0)

    def __enter__(self) -> CurrentRecord:
        self.token = _current_event.set(weakref.ref(self))  # type: ignore[arg-type]
        return self

    def __exit__(self, *_: object) -> None:
        _current_event.reset(self.token)


def test_a_buffered_flush_sends_in_rank_order_and_stays_readable_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, store = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    seen_during_send: list[Any] = []

    def send_changelog(partition: int, key: bytes, value: bytes | None, **_: Any) -> Any:
        seen_during_send.append(buffered.get("call-1"))
        return changelog.send(partition, key, value)

    monkeypatch.setattr(table, "send_changelog", send_changelog)
    position = POSITION_KEY
    buffered = BufferedStore(table, flush_rank=lambda key: int(key == position))
    with CurrentRecord(PARTITION):
        buffered.set(position, 7)
        buffered.set("call-1", {"n": 1})
        buffered.delete("never-stored")  # a delete of what the store never held: not sent
        buffered.set("call-2", {"n": 2})
        asyncio.run(buffered.flush())
        assert [key for key, _ in changelog.records] == [b"call-1", b"call-2", b"\x00position"]
        assert seen_during_send == [{"n": 1}] * 3
        buffered.delete("call-2")
        asyncio.run(buffered.flush())
        assert changelog.records[-1] == (b"call-2", None)
        # Scans (the domain's partition scans) never see the store's own keys.
        assert dict(TableStore(table).items()) == {"call-1": {"n": 1}, position: 7}
        assert dict(buffered.items()) == {"call-1": {"n": 1}, position: 7}
    assert not any(buffered.buffers.values())
    db = store._db_for_partition(PARTITION)
    assert db.get(MARK_KEY) is not None and db.get(store.offset_key) == b"3"
    assert orjson.loads(db[b"call-1"]) == {"n": 1}


def test_a_read_for_another_partition_sees_that_partitions_state(tmp_path: Path) -> None:
    """The input guard learns a partition's position from its table; asked while a record of
    another partition is in hand, it must not get that one's (buffered or stored)."""
    table, _ = open_store(tmp_path)
    buffered = BufferedStore(table)
    with CurrentRecord(PARTITION):
        buffered.set(POSITION_KEY, 7)
    with CurrentRecord(PARTITION + 1):
        buffered.set(POSITION_KEY, 40)
        assert buffered.get(POSITION_KEY) == 40
        assert buffered.get(POSITION_KEY, PARTITION) == 7
        assert buffered.get(POSITION_KEY, PARTITION + 2) is None


def test_a_read_scoped_to_a_partition_outside_an_agent_sees_only_that_partition(
    tmp_path: Path,
) -> None:
    """A scrape reads each queue's state where it lives: the partition's buffer and its own
    database, stored or not yet flushed; another partition's keys are not its."""
    table, _ = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    buffered = BufferedStore(
        table, send=lambda _, partition, records: each(changelog.send)(partition, records)
    )
    with CurrentRecord(PARTITION):
        buffered.set("stored", 1)
        asyncio.run(buffered.flush())
        buffered.set("buffered", 2)
    with CurrentRecord(PARTITION + 1):
        buffered.set("elsewhere", 3)
    with buffered.reading(PARTITION):
        assert [buffered.get(k) for k in ("stored", "buffered", "elsewhere")] == [1, 2, None]
    with buffered.reading(PARTITION + 1):
        assert [buffered.get(k) for k in ("stored", "buffered", "elsewhere")] == [None, None, 3]
    assert [buffered.get(k) for k in ("stored", "buffered", "elsewhere")] == [1, 2, 3]


def test_a_prefix_scan_sees_only_its_keys_stored_buffered_or_deleted(tmp_path: Path) -> None:
    """The queues stage's sweep reads contributions by prefix and buckets by key alone: a scan
    seeks to its prefix in the partition's database, and the buffer's writes and deletes win."""
    table, store = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    buffered = BufferedStore(
        table, send=lambda _, partition, records: each(changelog.send)(partition, records)
    )
    store._db_for_partition(PARTITION + 1)[b"c\x1fq\x1felsewhere"] = b"0"
    with CurrentRecord(PARTITION):
        for key, value in [("b\x1f1", 1), ("c\x1fq\x1fa", 2), ("c\x1fq\x1fb", 3), ("d", 4)]:
            buffered.set(key, value)
        asyncio.run(buffered.flush())
        buffered.set("c\x1fq\x1fc", 5)  # buffered only
        buffered.delete("c\x1fq\x1fa")  # stored, deleted in the buffer
        buffered.set("b\x1f1", 6)  # stored, overwritten in the buffer
        assert dict(TableStore(table).items("c\x1f")) == {"c\x1fq\x1fa": 2, "c\x1fq\x1fb": 3}
        assert sorted(TableStore(table).keys("b\x1f")) == ["b\x1f1"]
        assert dict(buffered.items("c\x1f")) == {"c\x1fq\x1fb": 3, "c\x1fq\x1fc": 5}
        assert sorted(buffered.keys("c\x1f")) == ["c\x1fq\x1fb", "c\x1fq\x1fc"]
        assert dict(buffered.items("b\x1f")) == {"b\x1f1": 6}
        assert sorted(buffered.keys("e")) == []
        assert sorted(buffered.keys()) == ["b\x1f1", "c\x1fq\x1fb", "c\x1fq\x1fc", "d"]


@dataclass
class Counted:
    """An object written by `set_object`: its stored form is what `to_json` gives when asked."""

    n: int
    encoded: int = 0

    def to_json(self) -> dict[str, int]:
        self.encoded += 1
        return {"n": self.n}


def test_an_object_written_again_after_each_change_is_encoded_once_at_the_flush(
    tmp_path: Path,
) -> None:
    table, store = open_store(tmp_path)
    changelog = Changelog(table.changelog_topic_name)
    buffered = BufferedStore(
        table, send=lambda _, partition, records: each(changelog.send)(partition, records)
    )
    call = Counted(1)
    with CurrentRecord(PARTITION):
        for n in range(2, 6):  # five events of a call within one checkpoint
            call.n = n
            buffered.set_object("call-1", call)
        assert call.encoded == 0
        assert buffered.get("call-1") == {"n": 5}  # a read sees the object as it is now
        assert dict(buffered.items()) == {"call-1": {"n": 5}}
        asyncio.run(buffered.flush())
        assert changelog.records == [(b"call-1", b'{"n":5}')]
        assert call.encoded == 3  # the read, the scan and the flush: not one per write
        call.n = 6  # the stage's object lives on; the table holds what the flush wrote
        assert buffered.get("call-1") == {"n": 5}
    assert orjson.loads(store._db_for_partition(PARTITION)[b"call-1"]) == {"n": 5}
