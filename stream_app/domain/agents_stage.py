"""The agents stage: one agent's facts in, the agent's projected timelines per queue out.

Its input is the agent's own events (`agent-events`, validated like call events: rejects to
the dead-letter topic, records keyed by something other than their agent_id sent back under it,
duplicates dropped) and what calls mean to the agent (`agent-updates`, from the calls stage:
each call's whole `AgentCall`, replaced as a call's contribution is). The agent's state is its
`AgentActivity` (the table value under its agent_id), with the queues it last told the queues
stage about, so a queue it no longer serves within the horizon gets an empty projection.

Facts are applied record by record (cheap: a set insert or a replacement); the timeline is
derived and projected only when the processor sends a changed agent's projections and status
(`agent-status`), once per checkpoint or idle input, not once per record.

`agent-metrics`: a fact marks the intervals it can change dirty (from its instant to the
partition's stream time: a state lasts until the next fact); a dirty interval is published
once the partition's stream time is past its end plus the grace, with revision + 1 when it was
published before and its figures differ. The digest of what was published is kept per interval.

Stored per agent (key agent_id), beside its agent events: "s" the queues last told, "t" the
status last sent, "d" dirty interval starts, "h" the latest interval start marked, "m"
{interval start: [revision, digest]}; what its calls
mean to it per hour of their first instants (agent_id SEP "h" hour start → {call_id: AgentCall}),
so a checkpoint writes the hours whose calls changed, not the agent's two days of calls, and a
replay's checkpoint writes an hour of an agent's calls once, not each of its calls.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.domain.agent_activity import (
    QUEUE_STATES,
    AgentActivity,
    AgentCall,
    Window,
    agent_calls,
    agent_interval_key,
    agent_interval_record,
)
from stream_app.domain.agent_events import parse_agent_event
from stream_app.domain.calls import CallState
from stream_app.domain.clock import EventClock, PartitionClocks
from stream_app.domain.events import Rejected, format_ts
from stream_app.domain.hop import ENTRIES_PER_RECORD
from stream_app.domain.model import AgentEvent
from stream_app.domain.queue_agents import QueueSpan, project, served_queues
from stream_app.domain.queues import Store
from stream_app.domain.windows import MINUTE_MS, interval_start, with_intervals

EXTRAS = ("s", "t", "d", "m", "h")  # the stage's own entries of an agent's value

RESERVED_PREFIX = "\x00"  # the stage's own keys, never an agent (agent ids have no controls)
PRUNED_KEY = "\x00pruned"  # a partition's timelines are exact from this instant on (sweeps)
SEP = "\x1f"  # between an agent's id and the hour of its calls in their key
CALLS_BUCKET_MS = 60 * MINUTE_MS  # an agent's calls are stored per hour of their first instants


@dataclass(slots=True)
class AgentOutcome:
    """What the processor must do for one agent event."""

    event: AgentEvent | None = None
    reject: str | None = None
    detail: str = ""
    late: bool = False
    rekey: str | None = None
    duplicate: bool = False


class AgentsStage(PartitionClocks):
    store: Store

    def __init__(
        self,
        store: Store,
        *,
        max_event_bytes: int,
        retention_ms: int,
        horizon_ms: int,
        interval_ms: int,
        grace_ms: int,
    ) -> None:
        self.store = store
        self.max_event_bytes = max_event_bytes
        self.retention_ms = retention_ms  # facts older than this (stream time) are forgotten
        self.horizon_ms = horizon_ms  # how far back the queues stage needs an agent's timeline
        self.interval_ms = interval_ms
        self.grace_ms = grace_ms
        self.clocks: dict[int, EventClock] = {}
        # Per partition, every agent decoded since it was assigned, and those changed since the
        # last `save`: an agent's value holds a day or two of facts, too big to decode and
        # encode on every record.
        self.loaded: dict[int, dict[str, tuple[AgentActivity, dict[str, Any]]]] = {}
        self.unsaved: dict[int, dict[str, set[str]]] = {}  # agents and their changed calls
        # Per partition and agent, the earliest instant its facts changed at since its last
        # projections: they reach back at least that far. After a crash the stage re-applies
        # facts whose projections went out before: a projection sent meanwhile (from facts not
        # all re-read yet) is repaired by the next one, wherever its horizon stands by then.
        self.changed_from: dict[int, dict[str, int]] = {}
        self.complete: set[int] = set()  # partitions whose every agent is loaded
        self.placed: dict[int, dict[str, CallsPlaced]] = {}  # where each agent's calls are stored

    def forget_partition(self, partition: int) -> None:
        self.changed_from.pop(partition, None)
        self.clocks.pop(partition, None)
        self.loaded.pop(partition, None)
        self.unsaved.pop(partition, None)
        self.complete.discard(partition)
        self.placed.pop(partition, None)

    # -- facts -----------------------------------------------------------------------------------

    def load(self, agent_id: str, partition: int) -> tuple[AgentActivity, dict[str, Any]]:
        """The agent's facts, and the stage's own entries of its value (EXTRAS): change them
        in place, then `_save` (with the ids of the calls changed)."""
        agents = self._all(partition)
        entry = agents.get(agent_id)
        if entry is None:
            entry = agents[agent_id] = (AgentActivity(agent_id), {})
        return entry

    def _save(self, agent_id: str, partition: int, calls: Iterable[str] = ()) -> None:
        self.unsaved.setdefault(partition, {}).setdefault(agent_id, set()).update(calls)

    def save(self, partition: int) -> None:
        """The partition's changed agents to the table (before its checkpoint, on one of its
        records): the agent's value, and the hours holding its changed calls."""
        for agent_id, calls in sorted(self.unsaved.pop(partition, {}).items()):
            activity, extras = self.loaded[partition][agent_id]
            data = activity.to_json(calls=False)
            data.update((key, value) for key, value in extras.items() if value)
            self.store.set(agent_id, data)
            if calls:
                self._save_calls(activity, calls, partition)

    def _save_calls(self, activity: AgentActivity, calls: set[str], partition: int) -> None:
        """Each key that holds or held one of `calls`, written whole again (deleted if empty)."""
        agent_id = activity.agent_id
        placed = self.placed.setdefault(partition, {}).setdefault(agent_id, CallsPlaced())
        keys: set[str] = set()
        for call_id in calls:
            call = activity.calls.get(call_id)
            keys.update(placed.move(call_id, None if call is None else calls_key(agent_id, call)))
        for key in sorted(keys):
            members = placed.members.get(key)
            if members:
                self.store.set(key, {c: activity.calls[c].to_json() for c in sorted(members)})
            else:
                self.store.delete(key)

    def _all(self, partition: int) -> dict[str, tuple[AgentActivity, dict[str, Any]]]:
        """Every agent of the partition (read whole from the table once after assignment)."""
        agents = self.loaded.setdefault(partition, {})
        if partition not in self.complete:
            values: dict[str, Any] = {}
            calls: dict[str, dict[str, Any]] = {}
            placed: dict[str, CallsPlaced] = {}
            for key, stored in self.store.items():
                if key.startswith(RESERVED_PREFIX):
                    continue
                agent_id, sep, rest = key.partition(SEP)
                if not sep:
                    values[agent_id] = stored
                    continue
                # An hour of calls; or one call under its own key (how calls were stored before).
                hour = stored if isinstance(stored, dict) else {rest: stored}
                calls.setdefault(agent_id, {}).update(hour)
                for call_id in hour:
                    placed.setdefault(agent_id, CallsPlaced()).move(call_id, key)
            for agent_id in values.keys() | calls.keys():
                if agent_id not in agents:
                    agents[agent_id] = _decode(agent_id, values.get(agent_id), calls.get(agent_id))
                    if agent_id in placed:
                        self.placed.setdefault(partition, {})[agent_id] = placed[agent_id]
            self.complete.add(partition)
        return agents

    def _changed(self, agent_id: str, ts: int, partition: int) -> None:
        changed = self.changed_from.setdefault(partition, {})
        changed[agent_id] = min(ts, changed.get(agent_id, ts))

    def _mark(self, extras: dict[str, Any], since: int, partition: int) -> None:
        """The intervals from `since` to stream time may change: dirty (agent-metrics)."""
        now = self.stream_time(partition)
        last = interval_start(max(since, now if now is not None else since), self.interval_ms)
        first = interval_start(max(since, last - self.retention_ms), self.interval_ms)
        self._dirty(extras, first, last)
        extras["h"] = max(last, extras.get("h", last))

    def _dirty(self, extras: dict[str, Any], first: int, last: int) -> None:
        """The intervals from `first` to `last` (starts) join the agent's dirty ones."""
        extras["d"] = with_intervals(extras.get("d", []), first, last, self.interval_ms)

    def _mark_staffed(self, activity: AgentActivity, extras: dict[str, Any], now: int) -> bool:
        """An agent staffed since its last fact stays so without news: the intervals from the
        latest one marked up to `now` are dirty too (else a quiet hour is never published), as
        far back as the retention (stream time may jump: a replay followed by a live feed)."""
        high: int | None = extras.get("h")
        current = interval_start(now, self.interval_ms)
        if high is None or high >= current:
            return False
        extras["h"] = current
        if activity.at(high + self.interval_ms).state == "logged_out":
            return True
        first = max(high, interval_start(now - self.retention_ms, self.interval_ms))
        self._dirty(extras, first, current)
        return True

    def process(
        self, key: bytes | None, raw: bytes | None, wall_ms: int, partition: int
    ) -> AgentOutcome:
        """One `agent-events` record."""
        try:
            event = parse_agent_event(raw, now_ms=wall_ms, max_bytes=self.max_event_bytes)
        except Rejected as rejected:
            return AgentOutcome(reject=rejected.reason, detail=rejected.detail)
        if key is None or key != event.agent_id.encode():
            return AgentOutcome(event=event, rekey=event.agent_id)
        clock = self.clock_of(partition)
        if clock.newest is not None and event.ts < clock.newest - self.retention_ms:
            return AgentOutcome(
                event=event, reject="late", late=True, detail="older than the agent's retention"
            )
        clock.observe(event.ts, wall_ms)
        activity, extras = self.load(event.agent_id, partition)
        if not activity.apply(event):
            return AgentOutcome(event=event, duplicate=True)
        self._mark(extras, event.ts, partition)
        self._changed(event.agent_id, event.ts, partition)
        self._save(event.agent_id, partition)
        return AgentOutcome(event=event)

    def apply_calls(
        self, agent_id: str, entries: list[tuple[str, AgentCall | None]], partition: int
    ) -> bool:
        """One agent's entries of an `agent-updates` record: calls' whole meaning to the agent
        (the record's clock is the processor's to observe, once). True if it changed."""
        activity, extras = self.load(agent_id, partition)
        since: int | None = None
        changed: list[str] = []
        for call_id, call in entries:
            old = activity.calls.get(call_id)
            if activity.set_call(call_id, call):
                changed.append(call_id)
                stamps = [*(old.stamps() if old else ()), *(call.stamps() if call else ())]
                if stamps:
                    since = min(stamps) if since is None else min(since, *stamps)
        if since is None:
            return False
        self._mark(extras, since, partition)
        self._changed(agent_id, since, partition)
        self._save(agent_id, partition, changed)
        return True

    # -- to the queues stage ---------------------------------------------------------------------

    def since(self, partition: int, low_watermark: int | None) -> int | None:
        """From when projections are sent: the horizon before the least time of the calls
        partitions (no fact can change the timelines before it: a calls partition rejects
        events older than its retention), never before what the sweeps left exact (a restarted
        worker, or a retention shorter than the horizon); None: whole, nothing forgotten yet."""
        pruned: int | None = self.store.get(PRUNED_KEY)
        if low_watermark is None:
            return pruned
        since = low_watermark - self.horizon_ms
        return since if pruned is None else max(since, pruned)

    def projections(
        self, agent_id: str, partition: int, wall_ms: int, since: int | None
    ) -> tuple[int | None, list[tuple[str, list[QueueSpan]]], dict[str, Any] | None]:
        """From when they tell the timeline (`since`, or the agent's earliest change since its
        last projections if earlier, never before what the sweeps left exact; None: whole);
        per queue the agent serves (or served when last told), its projected timeline from
        there, empty for a queue it serves nowhere from there; and its `agent-status` record
        when its status changed since the last one sent. Remembers what it told."""
        earliest = self.changed_from.get(partition, {}).pop(agent_id, None)
        if since is not None and earliest is not None and earliest < since:
            pruned: int | None = self.store.get(PRUNED_KEY)
            since = earliest if pruned is None else max(earliest, pruned)
        activity, extras = self.load(agent_id, partition)
        now = self.stream_time(partition)
        before = set(extras.get("s", ()))
        out: list[tuple[str, list[QueueSpan]]] = []
        told: list[str] = []
        for queue in sorted(served_queues(activity) | before):
            spans = project(activity, queue, -(2**62) if since is None else since)
            out.append((queue, spans))
            if spans:
                told.append(queue)
        status = None if now is None else agent_status(activity, now)
        changed = sorted(before) != told
        if status is not None and status != extras.get("t"):
            extras["t"] = status
            changed = True
        else:
            status = None
        extras["s"] = told
        if changed:
            self._save(agent_id, partition)
        if status is None:
            return since, out, None
        return since, out, {"agent_id": agent_id, **status, "as_of": format_ts(wall_ms)}

    # -- agent-metrics ---------------------------------------------------------------------------

    def close_due(self, partition: int, now: int) -> list[tuple[str, dict[str, object]]]:
        """Every dirty interval of the partition's agents closed by stream time `now`, when it
        has staffed time or was published before, and its figures differ from those published."""
        out: list[tuple[str, dict[str, object]]] = []
        for agent_id, (activity, extras) in self._all(partition).items():
            if self._mark_staffed(activity, extras, now):
                self._save(agent_id, partition)
            dirty: list[int] = extras.get("d", [])  # sorted: the closed ones come first
            closed = bisect.bisect_left(dirty, now - self.interval_ms - self.grace_ms)
            due = dirty[:closed]
            if not due:
                continue
            published: dict[str, list[Any]] = extras.setdefault("m", {})
            for start in due:
                end = start + self.interval_ms
                last = published.get(str(start))
                record = agent_interval_record(activity, start, end, now, 0)
                if last is None and not any(record[state] for state in QUEUE_STATES):
                    continue  # no staffed time, never published
                digest = hashlib.blake2b(orjson.dumps(record), digest_size=8).hexdigest()
                if last is not None and last[1] == digest:
                    continue
                revision = 0 if last is None else last[0] + 1
                record["revision"] = revision
                published[str(start)] = [revision, digest]
                out.append((agent_interval_key(agent_id, start), record))
            extras["d"] = dirty[closed:]
            self._save(agent_id, partition)
        return out

    # -- retention -------------------------------------------------------------------------------

    def sweep(self, partition: int, low: int | None = None) -> list[str]:
        """Forget facts and published digests past the retention, counted from `low` (the
        least time of the calls partitions; default: the partition's own time); the agents
        whose facts changed (to be re-sent)."""
        now = self.stream_time(partition) if low is None else low
        if now is None:
            return []
        before = now - self.retention_ms
        pruned = self.store.get(PRUNED_KEY)
        if pruned is None or before > pruned:
            self.store.set(PRUNED_KEY, before)
        changed: list[str] = []
        for agent_id, (activity, extras) in self._all(partition).items():
            facts = (len(activity.events), len(activity.calls))
            calls = set(activity.calls)
            if not activity.all_since(before):
                activity.prune(before)  # only ever forgets facts: the counts tell a change
            published = extras.get("m", {})
            kept = {start: value for start, value in published.items() if int(start) >= before}
            if (len(activity.events), len(activity.calls)) == facts and len(kept) == len(published):
                continue
            extras["m"] = kept
            changed.append(agent_id)
            self._save(agent_id, partition, calls - activity.calls.keys())
        return changed


def calls_key(agent_id: str, call: AgentCall) -> str:
    """The table key of the agent's calls of the hour of this call's first instant."""
    first = min(call.stamps(), default=0)
    return f"{agent_id}{SEP}h{interval_start(first, CALLS_BUCKET_MS)}"


class CallsPlaced:
    """Which key holds each of an agent's calls, and which calls each key holds."""

    def __init__(self) -> None:
        self.key_of: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}

    def move(self, call_id: str, key: str | None) -> set[str]:
        """The call now under `key` (None: under none); the keys whose calls changed."""
        old = self.key_of.pop(call_id, None)
        if old is not None:
            held = self.members[old]
            held.discard(call_id)
            if not held:
                del self.members[old]
        if key is not None:
            self.key_of[call_id] = key
            self.members.setdefault(key, set()).add(call_id)
        return {k for k in (old, key) if k is not None}


def _decode(
    agent_id: str, stored: Any | None, calls: dict[str, Any] | None
) -> tuple[AgentActivity, dict[str, Any]]:
    data = {"a": agent_id, **(stored or {}), "c": calls or {}}
    return AgentActivity.from_json(data), {key: data[key] for key in EXTRAS if key in data}


def agent_status(activity: AgentActivity, now: int) -> dict[str, Any]:
    """The agent's `agent-status` fields at `now` (contract §7), but `agent_id` and `as_of`."""
    span = activity.at(now)
    return {
        "state": span.state,
        "since": format_ts(span.start),
        "reason": span.reason,
        "queues": list(span.queues),
        "queue": _current_call_queue(activity, span.state, now),
    }


def _current_call_queue(activity: AgentActivity, state: str, now: int) -> str | None:
    for call in activity.calls.values():
        windows: list[Window | None] = []
        if state == "on_call":
            windows = [call.talk]
        elif state == "ringing":
            windows = list(call.rings)
        elif state == "after_call_work":
            windows = [call.wrap]
        for window in windows:
            if window and window[0] <= now and (window[1] is None or now < window[1]):
                return call.queue
    return None


def agent_calls_entries(data: list[Any]) -> list[tuple[str, AgentCall | None]]:
    """The entries of an `agent-updates` record: [[call_id, AgentCall JSON or null], ...]."""
    return [(c, AgentCall.from_json(x) if x is not None else None) for c, x in data]


class AgentPending:
    """Per calls partition, what changed calls mean to their agents, not sent yet (the latest
    per agent and call): one `agent-updates` record per agent per checkpoint or idle input,
    however many of its calls' events came meanwhile (stream_app.domain.hop does the same per
    queue)."""

    def __init__(self) -> None:
        self.by_partition: dict[int, dict[str, dict[str, AgentCall]]] = {}
        # Calls whose meaning to agents is derived when taken (the latest state of each):
        # a call's events come many per checkpoint in a backlog, and are sent once.
        self.calls: dict[int, dict[str, CallState]] = {}

    def partitions(self) -> set[int]:
        return {*self.by_partition, *self.calls}

    def add(self, partition: int, call_id: str, agents: dict[str, AgentCall]) -> None:
        """What the call means to these agents now (earlier news of it is older)."""
        self.calls.get(partition, {}).pop(call_id, None)
        self._put(partition, call_id, agents)

    def _put(self, partition: int, call_id: str, agents: dict[str, AgentCall]) -> None:
        pending = self.by_partition.setdefault(partition, {})
        for agent_id, call in agents.items():
            pending.setdefault(agent_id, {})[call_id] = call

    def add_call(self, partition: int, call_id: str, state: CallState) -> None:
        """The call changed: what it means to its agents is derived from `state` (which its
        stage keeps up to date) when taken."""
        self.calls.setdefault(partition, {})[call_id] = state

    def settle(self, partition: int, call_id: str, agents: dict[str, AgentCall]) -> None:
        """The call is about to change in a way its agents must not hear (retired): what is
        still to be sent of it is `agents`, its meaning before."""
        if call_id in self.calls.get(partition, {}):
            self.add(partition, call_id, agents)

    def take(
        self, partition: int, target: Callable[[str], int]
    ) -> list[tuple[int, list[tuple[str, list[tuple[str, AgentCall]]]]]]:
        """The partition's pending entries grouped per agents partition (`target` of an agent),
        in chunks of at most ENTRIES_PER_RECORD calls: one record carries many agents, since
        each record costs the agents stage far more to read than its entries to apply."""
        for call_id, state in self.calls.pop(partition, {}).items():
            self._put(partition, call_id, agent_calls(state))
        grouped: dict[int, list[tuple[str, list[tuple[str, AgentCall]]]]] = {}
        for agent_id, calls in sorted(self.by_partition.pop(partition, {}).items()):
            grouped.setdefault(target(agent_id), []).append((agent_id, list(calls.items())))
        out = []
        for to, agents in sorted(grouped.items()):
            chunk: list[tuple[str, list[tuple[str, AgentCall]]]] = []
            size = 0
            for agent_id, entries in agents:
                for first in range(0, len(entries), ENTRIES_PER_RECORD):
                    part = entries[first : first + ENTRIES_PER_RECORD]
                    if chunk and size + len(part) > ENTRIES_PER_RECORD:
                        out.append((to, chunk))
                        chunk, size = [], 0
                    chunk.append((agent_id, part))
                    size += len(part)
            if chunk:
                out.append((to, chunk))
        return out

    def drop(self, partition: int) -> None:
        self.by_partition.pop(partition, None)
        self.calls.pop(partition, None)


def agent_update_record(
    agents: list[tuple[str, list[tuple[str, AgentCall]]]],
    stream_time: int | None,
    source: int,
    behind: bool,
) -> dict[str, Any]:
    """An `agent-updates` record: {"g": [[agent_id, [[call_id, AgentCall JSON or null]]]],
    "st": the calls partition's stream time, "sp": that partition, "b": whether it is still
    reading a backlog}; every agent of it in one agents partition. With no agents, the calls
    partition's clock alone."""
    return {
        "g": [
            [agent_id, [[c, call.to_json()] for c, call in entries]] for agent_id, entries in agents
        ],
        "st": stream_time,
        "sp": source,
        "b": behind,
    }
