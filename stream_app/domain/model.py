"""The values that cross the domain core's boundaries: parsed events and a call's per-queue facts.

Timestamps are integer epoch milliseconds (UTC) everywhere inside the core; spans are
integer milliseconds, so sums stay exact and seconds are derived only when figures are read.
Both are named tuples, not frozen dataclasses: as immutable and comparable, and several times
cheaper to build, which counts for values made several times per event.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Event types of contract §1, in the order they normally happen: the rank breaks ties
# between events of one call that carry the same `ts`.
EVENT_TYPES: tuple[str, ...] = (
    "call_started",
    "ivr_ended",
    "queue_entered",
    "agent_offered",
    "call_answered",
    "queue_left",
    "call_abandoned",
    "call_ended",
    "wrapup_ended",
)
TYPE_RANK: dict[str, int] = {name: rank for rank, name in enumerate(EVENT_TYPES)}


class Event(NamedTuple):
    """One validated call-lifecycle event (contract §1)."""

    event_id: str
    call_id: str
    type: str
    ts: int  # epoch milliseconds, UTC
    queue: str | None = None
    agent_id: str | None = None
    tenant: str | None = None
    reason: str | None = None  # why a `queue_left` happened, when the source says


# Agent event types of contract §6, in the order that breaks ties between events of one agent
# with the same `ts`: a login and a not-ready at one instant leave the agent not ready.
AGENT_EVENT_TYPES: tuple[str, ...] = (
    "agent_logged_in",
    "agent_queues",
    "agent_ready",
    "agent_not_ready",
    "agent_logged_out",
)
AGENT_TYPE_RANK: dict[str, int] = {name: rank for rank, name in enumerate(AGENT_EVENT_TYPES)}


class AgentEvent(NamedTuple):
    """One validated `agent-events` event (contract §6)."""

    event_id: str
    agent_id: str
    type: str
    ts: int  # epoch milliseconds, UTC
    queues: tuple[str, ...] | None = None  # agent_logged_in, agent_queues: distinct, sorted
    reason: str | None = None  # agent_not_ready: break, lunch, training...
    tenant: str | None = None


class Contribution(NamedTuple):
    """What one call adds to one queue's figures: raw facts, thresholds applied downstream.

    The queue stage replaces a call's previous contribution with the new one, so a record
    processed twice, or a correction after a late event, never double counts.
    """

    answered: tuple[int, int, int] | None = None  # (answered ts, answer_speed ms, queue_wait ms)
    abandoned: tuple[int, int] | None = None  # (hang-up ts, time to abandon ms)
    flowed_out: tuple[int, ...] = ()  # ts of each `queue_left` from this queue
    handled: tuple[int, int] | None = None  # (wrapup_ended ts, handle time ms)
    waiting_since: int | None = None  # `queue_entered` ts while the call waits in this queue now

    def is_empty(self) -> bool:
        return (
            self.answered is None
            and self.abandoned is None
            and not self.flowed_out
            and self.handled is None
            and self.waiting_since is None
        )

    def to_json(self) -> list[Any]:
        """A compact JSON-able form: [answered, abandoned, flowed_out, handled, waiting_since]."""
        return [
            list(self.answered) if self.answered else None,
            list(self.abandoned) if self.abandoned else None,
            list(self.flowed_out),
            list(self.handled) if self.handled else None,
            self.waiting_since,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Contribution:
        answered, abandoned, flowed_out, handled, waiting_since = data
        return cls(
            (answered[0], answered[1], answered[2]) if answered else None,
            (abandoned[0], abandoned[1]) if abandoned else None,
            tuple(flowed_out),
            (handled[0], handled[1]) if handled else None,
            waiting_since,
        )

    def fact_stamps(self) -> list[int]:
        """The ts of each fact (answer, abandon, each flow-out, handling): what places the
        call's figures in buckets, and what its retention is judged by."""
        stamps = [self.answered[0]] if self.answered is not None else []
        if self.abandoned is not None:
            stamps.append(self.abandoned[0])
        stamps.extend(self.flowed_out)
        if self.handled is not None:
            stamps.append(self.handled[0])
        return stamps


EMPTY = Contribution()
