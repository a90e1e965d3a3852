"""In-memory implementations of the domain core's `Store` protocol, for unit tests.

Values go through orjson on every write and read, as in `stream_app.tables.TableStore`: a
reader gets a fresh copy (mutating it changes nothing until it is written back), and tuples
come back as lists. `items()` yields a snapshot, so a caller may write while iterating.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.domain.queues import Encodable


class DictStore:
    """One partition's key-value state."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.writes = 0  # set and delete calls, for tests that count them

    def get(self, key: str) -> Any | None:
        raw = self.data.get(key)
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.writes += 1
        self.data[key] = orjson.dumps(value)

    def set_object(self, key: str, value: Encodable) -> None:
        self.set(key, value.to_json())

    def delete(self, key: str) -> None:
        self.writes += 1
        self.data.pop(key, None)

    def items(self, prefix: str = "") -> list[tuple[str, Any]]:
        return [
            (key, orjson.loads(raw)) for key, raw in self.data.items() if key.startswith(prefix)
        ]

    def keys(self, prefix: str = "") -> list[str]:
        return [key for key in self.data if key.startswith(prefix)]

    def snapshot(self) -> dict[str, Any]:
        """Every key and value, decoded: compare two stores with ==."""
        return dict(self.items())


class Crash(Exception):
    """The process died between two writes."""


class CrashingStore:
    """Wraps a store and dies (raises `Crash`) on the write after the first `writes_left`.

    The writes made before the crash stay in the wrapped store, as a Faust changelog keeps the
    writes it had sent: re-running the record on the wrapped store is the recovery.
    """

    def __init__(self, inner: DictStore, writes_left: int) -> None:
        self.inner = inner
        self.writes_left = writes_left

    def _write(self) -> None:
        if self.writes_left <= 0:
            raise Crash
        self.writes_left -= 1

    def get(self, key: str) -> Any | None:
        return self.inner.get(key)

    def set(self, key: str, value: Any) -> None:
        self._write()
        self.inner.set(key, value)

    def set_object(self, key: str, value: Encodable) -> None:
        self.set(key, value.to_json())

    def delete(self, key: str) -> None:
        self._write()
        self.inner.delete(key)

    def items(self, prefix: str = "") -> list[tuple[str, Any]]:
        return self.inner.items(prefix)

    def keys(self, prefix: str = "") -> list[str]:
        return self.inner.keys(prefix)


class PartitionedStore:
    """Like a Faust table: one `DictStore` per partition, the one of the record being processed.

    Set `current` to the partition of the record before handing it to a stage.
    """

    def __init__(self) -> None:
        self.partitions: dict[int, DictStore] = {}
        self.current = 0

    def _db(self) -> DictStore:
        return self.partitions.setdefault(self.current, DictStore())

    def get(self, key: str) -> Any | None:
        return self._db().get(key)

    def set(self, key: str, value: Any) -> None:
        self._db().set(key, value)

    def set_object(self, key: str, value: Encodable) -> None:
        self._db().set_object(key, value)

    def delete(self, key: str) -> None:
        self._db().delete(key)

    def items(self, prefix: str = "") -> list[tuple[str, Any]]:
        return self._db().items(prefix)

    def keys(self, prefix: str = "") -> list[str]:
        return self._db().keys(prefix)
