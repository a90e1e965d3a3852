"""Faust tables seen as the domain core's key-value `Store`: JSON values, partition-local scans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import orjson
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


def create_tables(
    app: faust.App, *, calls_partitions: int, queue_partitions: int
) -> tuple[TableT[Any, Any], TableT[Any, Any]]:
    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    common: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "schema": raw}
    calls = app.Table(
        "calls", partitions=calls_partitions, help="one state per call, keyed by call_id", **common
    )
    queues = app.Table(
        "queues", partitions=queue_partitions, help="per-queue buckets and contributions", **common
    )
    return calls, queues
