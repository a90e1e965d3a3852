"""The agents stage: one agent's facts in, the agent's projected timelines per queue out.

Its input is the agent's own events (`agent-events`, validated like call events: rejects to
the dead-letter topic, records keyed by something other than their agent_id sent back under it,
duplicates dropped) and what calls mean to the agent (`agent-updates`, from the calls stage:
each call's whole `AgentCall`, replaced as a call's contribution is). The agent's state is its
`AgentActivity` (the table value under its agent_id), with the queues it last told the queues
stage about, so a queue it no longer serves within the horizon gets an empty projection.

Facts are applied record by record (cheap: a set insert or a replacement); the timeline is
derived and projected only when the processor sends a changed agent's projections, once per
checkpoint or idle input, not once per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_app.domain.agent_activity import AgentActivity, AgentCall
from stream_app.domain.agent_events import parse_agent_event
from stream_app.domain.clock import EventClock
from stream_app.domain.events import Rejected
from stream_app.domain.hop import ENTRIES_PER_RECORD
from stream_app.domain.model import AgentEvent
from stream_app.domain.queue_agents import QueueSpan, project, served_queues
from stream_app.domain.queues import Store

PARTITION_TIME_KEY = "\x00stream-time"
RESERVED_PREFIX = "\x00"  # the stage's own keys, never an agent (agent ids have no controls)


@dataclass(slots=True)
class AgentOutcome:
    """What the processor must do for one agent event."""

    event: AgentEvent | None = None
    reject: str | None = None
    detail: str = ""
    late: bool = False
    rekey: str | None = None
    duplicate: bool = False


class AgentsStage:
    def __init__(
        self,
        store: Store,
        *,
        max_event_bytes: int,
        retention_ms: int,
        horizon_ms: int,
    ) -> None:
        self.store = store
        self.max_event_bytes = max_event_bytes
        self.retention_ms = retention_ms  # facts older than this (stream time) are forgotten
        self.horizon_ms = horizon_ms  # how far back the queues stage needs an agent's timeline
        self.clocks: dict[int, EventClock] = {}

    # -- the partition's clock -------------------------------------------------------------------

    def clock_of(self, partition: int) -> EventClock:
        clock = self.clocks.get(partition)
        if clock is None:
            stored = self.store.get(PARTITION_TIME_KEY)
            clock = EventClock() if stored is None else EventClock.from_json(stored)
            self.clocks[partition] = clock
        return clock

    def stream_time(self, partition: int) -> int | None:
        return self.clock_of(partition).newest

    def save_stream_time(self, partition: int) -> None:
        clock = self.clocks.get(partition)
        if clock is not None and clock.newest is not None:
            value = clock.to_json()
            if self.store.get(PARTITION_TIME_KEY) != value:
                self.store.set(PARTITION_TIME_KEY, value)

    def forget_partition(self, partition: int) -> None:
        self.clocks.pop(partition, None)

    # -- facts -----------------------------------------------------------------------------------

    def load(self, agent_id: str) -> AgentActivity:
        stored = self.store.get(agent_id)
        return AgentActivity(agent_id) if stored is None else AgentActivity.from_json(stored)

    def _save(self, activity: AgentActivity, sent: list[str] | None = None) -> None:
        data = activity.to_json()
        if sent is None:
            stored = self.store.get(activity.agent_id)
            sent = stored.get("s", []) if stored is not None else []
        if sent:
            data["s"] = sent
        self.store.set(activity.agent_id, data)

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
        activity = self.load(event.agent_id)
        if not activity.apply(event):
            return AgentOutcome(event=event, duplicate=True)
        self._save(activity)
        return AgentOutcome(event=event)

    def apply_calls(
        self,
        agent_id: str,
        entries: list[tuple[str, AgentCall | None]],
        stream_time: int | None,
        wall_ms: int,
        partition: int,
    ) -> bool:
        """One `agent-updates` record: calls' whole meaning to the agent. True if it changed."""
        if stream_time is not None:
            self.clock_of(partition).observe(stream_time, wall_ms)
        activity = self.load(agent_id)
        changed = False
        for call_id, call in entries:
            changed |= activity.set_call(call_id, call)
        if changed:
            self._save(activity)
        return changed

    # -- to the queues stage ---------------------------------------------------------------------

    def projections(self, agent_id: str, partition: int) -> list[tuple[str, list[QueueSpan]]]:
        """Per queue the agent serves (or served when last told), its projected timeline;
        empty for a queue it no longer serves within the horizon. Remembers what it told."""
        stored = self.store.get(agent_id)
        if stored is None:
            return []
        activity = AgentActivity.from_json(stored)
        before = set(stored.get("s", []))
        now = self.stream_time(partition)
        since = (now if now is not None else 0) - self.horizon_ms
        out: list[tuple[str, list[QueueSpan]]] = []
        told: list[str] = []
        for queue in sorted(served_queues(activity) | before):
            spans = project(activity, queue, since)
            out.append((queue, spans))
            if spans:
                told.append(queue)
        if sorted(before) != told:
            self._save(activity, told)
        return out

    # -- retention -------------------------------------------------------------------------------

    def sweep(self, partition: int) -> list[str]:
        """Forget facts past the retention; the agents whose facts changed (to be re-sent)."""
        now = self.stream_time(partition)
        if now is None:
            return []
        before = now - self.retention_ms
        changed: list[str] = []
        for agent_id, stored in list(self.store.items()):
            if agent_id.startswith(RESERVED_PREFIX):
                continue
            activity = AgentActivity.from_json(stored)
            was = activity.to_json()
            activity.prune(before)
            if activity.to_json() != was:
                changed.append(agent_id)
                self._save(activity, stored.get("s", []))
        return changed


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

    def add(self, partition: int, call_id: str, agents: dict[str, AgentCall]) -> None:
        pending = self.by_partition.setdefault(partition, {})
        for agent_id, call in agents.items():
            pending.setdefault(agent_id, {})[call_id] = call

    def take(self, partition: int) -> list[tuple[str, list[tuple[str, AgentCall]]]]:
        """The partition's pending entries per agent, in chunks of ENTRIES_PER_RECORD."""
        out = []
        for agent_id, calls in self.by_partition.pop(partition, {}).items():
            entries = list(calls.items())
            for first in range(0, len(entries), ENTRIES_PER_RECORD):
                out.append((agent_id, entries[first : first + ENTRIES_PER_RECORD]))
        return out

    def drop(self, partition: int) -> None:
        self.by_partition.pop(partition, None)


def agent_update_record(
    agent_id: str, entries: list[tuple[str, AgentCall]], stream_time: int | None
) -> dict[str, Any]:
    return {"a": agent_id, "u": [[c, call.to_json()] for c, call in entries], "st": stream_time}
