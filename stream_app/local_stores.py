"""At start, before Faust opens them: which local table stores can be trusted.

A partition's store holds exactly its changelog up to the record its mark names
(`stream_app.tables.ChangelogMark`), so Faust's recovery only has to read the records after it.
That holds only while the changelog is the log the store was written from. `DATA_DIR` outlives
topics: `TOPIC_PREFIX` may have changed (Faust keeps the stores under `DATA_DIR` whatever the
changelog's name), or the changelog may have been deleted and created again, shorter or
longer. A store is kept only when its changelog still holds, at the marked offset, the very
record the store was written up to; otherwise its database is deleted and Faust restores the
partition from the whole changelog. A record compacted away since (its key written again by
another worker, then the segment cleaned) also costs a whole restore: the safe side.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from stream_app.kafka_clients import client_options
from stream_app.settings import Settings
from stream_app.tables import MARK_KEY, ChangelogMark, RocksDBStore

log = logging.getLogger(__name__)
EMPTY = "empty"
FETCH_TIMEOUT_S = 10.0  # for the marked records; one not read by then is not trusted


@dataclass(frozen=True, slots=True)
class LocalStore:
    """One partition's database on disk and the mark it holds (None: no mark)."""

    path: Path
    changelog: str
    partition: int
    mark: ChangelogMark | None
    persisted_offset: int | None
    empty: bool = False  # no key at all: opened once, never written


@dataclass(frozen=True, slots=True)
class Verdict:
    store: LocalStore
    kept: bool
    reason: str


def judge(
    store: LocalStore,
    log_range: tuple[int, int] | None,
    record: ConsumerRecord[bytes, bytes] | None,
) -> Verdict:
    """Keep `store` or not, from its changelog partition's (first, end) offsets (None: no such
    topic or partition) and the record read at the marked offset (None: none read)."""
    mark = store.mark

    def drop(reason: str) -> Verdict:
        return Verdict(store, False, reason)

    if mark is None and store.empty:
        return drop(EMPTY)
    if mark is None:
        return drop("no changelog mark (never flushed, or written by an older version)")
    if mark.topic != store.changelog:
        return drop(f"written from another changelog ({mark.topic})")
    if store.persisted_offset != mark.offset:
        return drop(f"persisted offset {store.persisted_offset} is not the mark's {mark.offset}")
    if log_range is None:
        return drop("the changelog partition does not exist")
    first, end = log_range
    if mark.offset >= end:
        return drop(f"marked offset {mark.offset} is past the changelog's end ({end})")
    if mark.offset < first:
        return drop(f"marked offset {mark.offset} is before the changelog's start ({first})")
    if record is None or record.offset != mark.offset:
        return drop(f"the changelog no longer holds the record at offset {mark.offset}")
    found = ChangelogMark.of(store.changelog, record.offset, record.key or b"", record.value)
    if found != mark:
        return drop(f"the record at offset {mark.offset} is not the one the store holds")
    return Verdict(store, True, f"holds the changelog up to offset {mark.offset}")


def read_local_stores(stores: Iterable[RocksDBStore]) -> list[LocalStore]:
    """The partition databases on disk of each table's store, each opened, read and closed."""
    found = []
    for store in stores:
        changelog = store.changelog_topic
        for partition in range(store.table.partitions or 0):
            path = store.partition_path(partition)
            if not path.exists():
                continue
            db = store.rocksdb_options.open(path)
            try:
                raw_offset = db.get(store.offset_key)
                mark = ChangelogMark.decode(db.get(MARK_KEY))
                empty = next(iter(db.keys()), None) is None
            finally:
                db.close()
            offset = None if raw_offset is None else int(raw_offset)
            found.append(LocalStore(path, changelog, partition, mark, offset, empty))
    return found


async def check_local_stores(settings: Settings, stores: list[LocalStore]) -> list[Verdict]:
    """Judge every store against its changelog on the broker."""
    if not stores:
        return []
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = {
            (s.changelog, s.partition): TopicPartition(s.changelog, s.partition)
            for s in stores
            if s.partition in (consumer.partitions_for_topic(s.changelog) or set())
        }
        firsts = await consumer.beginning_offsets(list(tps.values())) if tps else {}
        ends = await consumer.end_offsets(list(tps.values())) if tps else {}
        ranges = {tp: (firsts[tp], ends[tp]) for tp in tps.values()}
        wanted = {}
        for s in stores:
            tp = tps.get((s.changelog, s.partition))
            if (
                tp is not None
                and s.mark is not None
                and ranges[tp][0] <= s.mark.offset < ranges[tp][1]
            ):
                wanted[tp] = s.mark.offset
        records = await _read_at(consumer, wanted)
    finally:
        await consumer.stop()
    verdicts = []
    for s in stores:
        tp = tps.get((s.changelog, s.partition))
        verdicts.append(
            judge(s, None if tp is None else ranges[tp], records.get(tp) if tp else None)
        )
    return verdicts


async def _read_at(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes]]:
    """The first record at or after each offset (what a partition gives within the timeout)."""
    if not offsets:
        return {}
    consumer.assign(list(offsets))
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    found: dict[TopicPartition, ConsumerRecord[bytes, bytes]] = {}
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    while len(found) < len(offsets) and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, batch in batches.items():
            if batch and tp not in found:
                found[tp] = batch[0]
                consumer.pause(tp)
    return found


def keep_trusted_stores(settings: Settings, tables: Iterable[Any]) -> list[Verdict]:
    """Delete the local databases that cannot be trusted (see the module); log each verdict."""
    stores = read_local_stores(table.data for table in tables)
    verdicts = asyncio.run(check_local_stores(settings, stores))
    for verdict in verdicts:
        where = f"{verdict.store.changelog}[{verdict.store.partition}]"
        if verdict.kept:
            log.info("local store %s kept: %s", where, verdict.reason)
            continue
        if verdict.reason == EMPTY:
            log.info("local store %s deleted: %s", where, verdict.reason)
        else:
            log.warning(
                "local store %s deleted, restored from the changelog: %s", where, verdict.reason
            )
        shutil.rmtree(verdict.store.path, ignore_errors=True)
    return verdicts
