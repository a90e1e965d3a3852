"""Faust tables seen as the domain core's key-value `Store`: JSON values, partition-local scans."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import faust
import orjson
from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.streams import current_event
from faust.types import TableT


class TableStore:
    """A Faust table (raw bytes, rocksdict store) holding orjson values under str keys.

    Writes and scans happen inside an agent, on the partition of the record being processed:
    Faust puts a table write in the changelog partition of the current record, and a scan must
    see only that partition's keys. Reads also work outside an agent (metric scrapes).
    """

    def __init__(self, table: TableT[Any, Any]) -> None:
        self.table = table

    def get(self, key: str) -> Any | None:
        raw = self.table.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.table[key.encode()] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def items(self) -> Iterator[tuple[str, Any]]:
        event = current_event()
        if event is None:
            raise RuntimeError(
                "a partition scan needs the current record's partition (call it inside an agent)"
            )
        store: Any = self.table.data  # the rocksdict store: one DB per partition
        db = store._db_for_partition(event.message.partition)
        for key, value in list(store._visible_items(db)):
            yield key.decode(), orjson.loads(value)


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


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store (rocksdict), opening its databases with `BoundedLogOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust built its options from the table's (what is left once it took its own keys).
        self.rocksdb_options = BoundedLogOptions(
            **(self.options or {}), use_rocksdict=self.use_rocksdict
        )


STORE_SCHEME = "ccm-rocksdb"
STORES.aliases.setdefault(STORE_SCHEME, f"{__name__}:RocksDBStore")


def store_url(table: str) -> str:
    """`ccm-rocksdb:NAME`: the path names the files as Faust's `rocksdb://` does (NAME-P.db in
    the table directory); a URL without one would be falsy to Faust, which then ignores it."""
    return f"{STORE_SCHEME}:{table}"


def create_tables(
    app: faust.App, *, calls_partitions: int, queue_partitions: int
) -> tuple[TableT[Any, Any], TableT[Any, Any]]:
    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    common: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "schema": raw,
    }
    # A copy per table: Faust's store pops keys off the options it is given.
    calls = app.Table(
        "calls",
        store=store_url("calls"),
        partitions=calls_partitions,
        help="one state per call, keyed by call_id",
        options=dict(ROCKSDB_OPTIONS),
        **common,
    )
    queues = app.Table(
        "queues",
        store=store_url("queues"),
        partitions=queue_partitions,
        help="per-queue buckets and contributions",
        options=dict(ROCKSDB_OPTIONS),
        **common,
    )
    return calls, queues


_DELETED = b""  # a buffered delete (stored values are never empty: orjson never encodes to b"")


class BufferedStore:
    """A write-back cache over a table, one buffer per partition.

    A record's writes go to its partition's buffer; `flush()` (inside an agent, on a record of
    that partition) writes the buffer to the table, ending with the stage's input position
    (`stream_app.input_guard`), and only then does the agent ack the records whose writes it
    holds. A busy queue's bucket or a call written by five events in a row
    costs one changelog record per flush instead of one per event. Values are buffered encoded,
    so nothing a caller mutates after `get` can leak into the buffer without a `set`.
    """

    def __init__(
        self, table: TableT[Any, Any], flush_rank: Callable[[str], int] = lambda _: 0
    ) -> None:
        self.backing = TableStore(table)
        self.buffers: dict[int, dict[str, bytes]] = {}
        self.flush_rank = flush_rank

    @staticmethod
    def _partition() -> int | None:
        event = current_event()
        return None if event is None else int(event.message.partition)

    def get(self, key: str) -> Any | None:
        partition = self._partition()
        buffers = self.buffers.values() if partition is None else [self.buffers.get(partition, {})]
        for buffer in buffers:
            raw = buffer.get(key)
            if raw is not None:
                return None if raw == _DELETED else orjson.loads(raw)
        return self.backing.get(key)

    def _buffer(self) -> dict[str, bytes]:
        partition = self._partition()
        if partition is None:
            raise RuntimeError(
                "a table write needs the current record's partition (call it inside an agent)"
            )
        return self.buffers.setdefault(partition, {})

    def set(self, key: str, value: Any) -> None:
        self._buffer()[key] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self._buffer()[key] = _DELETED

    def items(self) -> Iterator[tuple[str, Any]]:
        buffer = dict(self._buffer())
        for key, value in self.backing.items():
            if key not in buffer:
                yield key, value
        for key, raw in buffer.items():
            if raw != _DELETED:
                yield key, orjson.loads(raw)

    def flush(self) -> list[Awaitable[Any]]:
        """Write the current partition's buffer to the table; return its changelog sends.

        The sends are awaited before acking: Faust's producer buffer hands a changelog record
        to the Kafka client in a background task, so an empty buffer does not mean the record
        is on its way (and a producer flush would not wait for it). An offset committed before
        that record is durable loses the write in a crash.
        """
        partition = self._partition()
        buffer = self.buffers.pop(partition, None) if partition is not None else None
        if not buffer:
            return []
        table: Any = self.backing.table
        store = table.data
        sends: list[Awaitable[Any]] = []
        # The changelog receives a flush in this order: a crash can cut it anywhere, and the
        # stage's commit-point keys (ranked last) must never arrive before what they vouch for.
        for key, raw in sorted(buffer.items(), key=lambda item: self.flush_rank(item[0])):
            encoded = key.encode()
            if raw == _DELETED:
                if encoded not in store:
                    continue
                del store[encoded]
                sends.append(table.send_changelog(partition, encoded, None, value_serializer="raw"))
            else:
                store[encoded] = raw
                sends.append(table.send_changelog(partition, encoded, raw))
        return sends

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's unflushed writes: its unacked records will be redone."""
        self.buffers.pop(partition, None)
