"""The queues stage: per-(queue, bucket) sums kept exact under replays, corrections and crashes.

Every record says "call C's whole contribution to queue Q is now X". The stage keeps the
contribution it last applied for (Q, C) and moves each bucket by the difference, so a record
seen twice or a correction after a late event never double counts. Each stored value carries
the offset of the input record that last changed it: a record re-read after a crash skips the
keys it had already written, so a kill between two writes leaves no partial update behind.

"today" is summed from the day's intervals (and minutes where an interval straddles local
midnight), so a fact costs two bucket writes, not three.

One key-value store holds everything of a partition (the Faust table is partitioned like the
input, so a queue's keys all live on the queue's partition):
  c␟queue␟call_id        → [offset, contribution, service_level_ms, short_abandon_ms]
  b␟queue␟kind␟start     → [offset, figures, published_revision, waits, published figures,
                             published agent figures [occupancy, agents_staffed_avg]]
                            kind: i interval, m minute;
                            a minute's waits (sorted) keep its longest wait exact under withdrawals
  q␟queue                → {"o": offset, "w": {call_id: waiting_since}, "d": [dirty interval starts],
                             "x": the first interval its agents' timelines are exact from (sweeps),
                             "h": the horizon of the last sweep: facts before it are final}

Facts before a sweep's horizon are final. A calls partition whose new owner redoes the records
since its last checkpoint sends their contributions again, and its announced clock may already
have let the sweeps forget those calls' contributions (announcements never go back). A call the
stage no longer knows is otherwise new, and its facts would count twice in the buckets still kept
(or revive a swept bucket with one call in it). So the facts before the horizon are left out of
every replacement: they are what was counted, since a calls partition rejects any event older
than its own stream time minus the same retention.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar
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
    minutes_in,
    rolling_minutes,
    with_intervals,
)

if TYPE_CHECKING:
    from stream_app.domain.queue_agents import QueueAgent

SEP = "\x1f"
ROLLING_WINDOWS_MS: dict[str, int] = {"15m": 15 * MINUTE_MS, "1h": 60 * MINUTE_MS}
WINDOWS: tuple[str, ...] = ("interval", "15m", "1h", "today")


class Encodable(Protocol):
    def to_json(self) -> Any: ...


class Store(Protocol):
    """A partition's key-value state; values are JSON-able."""

    def get(self, key: str) -> Any | None: ...
    def set(self, key: str, value: Any) -> None: ...

    def set_object(self, key: str, value: Encodable) -> None:
        """`set(key, value.to_json())`, which a store may defer (as long as it keeps `value`):
        the caller writes the object again after each change to it."""
        ...

    def delete(self, key: str) -> None: ...
    def items(self, prefix: str = "") -> Iterable[tuple[str, Any]]:
        """The entries whose keys start with `prefix` (all by default), as of the call."""
        ...

    def keys(self, prefix: str = "") -> Iterable[str]:
        """The keys `items(prefix)` would give, without decoding a value."""
        ...


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


_R = TypeVar("_R")
_P = ParamSpec("_P")


def _consistent(
    method: Callable[Concatenate[QueueStage, _P], _R],
) -> Callable[Concatenate[QueueStage, _P], _R]:
    """A change that fails half way (a write refused) leaves no cached meta ahead of the
    table: the cache is dropped, and the record is redone from what the table holds."""

    @functools.wraps(method)
    def wrapped(stage: QueueStage, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(stage, *args, **kwargs)
        except BaseException:
            stage.forget()
            raise

    return wrapped


class QueueStage:
    def __init__(self, store: Store, windows: WindowConfig, sla: SlaConfig) -> None:
        self.store = store
        self.windows = windows
        self.sla = sla
        # Per queue, its agents' timelines as last read, with what they were read at.
        self._agents: dict[str, tuple[Any, list[QueueAgent]]] = {}
        # Per queue, its meta decoded as last written: every record of the queue reads it, and
        # it holds the calls waiting and the intervals to publish (often a hundred or more).
        # Each change to it is written at once; a failure forgets them all (`_consistent`).
        self._metas: dict[str, dict[str, Any]] = {}

    def forget(self) -> None:
        """Partitions moved (or a failure): the queues' metas are read from the table again."""
        self._metas.clear()

    def agents(self, queue: str) -> list[QueueAgent]:
        """The queue's agents' timelines (stream_app.domain.queue_agents), read again only
        when one of them changed: scrapes, the live feed and closing read them all the time."""
        from stream_app.domain.queue_agents import positions, queue_agents

        marker = positions(self.store, queue)
        seen = self._agents.get(queue)
        if seen is None or seen[0] != marker:
            seen = self._agents[queue] = (marker, queue_agents(self.store, queue))
        return seen[1]

    @staticmethod
    def flush_rank(key: str) -> int:
        """The order a batch of writes must reach durable storage: buckets, then the queue's
        meta, then contributions. A contribution at a record's offset vouches that the record's
        buckets and meta are in; a prefix of a batch cut by a crash never breaks that."""
        return {"b": 0, "q": 1}.get(key[:1], 2)

    # -- buckets -------------------------------------------------------------------------------

    def bucket_end(self, kind: str, start: int) -> int:
        return start + (self.windows.interval_ms if kind == "i" else MINUTE_MS)

    def figures(self, queue: str, kind: str, start: int) -> Figures:
        value = self.store.get(bucket_key(queue, kind, start))
        return Figures.from_json(value[1]) if value else Figures()

    # -- applying a call's contribution ----------------------------------------------------------

    @_consistent
    def apply(self, queue: str, call_id: str, new: Contribution, offset: int) -> Applied:
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
        if (
            prev == new
            and prev_sla.service_level_ms == sla_now.service_level_ms
            and prev_sla.short_abandon_ms == sla_now.short_abandon_ms
        ):
            return applied
        meta = self._meta(queue)
        final_before: int = meta.get("h", 0)  # facts before the last sweep's horizon (ts >= 0)
        # Per bucket start, the facts it loses and the facts it gains.
        minutes: dict[int, tuple[list[Figures], list[Figures]]] = {}
        intervals: dict[int, tuple[list[Figures], list[Figures]]] = {}
        interval_ms = self.windows.interval_ms
        for sign, contribution, sla in ((0, prev, prev_sla), (1, new, sla_now)):
            for ts, facts in contribution_facts(contribution, sla):
                if ts < final_before:
                    continue
                intervals.setdefault(interval_start(ts, interval_ms), ([], []))[sign].append(facts)
                minutes.setdefault(floor_to(ts, MINUTE_MS), ([], []))[sign].append(facts)
        dirty: set[int] = set()  # intervals this record changes (meta["d"] may hold 200)
        # Minutes first: an interval whose longest wait was withdrawn re-reads its minutes.
        buckets = [("m", start, d) for start, d in minutes.items()]
        buckets.extend(("i", start, d) for start, d in intervals.items())
        for kind, start, (removes, adds) in buckets:
            removes, adds = _cancel(removes, adds)
            if not removes and not adds:
                continue
            bkey = bucket_key(queue, kind, start)
            value = self.store.get(bkey) or [-1, Figures().to_json(), -1, []]
            if value[0] >= offset:
                if kind == "i" and value[0] == offset:
                    dirty.add(start)  # written by this very record before a crash
                continue
            figures = Figures.from_json(value[1])
            recompute = False
            for facts in removes:
                recompute |= figures.subtract(facts)
            for facts in adds:
                figures.add(facts)
            waits: list[int] = value[3]
            if kind == "m":
                _move_waits(waits, removes, adds)
                figures.longest_wait_ms = waits[-1] if waits else None
            elif recompute:
                figures.longest_wait_ms = self._longest_of_minutes(queue, start)
            self.store.set(bkey, [offset, figures.to_json(), value[2], waits, *value[4:]])
            applied.changed = True
            if kind == "i":
                dirty.add(start)
        if (
            new.answered is not None
            and (prev.answered is None or prev.answered != new.answered)
            and new.answered[0] >= final_before
        ):
            applied.new_answer_speeds_ms.append(new.answered[1])  # a final answer was observed
        waiting: dict[str, int] = meta["w"]
        was_dirty: list[int] = meta["d"]  # sorted
        dirty = {start for start in dirty if not _holds(was_dirty, start)}
        if meta["o"] < offset and (waiting.get(call_id) != new.waiting_since or dirty):
            if new.waiting_since is None:
                waiting.pop(call_id, None)
            else:
                waiting[call_id] = new.waiting_since
            if dirty:
                meta["d"] = sorted([*was_dirty, *dirty])
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

    @_consistent
    def mark_dirty(
        self, queue: str, since: int, stream_now: int | None, low_watermark: int | None = None
    ) -> None:
        """The intervals from `since` to stream time are to be published again: an agent's
        timeline for the queue changed from `since` on (its occupancy, its staffed agents).
        Stream time not known yet (a restarted worker whose first records are agents'
        timelines): every interval up to the retention after `since` (unclosed ones wait).
        Not before the retention counted from the low watermark (the sweeps keep what is
        after it), or from stream time when that is not known: stream time may have jumped
        days past intervals a calls partition still revises. Never before the interval the
        sweeps left the agents' timelines exact from: one published again there would lose
        the agents whose spans they forgot."""
        now = stream_now if stream_now is not None else since + self.windows.retention_ms
        last = interval_start(max(since, now), self.windows.interval_ms)
        floor = (last if low_watermark is None else low_watermark) - self.windows.retention_ms
        meta = self._meta(queue)
        first = interval_start(max(since, floor), self.windows.interval_ms)
        first = max(first, meta.get("x", first))
        dirty = with_intervals(meta["d"], first, last, self.windows.interval_ms)
        if len(dirty) != len(meta["d"]):
            meta["d"] = dirty
            self.store.set(meta_key(queue), meta)

    def _meta(self, queue: str) -> dict[str, Any]:
        meta = self._metas.get(queue)
        if meta is None:
            meta = self._metas[queue] = self.store.get(meta_key(queue)) or {
                "o": -1,
                "w": {},
                "d": [],
            }
        return meta

    def _longest_of_minutes(self, queue: str, start: int) -> int | None:
        """An interval's longest wait after its holder was withdrawn (corrections only)."""
        longest = None
        for minute in minutes_in(start, start + self.windows.interval_ms):
            wait = self.figures(queue, "m", minute).longest_wait_ms
            if wait is not None and (longest is None or wait > longest):
                longest = wait
        return longest

    # -- closing intervals -----------------------------------------------------------------------

    @_consistent
    def close_due(self, queue: str, stream_now: int) -> list[tuple[str, dict[str, object]]]:
        """Publish every changed interval of `queue` whose end plus grace lies behind stream time."""
        meta = self._meta(queue)
        if not meta["d"]:
            return []
        out: list[tuple[str, dict[str, object]]] = []
        still_dirty: list[int] = []
        agents_of_queue = None
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
            if agents_of_queue is None:
                agents_of_queue = self.agents(queue)  # once, not per interval
            key, record = self._record(queue, start, value[1], revision, agents_of_queue)
            agents = [record["occupancy"], record["agents_staffed_avg"]]
            if value[2] >= 0 and value[4] == value[1] and value[5:6] == [agents]:
                continue  # marked by an agent's change that left the interval's figures alone
            out.append((key, record))
            # The figures as published ride along: a re-send after a restart repeats exactly
            # what went out under this revision, not newer figures still waiting to close.
            self.store.set(bkey, [value[0], value[1], revision, value[3], value[1], agents])
        meta["d"] = still_dirty
        self.store.set(meta_key(queue), meta)
        return out

    def _record(
        self,
        queue: str,
        start: int,
        figures_json: Any,
        revision: int,
        agents: list[QueueAgent] | None = None,
        agent_figures: list[Any] | None = None,
    ) -> tuple[str, dict[str, object]]:
        """The interval's `queue-metrics` record; `agents`: the queue's, when read already;
        `agent_figures`: [occupancy, agents_staffed_avg] as published, not derived again."""
        # Imported here: the agents' module builds on this one (its store and separator).
        from stream_app.domain.queue_agents import interval_agent_figures

        end = start + self.windows.interval_ms
        figures = Figures.from_json(figures_json)
        record = interval_record(queue, start, end, figures, self.sla.for_queue(queue), revision)
        revision_field = record.pop("revision")
        if agent_figures is not None:
            record["occupancy"], record["agents_staffed_avg"] = agent_figures
        else:
            if agents is None:
                agents = self.agents(queue)
            record.update(interval_agent_figures(agents, start, end))
        record["revision"] = revision_field
        return interval_key(queue, start), record

    def published(self) -> list[tuple[str, dict[str, object]]]:
        """Every interval of this partition as last published: re-sent after a restart, since a
        crash may have lost a send whose state change was kept (the topic is compacted). Its
        agent figures too as published: the agents' timelines kept now may no longer reach
        back to an old interval, and a re-send must not change what it repeats."""
        out = []
        for key, value in self.store.items("b" + SEP):
            if value[2] >= 0:
                _, queue, kind, start = key.split(SEP)
                if kind == "i":
                    published = value[5] if len(value) > 5 else None
                    out.append(self._record(queue, int(start), value[4], value[2], None, published))
        return out

    # -- reading windows (scrapes) --------------------------------------------------------------

    def window(self, queue: str, window: str, stream_now: int) -> Figures:
        if window == "interval":
            return self.figures(queue, "i", interval_start(stream_now, self.windows.interval_ms))
        if window == "today":
            return self.today(queue, stream_now)
        total = Figures()
        for minute in rolling_minutes(stream_now, ROLLING_WINDOWS_MS[window]):
            total.add(self.figures(queue, "m", minute))
        return total

    def today(self, queue: str, stream_now: int) -> Figures:
        """Since local midnight: whole intervals, and minutes where an interval crosses midnight."""
        size = self.windows.interval_ms
        first, last = (
            day_start(stream_now, self.windows.zone),
            day_end(stream_now, self.windows.zone),
        )
        total = Figures()
        start = interval_start(first, size)
        while start < last:
            if start < first or start + size > last:
                for minute in minutes_in(max(start, first), min(start + size, last)):
                    total.add(self.figures(queue, "m", minute))
            else:
                total.add(self.figures(queue, "i", start))
            start += size
        return total

    def waiting(self, queue: str) -> dict[str, int]:
        meta = self.store.get(meta_key(queue))
        return dict(meta["w"]) if meta else {}

    def queues(self) -> list[str]:
        """The queues with calls or agents (a roster: stream_app.domain.queue_agents) here."""
        keys = [*self.store.keys("q" + SEP), *self.store.keys("r" + SEP)]
        return sorted({key.split(SEP, 1)[1] for key in keys})

    # -- retention -------------------------------------------------------------------------------

    @_consistent
    def sweep(self, low_watermark: int) -> int:
        """Forget buckets and contributions past the retention of the window state.

        `low_watermark` is the oldest stream time among the calls stage's partitions: an event
        those partitions still accept (not late by their own stream time) can never land in a
        bucket this deletes, and the contributions a partition sends again from the records it
        redoes land nowhere (the horizon kept in each queue's meta), so no bucket is ever
        resurrected half empty nor a forgotten call counted twice.
        """
        horizon = low_watermark - self.windows.retention_ms
        # An interval not yet published keeps its buckets whatever its age: sweeping it first
        # would lose it (after a restart, a sweep can run before the first close does).
        metas = list(self.store.items("q" + SEP))
        unpublished = {
            (key.split(SEP, 1)[1], start) for key, value in metas for start in value["d"]
        }
        queues = {key.split(SEP, 1)[1] for key, _ in metas}  # each keeps the horizon (below)
        doomed: list[str] = []
        # A bucket is judged by its key alone (most of the table: its value is never read).
        for key in self.store.keys("b" + SEP):
            _, queue, _, start = key.split(SEP)
            interval = interval_start(int(start), self.windows.interval_ms)
            if (queue, interval) in unpublished:
                continue
            # A minute goes with its interval: a withdrawn longest wait is read again from
            # the interval's minutes, all of them.
            if self.bucket_end("i", interval) <= horizon:
                doomed.append(key)
        for key, value in self.store.items("c" + SEP):
            queues.add(key.split(SEP, 2)[1])
            contribution = Contribution.from_json(value[1])
            stamps = contribution.fact_stamps()
            if contribution.waiting_since is None and (not stamps or max(stamps) < horizon):
                doomed.append(key)
        timelines = list(self.store.items("g" + SEP))
        # The horizon goes with each queue's meta before the contributions go (the meta is
        # flushed first, `flush_rank`): a call forgotten here is never taken for a new one.
        for queue in sorted(queues):
            meta = self._meta(queue)
            if meta.get("h", 0) < horizon:
                meta["h"] = horizon
                self.store.set(meta_key(queue), meta)
        for key in doomed:
            self.store.delete(key)
        return len(doomed) + self._prune_agents(timelines, horizon, unpublished)

    def _prune_agents(
        self, timelines: list[tuple[str, Any]], horizon: int, unpublished: set[tuple[str, int]]
    ) -> int:
        """Agents' timelines (stream_app.domain.queue_agents) from the span in force at the
        start of the interval of the horizon on, or of the queue's first interval still to
        publish if earlier (every interval from there is exact: kept in the queue's meta,
        `mark_dirty` marks none before); an agent who serves the queue nowhere after that
        leaves its roster."""
        from stream_app.domain.queue_agents import prune, roster_key

        first_open: dict[str, int] = {}
        for queue, start in unpublished:
            first_open[queue] = min(start, first_open.get(queue, start))
        cuts: dict[str, int] = {}
        forgotten = 0
        for key, (position, spans) in timelines:
            _, queue, agent_id = key.split(SEP)
            cut = cuts.get(queue)
            if cut is None:
                cut = cuts[queue] = self._agents_exact_from(
                    queue, min(horizon, first_open.get(queue, horizon))
                )
            kept = prune(spans, cut)
            if kept == spans:
                continue
            forgotten += 1
            if kept:
                self.store.set(key, [position, kept])
                continue
            self.store.delete(key)
            roster = self.store.get(roster_key(queue)) or []
            if agent_id in roster:
                self.store.set(roster_key(queue), [a for a in roster if a != agent_id])
        return forgotten

    def _agents_exact_from(self, queue: str, horizon: int) -> int:
        """The start of the interval of `horizon`, kept as the first the queue's agents'
        timelines are exact from (it only moves on)."""
        cut = interval_start(horizon, self.windows.interval_ms)
        meta = self._meta(queue)
        if cut > meta.get("x", cut - 1):
            meta["x"] = cut
            self.store.set(meta_key(queue), meta)
        return int(meta["x"])


def _holds(ordered: list[int], value: int) -> bool:
    index = bisect.bisect_left(ordered, value)
    return index < len(ordered) and ordered[index] == value


def _move_waits(waits: list[int], removes: list[Figures], adds: list[Figures]) -> None:
    """A minute keeps its waits as a sorted multiset, so its maximum survives any withdrawal."""
    for facts in removes:
        if facts.longest_wait_ms is not None and facts.longest_wait_ms in waits:
            waits.remove(facts.longest_wait_ms)
    for facts in adds:
        if facts.longest_wait_ms is not None:
            bisect.insort(waits, facts.longest_wait_ms)


def _cancel(removes: list[Figures], adds: list[Figures]) -> tuple[list[Figures], list[Figures]]:
    """Drop the facts a bucket loses and regains unchanged (a call's answer, when only its
    handle time is new): subtracting them would needlessly disturb the bucket's maximum."""
    remaining = list(adds)
    kept: list[Figures] = []
    for facts in removes:
        if facts in remaining:
            remaining.remove(facts)
        else:
            kept.append(facts)
    return kept, remaining
