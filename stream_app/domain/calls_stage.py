"""The calls stage: one input record in, what to send out (plain Python, driven by the agent).

Per record: validate; reject to the dead-letter topic with a reason; route a record keyed by
something other than its call_id back onto the input under the right key (so all of a call's
events meet on one partition); drop duplicates by event_id; and tell the queues stage each
call's whole current contribution whenever it changes. On a duplicate everything last sent is
sent again: if a crash lost a send after the state that records it was written, the replayed
input (all duplicates by then) repairs it, and the queues stage is idempotent.

Lateness is judged by the stream time of the record's own partition: a consumer drains its
partitions unevenly, so in a fast replay one partition can run days of event time ahead of
another, and the worker-wide stream time (contract §3, used for closing) would wrongly call
the slower partition's events late. The partition's clock (`stream_app.domain.clock`) is kept
in the table (under PARTITION_TIME_KEY) so a restart does not forget it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_app.domain.agent_activity import AgentCall, agent_calls
from stream_app.domain.calls import (
    CallState,
    Emission,
    evict,
    plan_emission,
    resend_all,
    stored_age,
)
from stream_app.domain.clock import EventClock, PartitionClocks
from stream_app.domain.events import Rejected, parse_event
from stream_app.domain.model import Event
from stream_app.domain.queues import Store
from stream_app.domain.sla import SlaConfig

RESERVED_PREFIX = "\x00"  # the stage's own keys (stream time, input position), never a call
FINISHED_KEPT = 512  # finished calls kept decoded per partition (a day of the month's calls)


@dataclass(slots=True)
class Outcome:
    """What the agent must do for one record."""

    event: Event | None = None
    reject: str | None = None  # a reason: send the record unchanged to the dead-letter topic
    detail: str = ""
    late: bool = False
    rekey: str | None = None  # send the record unchanged to the input, keyed by this call_id
    duplicate: bool = False
    emission: Emission | None = None
    # The call, once it reached an agent: what it means to each (`agent_calls`) is derived
    # when it is sent, once per checkpoint rather than at each of its events.
    for_agents: CallState | None = None


@dataclass(slots=True)
class Swept:
    evicted: int = 0
    deleted: int = 0
    emissions: list[tuple[str, Emission]] = field(default_factory=list)
    # What each evicted call meant to its agents just before it was retired (a tombstone
    # means nothing to them): for what is still to be sent of it.
    agents: list[tuple[str, dict[str, AgentCall]]] = field(default_factory=list)


class CallsStage(PartitionClocks):
    store: Store

    def __init__(
        self,
        store: Store,
        sla: SlaConfig,
        clock: EventClock,
        *,
        max_event_bytes: int,
        retention_ms: int,
        call_ttl_ms: int,
        admit_queue: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self.store = store
        self.admit_queue = admit_queue  # the deployment's bound on distinct queues (MAX_QUEUES)
        self.sla = sla
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.retention_ms = retention_ms
        self.call_ttl_ms = call_ttl_ms
        self.clocks: dict[int, EventClock] = {}
        # Per partition, once a sweep scanned it: each call's (newest ts, finished), kept up to
        # date by every write, so later sweeps judge the calls without reading the table, and
        # a call not in it is new without a read.
        self.ages: dict[int, dict[str, tuple[int, bool]]] = {}
        # Per partition, the calls not finished as their latest write left them, decoded: a
        # call's next events find it here, not in the table (a read and a decode per event).
        # Finished calls leave it, so it holds the calls in progress (bounded by the TTL).
        self.open: dict[int, dict[str, CallState]] = {}
        # Per partition, the calls finished last, decoded, oldest first: an answered call's
        # wrap-up comes after its end, and would otherwise be read back from the table.
        self.finished: dict[int, dict[str, CallState]] = {}

    def forget_partition(self, partition: int) -> None:
        self.clocks.pop(partition, None)
        self.ages.pop(partition, None)
        self.open.pop(partition, None)
        self.finished.pop(partition, None)

    def _read(self, partition: int, call_id: str) -> CallState | None:
        state = self.open.get(partition, {}).get(call_id)
        if state is None:
            state = self.finished.get(partition, {}).get(call_id)
        if state is not None:
            return state
        ages = self.ages.get(partition)
        if ages is not None and call_id not in ages:
            return None  # a new call: `ages` holds every call in the table (a read saved)
        stored: dict[str, Any] | None = self.store.get(call_id)
        return CallState.from_json(stored) if stored is not None else None

    def _write(self, partition: int, call_id: str, state: CallState) -> None:
        self.store.set_object(call_id, state)  # every change to a state ends here
        age = state.age()
        ages = self.ages.get(partition)
        if ages is not None:
            ages[call_id] = age
        if age[1]:
            self.open.get(partition, {}).pop(call_id, None)
            finished = self.finished.setdefault(partition, {})
            finished.pop(call_id, None)  # to the end: the newest
            finished[call_id] = state
            if len(finished) > FINISHED_KEPT:
                del finished[next(iter(finished))]
        else:
            self.finished.get(partition, {}).pop(call_id, None)
            self.open.setdefault(partition, {})[call_id] = state

    def short_abandon_ms(self, queue: str | None) -> int:
        return self.sla.for_queue(queue).short_abandon_ms

    def process(
        self, key: bytes | None, raw: bytes | None, wall_ms: int, partition: int
    ) -> Outcome:
        try:
            event = parse_event(raw, now_ms=wall_ms, max_bytes=self.max_event_bytes)
        except Rejected as rejected:
            return Outcome(reject=rejected.reason, detail=rejected.detail)
        if event.call_id.startswith(RESERVED_PREFIX):
            return Outcome(reject="invalid_field", detail="this call_id is reserved")
        if key is None or key != event.call_id.encode():
            return Outcome(event=event, rekey=event.call_id)
        if event.queue is not None and not self.admit_queue(event.queue):
            return Outcome(
                event=event,
                reject="too_many_queues",
                detail="a new queue beyond MAX_QUEUES distinct queues",
            )
        self.clock.observe(event.ts, wall_ms)
        clock = self.clock_of(partition)
        newest = clock.newest
        if newest is None or event.ts > newest:
            clock.observe(event.ts, wall_ms)
        elif event.ts < newest - self.retention_ms:
            return Outcome(
                event=event,
                reject="late",
                late=True,
                detail="older than the window state's retention",
            )
        state = self._read(partition, event.call_id) or CallState.new(event.call_id)
        if state.tombstoned:
            if state.apply(event):  # a new event for a call already gone: too late to count
                self._write(partition, event.call_id, state)  # so a retry of it is a duplicate
                return Outcome(
                    event=event,
                    reject="late",
                    late=True,
                    detail="the call's state was already retired",
                )
            return Outcome(event=event, duplicate=True)
        if not state.apply(event):
            emission = resend_all(state)
            return Outcome(
                event=event, duplicate=True, emission=emission, for_agents=_reached(state)
            )
        emission = plan_emission(state, self.short_abandon_ms)
        self._write(partition, event.call_id, state)
        return Outcome(event=event, emission=emission, for_agents=_reached(state))

    def sweep(self, partition: int) -> Swept:
        """Forget finished calls past retention; evict silent ones (a tombstone stays for the
        retention, so their later events are late, not a new call)."""
        swept = Swept()
        stream_now = self.stream_time(partition)
        if stream_now is None:
            return swept
        ages = self.ages.get(partition)
        if ages is None:  # the first sweep since assigned: the table's word, read once
            ages = self.ages[partition] = {
                call_id: stored_age(stored)
                for call_id, stored in self.store.items()
                if not call_id.startswith(RESERVED_PREFIX)
            }
        for call_id, (last_ts, finished) in list(ages.items()):
            age = stream_now - last_ts
            if finished:
                # A tombstone, or a finished call kept whole for the retention of the window
                # state, so a late event inside it (a wrap-up, an IVR end) still corrects the
                # figures (contract §5).
                if age > self.retention_ms:
                    self.store.delete(call_id)
                    self.finished.get(partition, {}).pop(call_id, None)
                    del ages[call_id]
                    swept.deleted += 1
                continue
            if age <= self.call_ttl_ms:
                continue
            state = self._read(partition, call_id)
            if state is None:  # gone from the table meanwhile: nothing left to evict
                del ages[call_id]
                continue
            swept.emissions.append((call_id, evict(state)))
            if _reached(state) is not None:
                swept.agents.append((call_id, agent_calls(state)))
            swept.evicted += 1
            state.to_tombstone()
            self._write(partition, call_id, state)
        return swept


def _reached(state: CallState) -> CallState | None:
    """Only calls that reached an agent mean anything to one (most events are cheap this way)."""
    return state if state.offered or state.answered else None
