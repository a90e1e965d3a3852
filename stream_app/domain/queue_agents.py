"""An agent's timeline as one queue sees it: what the agents stage sends the queues stage.

The agents stage (keyed by agent) owns each agent's whole activity; the queues stage (keyed by
queue) needs, per queue, only when each of its agents was in which state while serving it. So
per queue the agent serves, the agents stage sends the agent's timeline projected on that queue
(`project`: logged_out while the agent does not serve it) from a horizon on, and the queues stage
keeps one timeline per (queue, agent): the projection replaces it from the instant it tells the
timeline from, and what lies before stays (`apply_agent`). The agents stage counts its horizon from its
own clocks, which run ahead of the queues stage's closing: what it no longer sends is what the
queues stage may still have to close, so the queues stage forgets it only by its own retention
(`prune`). Agent counts, occupancy and staffed time of a queue are sums over these timelines.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from stream_app.domain.agent_activity import QUEUE_STATES, AgentActivity, Span, StateTime
from stream_app.domain.queues import SEP, Store

# A projected span: (start, state, reason); it lasts until the next one's start.
QueueSpan = tuple[int, str, str | None]


def project(activity: AgentActivity, queue: str, since: int) -> list[QueueSpan]:
    """The agent's timeline for `queue` from the span in force at `since` on (older spans are
    not needed by any window the queues stage still shows or closes)."""
    out: list[QueueSpan] = []
    for span in activity.timeline():
        serving = span.state != "logged_out" and queue in span.queues
        step = (
            (span.start, span.state, span.reason) if serving else (span.start, "logged_out", None)
        )
        if out and out[-1][1:] == step[1:]:
            continue
        if out and step[0] <= since:
            out[-1] = step  # the span in force at `since` replaces every earlier one
            continue
        out.append(step)
    if len(out) == 1 and out[0][1] == "logged_out":
        return []  # never served the queue within the horizon
    return out


def served_queues(activity: AgentActivity) -> set[str]:
    """Every queue the agent serves at some instant of its (pruned) timeline."""
    return {queue for span in activity.timeline() for queue in span.queues}


@dataclass(frozen=True, slots=True)
class QueueAgent:
    """One agent's projected timeline for one queue (read by the queues stage). The spans are
    kept as stored (JSON lists), not converted: scrapes and closing read many of them."""

    spans: Sequence[Sequence[Any]]  # QueueSpan as lists

    @classmethod
    def from_json(cls, data: Sequence[Sequence[Any]]) -> QueueAgent:
        return cls(data)

    def _index(self, ts: int) -> int:
        """The index of the span in force at `ts` (-1 before the first)."""
        return bisect.bisect_right(cast(Any, self.spans), [ts, "\uffff"]) - 1

    def at(self, ts: int) -> str:
        """The agent's state for the queue at `ts` (logged_out when not serving it)."""
        index = self._index(ts)
        return str(self.spans[index][1]) if index >= 0 else "logged_out"

    def state_time(self, start: int, end: int, now: int) -> StateTime:
        """Time per state within [start, min(end, now)); the last span lasts up to `now`."""
        end = min(end, now)
        total = StateTime()
        spans = self.spans
        for i in range(max(self._index(start), 0), len(spans)):
            begins, state, reason = spans[i]
            if begins >= end:
                break
            stop = spans[i + 1][0] if i + 1 < len(spans) else end
            if stop > start:
                total.count(Span(begins, state, reason, ()), min(stop, end) - max(begins, start))
        return total


def agents_by_state(agents: Iterable[QueueAgent], now: int) -> dict[str, int]:
    """`callcenter_agents{queue, state}`: the queue's agents per state at `now`, 0 included."""
    counts = dict.fromkeys(QUEUE_STATES, 0)
    for agent in agents:
        state = agent.at(now)
        if state in counts:
            counts[state] += 1
    return counts


def state_time(agents: Iterable[QueueAgent], start: int, end: int, now: int) -> StateTime:
    """The queue's agents' time per state within [start, min(end, now)): its `occupancy`
    is the queue's, its `staffed_ms` over the window's length the mean agents staffed."""
    total = StateTime()
    for agent in agents:
        total.add(agent.state_time(start, end, now))
    return total


# -- kept by the queues stage, in its table ------------------------------------------------------


def agent_key(queue: str, agent_id: str) -> str:
    return f"g{SEP}{queue}{SEP}{agent_id}"


def roster_key(queue: str) -> str:
    """The agents with a projection for the queue: read at scrapes, which cannot scan."""
    return f"r{SEP}{queue}"


def apply_agent(
    store: Store,
    queue: str,
    agent_id: str,
    spans: Sequence[Sequence[Any]],
    position: int,
    since: int | None = None,
) -> int | None:
    """The agent's timeline for `queue` from `since` on (None: the whole timeline), merged into
    the one kept (idempotent per position); the earliest instant whose state it changed, None
    if none. The roster is brought in line first, whatever the position: a crash may have kept
    only the other write."""
    key = agent_key(queue, agent_id)
    stored = store.get(key)
    old: list[Any] = stored[1] if stored is not None else []
    merged = merge(old, [list(span) for span in spans], since)
    roster: list[str] = store.get(roster_key(queue)) or []
    if bool(merged) != (agent_id in roster):
        roster = sorted({*roster, agent_id} if merged else set(roster) - {agent_id})
        store.set(roster_key(queue), roster)
    if stored is not None and stored[0] >= position:
        return None
    if merged:
        store.set(key, [position, merged])
    elif stored is not None:
        store.delete(key)
    store.set(version_key(queue), position)
    return first_change(old, merged)


def merge(old: list[Any], new: list[Any], since: int | None) -> list[Any]:
    """`old` before `since`, then `new` (the timeline from `since` on: its first span is the
    one in force at `since`, none when logged_out throughout); [] when the agent never serves
    the queue in the result. Only the state at `since` of that first span is taken, not its
    start: the agents stage may have forgotten what came before (its retention, a restart),
    and what the queues stage kept before `since` stays as it was."""
    if since is None:
        merged = new
    else:
        merged = [span for span in old if int(span[0]) < since]
        tail = new or [[since, "logged_out", None]]
        if merged and int(tail[0][0]) < since:
            tail = [[since, *tail[0][1:]], *tail[1:]]
        if merged and merged[-1][1:] == tail[0][1:]:
            tail = tail[1:]
        merged.extend(tail)
    return merged if any(span[1] != "logged_out" for span in merged) else []


def prune(spans: list[Any], ts: int) -> list[Any]:
    """The timeline from the span in force at `ts` on ([] when it never serves the queue
    from there): what the queues stage keeps once nothing before `ts` can be closed again."""
    index = bisect.bisect_right(cast(Any, spans), [ts, "\uffff"]) - 1
    kept = spans[max(index, 0) :]
    return kept if any(span[1] != "logged_out" for span in kept) else []


def first_change(old: list[Any], new: list[Any]) -> int | None:
    """The earliest start at which two timelines (as JSON) differ, from the later of their
    horizons on (the agents stage moves the horizon on: not a change); None when equal."""
    if old and new:
        horizon = max(int(old[0][0]), int(new[0][0]))
        old, new = _from(old, horizon), _from(new, horizon)
    for a, b in zip(old, new, strict=False):
        if a != b:
            return min(int(a[0]), int(b[0]))
    if len(old) == len(new):
        return None
    longer = old if len(old) > len(new) else new
    return int(longer[min(len(old), len(new))][0])


def _from(spans: list[Any], ts: int) -> list[Any]:
    """The spans from the one in force at `ts` on, that one starting at `ts`."""
    index = max(bisect.bisect_right(cast(Any, spans), [ts, "\uffff"]) - 1, 0)
    return [[ts, *spans[index][1:]], *spans[index + 1 :]]


def queue_agents(store: Store, queue: str) -> list[QueueAgent]:
    """The queue's agents' projected timelines (point reads: also at scrapes)."""
    out = []
    for agent_id in store.get(roster_key(queue)) or []:
        stored = store.get(agent_key(queue, agent_id))
        if stored is not None:
            out.append(QueueAgent.from_json(stored[1]))
    return out


def interval_agent_figures(agents: list[QueueAgent], start: int, end: int) -> dict[str, Any]:
    """The agent figures of a closed interval's `queue-metrics` record (contract §6) from the
    queue's agents (`queue_agents`): the queue's occupancy and mean agents staffed
    (time-weighted); null when no agent was staffed for the queue in the interval (whether the
    queue's agents were away or none is known: the figures do not depend on what is kept)."""
    time = state_time(agents, start, end, end)
    staffed = time.staffed_ms / (end - start) if time.staffed_ms else None
    return {"occupancy": time.occupancy, "agents_staffed_avg": staffed}


def positions(store: Store, queue: str) -> tuple[list[str], int | None]:
    """The queue's agents and the position of the last timeline of theirs applied: changes
    whenever one of them does (one read, not one per agent: the live feed asks often)."""
    return store.get(roster_key(queue)) or [], store.get(version_key(queue))


def version_key(queue: str) -> str:
    return f"v{SEP}{queue}"
