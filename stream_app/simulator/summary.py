"""What the simulator sent, and the figures a correct pipeline must report for it.

Built only from the facts the model attached to the records actually sent (never from the
engine's code), so it is an independent check: per queue and per interval the `queue-metrics`
figures of contract §3, plus the calls' outcomes and the faults injected. The thresholds are
the engine's SLA configuration (short abandons, service level), so both count alike.

The agents' figures (contract §6) come the same way from the model's `AgentFact`s: per queue
and interval the seconds per state of the agents serving it, occupancy and the mean agents
staffed (`queue-metrics`), and per agent and interval the `agent-metrics` figures. Only closed
spans count: an agent's time after their last fact is not known yet (a run that ends or is
stopped logs every agent out, which closes it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream_app.domain.sla import SlaConfig
from stream_app.simulator.model import (
    AGENT_TOPIC,
    FAULT_KINDS,
    MALFORMED_KINDS,
    AgentFact,
    Record,
)

OUTCOMES = ("answered", "abandoned", "short_abandoned", "flowed_out", "ivr_only")
# The states of `callcenter_agents` and of the seconds in agent figures; busy: the last three.
AGENT_STATES = ("available", "ringing", "on_call", "after_call_work", "not_ready")
BUSY_STATES = ("ringing", "on_call", "after_call_work")
NO_REASON = "unspecified"  # not ready without a reason (the engine's key for it)


@dataclass(slots=True)
class AgentTally:
    """Milliseconds per state (and per not-ready reason), answers and handle time: one queue's
    agents or one agent, in one interval."""

    ms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGENT_STATES, 0))
    reasons: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    handled: int = 0
    handle_ms: int = 0

    def count(self, state: str, reason: str | None, ms: int) -> None:
        self.ms[state] += ms
        if state == "not_ready":
            key = reason or NO_REASON
            self.reasons[key] = self.reasons.get(key, 0) + ms

    @property
    def staffed_ms(self) -> int:
        return sum(self.ms.values())

    @property
    def occupancy(self) -> float | None:
        busy = sum(self.ms[state] for state in BUSY_STATES)
        working = busy + self.ms["available"]
        return busy / working if working else None

    def seconds(self) -> dict[str, float]:
        return {state: self.ms[state] / 1000 for state in AGENT_STATES}


@dataclass(slots=True)
class Tally:
    """Sums over one queue's calls in one interval (or in the whole run)."""

    answered: int = 0
    answered_within_threshold: int = 0
    answer_ms: int = 0
    wait_ms: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    flowed_out: int = 0
    handled: int = 0
    handle_ms: int = 0
    longest_ms: int | None = None

    def wait(self, ms: int) -> None:
        self.longest_ms = ms if self.longest_ms is None else max(self.longest_ms, ms)

    def add(self, other: Tally) -> None:
        self.answered += other.answered
        self.answered_within_threshold += other.answered_within_threshold
        self.answer_ms += other.answer_ms
        self.wait_ms += other.wait_ms
        self.abandoned += other.abandoned
        self.short_abandoned += other.short_abandoned
        self.flowed_out += other.flowed_out
        self.handled += other.handled
        self.handle_ms += other.handle_ms
        if other.longest_ms is not None:
            self.wait(other.longest_ms)

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned - self.short_abandoned

    def figures(self) -> dict[str, Any]:
        """The figures of a `queue-metrics` record (contract §3); means over no call are None."""
        offered = self.offered
        return {
            "offered": offered,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "short_abandoned": self.short_abandoned,
            "flowed_out": self.flowed_out,
            "answered_within_threshold": self.answered_within_threshold,
            "asa_seconds": self.answer_ms / (self.answered * 1000) if self.answered else None,
            "awt_seconds": self.wait_ms / (self.answered * 1000) if self.answered else None,
            "aht_seconds": self.handle_ms / (self.handled * 1000) if self.handled else None,
            "longest_wait_seconds": None if self.longest_ms is None else self.longest_ms / 1000,
            "service_level": self.answered_within_threshold / offered if offered else None,
            "abandon_rate": (self.abandoned - self.short_abandoned) / offered if offered else None,
        }


class Summary:
    """Fed every record sent (`add`), in any order; reads at any time, so also after Ctrl-C."""

    def __init__(
        self, *, interval_ms: int = 15 * 60_000, sla: SlaConfig | None = None, seed: int = 0
    ) -> None:
        self.interval_ms = interval_ms
        self.sla = sla if sla is not None else SlaConfig()
        self.seed = seed
        self.records = 0
        self.events = 0  # correct first sends: each event of the contract once
        self.faults: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.calls: dict[str, int] = {}  # arrivals by the queue they called
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.intervals: dict[tuple[str, int], Tally] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.agent_events = 0  # records sent to agent-events (in `records`, not in `events`)
        self._agent_facts: dict[str, list[AgentFact]] = {}

    def add(self, record: Record) -> None:
        self.records += 1
        if record.topic == AGENT_TOPIC:
            self.agent_events += 1
            self._add_agent_facts(record)
            return
        if record.fault in MALFORMED_KINDS:
            self.faults[record.fault] += 1
            return
        if record.fault is not None:
            self.faults[record.fault] += 1
        if record.fault != "duplicate":
            self.events += 1
        if self.first_ts is None or record.ts < self.first_ts:
            self.first_ts = record.ts
        if self.last_ts is None or record.ts > self.last_ts:
            self.last_ts = record.ts
        self._add_agent_facts(record)
        for fact in record.facts:
            if not isinstance(fact, AgentFact):
                self._fact(fact.kind, fact.queue, fact.ts, fact.a, fact.b)

    def _add_agent_facts(self, record: Record) -> None:
        for fact in record.facts:
            if isinstance(fact, AgentFact):
                self._agent_facts.setdefault(fact.agent_id, []).append(fact)

    def _tally(self, queue: str, ts: int) -> Tally:
        key = (queue, ts - ts % self.interval_ms)
        tally = self.intervals.get(key)
        if tally is None:
            tally = self.intervals[key] = Tally()
        return tally

    def _fact(self, kind: str, queue: str, ts: int, a: int, b: int) -> None:
        sla = self.sla.for_queue(queue)
        if kind == "call":
            self.calls[queue] = self.calls.get(queue, 0) + 1
        elif kind == "answered":
            tally = self._tally(queue, ts)
            tally.answered += 1
            tally.answered_within_threshold += a <= sla.service_level_ms
            tally.answer_ms += a
            tally.wait_ms += b
            tally.wait(a)
            self.outcomes["answered"] += 1
        elif kind == "abandoned":
            tally = self._tally(queue, ts)
            short = a < sla.short_abandon_ms
            tally.abandoned += 1
            tally.short_abandoned += short
            tally.wait(a)
            self.outcomes["abandoned"] += 1
            self.outcomes["short_abandoned"] += short
        elif kind == "flowed_out":
            self._tally(queue, ts).flowed_out += 1
        elif kind == "voicemail":
            self.outcomes["flowed_out"] += 1
        elif kind == "ivr_only":
            self.outcomes["ivr_only"] += 1
        elif kind == "handled":
            tally = self._tally(queue, ts)
            tally.handled += 1
            tally.handle_ms += a
        else:
            raise ValueError(f"unknown fact {kind!r}")

    # -- reading ---------------------------------------------------------------------------

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def in_progress(self) -> int:
        """Calls whose outcome was not sent yet: none once the run ended or was stopped (a stop
        closes the center); some only while it runs, or after a failed send."""
        decided = sum(self.outcomes[k] for k in ("answered", "abandoned", "flowed_out", "ivr_only"))
        return self.total_calls - decided

    def queue_names(self) -> list[str]:
        return sorted(set(self.calls) | {queue for queue, _ in self.intervals})

    def per_queue(self) -> dict[str, dict[str, Any]]:
        totals: dict[str, Tally] = {queue: Tally() for queue in self.queue_names()}
        for (queue, _), tally in self.intervals.items():
            totals[queue].add(tally)
        return {
            queue: {"calls": self.calls.get(queue, 0), **tally.figures()}
            for queue, tally in totals.items()
        }

    def interval_records(self) -> list[dict[str, Any]]:
        """Per queue and interval, the figures `queue-metrics` must hold once all is closed."""
        out = []
        for (queue, start), tally in sorted(self.intervals.items(), key=lambda kv: kv[0][::-1]):
            out.append(
                {
                    "queue": queue,
                    "interval_start": _iso(start),
                    "interval_end": _iso(start + self.interval_ms),
                    **tally.figures(),
                    "service_level_seconds": _number(
                        self.sla.for_queue(queue).service_level_seconds
                    ),
                }
            )
        return out

    # -- agents ----------------------------------------------------------------------------

    def agent_tallies(
        self,
    ) -> tuple[dict[tuple[str, int], AgentTally], dict[tuple[str, int], AgentTally]]:
        """Per (queue, interval start) and per (agent, interval start): the agents' time, split
        at interval boundaries, answers in the interval of the answer, handle time in that of
        the end of the work."""
        queues: dict[tuple[str, int], AgentTally] = {}
        agents: dict[tuple[str, int], AgentTally] = {}
        step = self.interval_ms
        for agent_id, facts in self._agent_facts.items():
            ordered = sorted(facts, key=lambda f: (f.ts, f.seq))
            states = [f for f in ordered if f.kind == "state"]
            for fact, following in itertools.pairwise(states):
                if fact.state == "logged_out":
                    continue
                begin, end = fact.ts, following.ts
                while begin < end:
                    start = begin - begin % step
                    until = min(end, start + step)
                    ms = until - begin
                    agent = agents.setdefault((agent_id, start), AgentTally())
                    agent.count(fact.state, fact.reason, ms)
                    for queue in fact.queues:
                        queues.setdefault((queue, start), AgentTally()).count(
                            fact.state, fact.reason, ms
                        )
                    begin = until
            for fact in ordered:
                if fact.kind == "answered":
                    agents.setdefault(
                        (agent_id, fact.ts - fact.ts % step), AgentTally()
                    ).answered += 1
                elif fact.kind == "handled":
                    tally = agents.setdefault((agent_id, fact.ts - fact.ts % step), AgentTally())
                    tally.handled += 1
                    tally.handle_ms += fact.handle_ms
        return queues, agents

    def queue_agent_records(self) -> list[dict[str, Any]]:
        """Per queue and interval with agents: what `callcenter_agents` time adds up to, and the
        `occupancy` and `agents_staffed_avg` of `queue-metrics`."""
        queues, _ = self.agent_tallies()
        return [
            {
                "queue": queue,
                "interval_start": _iso(start),
                "interval_end": _iso(start + self.interval_ms),
                **tally.seconds(),
                "occupancy": tally.occupancy,
                "agents_staffed_avg": tally.staffed_ms / self.interval_ms,
            }
            for (queue, start), tally in sorted(queues.items(), key=lambda kv: kv[0][::-1])
        ]

    def agent_records(self) -> list[dict[str, Any]]:
        """Per agent and interval with staffed time: the `agent-metrics` figures (contract §6)."""
        _, agents = self.agent_tallies()
        out = []
        for (agent_id, start), tally in sorted(agents.items(), key=lambda kv: kv[0][::-1]):
            if not tally.staffed_ms:
                continue
            out.append(
                {
                    "agent_id": agent_id,
                    "interval_start": _iso(start),
                    "interval_end": _iso(start + self.interval_ms),
                    "answered": tally.answered,
                    "handle_seconds_sum": tally.handle_ms / 1000,
                    "aht_seconds": (
                        tally.handle_ms / (tally.handled * 1000) if tally.handled else None
                    ),
                    **tally.seconds(),
                    "not_ready_reasons": {
                        reason: tally.reasons[reason] / 1000 for reason in sorted(tally.reasons)
                    },
                    "occupancy": tally.occupancy,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "first_event_at": None if self.first_ts is None else _iso(self.first_ts),
            "last_event_at": None if self.last_ts is None else _iso(self.last_ts),
            "first_event_ms": self.first_ts,
            "last_event_ms": self.last_ts,
            "records": self.records,
            "events": self.events,
            "calls": self.total_calls,
            **self.outcomes,
            "in_progress": self.in_progress,
            "faults": dict(self.faults),
            "queues": self.per_queue(),
            "interval_minutes": self.interval_ms // 60_000,
            "intervals": self.interval_records(),
            "agent_events": self.agent_events,
            "agents": len(self._agent_facts),
            "queue_agent_intervals": self.queue_agent_records(),
            "agent_intervals": self.agent_records(),
        }

    def render(self) -> str:
        """A few lines for the terminal."""
        o = self.outcomes
        lines = [
            f"{self.total_calls} calls: {o['answered']} answered, {o['abandoned']} abandoned "
            f"({o['short_abandoned']} short), {o['flowed_out']} flowed out (voicemail), "
            f"{o['ivr_only']} IVR-only, {self.in_progress} in progress",
            f"{self.events} events in {self.records} records"
            + (f", {_iso(self.first_ts)} .. {_iso(self.last_ts)}" if self.first_ts else ""),
            f"{'queue':<12}{'calls':>7}{'offered':>9}{'answered':>10}{'abandoned':>11}"
            f"{'short':>7}{'flowed':>8}{'ASA s':>8}{'SL':>7}{'aband%':>8}",
        ]
        for queue, f in self.per_queue().items():
            asa = "-" if f["asa_seconds"] is None else f"{f['asa_seconds']:.1f}"
            sl = "-" if f["service_level"] is None else f"{f['service_level']:.0%}"
            rate = "-" if f["abandon_rate"] is None else f"{f['abandon_rate']:.1%}"
            lines.append(
                f"{queue:<12}{f['calls']:>7}{f['offered']:>9}{f['answered']:>10}"
                f"{f['abandoned']:>11}{f['short_abandoned']:>7}{f['flowed_out']:>8}"
                f"{asa:>8}{sl:>7}{rate:>8}"
            )
        if self.agent_events:
            lines.append(f"{self.agent_events} agent events of {len(self._agent_facts)} agents")
        faults = ", ".join(f"{n} {kind}" for kind, n in self.faults.items() if n)
        lines.append(f"faults injected: {faults or 'none'}")
        return "\n".join(lines)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    instant = datetime.fromtimestamp(ms // 1000, UTC)
    text = f"{instant:%Y-%m-%dT%H:%M:%S}"
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"
