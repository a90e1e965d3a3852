"""Per-agent activity of contract §6: a timeline of states from agent events and calls.

As for calls, nothing depends on arrival order. An agent's state keeps its distinct agent events
(deduplicated by `event_id`) and, per call that names the agent, that call's whole meaning for
the agent (`AgentCall`, derived from the call's state by `agent_calls`, replaced whole whenever
the call changes, as the queue stage replaces a call's contribution). The timeline is recomputed
from their `ts` values; ties between agent events of one `ts` are broken by
(`AGENT_TYPE_RANK`, event_id), so the timeline is a pure function of the set of facts.

Rules (contract §6), and the choices the contract leaves open:
* The state the agent set: `available` after `agent_logged_in` or `agent_ready`, `not_ready`
  after `agent_not_ready`, `logged_out` before any of these or after `agent_logged_out`. A
  ready or not-ready without a login still means the agent is there: a PBX whose members are
  configured, not logged in (Asterisk's static members), pauses and unpauses them only.
* Call activity wins over the set state: on_call > ringing > after_call_work (a second call
  ringing during a call leaves the agent on_call).
* After-call work ends at the call's `wrapup_ended` or at the agent's next event of any kind:
  an agent event, or any instant of another call involving the agent.
* Queues served: the list of the last `agent_logged_in`/`agent_queues` while the set state is
  not logged_out, plus the queue of each call the agent is busy with. An agent seen only
  through calls thus serves the queue of their call, while ringing, on it or in its wrap-up.
All times are epoch ms; a span whose end comes before its start (clocks of two sources
disagree) lasts 0.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from stream_app.domain.calls import CallState
from stream_app.domain.events import KEY_SEPARATOR, format_ts
from stream_app.domain.model import AGENT_EVENT_TYPES, AGENT_TYPE_RANK, TYPE_RANK, AgentEvent
from stream_app.domain.queues import ROLLING_WINDOWS_MS
from stream_app.domain.windows import (
    MINUTE_MS,
    day_end,
    day_start,
    floor_to,
    interval_start,
    rolling_minutes,
)

STATES: tuple[str, ...] = (
    "logged_out",
    "available",
    "not_ready",
    "ringing",
    "on_call",
    "after_call_work",
)
BUSY_STATES: tuple[str, ...] = ("ringing", "on_call", "after_call_work")
# The `state` label values of `callcenter_agents`: every state but logged_out.
QUEUE_STATES: tuple[str, ...] = ("available", "ringing", "on_call", "after_call_work", "not_ready")
_PRIORITY = ("on_call", "ringing", "after_call_work")  # which call activity wins an overlap

_LOGIN, _QUEUES, _READY, _NOT_READY, _LOGOUT = (AGENT_TYPE_RANK[t] for t in AGENT_EVENT_TYPES)
# Call events that take a ringing call away from the agent it rings at: every type from
# queue_entered to call_ended (queued again, offered again, answered, left, abandoned, ended).
_RING_ENDERS = frozenset(range(TYPE_RANK["queue_entered"], TYPE_RANK["call_ended"] + 1))

Window = tuple[int, int | None]  # (start, end); end None while it lasts
# A stored agent event: (ts, AGENT_TYPE_RANK, event_id, queues, reason)
StoredEvent = tuple[int, int, str, tuple[str, ...] | None, str | None]


class AgentCall(NamedTuple):
    """What one call means to one agent: spans of ringing, talking and after-call work."""

    queue: str | None  # the call's queue (answered in; else the last one it entered)
    rings: tuple[Window, ...] = ()  # from each agent_offered naming the agent
    talk: Window | None = None  # from the agent's call_answered
    wrap: Window | None = None  # from call_ended to wrapup_ended (the next event may cut it)
    handled: tuple[int, int] | None = None  # (wrapup_ended ts, handle ms)

    def stamps(self) -> list[int]:
        """Every instant of the call known for the agent: each is an event of the agent's."""
        stamps = [
            ts
            for window in (*self.rings, self.talk, self.wrap)
            if window
            for ts in window
            if ts is not None
        ]
        if self.handled is not None:
            stamps.append(self.handled[0])
        return stamps

    def reach(self) -> float:
        """The latest instant any of its activities may last to: inf while one is open."""
        windows = (*self.rings, self.talk, self.wrap)
        if any(window is not None and window[1] is None for window in windows):
            return math.inf
        return max(self.stamps(), default=-math.inf)

    def is_empty(self) -> bool:
        return not self.rings and self.talk is None and self.wrap is None and self.handled is None

    def to_json(self) -> list[Any]:
        return [
            self.queue,
            [list(ring) for ring in self.rings],
            list(self.talk) if self.talk is not None else None,
            list(self.wrap) if self.wrap is not None else None,
            list(self.handled) if self.handled is not None else None,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> AgentCall:
        queue, rings, talk, wrap, handled = data
        return cls(
            queue,
            tuple((ring[0], ring[1]) for ring in rings),
            (talk[0], talk[1]) if talk is not None else None,
            (wrap[0], wrap[1]) if wrap is not None else None,
            (handled[0], handled[1]) if handled is not None else None,
        )


class Span(NamedTuple):
    """A piece of an agent's timeline: from `start` until the next span's start."""

    start: int
    state: str
    reason: str | None  # why not ready, when the agent said
    queues: tuple[str, ...]  # the queues served meanwhile, sorted


_OUT = ("logged_out", None, ())


@dataclass(slots=True)
class StateTime:
    """Milliseconds per state (and per not-ready reason) over a window: sums, so the time of
    several windows or several agents adds up, and ratios are derived only on read."""

    ms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    not_ready_reasons: dict[str | None, int] = field(default_factory=dict)

    def add(self, other: StateTime) -> None:
        for state, ms in other.ms.items():
            self.ms[state] += ms
        for reason, ms in other.not_ready_reasons.items():
            self.not_ready_reasons[reason] = self.not_ready_reasons.get(reason, 0) + ms

    def count(self, span: Span, ms: int) -> None:
        if ms <= 0:
            return
        self.ms[span.state] += ms
        if span.state == "not_ready":
            self.not_ready_reasons[span.reason] = self.not_ready_reasons.get(span.reason, 0) + ms

    @property
    def busy_ms(self) -> int:
        return sum(self.ms[state] for state in BUSY_STATES)

    @property
    def staffed_ms(self) -> int:
        return sum(ms for state, ms in self.ms.items() if state != "logged_out")

    @property
    def occupancy(self) -> float | None:
        """busy / (busy + available); None when both are 0 (not-ready time is excluded)."""
        busy = self.busy_ms
        working = busy + self.ms["available"]
        return busy / working if working else None


@dataclass(eq=False, slots=True)
class AgentActivity:
    """One agent's distinct facts (a Faust table value), and the timeline derived from them."""

    agent_id: str
    events: list[StoredEvent] = field(default_factory=list)  # sorted
    calls: dict[str, AgentCall] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    _spans: list[Span] | None = None
    _starts: list[int] = field(default_factory=list)
    _stale_from: int | None = None  # the cached spans hold before this instant only
    _counts: tuple[list[int], list[int], list[int]] | None = None  # see `_counted`
    _steps: list[Span] | None = None  # see `_set_states`: kept until the agent events change
    _step_starts: list[int] = field(default_factory=list)
    _reach: dict[str, float] | None = None  # see `_reached`

    # -- input ------------------------------------------------------------------------------

    def apply(self, event: AgentEvent) -> bool:
        """Record an agent event; False (state untouched) when its event_id was seen."""
        if event.agent_id != self.agent_id:
            raise ValueError(f"event of agent {event.agent_id!r} applied to {self.agent_id!r}")
        if event.event_id in self.event_ids:
            return False
        self.event_ids.add(event.event_id)
        stored = (event.ts, AGENT_TYPE_RANK[event.type], event.event_id, event.queues, event.reason)
        bisect.insort(self.events, stored)
        self._steps = None
        self._stale(event.ts)
        return True

    def set_call(self, call_id: str, call: AgentCall | None) -> bool:
        """Replace what a call means to the agent (None or empty: it names the agent no more);
        False when nothing changed."""
        old = self.calls.get(call_id)
        if call is None or call.is_empty():
            changed = self.calls.pop(call_id, None) is not None
            call = None
        else:
            changed = old != call
            self.calls[call_id] = call
        if changed:
            self._counts = None
            if self._reach is not None:  # kept up to date: a replay changes one call at a time
                if call is None:
                    self._reach.pop(call_id, None)
                else:
                    self._reach[call_id] = call.reach()
            stamps = [*(old.stamps() if old else ()), *(call.stamps() if call else ())]
            if stamps:
                self._stale(min(stamps))
            else:
                self._spans = None
        return changed

    def _stale(self, ts: int) -> None:
        """A fact at `ts` changed: the timeline before `ts` stays as it was. A call's or an
        agent event's instants start its own activities and cut after-call work begun
        earlier, never anything before them."""
        if self._spans is not None:
            self._stale_from = ts if self._stale_from is None else min(self._stale_from, ts)

    # -- the timeline -----------------------------------------------------------------------

    def timeline(self) -> list[Span]:
        """The spans in time order, consecutive ones different; logged_out before the first."""
        if self._spans is None:
            self._spans = _merge_timeline(self._set_states(), self._overlays())
        elif self._stale_from is not None:
            self._spans = self._rederive(self._spans, self._stale_from)
        else:
            return self._spans
        self._stale_from = None
        self._starts = [span.start for span in self._spans]
        return self._spans

    def _rederive(self, spans: list[Span], since: int) -> list[Span]:
        """The timeline from `since` on derived again, the spans before it kept: a replay
        changes an agent's latest calls many times, and its two days of calls are costly to
        sweep each time. The state at `since` depends only on the activities in force then."""
        overlays = [o for o in self._overlays(since) if o[1] is None or o[1] > since]
        # The set state in force at `since` and every activity lasting past it make the spans
        # from there on; the set states before it are not looked at.
        steps = self._set_states()
        first = max(bisect.bisect_right(self._step_starts, since) - 1, 0)
        tail = _merge_timeline(steps[first:], overlays)
        index = bisect.bisect_right([span.start for span in tail], since) - 1
        at_since = Span(since, *tail[index][1:]) if index >= 0 else Span(since, *_OUT)
        out = spans[: bisect.bisect_left(self._starts, since)]
        for span in [at_since, *tail[index + 1 :]]:
            if out[-1][1:] != span[1:] if out else span[1:] != _OUT:
                out.append(span)
        return out

    def at(self, ts: int) -> Span:
        """The span in force at `ts`."""
        spans = self.timeline()
        index = bisect.bisect_right(self._starts, ts) - 1
        return spans[index] if index >= 0 else Span(ts, *_OUT)

    def state_time(self, start: int, end: int, now: int, queue: str | None = None) -> StateTime:
        """Time per state within [start, min(end, now)): what is not known yet is not counted.
        With `queue`, only the time the agent served that queue (never logged_out time)."""
        end = min(end, now)
        total = StateTime()
        if end <= start:
            return total
        spans = self.timeline()
        index = bisect.bisect_right(self._starts, start) - 1
        if index < 0 and queue is None:
            first = spans[0].start if spans else end
            total.count(Span(start, *_OUT), min(end, first) - start)
        for i in range(max(index, 0), len(spans)):
            span = spans[i]
            if span.start >= end:
                break
            if queue is not None and queue not in span.queues:
                continue
            stop = spans[i + 1].start if i + 1 < len(spans) else end
            total.count(span, min(stop, end) - max(span.start, start))
        return total

    def answered(self, start: int, end: int) -> int:
        """Calls the agent answered with the answer in [start, end)."""
        answers = self._counted()[0]
        return bisect.bisect_left(answers, end) - bisect.bisect_left(answers, start)

    def handled(self, start: int, end: int) -> tuple[int, int]:
        """(calls, handle ms summed) of the agent's calls whose wrap-up ended in [start, end)."""
        _, ends, sums = self._counted()
        first, last = bisect.bisect_left(ends, start), bisect.bisect_left(ends, end)
        return last - first, sums[last] - sums[first]

    def _reached(self) -> dict[str, float]:
        """Per call, the latest instant its activities may last to (inf while one is open):
        kept until the calls change."""
        if self._reach is None:
            self._reach = {call_id: call.reach() for call_id, call in self.calls.items()}
        return self._reach

    def _counted(self) -> tuple[list[int], list[int], list[int]]:
        """Answer instants, wrap-up ends and running handle-ms sums, sorted (kept until the
        calls change): closing reads them per interval, for every interval of two days."""
        if self._counts is None:
            answers = sorted(call.talk[0] for call in self.calls.values() if call.talk)
            handled = sorted(call.handled for call in self.calls.values() if call.handled)
            sums = [0]
            for _, ms in handled:
                sums.append(sums[-1] + ms)
            self._counts = (answers, [ts for ts, _ in handled], sums)
        return self._counts

    def _set_states(self) -> list[Span]:
        """The state the agent set, per instant their events change it (the last event of an
        instant wins); queues while logged_out are none. Kept until an agent event comes: a
        replay re-derives the latest minutes after every call, the agent's events seldom change."""
        if self._steps is None:
            self._steps = self._derive_set_states()
            self._step_starts = [step.start for step in self._steps]
        return self._steps

    def _derive_set_states(self) -> list[Span]:
        steps: list[Span] = []
        state, reason = "logged_out", None
        queues: tuple[str, ...] = ()
        for ts, rank, _, event_queues, event_reason in self.events:
            if rank == _LOGIN:
                state, reason, queues = "available", None, event_queues or ()
            elif rank == _QUEUES:
                queues = event_queues or ()
            elif rank == _READY:
                state, reason = "available", None
            elif rank == _NOT_READY:
                state, reason = "not_ready", event_reason
            else:
                state, reason = "logged_out", None
            step = Span(ts, state, reason, () if state == "logged_out" else queues)
            if steps and steps[-1].start == ts:
                steps[-1] = step
            else:
                steps.append(step)
        return steps

    def _overlays(
        self, since: int | None = None
    ) -> list[tuple[int, int | None, str, str | None, str]]:
        """(start, end, state, queue, call_id) of every call activity of non-zero length, with
        after-call work cut at the agent's next event. With `since`, at least those that last
        past it: only calls reaching past it are looked at, and as cutters only those reaching
        the earliest after-call work among them (a replay re-derives the latest minutes of an
        agent with two days of calls)."""
        calls: Iterable[tuple[str, AgentCall]] = self.calls.items()
        cutting: Iterable[tuple[str, AgentCall]] = calls
        if since is not None:
            reaches = self._reached()
            calls = [(c, self.calls[c]) for c, reach in reaches.items() if reach > since]
            low = min([since, *(call.wrap[0] for _, call in calls if call.wrap is not None)])
            cutting = [(c, self.calls[c]) for c, reach in reaches.items() if reach >= low]
            events = self.events[bisect.bisect_left(self.events, (low,)) :]
        else:
            events = self.events
        cutters = sorted(
            [(event[0], "") for event in events]
            + [(ts, call_id) for call_id, call in cutting for ts in call.stamps()]
        )
        out: list[tuple[int, int | None, str, str | None, str]] = []
        for call_id, call in sorted(calls):
            windows = [(ring, "ringing") for ring in call.rings]
            if call.talk is not None:
                windows.append((call.talk, "on_call"))
            if call.wrap is not None:
                windows.append((_cut(call.wrap, call_id, cutters), "after_call_work"))
            for (start, end), state in windows:
                if end is None or end > start:
                    out.append((start, end, state, call.queue, call_id))
        return out

    # -- retention --------------------------------------------------------------------------

    def all_since(self, before_ts: int) -> bool:
        """Whether every fact is at or after `before_ts` (then `prune` keeps all: a cheap test
        before the sweep's costly one)."""
        if self.events and self.events[0][0] < before_ts:
            return False
        return all(any(ts >= before_ts for ts in call.stamps()) for call in self.calls.values())

    def prune(self, before_ts: int) -> None:
        """Forget facts older than `before_ts`, keeping the timeline from `before_ts` on (and
        every count and sum of windows starting there) exactly as it was.

        Kept: every call with an instant or an activity at or after the cut, every call with an
        instant after the first instant of those (it may cut their after-call work), the agent
        events from there on, and the last events before it that set the state and the queues.
        Figures of windows before `before_ts` are not exact after this (the timeline derived
        before keeps its spans there, and the start of the one in force at the cut, until the
        agent is read afresh)."""
        if self._spans is not None:
            # Changes not derived yet reach before the cut: derived now, from every fact, or
            # the spans up to the cut would be derived again from the kept facts only.
            self.timeline()
        overlays = self._overlays(before_ts)
        keep = {call_id for start, end, _, _, call_id in overlays if end is None or end > before_ts}
        keep.update(
            call_id
            for call_id, call in self.calls.items()
            if any(ts >= before_ts for ts in call.stamps())
        )
        cut = before_ts
        while True:
            stamps = [ts for call_id in keep for ts in self.calls[call_id].stamps()]
            cut = min([cut, *stamps])
            more = {
                call_id
                for call_id, call in self.calls.items()
                if call_id not in keep and any(ts >= cut for ts in call.stamps())
            }
            if not more:
                break
            keep |= more
        self.calls = {call_id: call for call_id, call in self.calls.items() if call_id in keep}
        earlier = [event for event in self.events if event[0] < cut]
        setter = next((e for e in reversed(earlier) if e[1] != _QUEUES), None)
        lister = next((e for e in reversed(earlier) if e[1] in (_LOGIN, _QUEUES)), None)
        anchors = {e for e in (setter, lister) if e is not None}
        self.events = sorted(anchors) + [event for event in self.events if event[0] >= cut]
        self._steps = None
        self.event_ids = {event[2] for event in self.events}
        self._counts = None
        self._reach = None
        self._stale(cut)  # derived again from the cut only: the rest is as it was

    # -- storage ----------------------------------------------------------------------------

    def to_json(self, *, calls: bool = True) -> dict[str, object]:
        """A JSON-able form: the events as lists, the calls by id (unless not `calls`)."""
        data: dict[str, object] = {"a": self.agent_id}
        if self.events:
            data["e"] = [
                [ts, rank, eid, list(queues) if queues is not None else None, reason]
                for ts, rank, eid, queues, reason in self.events
            ]
        if calls and self.calls:
            data["c"] = {call_id: call.to_json() for call_id, call in sorted(self.calls.items())}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentActivity:
        events: list[StoredEvent] = [
            (e[0], e[1], e[2], tuple(e[3]) if e[3] is not None else None, e[4])
            for e in data.get("e", ())
        ]
        return cls(
            agent_id=data["a"],
            events=events,
            calls={call_id: AgentCall.from_json(c) for call_id, c in data.get("c", {}).items()},
            event_ids={event[2] for event in events},
        )


def _cut(wrap: Window, call_id: str, cutters: list[tuple[int, str]]) -> Window:
    """After-call work ends at its wrap-up or at the first instant, from its start on, of an
    agent event or of another call: whichever comes first."""
    start, end = wrap
    index = bisect.bisect_left(cutters, (start, ""))
    while index < len(cutters) and cutters[index][1] == call_id:
        index += 1
    if index < len(cutters):
        cut = cutters[index][0]
        end = cut if end is None else min(end, cut)
    return start, end


def _merge_timeline(
    steps: list[Span], overlays: list[tuple[int, int | None, str, str | None, str]]
) -> list[Span]:
    """Sweep the set states and the call activities over every instant either changes."""
    changes: dict[int, list[tuple[int, str, str | None]]] = {}
    for start, end, state, queue, _ in overlays:
        changes.setdefault(start, []).append((1, state, queue))
        if end is not None:
            changes.setdefault(end, []).append((-1, state, queue))
    for step in steps:
        changes.setdefault(step.start, [])
    active: Counter[tuple[str, str | None]] = Counter()
    spans: list[Span] = []
    set_index = -1
    for ts in sorted(changes):
        for delta, state, queue in changes[ts]:
            active[(state, queue)] += delta
        while set_index + 1 < len(steps) and steps[set_index + 1].start <= ts:
            set_index += 1
        _, set_state, set_reason, set_queues = (
            steps[set_index] if set_index >= 0 else Span(ts, *_OUT)
        )
        live = {key for key, count in active.items() if count > 0}
        busy = next((s for s in _PRIORITY if any(key[0] == s for key in live)), None)
        queues = set(set_queues)
        queues.update(queue for _, queue in live if queue is not None)
        state = busy or set_state
        span = Span(ts, state, set_reason if state == "not_ready" else None, tuple(sorted(queues)))
        if not spans and span[1:] == _OUT:
            continue
        if not spans or spans[-1][1:] != span[1:]:
            spans.append(span)
    return spans


# -- agent-metrics --------------------------------------------------------------------------------

NO_REASON = "unspecified"  # the `not_ready_reasons` key of time not ready without a reason


def agent_interval_key(agent_id: str, start: int) -> str:
    """The compacted `agent-metrics` key: the latest revision of an interval wins."""
    return f"{agent_id}{KEY_SEPARATOR}{format_ts(start)}"


def agent_interval_record(
    agent: AgentActivity, start: int, end: int, now: int, revision: int
) -> dict[str, object]:
    """The `agent-metrics` value (contract §6), keys in the contract's order; the caller sends
    one only for an interval with staffed time."""
    time = agent.state_time(start, end, now)
    answered = agent.answered(start, end)
    handled, handle_ms = agent.handled(start, end)
    reasons: dict[str, int] = {}
    for reason, ms in time.not_ready_reasons.items():
        reasons[reason or NO_REASON] = reasons.get(reason or NO_REASON, 0) + ms
    return {
        "agent_id": agent.agent_id,
        "interval_start": format_ts(start),
        "interval_end": format_ts(end),
        "answered": answered,
        "handle_seconds_sum": handle_ms / 1000,
        "aht_seconds": handle_ms / (handled * 1000) if handled else None,
        **{state: time.ms[state] / 1000 for state in QUEUE_STATES},
        "not_ready_reasons": {reason: reasons[reason] / 1000 for reason in sorted(reasons)},
        "occupancy": time.occupancy,
        "revision": revision,
    }


# -- from a call's events ---------------------------------------------------------------------


def agent_calls(state: CallState) -> dict[str, AgentCall]:
    """Per agent the call names, what the call means to them (contract §6), from the call's
    events in the contract's (ts, TYPE_RANK, event_id) order:

    * ringing: from each `agent_offered` naming the agent to the next event that takes the call
      elsewhere (queued again, offered again, answered, left the queue, abandoned, ended);
    * on_call: from the agent's first `call_answered` to the call's `call_ended` (or, failing
      one, its `wrapup_ended`), or to an answer by another agent (a transfer) if that is sooner;
    * after-call work and handle time: for the agent on the call when it ended, from
      `call_ended` to `wrapup_ended`, handle time from their answer to `wrapup_ended`.

    A tombstoned call gives nothing: its caller must not withdraw what it sent before."""
    if state.tombstoned:
        return {}
    ordered: list[tuple[int, int, str, str | None]] = [
        (ts, TYPE_RANK["queue_entered"], eid, None) for ts, eid, _ in state.queue_entered
    ]
    ordered += [(ts, TYPE_RANK["agent_offered"], eid, a) for ts, eid, a in state.offered]
    ordered += [(ts, TYPE_RANK["call_answered"], eid, a) for ts, eid, _, a in state.answered]
    ordered += [(ts, TYPE_RANK["queue_left"], eid, None) for ts, eid, _, _ in state.queue_left]
    if state.abandoned is not None:
        ts, eid, _ = state.abandoned
        ordered.append((ts, TYPE_RANK["call_abandoned"], eid, None))
    if state.ended is not None:
        ordered.append((state.ended[0], TYPE_RANK["call_ended"], state.ended[1], None))
    ordered.sort()
    answered_rank, offered_rank = TYPE_RANK["call_answered"], TYPE_RANK["agent_offered"]
    ended = state.ended[0] if state.ended is not None else None
    wrapup = state.wrapup[0] if state.wrapup is not None else None

    rings: dict[str, list[Window]] = {}
    talks: dict[str, tuple[int, int | None, bool]] = {}  # agent → (answer, end, ended the call)
    for index, (ts, rank, _, agent) in enumerate(ordered):
        if agent is None:
            continue
        later = ordered[index + 1 :]
        if rank == offered_rank:
            ender = next((e[0] for e in later if e[1] in _RING_ENDERS), None)
            rings.setdefault(agent, []).append((ts, ender))
        elif rank == answered_rank and agent not in talks:
            handover = next((e[0] for e in later if e[1] == answered_rank and e[3] != agent), None)
            hang_up = ended if ended is not None else wrapup
            if hang_up is not None:
                hang_up = max(hang_up, ts)
            if handover is not None and (hang_up is None or handover < hang_up):
                talks[agent] = (ts, handover, False)
            else:
                talks[agent] = (ts, hang_up, hang_up is not None)

    out: dict[str, AgentCall] = {}
    for agent in sorted({*rings, *talks}):
        talk = talks.get(agent)
        wrap: Window | None = None
        handled: tuple[int, int] | None = None
        if talk is not None and talk[2] and talk[1] is not None:
            wrap = (talk[1], max(wrapup, talk[1]) if wrapup is not None else None)
            if wrapup is not None:
                handled = (wrapup, max(0, wrapup - talk[0]))
        when = talk[0] if talk is not None else rings[agent][-1][0]
        out[agent] = AgentCall(
            _call_queue(state, when),
            tuple(rings.get(agent, ())),
            (talk[0], talk[1]) if talk is not None else None,
            wrap,
            handled,
        )
    return out


def _call_queue(state: CallState, ts: int) -> str | None:
    """The queue of the last entry at or before `ts`, else the answer's, else the start's: the
    chain by which a call's figures find their queue (contract §2)."""
    entered = [queue for entered_ts, _, queue in state.queue_entered if entered_ts <= ts]
    candidates = [
        entered[-1] if entered else None,
        state.answered[0][2] if state.answered else None,
        state.started[2] if state.started is not None else None,
    ]
    return next((queue for queue in candidates if queue is not None), None)


# -- per queue ----------------------------------------------------------------------------------


def agents_by_state(agents: Iterable[AgentActivity], queue: str, now: int) -> dict[str, int]:
    """`callcenter_agents{queue, state}`: agents serving `queue` per state at `now`."""
    counts = dict.fromkeys(QUEUE_STATES, 0)
    for agent in agents:
        span = agent.at(now)
        if span.state != "logged_out" and queue in span.queues:
            counts[span.state] += 1
    return counts


def queue_state_time(
    agents: Iterable[AgentActivity], queue: str, start: int, end: int, now: int
) -> StateTime:
    """The time per state of every agent while serving `queue` within [start, min(end, now)):
    its `occupancy` is the queue's, its staffed time gives `staffed_average`."""
    total = StateTime()
    for agent in agents:
        total.add(agent.state_time(start, end, now, queue))
    return total


def staffed_average(time: StateTime, start: int, end: int, now: int) -> float | None:
    """Time-weighted mean of agents staffed over [start, min(end, now)); None over no time."""
    length = min(end, now) - start
    return time.staffed_ms / length if length > 0 else None


def window_span(window: str, stream_now: int, interval_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a window of contract §3 at `stream_now`; time counts up to stream time,
    so the caller passes `stream_now` as `now` to `state_time`. A rolling window starts where
    the minute buckets of the call figures start: the current minute and the whole ones before."""
    if window == "interval":
        start = interval_start(stream_now, interval_ms)
        return start, start + interval_ms
    if window == "today":
        return day_start(stream_now, zone), day_end(stream_now, zone)
    first = rolling_minutes(stream_now, ROLLING_WINDOWS_MS[window])[0]
    return first, floor_to(stream_now, MINUTE_MS) + MINUTE_MS
