"""The queues stage: per-(queue, bucket) sums kept exact under replays, corrections and crashes.

Every record says "call C's whole contribution to queue Q is now X". The stage keeps the
contribution it last applied for (Q, C) and moves each bucket by the difference, so a record
seen twice or a correction after a late event never double counts. Each stored value carries
the offset of the input record that last changed it: a record re-read after a crash skips the
keys it had already written, so a kill between two writes leaves no partial update behind.

One key-value store holds everything of a partition (the Faust table is partitioned like the
input, so a queue's keys all live on the queue's partition):
  c␟queue␟call_id        → [offset, contribution, service_level_ms, short_abandon_ms]
  b␟queue␟kind␟start     → [offset, figures, published_revision]   kind: i interval, m minute, d day
  q␟queue                → {"o": offset, "w": {call_id: waiting_since}, "d": [dirty interval starts]}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from stream_app.domain.figures import Figures, contribution_facts, interval_key, interval_record
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.sla import QueueSla, SlaConfig
from stream_app.domain.windows import (
    MINUTE_MS,
    day_end,
    day_start,
    floor_to,
    interval_closed,
    interval_start,
    rolling_minutes,
)

SEP = "\x1f"
ROLLING_WINDOWS_MS: dict[str, int] = {"15m": 15 * MINUTE_MS, "1h": 60 * MINUTE_MS}
WINDOWS: tuple[str, ...] = ("interval", "15m", "1h", "today")


class Store(Protocol):
    """A partition's key-value state; values are JSON-able."""

    def get(self, key: str) -> Any | None: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def items(self) -> Iterable[tuple[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class WindowConfig:
    interval_ms: int = 15 * MINUTE_MS
    grace_ms: int = 2 * MINUTE_MS
    retention_ms: int = 48 * 60 * MINUTE_MS
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))


@dataclass(slots=True)
class Applied:
    """What applying one record changed (for the histogram and the closing pass)."""

    changed: bool = False
    new_answer_speeds_ms: list[int] = field(default_factory=list)


def contrib_key(queue: str, call_id: str) -> str:
    return f"c{SEP}{queue}{SEP}{call_id}"


def bucket_key(queue: str, kind: str, start: int) -> str:
    return f"b{SEP}{queue}{SEP}{kind}{SEP}{start}"


def meta_key(queue: str) -> str:
    return f"q{SEP}{queue}"


class QueueStage:
    def __init__(self, store: Store, windows: WindowConfig, sla: SlaConfig) -> None:
        self.store = store
        self.windows = windows
        self.sla = sla

    # -- buckets -------------------------------------------------------------------------------

    def bucket_start(self, kind: str, ts: int) -> int:
        if kind == "i":
            return interval_start(ts, self.windows.interval_ms)
        if kind == "m":
            return floor_to(ts, MINUTE_MS)
        return day_start(ts, self.windows.zone)

    def bucket_end(self, kind: str, start: int) -> int:
        if kind == "i":
            return start + self.windows.interval_ms
        if kind == "m":
            return start + MINUTE_MS
        return day_end(start, self.windows.zone)

    def figures(self, queue: str, kind: str, start: int) -> Figures:
        value = self.store.get(bucket_key(queue, kind, start))
        return Figures.from_json(value[1]) if value else Figures()

    # -- applying a call's contribution ----------------------------------------------------------

    def apply(
        self, queue: str, call_id: str, new: Contribution, offset: int, stream_now: int
    ) -> Applied:
        """Replace the call's contribution to `queue` with `new` (idempotent per input offset)."""
        applied = Applied()
        ckey = contrib_key(queue, call_id)
        entry = self.store.get(ckey)
        if entry is not None and entry[0] >= offset:
            return applied
        sla_now = self.sla.for_queue(queue)
        if entry is not None:
            prev = Contribution.from_json(entry[1])
            prev_sla = QueueSla(
                service_level_seconds=entry[2] / 1000, short_abandon_seconds=entry[3] / 1000
            )
        else:
            prev, prev_sla = EMPTY, sla_now
        if prev == new and prev_sla.service_level_ms == sla_now.service_level_ms:
            return applied
        horizon = stream_now - self.windows.retention_ms
        deltas: dict[tuple[str, int], tuple[list[Figures], list[Figures]]] = {}
        for sign, contribution, sla in ((0, prev, prev_sla), (1, new, sla_now)):
            for ts, facts in contribution_facts(contribution, sla):
                for kind in ("i", "m", "d"):
                    start = self.bucket_start(kind, ts)
                    if self.bucket_end(kind, start) <= horizon:
                        continue  # past the retention of the window state: never resurrect a bucket
                    deltas.setdefault((kind, start), ([], []))[sign].append(facts)
        meta = self._meta(queue)
        dirty: set[int] = set(meta["d"])
        for (kind, start), (removes, adds) in deltas.items():
            if _same(removes, adds):
                continue
            bkey = bucket_key(queue, kind, start)
            value = self.store.get(bkey) or [-1, Figures().to_json(), -1]
            if value[0] >= offset:
                continue
            figures = Figures.from_json(value[1])
            recompute = False
            for facts in removes:
                recompute |= figures.subtract(facts)
            for facts in adds:
                figures.add(facts)
            if recompute:
                figures.longest_wait_ms = self._longest(queue, kind, start, call_id, new)
            self.store.set(bkey, [offset, figures.to_json(), value[2]])
            applied.changed = True
            if kind == "i":
                dirty.add(start)
        if new.answered is not None and (prev.answered is None or prev.answered != new.answered):
            applied.new_answer_speeds_ms.append(new.answered[1])
        waiting: dict[str, int] = meta["w"]
        if meta["o"] < offset and (
            waiting.get(call_id) != new.waiting_since or dirty != set(meta["d"])
        ):
            if new.waiting_since is None:
                waiting.pop(call_id, None)
            else:
                waiting[call_id] = new.waiting_since
            meta["d"] = sorted(dirty)
            meta["o"] = offset
            self.store.set(meta_key(queue), meta)
            applied.changed = True
        if new.is_empty():
            self.store.delete(ckey)
        else:
            self.store.set(
                ckey, [offset, new.to_json(), sla_now.service_level_ms, sla_now.short_abandon_ms]
            )
        return applied

    def _meta(self, queue: str) -> dict[str, Any]:
        meta: dict[str, Any] | None = self.store.get(meta_key(queue))
        return meta if meta is not None else {"o": -1, "w": {}, "d": []}

    def _longest(
        self, queue: str, kind: str, start: int, call_id: str, new: Contribution
    ) -> int | None:
        """Recompute a bucket's longest wait after its holder was withdrawn (rare: corrections only)."""
        end = self.bucket_end(kind, start)
        prefix = f"c{SEP}{queue}{SEP}"
        own = contrib_key(queue, call_id)
        contributions: Iterator[Contribution] = (
            Contribution.from_json(value[1])
            for key, value in self.store.items()
            if key.startswith(prefix) and key != own
        )
        longest: int | None = None
        for contribution in (*contributions, new):
            for ts, facts in contribution_facts(contribution, self.sla.for_queue(queue)):
                wait = facts.longest_wait_ms
                if wait is not None and start <= ts < end and (longest is None or wait > longest):
                    longest = wait
        return longest

    # -- closing intervals -----------------------------------------------------------------------

    def close_due(self, queue: str, stream_now: int) -> list[tuple[str, dict[str, object]]]:
        """Publish every changed interval of `queue` whose end plus grace lies behind stream time."""
        meta = self.store.get(meta_key(queue))
        if not meta or not meta["d"]:
            return []
        out: list[tuple[str, dict[str, object]]] = []
        still_dirty: list[int] = []
        for start in meta["d"]:
            if not interval_closed(
                start, self.windows.interval_ms, self.windows.grace_ms, stream_now
            ):
                still_dirty.append(start)
                continue
            bkey = bucket_key(queue, "i", start)
            value = self.store.get(bkey)
            if value is None:
                continue
            revision = value[2] + 1
            out.append(self._record(queue, start, value[1], revision))
            self.store.set(bkey, [value[0], value[1], revision])
        meta["d"] = still_dirty
        self.store.set(meta_key(queue), meta)
        return out

    def _record(
        self, queue: str, start: int, figures_json: Any, revision: int
    ) -> tuple[str, dict[str, object]]:
        end = start + self.windows.interval_ms
        figures = Figures.from_json(figures_json)
        return interval_key(queue, start), interval_record(
            queue, start, end, figures, self.sla.for_queue(queue), revision
        )

    def published(self) -> list[tuple[str, dict[str, object]]]:
        """Every interval of this partition as last published: re-sent after a restart, since a
        crash may have lost a send whose state change was kept (the topic is compacted)."""
        out = []
        for key, value in self.store.items():
            if key.startswith("b" + SEP) and value[2] >= 0:
                _, queue, kind, start = key.split(SEP)
                if kind == "i":
                    out.append(self._record(queue, int(start), value[1], value[2]))
        return out

    def next_close(self, queue: str) -> int | None:
        meta = self.store.get(meta_key(queue))
        if not meta or not meta["d"]:
            return None
        first: int = min(meta["d"])
        return first + self.windows.interval_ms + self.windows.grace_ms

    # -- reading windows (scrapes) --------------------------------------------------------------

    def window(self, queue: str, window: str, stream_now: int) -> Figures:
        if window == "interval":
            return self.figures(queue, "i", interval_start(stream_now, self.windows.interval_ms))
        if window == "today":
            return self.figures(queue, "d", day_start(stream_now, self.windows.zone))
        total = Figures()
        for minute in rolling_minutes(stream_now, ROLLING_WINDOWS_MS[window]):
            total.add(self.figures(queue, "m", minute))
        return total

    def waiting(self, queue: str) -> dict[str, int]:
        meta = self.store.get(meta_key(queue))
        return dict(meta["w"]) if meta else {}

    def queues(self) -> list[str]:
        return [key.split(SEP, 1)[1] for key, _ in self.store.items() if key.startswith("q" + SEP)]

    # -- retention -------------------------------------------------------------------------------

    def sweep(self, stream_now: int) -> int:
        """Forget buckets and contributions past the retention of the window state."""
        horizon = stream_now - self.windows.retention_ms
        doomed: list[str] = []
        for key, value in self.store.items():
            if key.startswith("b" + SEP):
                _, _queue, kind, start = key.split(SEP)
                if self.bucket_end(kind, int(start)) <= horizon:
                    doomed.append(key)
            elif key.startswith("c" + SEP):
                contribution = Contribution.from_json(value[1])
                stamps = [ts for ts, _ in contribution_facts(contribution, self.sla.default)]
                if contribution.waiting_since is None and (not stamps or max(stamps) < horizon):
                    doomed.append(key)
        for key in doomed:
            self.store.delete(key)
        return len(doomed)


def _same(a: list[Figures], b: list[Figures]) -> bool:
    if len(a) != len(b):
        return False
    remaining = list(b)
    for item in a:
        if item not in remaining:
            return False
        remaining.remove(item)
    return True
