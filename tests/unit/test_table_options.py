"""The tables' RocksDB databases, opened as the worker opens them: what they keep on disk is
bounded by our options, not only by the state (a real rocksdict database in a temp dir)."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.stores.rocksdb import RocksDBOptions

from stream_app.tables import (
    LOG_FILE_BYTES,
    LOG_FILES_KEPT,
    ROCKSDB_OPTIONS,
    BoundedLogOptions,
    RocksDBStore,
    create_tables,
)


def info_logs(path: Path) -> list[int]:
    return [f.stat().st_size for f in path.iterdir() if f.name.startswith("LOG")]


def flush_often(options: RocksDBOptions, path: Path, flushes: int) -> None:
    """Each flush writes a few lines to RocksDB's info log, as a busy worker's flushes do."""
    db = options.open(path)
    for n in range(flushes):
        db[b"k%d" % n] = b"v" * 100
        db.flush()
    db.close()


def test_rocksdb_info_log_is_rolled_and_only_a_few_kept(tmp_path: Path) -> None:
    flush_often(BoundedLogOptions(**ROCKSDB_OPTIONS), tmp_path / "bounded.db", 800)
    logs = info_logs(tmp_path / "bounded.db")
    assert len(logs) <= LOG_FILES_KEPT
    assert sum(logs) <= LOG_FILES_KEPT * (LOG_FILE_BYTES + 16 * 1024)
    # Faust's own options: one LOG that only grows.
    flush_often(RocksDBOptions(**ROCKSDB_OPTIONS), tmp_path / "faust.db", 800)
    assert info_logs(tmp_path / "faust.db") == [max(info_logs(tmp_path / "faust.db"))]
    assert sum(info_logs(tmp_path / "faust.db")) > 2 * LOG_FILE_BYTES


def test_the_tables_use_the_bounded_store_with_small_memtables(tmp_path: Path) -> None:
    app = faust.App("table-options", store="rocksdb://", datadir=str(tmp_path))
    for table in create_tables(app, calls_partitions=2, queue_partitions=2):
        store = table.data
        assert isinstance(store, RocksDBStore)
        assert isinstance(store.rocksdb_options, BoundedLogOptions)
        assert store.rocksdb_options.write_buffer_size == ROCKSDB_OPTIONS["write_buffer_size"]
        assert store.rocksdb_options.block_cache_size == ROCKSDB_OPTIONS["block_cache_size"]
        # The files are where Faust's `rocksdb://` puts them: an upgrade finds its state.
        assert store.partition_path(1) == Path(app.conf.tabledir) / f"{table.name}-1.db"


def write_much(options: RocksDBOptions, path: Path) -> tuple[int, int]:
    """16 MiB of overwrites of 1,000 keys, as a busy partition's bucket updates: (memtable
    bytes, write-ahead log bytes) at the end."""
    db = options.open(path)
    value = b"v" * 1000
    for n in range(16 * 1024):
        db[b"k%d" % (n % 1000)] = value
    memtables = db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
    wal = sum(size_of(f) for f in path.iterdir() if f.suffix == ".log")
    db.close()
    return memtables, wal


def size_of(file: Path) -> int:
    """0 for a file gone since the directory was listed: RocksDB's background flush deletes
    a write-ahead log it no longer needs at any moment."""
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def test_memory_and_write_ahead_log_follow_the_live_state_not_the_writes(tmp_path: Path) -> None:
    cap = ROCKSDB_OPTIONS["write_buffer_size"] * ROCKSDB_OPTIONS["max_write_buffer_number"]
    memtables, wal = write_much(BoundedLogOptions(**ROCKSDB_OPTIONS), tmp_path / "bounded.db")
    assert memtables <= cap + 2**20
    assert wal <= cap + 2**20
    # Faust's defaults keep every one of the writes in memory and in the log.
    memtables, wal = write_much(RocksDBOptions(), tmp_path / "faust.db")
    assert memtables > 16 * 2**20
    assert wal > 16 * 2**20
