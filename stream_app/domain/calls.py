"""The per-call state machine: a call's events in, its per-queue facts and outcome record out.

Events of a call arrive in any order, twice, or not at all, so nothing here depends on
arrival order: the state keeps the distinct events it has seen (deduplicated by `event_id`)
and every figure is recomputed from their `ts` values (contract §2). Ties are broken by
`(ts, TYPE_RANK[type], event_id)`, which makes every figure a pure function of the SET of
events seen. The emission bookkeeping (`sent_*`) lets the calls stage tell the queue stage
only what changed, and re-send everything after a crash, without double counting downstream.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from stream_app.domain.events import format_ts
from stream_app.domain.model import EMPTY, TYPE_RANK, Contribution, Event

# Stored event facts. Every tuple starts with (ts, event_id), so sorting one list is the
# contract's (ts, TYPE_RANK, event_id) order within one type and never compares the tails.
Stamp = tuple[int, str]  # (ts, event_id): ivr_ended, call_ended, wrapup_ended
# (ts, event_id, queue): call_started, queue_entered, call_abandoned
QueueStamp = tuple[int, str, str | None]
Offer = tuple[int, str, str | None]  # (ts, event_id, agent_id): agent_offered
Answer = tuple[int, str, str | None, str | None]  # (ts, event_id, queue, agent_id)
Left = tuple[int, str, str | None, str | None]  # (ts, event_id, queue, reason): queue_left

ShortAbandonMs = Callable[[str | None], int]

# Outcome fields whose change alone does not justify a new call-outcomes record.
_QUIET_FIELDS = frozenset({"started_at", "ended_at"})


_T = TypeVar("_T", bound=tuple[Any, ...])


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _span(start: int, end: int) -> int:
    """A span in ms; negative ones (two sources' clocks disagree) count as 0 (contract §2)."""
    return max(0, end - start)


class _Facts(NamedTuple):
    """Everything derived from one state's events, computed once per read."""

    answer: Answer | None
    answer_queue: str | None
    answer_speed: int  # ms; meaningful when answered
    queue_wait: int  # ms; meaningful when answered
    hang_up: int | None  # call_abandoned ts, else call_ended ts
    abandoned: bool
    abandon_queue: str | None
    abandon_ms: int  # time to abandon; meaningful when abandoned
    flows: tuple[tuple[str | None, int], ...]  # (queue, ts) of each counted queue_left
    handled: tuple[int, int] | None  # (wrapup_ended ts, handle ms)
    waiting: tuple[str, int] | None  # (queue, since ts)
    kind: str | None  # "answered" / "abandoned" / "flowed_out" / "ivr_only"; None while unknown
    outcome_queue: str | None


@dataclass(eq=True, slots=True)
class CallState:
    """One call's distinct events plus what was last emitted for it (a Faust table value).

    The event fields are kept sorted (lists) or as the earliest instance (single-valued
    types), so two states built from the same event set in any order compare equal and
    serialise identically. Treat them as read-only outside this module.
    """

    call_id: str
    event_ids: set[str] = field(default_factory=set)
    newest_ts: int | None = None
    started: QueueStamp | None = None
    ivr_ended: Stamp | None = None
    queue_entered: list[QueueStamp] = field(default_factory=list)
    offered: list[Offer] = field(default_factory=list)
    answered: list[Answer] = field(default_factory=list)
    queue_left: list[Left] = field(default_factory=list)
    abandoned: QueueStamp | None = None
    ended: Stamp | None = None
    wrapup: Stamp | None = None
    sent_contributions: dict[str, Contribution] = field(default_factory=dict)
    sent_outcome: dict[str, object] | None = None
    tombstoned: bool = False
    _facts: _Facts | None = field(default=None, compare=False, repr=False)

    @classmethod
    def new(cls, call_id: str) -> CallState:
        return cls(call_id=call_id)

    # -- input ------------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Record an event; False (state untouched) when its event_id was seen: a duplicate.

        A tombstone still remembers new ids and the newest ts (so retries of a late event
        are recognised), but its figures are final: the event adds nothing to them.
        """
        if event.call_id != self.call_id:
            raise ValueError(f"event of call {event.call_id!r} applied to {self.call_id!r}")
        if event.type not in TYPE_RANK:
            raise ValueError(f"unknown event type {event.type!r}")
        if event.event_id in self.event_ids:
            return False
        self.event_ids.add(event.event_id)
        if self.newest_ts is None or event.ts > self.newest_ts:
            self.newest_ts = event.ts
        if self.tombstoned:
            return True
        self._facts = None
        ts, eid, kind = event.ts, event.event_id, event.type
        if kind == "call_started":
            self.started = _earliest(self.started, (ts, eid, event.queue))
        elif kind == "ivr_ended":
            self.ivr_ended = _earliest(self.ivr_ended, (ts, eid))
        elif kind == "queue_entered":
            bisect.insort(self.queue_entered, (ts, eid, event.queue))
        elif kind == "agent_offered":
            bisect.insort(self.offered, (ts, eid, event.agent_id))
        elif kind == "call_answered":
            bisect.insort(self.answered, (ts, eid, event.queue, event.agent_id))
        elif kind == "queue_left":
            bisect.insort(self.queue_left, (ts, eid, event.queue, event.reason))
        elif kind == "call_abandoned":
            self.abandoned = _earliest(self.abandoned, (ts, eid, event.queue))
        elif kind == "call_ended":
            self.ended = _earliest(self.ended, (ts, eid))
        else:  # wrapup_ended
            self.wrapup = _earliest(self.wrapup, (ts, eid))
        return True

    # -- reads ------------------------------------------------------------------------------

    @property
    def last_ts(self) -> int:
        """The newest event ts of the call (0 before any event): the TTL clock starts here."""
        return 0 if self.newest_ts is None else self.newest_ts

    def is_finished(self) -> bool:
        """The hang-up is known (call_abandoned or call_ended); a tombstone counts as finished."""
        return self.tombstoned or self.abandoned is not None or self.ended is not None

    def contributions(self) -> dict[str, Contribution]:
        """Per queue the call touches, its whole current contribution (never an empty one)."""
        if self.tombstoned:
            return {}
        return _contributions(self._derive())

    def outcome(self, short_abandon_ms: ShortAbandonMs) -> dict[str, object] | None:
        """The call-outcomes record (contract §5), or None while the outcome is unknown."""
        if self.tombstoned:
            return None
        return self._outcome(self._derive(), short_abandon_ms)

    # -- lifecycle --------------------------------------------------------------------------

    def to_tombstone(self) -> None:
        """Shrink to what dedupe and TTL need (ids, newest ts) once the call's figures are final."""
        self.started = self.ivr_ended = self.abandoned = self.ended = self.wrapup = None
        self.queue_entered, self.offered, self.answered, self.queue_left = [], [], [], []
        self.sent_contributions = {}
        self.sent_outcome = None
        self.tombstoned = True
        self._facts = None

    def to_json(self) -> dict[str, object]:
        """A compact JSON-able form: short keys, empty parts left out, each event id stored once.

        Runs for every event, so it is spelled out field by field (the key order is the stored
        form's: c i t z s v x e w q o a l sc so)."""
        data: dict[str, object] = {"c": self.call_id}
        extra = self.event_ids - self._referenced_ids()
        if extra:
            data["i"] = sorted(extra)
        if self.newest_ts is not None:
            data["t"] = self.newest_ts
        if self.tombstoned:
            data["z"] = 1
        if self.started is not None:
            data["s"] = list(self.started)
        if self.ivr_ended is not None:
            data["v"] = list(self.ivr_ended)
        if self.abandoned is not None:
            data["x"] = list(self.abandoned)
        if self.ended is not None:
            data["e"] = list(self.ended)
        if self.wrapup is not None:
            data["w"] = list(self.wrapup)
        if self.queue_entered:
            data["q"] = [list(item) for item in self.queue_entered]
        if self.offered:
            data["o"] = [list(item) for item in self.offered]
        if self.answered:
            data["a"] = [list(item) for item in self.answered]
        if self.queue_left:
            data["l"] = [list(item) for item in self.queue_left]
        if self.sent_contributions:
            data["sc"] = {q: c.to_json() for q, c in sorted(self.sent_contributions.items())}
        if self.sent_outcome is not None:
            data["so"] = dict(self.sent_outcome)
        return data

    def age(self) -> tuple[int, bool]:
        """`stored_age` of this state's stored form."""
        return self.last_ts, self.is_finished()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallState:
        """Inverse of to_json (accepts lists where tuples were)."""
        s, v, x, e, w = data.get("s"), data.get("v"), data.get("x"), data.get("e"), data.get("w")
        so = data.get("so")
        state = cls(
            call_id=data["c"],
            newest_ts=data.get("t"),
            started=(s[0], s[1], s[2]) if s is not None else None,
            ivr_ended=(v[0], v[1]) if v is not None else None,
            queue_entered=[(q[0], q[1], q[2]) for q in data.get("q", ())],
            offered=[(o[0], o[1], o[2]) for o in data.get("o", ())],
            answered=[(a[0], a[1], a[2], a[3]) for a in data.get("a", ())],
            queue_left=[(left[0], left[1], left[2], left[3]) for left in data.get("l", ())],
            abandoned=(x[0], x[1], x[2]) if x is not None else None,
            ended=(e[0], e[1]) if e is not None else None,
            wrapup=(w[0], w[1]) if w is not None else None,
            sent_contributions={
                q: Contribution.from_json(c) for q, c in data.get("sc", {}).items()
            },
            sent_outcome=dict(so) if so is not None else None,
            tombstoned=bool(data.get("z", 0)),
        )
        state.event_ids = state._referenced_ids()
        state.event_ids.update(data.get("i", ()))
        return state

    # -- derivation -------------------------------------------------------------------------

    def _referenced_ids(self) -> set[str]:
        ids = {
            item[1]
            for items in (self.queue_entered, self.offered, self.answered, self.queue_left)
            for item in items
        }
        for single in (self.started, self.ivr_ended, self.abandoned, self.ended, self.wrapup):
            if single is not None:
                ids.add(single[1])
        return ids

    def _derive(self) -> _Facts:
        """Compute the call's facts from its events (cached until the next new event)."""
        if self._facts is None:
            self._facts = self._compute()
        return self._facts

    def _compute(self) -> _Facts:
        entered = self.queue_entered
        started_q = self.started[2] if self.started is not None else None
        answer = self.answered[0] if self.answered else None
        hang_up = (
            self.abandoned[0]
            if self.abandoned is not None
            else self.ended[0]
            if self.ended is not None
            else None
        )
        answer_queue: str | None = None
        answer_speed = queue_wait = abandon_ms = 0
        abandoned = False
        abandon_queue: str | None = None
        handled: tuple[int, int] | None = None
        waiting: tuple[str, int] | None = None
        kind: str | None = None
        outcome_queue: str | None = None

        if answer is not None:
            # Queue visits after the answer are ignored (rank: queue_entered < call_answered
            # < queue_left, so a visit at the answer's ts counts only if it is an entry).
            end = answer[0]
            before = [e for e in entered if e[0] <= end]
            last = before[-1] if before else None
            start = self._line_wait_start(before, end)
            answer_speed = _span(start, end)
            if last is not None:
                queue_wait = _span(last[0], self._offer_ts(last[0], answer))
            answer_queue = _first_queue(last[2] if last else None, answer[2], started_q)
            flows_src = [left for left in self.queue_left if left[0] < end]
            if self.wrapup is not None:
                handled = (self.wrapup[0], _span(end, self.wrapup[0]))
            kind, outcome_queue = "answered", answer_queue
        else:
            flows_src = list(self.queue_left)
            if hang_up is not None:
                before = [e for e in entered if e[0] <= hang_up]
                last = before[-1] if before else None
                abandoned = self.abandoned is not None or (
                    last is not None and not self._left_between(last[0], hang_up, last[2])
                )
                if abandoned:
                    abandon_queue = _first_queue(
                        last[2] if last else None,
                        self.abandoned[2] if self.abandoned is not None else None,
                        started_q,
                    )
                    since = last[0] if last else self._line_wait_start([], hang_up)
                    abandon_ms = _span(since, hang_up)
                    kind, outcome_queue = "abandoned", abandon_queue
                elif entered or self.queue_left:
                    kind = "flowed_out"
                    if self.queue_left:
                        final = self.queue_left[-1]
                        outcome_queue = self._left_queue(final[0], final[2])
                    else:  # entered only after the hang-up (clock skew): no queue_left at all
                        outcome_queue = entered[-1][2]
                else:
                    kind, outcome_queue = "ivr_only", started_q
            elif entered:
                since_ts, queue = entered[-1][0], entered[-1][2]
                if queue is not None and not self._left_between(since_ts, None, queue):
                    waiting = (queue, since_ts)

        flows = tuple((self._left_queue(left[0], left[2]), left[0]) for left in flows_src)
        return _Facts(  # in field order (positional: several times cheaper to build)
            answer,
            answer_queue,
            answer_speed,
            queue_wait,
            hang_up,
            abandoned,
            abandon_queue,
            abandon_ms,
            flows,
            handled,
            waiting,
            kind,
            outcome_queue,
        )

    def _line_wait_start(self, entered_before: list[QueueStamp], end: int) -> int:
        """ivr_ended, else the first queue_entered (at or before `end`), else call_started,
        else `end` itself.

        Time before the queue is not waiting for a person (contract §2), and when nothing
        earlier is known the span is 0 rather than a guess.
        """
        if self.ivr_ended is not None:
            return self.ivr_ended[0]
        if entered_before:
            return entered_before[0][0]
        if self.started is not None:
            return self.started[0]
        return end

    def _offer_ts(self, entered_ts: int, answer: Answer) -> int:
        """Ts of the offer that led to the answer (the last in [entry, answer], the answering
        agent's when known: earlier offers rang elsewhere and went unanswered), else the answer's.
        """
        candidates = [o for o in self.offered if entered_ts <= o[0] <= answer[0]]
        agent = answer[3]
        if agent is not None:
            mine = [o for o in candidates if o[2] == agent]
            if mine:
                candidates = mine
        return candidates[-1][0] if candidates else answer[0]

    def _left_between(self, start: int, end: int | None, queue: str | None) -> bool:
        """A queue_left of `queue` (or naming no queue) with start <= ts (<= end when given)."""
        return any(
            start <= left[0]
            and (end is None or left[0] <= end)
            and (left[2] is None or left[2] == queue)
            for left in self.queue_left
        )

    def _left_queue(self, ts: int, queue: str | None) -> str | None:
        """The queue a queue_left leaves: its own, else that of the last entry at or before it."""
        if queue is not None:
            return queue
        for entry in reversed(self.queue_entered):
            if entry[0] <= ts:
                return entry[2]
        return None

    def _outcome(self, facts: _Facts, short_abandon_ms: ShortAbandonMs) -> dict[str, object] | None:
        if facts.kind is None:
            return None
        kind = facts.kind
        if kind == "abandoned" and facts.abandon_ms < short_abandon_ms(facts.abandon_queue):
            kind = "short_abandoned"
        answer = facts.answer
        started = self.started[0] if self.started is not None else None
        ended = (
            self.ended[0]
            if self.ended is not None
            else self.abandoned[0]
            if self.abandoned is not None
            else None
        )
        ivr_ms = (
            _span(started, self.ivr_ended[0])
            if started is not None and self.ivr_ended is not None
            else None
        )
        return {
            "call_id": self.call_id,
            "queue": facts.outcome_queue,
            "outcome": kind,
            "agent_id": answer[3] if answer is not None else None,
            "started_at": format_ts(started) if started is not None else None,
            "answered_at": format_ts(answer[0]) if answer is not None else None,
            "ended_at": format_ts(ended) if ended is not None else None,
            "ivr_seconds": _seconds(ivr_ms),
            "answer_seconds": _seconds(facts.answer_speed) if answer is not None else None,
            "queue_wait_seconds": _seconds(facts.queue_wait) if answer is not None else None,
            "abandon_seconds": _seconds(facts.abandon_ms) if facts.abandoned else None,
            "handle_seconds": _seconds(facts.handled[1]) if facts.handled is not None else None,
        }


def _earliest(current: _T | None, candidate: _T) -> _T:
    """Single-valued types keep their earliest instance by (ts, event_id): order-independent."""
    return candidate if current is None or candidate < current else current


def _first_queue(*queues: str | None) -> str | None:
    return next((q for q in queues if q is not None), None)


def _contributions(facts: _Facts) -> dict[str, Contribution]:
    """Per queue the call touches, each fact of its `Contribution` (once per new event)."""
    answered: dict[str, tuple[int, int, int]] = {}
    abandoned: dict[str, tuple[int, int]] = {}
    flowed_out: dict[str, list[int]] = {}
    handled: dict[str, tuple[int, int]] = {}
    waiting: dict[str, int] = {}
    if facts.answer is not None and facts.answer_queue is not None:
        answered[facts.answer_queue] = (facts.answer[0], facts.answer_speed, facts.queue_wait)
        if facts.handled is not None:
            handled[facts.answer_queue] = facts.handled
    if facts.abandoned and facts.abandon_queue is not None and facts.hang_up is not None:
        abandoned[facts.abandon_queue] = (facts.hang_up, facts.abandon_ms)
    for queue, ts in facts.flows:
        if queue is not None:
            flowed_out.setdefault(queue, []).append(ts)
    if facts.waiting is not None:
        waiting[facts.waiting[0]] = facts.waiting[1]
    return {
        queue: Contribution(
            answered.get(queue),
            abandoned.get(queue),
            tuple(sorted(flowed_out.get(queue, ()))),
            handled.get(queue),
            waiting.get(queue),
        )
        for queue in sorted({*answered, *abandoned, *flowed_out, *waiting})
    }


class Emission(NamedTuple):
    """What the calls stage sends after handling one event (or a sweep).

    contributions: queue → the call's whole current contribution there (EMPTY where it no
    longer contributes), so the queue stage can replace rather than add.
    outcome: a call-outcomes record to publish, or None.
    """

    contributions: dict[str, Contribution]
    outcome: dict[str, object] | None


def _diff_contributions(
    state: CallState, target: dict[str, Contribution]
) -> dict[str, Contribution]:
    """Queues whose target differs from what was last sent; records them as sent."""
    changed: dict[str, Contribution] = {}
    for queue in sorted(set(target) | set(state.sent_contributions)):
        new = target.get(queue, EMPTY)
        old = state.sent_contributions.get(queue)
        if old is None and new.is_empty():
            continue  # never told anything here: nothing to withdraw
        if old != new:
            changed[queue] = new
            state.sent_contributions[queue] = new
    return changed


def _material(record: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in _QUIET_FIELDS}


def plan_emission(state: CallState, short_abandon_ms: ShortAbandonMs) -> Emission:
    """What changed since the last emission; records it in state.sent_*.

    The outcome goes out when first known and again only when a field other than
    started_at/ended_at changed (handle time, or a late event's correction): one record per
    call, plus its handle-time update (contract §5), each with the newest values.
    A tombstone emits nothing: its figures downstream are final and must not be withdrawn.
    """
    if state.tombstoned:
        return Emission({}, None)
    facts = state._derive()
    changed = _diff_contributions(state, _contributions(facts))
    current = state._outcome(facts, short_abandon_ms)
    outcome: dict[str, object] | None = None
    if current is not None and (
        state.sent_outcome is None or _material(current) != _material(state.sent_outcome)
    ):
        outcome = current
        state.sent_outcome = dict(current)
    return Emission(changed, outcome)


def resend_all(state: CallState) -> Emission:
    """Everything last sent, EMPTY withdrawals included: on a duplicate, re-send what a crash
    between the state write and the send may have lost (downstream replaces, so it is safe).
    """
    outcome = dict(state.sent_outcome) if state.sent_outcome is not None else None
    return Emission(dict(state.sent_contributions), outcome)


def evict(state: CallState) -> Emission:
    """For a call silent past its TTL: withdraw only its `waiting_since` (the call is surely no
    longer waiting; its events were lost) and keep every answered/abandoned/flowed/handled fact.
    The caller then drops or tombstones the state, or a later event would make it wait again.
    """
    if state.tombstoned:
        return Emission({}, None)
    target = {
        queue: contribution._replace(waiting_since=None)
        for queue, contribution in state.contributions().items()
    }
    return Emission(_diff_contributions(state, target), None)


def stored_age(data: Mapping[str, Any]) -> tuple[int, bool]:
    """`last_ts` and `is_finished()` of a stored state, read without decoding it: a sweep
    judges every call of its partition by them and changes few."""
    newest = data.get("t")
    finished = bool(data.get("z", 0)) or data.get("x") is not None or data.get("e") is not None
    return (0 if newest is None else newest), finished
