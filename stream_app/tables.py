"""Faust tables seen as the domain core's key-value `Store`: JSON values, partition-local scans."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import faust
import orjson
import rocksdict
from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.streams import current_event
from faust.types import EventT, TableT

from stream_app.domain.queues import Encodable

log = logging.getLogger(__name__)


class TableStore:
    """A Faust table (raw bytes, rocksdict store) holding orjson values under str keys.

    Writes and scans happen inside an agent, on the partition of the record being processed:
    Faust puts a table write in the changelog partition of the current record, and a scan must
    see only that partition's keys. Reads also work outside an agent (metric scrapes).
    """

    def __init__(self, table: TableT[Any, Any]) -> None:
        self.table = table

    def get(self, key: str, partition: int | None = None) -> Any | None:
        """`partition`: the current record's, inside an agent (None: a scrape, where Faust
        finds the partition holding the key)."""
        if partition is None:
            raw = self.table.get(key.encode())
        else:
            # The key can only be in the record's partition: one read of its database, not
            # Faust's table path (an `in` check of every partition's database for a missing
            # key, its key index and sensors) on every event.
            store: Any = self.table.data
            raw = store._db_for_partition(partition).get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.table[key.encode()] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def _db(self) -> Any:
        event = current_event()
        if event is None:
            raise RuntimeError(
                "a partition scan needs the current record's partition (call it inside an agent)"
            )
        store: Any = self.table.data  # the rocksdict store: one DB per partition
        return store._db_for_partition(event.message.partition)

    def _scan(self, prefix: str, what: Literal["keys", "items"]) -> list[Any]:
        """The partition's keys or entries under `prefix`, read at once (a caller may write
        while it goes through them). A prefix seeks to its first key and stops past its last
        (an upper bound in the read options): a sweep of contributions does not read the
        buckets, nor a sweep of buckets their values."""
        db = self._db()
        if not prefix:
            store: Any = self.table.data
            return list(getattr(store, f"_visible_{what}")(db))
        start = prefix.encode()
        options = rocksdict.ReadOptions()
        options.set_iterate_upper_bound(start[:-1] + bytes([start[-1] + 1]))
        return list(getattr(db, what)(from_key=start, read_opt=options))

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for key, value in self._scan(prefix, "items"):
            yield key.decode(), orjson.loads(value)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (key.decode() for key in self._scan(prefix, "keys"))


# RocksDB's options per partition's database (Faust opens one per table and partition, 16 by
# default). Faust's defaults (a 64 MiB memtable, up to three, and a 2 GiB block cache, each per
# database) let a worker's memory and write-ahead logs grow for hundreds of MiB before the first
# memtable is flushed: every write, overwrite and delete of a bucket stays in the memtable until
# then. Small memtables flush (and compact away overwritten and deleted keys) early, so memory
# and disk follow the live state, which the retention bounds (bench/RESULTS.md, soak).
ROCKSDB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 4 * 2**20,
}
# RocksDB's own info log (LOG) grows by a statistics dump every 10 minutes and a few lines per
# flush, never rolled by default: about 7 MiB a day for 16 databases on a live feed, for ever.
LOG_FILE_BYTES = 256 * 2**10
LOG_FILES_KEPT = 2


class BoundedLogOptions(RocksDBOptions):
    """Faust's RocksDB options, with the info log rolled by size and only a few kept."""

    def as_options(self) -> Any:
        options = super().as_options()
        if self.use_rocksdict:
            options.set_max_log_file_size(LOG_FILE_BYTES)
            options.set_keep_log_file_num(LOG_FILES_KEPT)
        return options


# Beside Faust's persisted offset (its `offset_key`), each partition's database names the
# changelog record it holds everything up to: a restart checks it against the changelog before
# trusting the store (`stream_app.local_stores`). Hidden from scans like Faust's own key.
MARK_KEY = b"__ccm\0changelog__"


class SentRecord(Protocol):
    """What the producer reports for a record the broker acknowledged (aiokafka's metadata)."""

    @property
    def offset(self) -> int: ...


Records = Sequence[tuple[bytes, bytes | None]]  # (key, value or None for a delete), in order
# (partition, records) → the broker's acknowledgement of the last, once it took every one
ChangelogSend = Callable[[int, Records], Awaitable[SentRecord]]
# The same, the changelog topic first
ChangelogSender = Callable[[str, int, Records], Awaitable[SentRecord]]


async def last_acknowledged(sends: Iterable[Awaitable[SentRecord]]) -> SentRecord:
    """Records sent one by one, as one acknowledgement: the last's, once every one is in; the
    first failure otherwise (after every send settled: none is left unawaited)."""
    results = await asyncio.gather(*sends, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return max(cast(list[SentRecord], results), key=lambda sent: sent.offset)


@dataclass(frozen=True, slots=True)
class ChangelogMark:
    """The changelog record a partition's store holds everything up to: its topic, offset and
    a digest of its key and value. A record at that offset that differs is another log (the
    topic was deleted and created again), not the one the store came from. (Not its timestamp:
    the producer's acknowledgement can report another one than the broker keeps.)"""

    topic: str
    offset: int
    digest: str

    @staticmethod
    def of(topic: str, offset: int, key: bytes, value: bytes | None) -> ChangelogMark:
        return ChangelogMark(topic, offset, record_digest(key, value))

    def encode(self) -> bytes:
        return orjson.dumps({"topic": self.topic, "offset": self.offset, "digest": self.digest})

    @staticmethod
    def decode(raw: bytes | None) -> ChangelogMark | None:
        if raw is None:
            return None
        try:
            fields = orjson.loads(raw)
            return ChangelogMark(str(fields["topic"]), int(fields["offset"]), str(fields["digest"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def record_digest(key: bytes, value: bytes | None) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(len(key).to_bytes(4, "big"))
    digest.update(key)
    digest.update(b"\x00" if value is None else b"\x01" + value)  # a tombstone is not b""
    return digest.hexdigest()


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store (rocksdict), opening its databases with `BoundedLogOptions`, whose
    writes to a partition are atomic with the changelog offset they reach.

    Faust writes a record locally, then sends it to the changelog, and persists the offset when
    the send completes: a kill in between leaves the store ahead of the changelog, so it could
    not be trusted after a crash. Here (as Quix Streams does) the changelog comes first and the
    store follows only what the broker acknowledged, in one write batch with the offset of the
    last record (`write_durably`); Faust's recovery writes its batches the same way. The store
    is then never ahead of its changelog, and a restart restores only the records after the
    persisted offset.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust built its options from the table's (what is left once it took its own keys).
        self.rocksdb_options = BoundedLogOptions(
            **(self.options or {}), use_rocksdict=self.use_rocksdict
        )

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic_name)  # type: ignore[attr-defined]

    async def write_durably(self, partition: int, records: Records, send: ChangelogSend) -> None:
        """Send `records` (None: a delete) to the partition's changelog in order, wait until the
        broker acknowledged every one, then write them and the last one's offset to the local
        store in one batch. A failed send raises before anything is written locally.

        A partition revoked meanwhile is not written: its database is closed, and its next owner
        (or this worker, should it come back) restores these records from the changelog."""
        if not records:
            return
        last = await send(partition, records)  # one partition, in order: the last is the newest
        db = self._dbs.get(partition)
        if db is None:
            log.info(
                "%s[%d] revoked during a flush: its store is left to recovery",
                self.changelog_topic,
                partition,
            )
            return
        key, value = records[-1]
        mark = ChangelogMark.of(self.changelog_topic, last.offset, key, value)
        self._write(db, records, mark)
        for key, value in records:  # reads outside an agent (scrapes) find the partition at once
            if value is not None:
                self._key_index[key] = partition

    def _write(
        self, db: Any, records: Iterable[tuple[bytes, bytes | None]], mark: ChangelogMark
    ) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(self.offset_key, str(mark.offset).encode())
        batch.put(MARK_KEY, mark.encode())
        db.write(batch)

    def changelog_mark(self, partition: int) -> ChangelogMark | None:
        return ChangelogMark.decode(self._db_for_partition(partition).get(MARK_KEY))

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Faust's recovery: each partition's records, its offset and mark in one write batch
        (Faust writes the offset after the records, separately)."""
        records: dict[int, list[tuple[bytes, bytes | None]]] = {}
        marks: dict[int, ChangelogMark] = {}
        for event in batch:
            message = event.message
            key = bytes(message.key or b"")  # a table's changelog keys are never None
            records.setdefault(message.partition, []).append((key, message.value))
            mark = marks.get(message.partition)
            if mark is None or message.offset > mark.offset:
                marks[message.partition] = ChangelogMark.of(
                    message.topic, message.offset, key, message.value
                )
        for partition, partition_records in records.items():
            self._write(self._db_for_partition(partition), partition_records, marks[partition])

    def _visible_keys(self, db: Any) -> Iterator[bytes]:
        return (key for key in super()._visible_keys(db) if key != MARK_KEY)

    def _visible_items(self, db: Any) -> Iterator[tuple[bytes, bytes]]:
        return (item for item in super()._visible_items(db) if item[0] != MARK_KEY)


class ChangelogTable(faust.Table):  # type: ignore[type-arg]
    """A Faust table whose store records the changelog offsets itself (`RocksDBStore`).

    Faust's callback on each changelog send persists that record's offset as soon as the broker
    acknowledges it, before the flush has written the record to the local store: a kill in
    between would leave an offset that vouches for data the store does not hold."""

    def _on_changelog_sent(self, fut: Any) -> None:
        """Nothing: `RocksDBStore.write_durably` persists the offset with the data."""


STORE_SCHEME = "ccm-rocksdb"
STORES.aliases.setdefault(STORE_SCHEME, f"{__name__}:RocksDBStore")


def store_url(table: str) -> str:
    """`ccm-rocksdb:NAME`: the path names the files as Faust's `rocksdb://` does (NAME-P.db in
    the table directory); a URL without one would be falsy to Faust, which then ignores it."""
    return f"{STORE_SCHEME}:{table}"


def create_tables(
    app: faust.App, *, calls_partitions: int, queue_partitions: int
) -> tuple[TableT[Any, Any], TableT[Any, Any]]:
    return (
        changelog_table(app, "calls", calls_partitions, "one state per call, keyed by call_id"),
        changelog_table(app, "queues", queue_partitions, "per-queue buckets and contributions"),
    )


def changelog_table(app: faust.App, name: str, partitions: int, help: str) -> TableT[Any, Any]:
    """A table of raw bytes in `RocksDBStore`, as app.Table makes one, with our class. A copy
    of the options per table: Faust's store pops keys off the options it is given."""
    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    created = ChangelogTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        store=store_url(name),
        partitions=partitions,
        help=help,
        options=dict(ROCKSDB_OPTIONS),
        key_type=bytes,
        value_type=bytes,
        schema=raw,
    )
    return cast(TableT[Any, Any], app.tables.add(created))


_DELETED = b""  # a buffered delete (stored values are never empty: orjson never encodes to b"")


def _decoded(raw: bytes | Encodable) -> Any:
    """A buffered value as a reader gets it: decoded, or encoded from its object afresh."""
    if isinstance(raw, bytes):
        return orjson.loads(raw)
    return raw.to_json()


def _encoded(raw: bytes | Encodable) -> bytes:
    return raw if isinstance(raw, bytes) else orjson.dumps(raw.to_json())


class BufferedStore:
    """A write-back cache over a table, one buffer per partition.

    A record's writes go to its partition's buffer; `flush()` (inside an agent, on a record of
    that partition) makes the buffer durable, ending with the stage's input position
    (`stream_app.input_guard`), and only then does the agent ack the records whose writes it
    holds. A busy queue's bucket or a call written by five events in a row
    costs one changelog record per flush instead of one per event. Values are buffered encoded,
    so nothing a caller mutates after `get` can leak into the buffer without a `set`; or, with
    `set_object`, as the caller's object, which it writes again after each change (encoded at
    the flush, and afresh for each read: a reader never holds the caller's object).
    """

    def __init__(
        self,
        table: TableT[Any, Any],
        flush_rank: Callable[[str], int] = lambda _: 0,
        send: ChangelogSender | None = None,
    ) -> None:
        self.backing = TableStore(table)
        self.buffers: dict[int, dict[str, bytes | Encodable]] = {}
        self.scope: int | None = None  # the partition read outside an agent (`reading`)
        self.flush_rank = flush_rank
        # Faust's own send path unless the worker gives its producer (acknowledged at once).
        self.send_changelog: ChangelogSender = send or self._send_through_faust

    def _send_through_faust(
        self, topic: str, partition: int, records: Records
    ) -> Awaitable[SentRecord]:
        table: Any = self.backing.table
        return last_acknowledged(
            table.send_changelog(
                partition, key, value, key_serializer="raw", value_serializer="raw"
            )
            for key, value in records
        )

    @staticmethod
    def _partition() -> int | None:
        event = current_event()
        return None if event is None else int(event.message.partition)

    def get(self, key: str, partition: int | None = None) -> Any | None:
        """`partition`: whose state. By default the current record's; outside an agent, the
        one `reading` names, or else whichever holds the key."""
        if partition is None:
            partition = self._partition()
            if partition is None:
                partition = self.scope
        buffers = self.buffers.values() if partition is None else [self.buffers.get(partition, {})]
        for buffer in buffers:
            raw = buffer.get(key)
            if raw is not None:
                return None if raw == _DELETED else _decoded(raw)
        return self.backing.get(key, partition)

    @contextlib.contextmanager
    def reading(self, partition: int) -> Iterator[None]:
        """Reads outside an agent (a scrape) of state known to be on `partition`: its buffer
        and its own database. Otherwise a key is looked for in every buffer, then by Faust in
        every partition's database, which for a missing key (an empty minute) asks them all:
        about 170 reads per queue per scrape."""
        outer, self.scope = self.scope, partition
        try:
            yield
        finally:
            self.scope = outer

    def _buffer(self) -> dict[str, bytes | Encodable]:
        partition = self._partition()
        if partition is None:
            raise RuntimeError(
                "a table write needs the current record's partition (call it inside an agent)"
            )
        return self.buffers.setdefault(partition, {})

    def set(self, key: str, value: Any) -> None:
        self._buffer()[key] = orjson.dumps(value)

    def set_object(self, key: str, value: Encodable) -> None:
        """Write an object its caller keeps, and writes again after each change to it (a call
        in progress): encoded once, at the flush (or for a read), not at every write."""
        self._buffer()[key] = value

    def delete(self, key: str) -> None:
        self._buffer()[key] = _DELETED

    def _buffered(self, prefix: str) -> dict[str, bytes | Encodable]:
        return {key: raw for key, raw in self._buffer().items() if key.startswith(prefix)}

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """The partition's entries whose keys start with `prefix`, buffered writes included."""
        buffer = self._buffered(prefix)
        for key, value in self.backing.items(prefix):
            if key not in buffer:
                yield key, value
        for key, raw in buffer.items():
            if raw != _DELETED:
                yield key, _decoded(raw)

    def keys(self, prefix: str = "") -> Iterator[str]:
        buffer = self._buffered(prefix)
        for key in self.backing.keys(prefix):
            if key not in buffer:
                yield key
        yield from (key for key, raw in buffer.items() if raw != _DELETED)

    async def flush(self) -> None:
        """Make the current partition's buffer durable: sent to the changelog and acknowledged,
        then written to the local store with its changelog offset (`RocksDBStore.write_durably`).
        The agent acks the records whose writes the buffer holds only after this returns.

        The changelog receives a flush in rank order: a crash can cut it anywhere, and the
        stage's commit-point keys (ranked last) must never arrive before what they vouch for.
        The buffer stays readable until the local store holds it."""
        partition = self._partition()
        buffer = self.buffers.get(partition) if partition is not None else None
        if partition is None or not buffer:
            return
        table: Any = self.backing.table
        store: RocksDBStore = table.data
        db = store._db_for_partition(partition)  # where a delete's key would be
        records: list[tuple[bytes, bytes | None]] = []
        for key, raw in sorted(buffer.items(), key=lambda item: self.flush_rank(item[0])):
            encoded = key.encode()
            if raw != _DELETED:
                records.append((encoded, _encoded(raw)))
            elif encoded in db:
                records.append((encoded, None))

        topic = store.changelog_topic

        def send(target: int, records: Records) -> Awaitable[SentRecord]:
            return self.send_changelog(topic, target, records)

        await store.write_durably(partition, records, send)
        if self.buffers.get(partition) is buffer:
            del self.buffers[partition]

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's unflushed writes: its unacked records will be redone."""
        self.buffers.pop(partition, None)
