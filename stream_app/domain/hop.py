"""The hop between the stages: calls' contributions combined per queue before they are sent.

Faust's cost is per record, so the calls stage does not send one `queue-updates` record per call
per change: it keeps, per calls partition, each (queue, call)'s latest contribution since the
last send, and sends one record per queue carrying them all — before each checkpoint of the
partition (a backlog: every few thousand records or a second) and, on a live feed or caught
up, whenever its input buffer runs dry (at once). A call that changed five times in between
crosses the hop once.

The queues stage stays exact under replays because it replaces each call's contribution, and
it stays crash-safe because each entry of a record has its own position,
`offset * ENTRIES_PER_RECORD + index`: the stored values remember the position that last wrote
them, so a record re-read after a crash skips the entries (and buckets) it had already written.

Record (JSON): {"q": queue, "u": [[call_id, contribution], ...], "sp": calls partition,
"st": its stream time, "sa": the wall time it saw it, "b": whether it is behind its input}.
Version 1 records ({"q", "c", "x", ...}: one call) and watermarks (no "q") read the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stream_app.domain.model import Contribution

ENTRIES_PER_RECORD = 512  # at most this many calls in one record (about 60 kB of JSON)
POSITIONS_PER_OFFSET = 1 << 10  # > ENTRIES_PER_RECORD: room for an entry's index in its position


def entry_position(offset: int, index: int) -> int:
    """The position of the `index`-th entry of the record at `offset`: increasing along the
    partition, record by record and entry by entry."""
    return offset * POSITIONS_PER_OFFSET + index


class Pending:
    """Per calls partition, the contributions applied but not sent yet (latest per call)."""

    def __init__(self) -> None:
        self.by_partition: dict[int, dict[str, dict[str, Contribution]]] = {}

    def add(self, partition: int, call_id: str, contributions: dict[str, Contribution]) -> None:
        queues = self.by_partition.setdefault(partition, {})
        for queue, contribution in contributions.items():
            calls = queues.setdefault(queue, {})
            calls.pop(call_id, None)  # re-inserted last: the record keeps the order of changes
            calls[call_id] = contribution

    def partitions(self) -> list[int]:
        return [partition for partition, queues in self.by_partition.items() if queues]

    def take(self, partition: int) -> Iterator[tuple[str, list[tuple[str, Contribution]]]]:
        """The partition's pending contributions, per queue in chunks of ENTRIES_PER_RECORD;
        none are pending afterwards."""
        queues = self.by_partition.pop(partition, {})
        for queue, calls in queues.items():
            entries = list(calls.items())
            for first in range(0, len(entries), ENTRIES_PER_RECORD):
                yield queue, entries[first : first + ENTRIES_PER_RECORD]

    def drop(self, partition: int) -> None:
        """On revocation: its records are redone by the partition's next owner."""
        self.by_partition.pop(partition, None)


def update_record(
    queue: str,
    entries: list[tuple[str, Contribution]],
    source: int,
    stream_time: int | None,
    seen_at: int | None,
    behind: bool,
) -> dict[str, Any]:
    return {
        "q": queue,
        "u": [[call_id, contribution.to_json()] for call_id, contribution in entries],
        "sp": source,
        "st": stream_time,
        "sa": seen_at,
        "b": behind,
    }


@dataclass(frozen=True, slots=True)
class Update:
    """A `queue-updates` record as the queues stage reads it."""

    source: int
    stream_time: int | None
    seen_at: int | None
    behind: bool
    queue: str | None  # None: a watermark only
    entries: list[tuple[str, Contribution]]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Update:
        queue = data.get("q")
        if queue is None:
            entries = []
        elif "u" in data:
            entries = [(call_id, Contribution.from_json(x)) for call_id, x in data["u"]]
        else:
            entries = [(data["c"], Contribution.from_json(data["x"]))]
        return cls(
            source=data["sp"],
            stream_time=data["st"],
            seen_at=data.get("sa"),
            behind=bool(data.get("b")),  # version 1 says nothing of a backlog
            queue=queue,
            entries=entries,
        )
