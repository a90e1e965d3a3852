"""The discrete-event model: callers, queues and agents driven by one heap of timed actions.

Why a model rather than random events: a real feed's events hang together (an agent busy with
one call cannot answer another; a long queue makes callers hang up), and the figures a user
checks the pipeline against only mean something if they come from such a process.

Time is simulated epoch milliseconds, never the wall clock. Two `random.Random` streams are
seeded from the seed: one for the calls, one for the faults, so `--faults` changes how the
events are sent, never which calls happen. Every record carries the facts its event
establishes (an answer with its speed, an abandon...), so a summary fed the records actually
sent knows the correct figures of what the pipeline received.

A run stopped early (`Simulation.close`) closes the center at a simulated instant: every call
still in progress ends then with the events a real one would send, so none is left open
downstream (a caller left "waiting" would age in the engine until its TTL evicts it).

Agents (contract §6) go to `agent-events`: they log in and out with the staffing plan (a
breach logs them out; a busy one leaves after the call's work), are not ready during breaks and
after an offer they let ring out, and log out when the run ends or is closed. Agent events
change no call: they use no random number, and breaks and shared queues are off unless
configured, so the call events of a seed are the same with or without them. They are sent
clean (faults are for call events). Each state change an agent's events and calls show
downstream rides as an `AgentFact` on the record that shows it: the model's own account of
the agents, for the summary.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from stream_app.simulator.config import Break, QueueConfig, SimConfig

# Fact kinds: a call arrived; answered / abandoned (outcome and figures); flowed_out (one
# queue_left); voicemail (outcome flowed_out: hung up after leaving a queue); ivr_only; handled.
FACT_KINDS = ("call", "answered", "abandoned", "flowed_out", "voicemail", "ivr_only", "handled")
CALL_TOPIC, AGENT_TOPIC = "call-events", "agent-events"
MALFORMED_KINDS = ("invalid_json", "missing_field", "unknown_type")
FAULT_KINDS = ("duplicate", "reordered", "late", *MALFORMED_KINDS)

RESTAFF_EVERY_MS = 15 * 60_000
REORDER_HOLD_MS = 10_000  # a reordered event waits at most this long for the call's next one
DUPLICATE_DELAY_MS = 20_000  # a retry follows the original within this
UNKNOWN_TYPES = ("call_parked", "hold_started", "transfer_requested")


@dataclass(frozen=True, slots=True)
class Fact:
    """What one event establishes. `a`: answer speed, time to abandon or handle time (ms);
    `b`: queue wait (ms) of an answer."""

    kind: str
    queue: str
    ts: int
    a: int = 0
    b: int = 0


@dataclass(frozen=True, slots=True)
class AgentFact:
    """What one record shows of one agent. `kind` "state": from `ts` on the agent is in
    `state` (contract §6, as the events sent show it), serving `queues`, not ready for `reason`;
    "answered": the agent answered a call; "handled": finished one's work, `handle_ms` long.
    `seq` orders facts of one `ts`: the last one holds."""

    kind: str
    agent_id: str
    ts: int
    seq: int
    state: str = ""
    queues: tuple[str, ...] = ()
    reason: str | None = None
    handle_ms: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the simulated source sends it."""

    key: str  # the call_id, or the agent_id (malformed copies too: a broker needs a key)
    value: bytes
    ts: int  # the event's time, epoch ms
    emit_at: int  # when it is sent, in simulated time (>= ts; later for held-back faults)
    fault: str | None = None  # None for a correct first send, else one of FAULT_KINDS
    facts: tuple[Fact | AgentFact, ...] = ()  # only on correct first sends
    topic: str = CALL_TOPIC  # or AGENT_TOPIC


# Call and agent states (WRAPUP: the caller hung up, the agent does the after-call work).
IVR, WAITING, RINGING, TALKING, WRAPUP, VOICEMAIL, DONE = (
    "ivr",
    "waiting",
    "ringing",
    "talking",
    "wrapup",
    "vm",
    "done",
)
OFF, IDLE, BUSY, PAUSED = "off", "idle", "busy", "paused"


class _Agent:
    __slots__ = (
        "agent_id",
        "break_due",
        "index",
        "numbered",
        "queue",
        "reason",
        "rings",
        "serves",
        "session",
        "shown",
        "state",
        "talk_queue",
        "wrap_queue",
    )

    def __init__(self, queue: _Queue, index: int) -> None:
        self.queue = queue
        self.index = index
        self.agent_id = f"{queue.name}-{index + 1:02d}"
        self.state = OFF
        self.serves: tuple[str, ...] = (queue.name,)  # own queue first
        self.session = 0  # logins so far: a break timer of an earlier session is ignored
        self.numbered = 0  # agent events so far: the next event_id suffix
        self.reason: str | None = None  # why PAUSED
        self.break_due: Break | None = None  # a break that came while busy
        # What the events sent show (contract §6): rings by call_id (their queue), the queue
        # of the call talked and of the call wrapped up, and the last state reported.
        self.rings: dict[str, str] = {}
        self.talk_queue: str | None = None
        self.wrap_queue: str | None = None
        self.shown: tuple[str, str | None, tuple[str, ...]] = ("logged_out", None, ())


class _Call:
    __slots__ = (
        "agent",
        "answer_queue",
        "answer_ts",
        "call_id",
        "entry_ts",
        "held",
        "left_at",
        "line_start",
        "numbered",
        "offer_ts",
        "queue",
        "ring",
        "ring_shown",
        "stale",
        "state",
        "timed_out",
        "visit",
    )

    def __init__(self, call_id: str, queue: _Queue) -> None:
        self.call_id = call_id
        self.queue = queue
        self.state = IVR
        self.numbered = 0  # events so far: the next event_id suffix
        self.visit = 0  # queue visits so far
        self.entry_ts = 0  # queue_entered of the current visit
        self.line_start: int | None = None  # contract §2: ivr_ended, else first queue_entered
        self.ring = 0  # current offer number: a stale ring end is ignored
        self.agent: _Agent | None = None
        self.offer_ts = 0
        self.timed_out = False  # the visit timed out while an agent rang: leave after the ring
        self.answer_ts = 0
        self.answer_queue: _Queue | None = None
        self.held: tuple[int, Record] | None = None  # (outbox seq, record) held for a reorder
        # An agent whose ring the events sent still show: downstream a ring ends only at the
        # call's next event (an offer elsewhere, an abandon...), not when the agent lets it go.
        self.stale: _Agent | None = None
        self.ring_shown = False  # the current ring shows downstream (see `_offer`)
        self.left_at: int | None = None  # ts of the call's latest queue_left


class _Queue:
    __slots__ = ("agents", "arriving", "breaches", "config", "idle", "name", "profile", "waiting")

    def __init__(self, name: str, config: QueueConfig, profile: tuple[float, ...]) -> None:
        self.name = name
        self.config = config
        self.profile = profile
        self.agents: list[_Agent] = []
        self.idle: deque[_Agent] = deque()  # longest idle first
        self.waiting: deque[_Call] = deque()  # first come, first served
        self.breaches: list[tuple[int, int, int]] = []  # (from ms, until ms, agents)
        self.arriving = config.arrivals_per_hour > 0 and max(profile) > 0


class Simulation:
    """A call center from `start_ms`; arrivals stop after `duration_ms` (None: never) and the
    calls already in the center run to their end, unless `close` stops the run earlier."""

    def __init__(
        self,
        config: SimConfig,
        *,
        seed: int,
        start_ms: int,
        duration_ms: int | None = None,
        faults: bool = False,
    ) -> None:
        self.config = config
        self.seed = seed
        self.start_ms = start_ms
        self.end_ms = None if duration_ms is None else start_ms + duration_ms
        self.faults = faults
        self.now = start_ms
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(f"faults:{seed}")
        self._zone = config.zone
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._outbox: list[tuple[int, int, Record]] = []
        self._cancelled: set[int] = set()
        self._seq = itertools.count()
        self._calls = 0
        self._active = 0
        self._open: dict[str, _Call] = {}  # calls in progress, in order of arrival
        self.closed_at: int | None = None  # set by `close`
        self._hours: dict[int, int] = {}  # hour start (ms) -> local hour of day
        self._id_prefix = f"sim{seed}-{start_ms // 1000}"
        self._fact_seq = itertools.count()
        self.queues = {
            name: _Queue(name, queue, config.profile_of(name))
            for name, queue in config.queues.items()
        }
        for breach in config.breaches:
            begin = start_ms + round(breach.after_minutes * 60_000)
            until = begin + round(breach.minutes * 60_000)
            self.queues[breach.queue].breaches.append((begin, until, breach.agents))
            self._at(begin, self._restaff)
            self._at(until, self._restaff)
        self._tick()
        for queue in self.queues.values():
            self._schedule_arrival(queue, start_ms)

    # -- running -------------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every record in the order the source sends it (by `emit_at`), lazily: forever when
        the run has no duration."""
        return (step for step in self.steps() if isinstance(step, Record))

    def steps(self) -> Iterator[Record | int]:
        """`records`, and before the model moves past the latest instant yielded so far (a
        record's `emit_at` or such an int), the simulated instant it moves to, as an int.

        A paced sender waits for each step to be due, so the model never runs ahead of the
        simulated time the sender has reached: stopped between two steps, the model's state is
        the center's at that time, and `close` can end the calls then. Between steps the
        caller may `close` the run; the steps then end.
        """
        reached = self.now
        while True:  # one step per turn: after a yield, anything may have changed
            next_time = None if self._finished() or not self._heap else self._heap[0][0]
            if self._outbox and (next_time is None or self._outbox[0][0] <= next_time):
                _, seq, record = heapq.heappop(self._outbox)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
                reached = max(reached, record.emit_at)
                yield record
                continue
            if next_time is None:
                if self._log_out_all():
                    continue  # the center closes: its agents' logouts go out first
                return
            if next_time > reached:
                reached = next_time
                yield next_time
                continue
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            action()

    def pending(self) -> list[Record]:
        """Records made but not yet due (held back by a fault, or due at the next instant)."""
        live = [entry for entry in self._outbox if entry[1] not in self._cancelled]
        return [record for _, _, record in sorted(live)]

    def close(self, at_ms: int | None = None) -> list[Record]:
        """Close the center at simulated `at_ms` (default: the model's current time, and never
        before it): no call arrives any more and every call in progress ends at that instant.

        Returns everything not sent yet, to send now, in this order: the records already made
        but held back by a fault (a late or reordered event, a retry: sent now, `emit_at`
        `at_ms`), then the closing events, which carry their facts and no fault:

        - in the IVR (or being routed to a queue): `call_ended` (IVR-only);
        - waiting in a queue or ringing at an agent: `call_abandoned`, `call_ended` (the
          caller hangs up; the ringing agent is released);
        - talking to an agent: `call_ended`, then `wrapup_ended` at the same instant (the
          after-call work is cut short: nothing is sent after the stop);
        - in after-call work: `wrapup_ended`;
        - leaving a voicemail after a queue timeout: `call_ended` (flowed out).

        The run is over afterwards: `steps` and `records` yield nothing more.
        """
        at = self.now if at_ms is None else at_ms
        if at < self.now:
            raise ValueError(f"cannot close at {at}: the model is already at {self.now}")
        self.now = at
        self.closed_at = at  # from here on, events are sent clean (no fault)
        self._heap.clear()
        for queue in self.queues.values():
            queue.arriving = False
        held = [replace(record, emit_at=at) for record in self.pending()]
        self._outbox.clear()
        self._cancelled.clear()
        for call in list(self._open.values()):
            self._close_call(call)
        self._log_out_all()
        closing = [record for _, _, record in sorted(self._outbox)]
        self._outbox.clear()
        for queue in self.queues.values():
            queue.waiting.clear()
        return held + closing

    def _close_call(self, call: _Call) -> None:
        if call.state == IVR:
            fact = Fact("ivr_only", call.queue.name, self.now)
            self._emit(call, "call_ended", facts=(fact,))
            self._finish(call)
        elif call.state in (WAITING, RINGING):
            call.ring += 1  # a ring stops (the agent is released); a stale ring end is ignored
            if call.agent is not None:
                call.stale = call.agent  # its ring ends at the hang-up
            call.agent = None
            self._hang_up(call)
        elif call.state == TALKING:
            assert call.agent is not None
            self._end_talk(call, call.agent)
            self._wrapup_end(call, call.agent)
        elif call.state == WRAPUP:
            assert call.agent is not None
            self._wrapup_end(call, call.agent)
        else:
            assert call.state == VOICEMAIL, call.state
            self._voicemail_end(call)

    def _finished(self) -> bool:
        arriving = any(q.arriving for q in self.queues.values())
        return not arriving and self._active == 0

    def _at(self, when: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), action))

    # -- staffing ------------------------------------------------------------------------------

    def _local_hour(self, ts: int) -> int:
        hour_start = ts - ts % 3_600_000
        cached = self._hours.get(hour_start)
        if cached is not None:
            return cached
        local = datetime.fromtimestamp(hour_start / 1000, self._zone)
        offset = local.utcoffset()
        if offset is not None and offset.total_seconds() % 3600 == 0:
            # A whole-hour offset (DST changes on a UTC hour): one local hour all UTC hour long.
            self._hours[hour_start] = local.hour
            return local.hour
        return datetime.fromtimestamp(ts / 1000, self._zone).hour

    def _target(self, queue: _Queue) -> int:
        for begin, until, agents in reversed(queue.breaches):
            if begin <= self.now < until:
                return agents
        return queue.config.agents_at(self._local_hour(self.now))

    def _restaff(self) -> None:
        """Bring agents on duty or send idle ones home; busy ones leave after their call."""
        for queue in self.queues.values():
            target = self._target(queue)
            for agent in [a for a in queue.idle if a.queue is queue and a.index >= target]:
                self._log_out(agent)
            serves = queue.config.serves_at(queue.name, self._local_hour(self.now))
            for agent in queue.agents:
                if agent.state != OFF and agent.serves != serves:
                    self._change_queues(agent, serves)
            while len(queue.agents) < target:
                queue.agents.append(_Agent(queue, len(queue.agents)))
            for agent in queue.agents[:target]:
                if agent.state == OFF:
                    self._log_in(agent, serves)
            for name in serves:
                self._dispatch(self.queues[name])

    def _log_in(self, agent: _Agent, serves: tuple[str, ...]) -> None:
        agent.state = IDLE
        agent.serves = serves
        agent.session += 1
        self._emit_agent(agent, "agent_logged_in", queues=serves)
        self._idle(agent)
        for index, brk in enumerate(agent.queue.config.breaks):
            offset = brk.after_minutes + (agent.index % 4) * brk.minutes
            self._at(
                self.now + round(offset * 60_000),
                partial(self._break_due, agent, agent.session, index),
            )

    def _log_out(self, agent: _Agent) -> None:
        self._unidle(agent)
        agent.state = OFF
        agent.reason = None
        agent.break_due = None
        self._emit_agent(agent, "agent_logged_out")

    def _log_out_all(self) -> bool:
        """The center closes: every agent still logged in logs out now. False when none was."""
        on = [a for q in self.queues.values() for a in q.agents if a.state != OFF]
        for agent in on:
            self._log_out(agent)
        return bool(on)

    def _change_queues(self, agent: _Agent, serves: tuple[str, ...]) -> None:
        idle = agent.state == IDLE
        if idle:
            self._unidle(agent)
        agent.serves = serves
        self._emit_agent(agent, "agent_queues", queues=serves)
        if idle:
            self._idle(agent)
            for name in serves[1:]:
                self._dispatch(self.queues[name])

    def _idle(self, agent: _Agent) -> None:
        for name in agent.serves:
            self.queues[name].idle.append(agent)

    def _unidle(self, agent: _Agent) -> None:
        """Off every idle list it is on (its own queue's and those it also serves)."""
        for name in agent.serves:
            idle = self.queues[name].idle
            if agent in idle:
                idle.remove(agent)

    def _break_due(self, agent: _Agent, session: int, index: int) -> None:
        if agent.session != session or agent.state == OFF:
            return
        brk = agent.queue.config.breaks[index]
        if agent.state == IDLE:
            self._unidle(agent)
            self._take_break(agent, brk)
        else:
            agent.break_due = brk  # after the call's work (or the pause) ends

    def _take_break(self, agent: _Agent, brk: Break) -> None:
        agent.state = PAUSED
        agent.reason = brk.reason
        self._emit_agent(agent, "agent_not_ready", reason=brk.reason)
        self._at(self.now + round(brk.minutes * 60_000), partial(self._agent_free, agent))

    def _tick(self) -> None:
        """Staffing by the hour, read every quarter hour (any zone's hours start on one)."""
        self._restaff()
        self._at(self.now - self.now % RESTAFF_EVERY_MS + RESTAFF_EVERY_MS, self._tick)

    def _agent_free(self, agent: _Agent) -> None:
        """After a call's work, a ring given up by the caller, a pause or a break."""
        queue = agent.queue
        if agent.index >= self._target(queue):
            self._log_out(agent)
            return
        if agent.break_due is not None:
            brk, agent.break_due = agent.break_due, None
            self._take_break(agent, brk)
            return
        paused = agent.state == PAUSED
        agent.state = IDLE
        agent.reason = None
        if paused:
            self._emit_agent(agent, "agent_ready")
        self._idle(agent)
        for name in agent.serves:
            self._dispatch(self.queues[name])

    # -- arrivals (non-homogeneous Poisson by thinning) ----------------------------------------

    def _rate_per_ms(self, queue: _Queue, ts: int) -> float:
        return queue.config.arrivals_per_hour * queue.profile[self._local_hour(ts)] / 3_600_000

    def _schedule_arrival(self, queue: _Queue, after: int) -> None:
        if not queue.arriving:
            return
        peak = queue.config.arrivals_per_hour * max(queue.profile) / 3_600_000
        when = float(after)
        while True:
            when += self._rng.expovariate(peak)
            ts = math.ceil(when)
            if self.end_ms is not None and ts >= self.end_ms:
                queue.arriving = False
                return
            if self._rng.random() * peak < self._rate_per_ms(queue, ts):
                self._at(ts, partial(self._arrive, queue))
                return

    def _arrive(self, queue: _Queue) -> None:
        self._calls += 1
        self._active += 1
        call = _Call(f"{self._id_prefix}-{self._calls}", queue)
        self._open[call.call_id] = call
        config = queue.config
        self._emit(
            call, "call_started", queue=queue.name, facts=(Fact("call", queue.name, self.now),)
        )
        ivr_only = self._rng.random() < config.ivr_only
        self._at(
            self.now + config.ivr_seconds.sample_ms(self._rng),
            partial(self._ivr_end, call, ivr_only),
        )
        self._schedule_arrival(queue, self.now)

    # -- a call's life ---------------------------------------------------------------------

    def _ivr_end(self, call: _Call, ivr_only: bool) -> None:
        queue = call.queue
        if queue.config.emit_ivr_ended:
            call.line_start = self.now
            self._emit(call, "ivr_ended")
        if ivr_only:
            self._emit(call, "call_ended", facts=(Fact("ivr_only", queue.name, self.now),))
            self._finish(call)
            return
        routing = queue.config.routing_seconds.sample_ms(self._rng)
        self._at(self.now + routing, partial(self._enter, call, queue))

    def _enter(self, call: _Call, queue: _Queue) -> None:
        first = call.visit == 0
        call.visit += 1
        call.queue = queue
        call.entry_ts = self.now
        call.state = WAITING
        call.timed_out = False
        if call.line_start is None:
            call.line_start = self.now
        self._emit(call, "queue_entered", queue=queue.name)
        config = queue.config
        if first:  # patience runs from the first queue: the caller does not start over
            short = self._rng.random() < config.short_abandon_share
            dist = config.short_patience_seconds if short else config.patience_seconds
            self._at(self.now + dist.sample_ms(self._rng), partial(self._give_up, call))
        if config.timeout_seconds is not None:
            timeout = round(config.timeout_seconds * 1000)
            self._at(self.now + timeout, partial(self._timeout, call, call.visit))
        queue.waiting.append(call)
        self._dispatch(queue)

    def _dispatch(self, queue: _Queue) -> None:
        while queue.waiting and queue.idle:
            call = queue.waiting.popleft()
            agent = queue.idle.popleft()
            if len(agent.serves) > 1:
                self._unidle(agent)
            self._offer(call, agent)

    def _offer(self, call: _Call, agent: _Agent) -> None:
        config = call.queue.config
        call.state = RINGING
        call.agent = agent
        call.ring += 1
        call.offer_ts = self.now
        agent.state = BUSY
        # Downstream a ring shows from its agent_offered to the call's next event; events of
        # one instant count in type order, so a queue_left at this very instant (an overflow
        # offered at once) comes after the offer there and ends that ring as it starts.
        call.ring_shown = config.emit_offers and call.left_at != self.now
        if call.ring_shown:
            if call.stale is agent:  # offered again to the agent it rang at: one ring goes on
                call.stale = None
            agent.rings[call.call_id] = call.queue.name
        if config.emit_offers:
            self._emit(
                call, "agent_offered", queue=call.queue.name, agent=agent.agent_id, agents=(agent,)
            )
        answers = self._rng.random() >= config.no_answer
        if answers:  # at least 1 ms: an answer never shares the instant of a queue change
            ring = max(1, config.ring_seconds.sample_ms(self._rng))
        else:
            ring = round(config.no_answer_ring_seconds * 1000)
        self._at(self.now + ring, partial(self._ring_end, call, agent, call.ring, answers))

    def _ring_end(self, call: _Call, agent: _Agent, ring: int, answers: bool) -> None:
        if call.ring != ring or call.state != RINGING:
            return  # the caller hung up while it rang (the agent was freed then)
        queue = call.queue
        config = queue.config
        if answers:
            assert call.line_start is not None
            speed = self.now - call.line_start
            wait = (call.offer_ts if config.emit_offers else self.now) - call.entry_ts
            call.state = TALKING
            call.answer_ts = self.now
            call.answer_queue = queue
            fact = Fact("answered", queue.name, self.now, speed, wait)
            agent.rings.pop(call.call_id, None)
            agent.talk_queue = queue.name
            answered = AgentFact("answered", agent.agent_id, self.now, next(self._fact_seq))
            self._emit(
                call,
                "call_answered",
                queue=queue.name,
                agent=agent.agent_id,
                facts=(fact, answered),
                agents=(agent,),
            )
            talk = config.talk_seconds.sample_ms(self._rng)
            self._at(self.now + talk, partial(self._talk_end, call, agent))
            return
        # Ring, no answer (Asterisk's RINGNOANSWER): the agent is not ready for a while and
        # the caller keeps its place at the head of the queue.
        agent.state = PAUSED
        agent.reason = "no_answer"
        if call.ring_shown:
            call.stale = agent
        self._emit_agent(agent, "agent_not_ready", reason="no_answer")
        pause = round(config.no_answer_pause_seconds * 1000)
        self._at(self.now + pause, partial(self._agent_free, agent))
        call.state = WAITING
        call.agent = None
        if call.timed_out:
            self._leave(call)
        else:
            queue.waiting.appendleft(call)
            self._dispatch(queue)

    def _give_up(self, call: _Call) -> None:
        if call.state not in (WAITING, RINGING):
            return
        queue = call.queue
        agent = call.agent
        if call.state == RINGING:
            call.ring += 1  # Asterisk's RINGCANCELED: the ring stops, the agent is free
            call.stale = agent  # its ring ends at the hang-up
            call.agent = None
        else:
            queue.waiting.remove(call)
        self._hang_up(call)
        if agent is not None:
            self._agent_free(agent)

    def _hang_up(self, call: _Call) -> None:
        """The caller hangs up while waiting (or ringing) in its queue: an abandon."""
        queue = call.queue
        fact = Fact("abandoned", queue.name, self.now, self.now - call.entry_ts)
        self._emit(call, "call_abandoned", queue=queue.name, facts=(fact,))
        self._emit(call, "call_ended")
        self._finish(call)

    def _timeout(self, call: _Call, visit: int) -> None:
        if call.visit != visit or call.state not in (WAITING, RINGING):
            return
        if call.state == RINGING:
            call.timed_out = True  # leaves if this ring goes unanswered
            return
        call.queue.waiting.remove(call)
        self._leave(call)

    def _leave(self, call: _Call) -> None:
        queue = call.queue
        fact = Fact("flowed_out", queue.name, self.now)
        call.left_at = self.now
        self._emit(call, "queue_left", queue=queue.name, reason="timeout", facts=(fact,))
        if queue.config.overflow is not None:
            self._enter(call, self.queues[queue.config.overflow])
            return
        call.state = VOICEMAIL
        voicemail = queue.config.voicemail_seconds.sample_ms(self._rng)
        self._at(self.now + voicemail, partial(self._voicemail_end, call))

    def _voicemail_end(self, call: _Call) -> None:
        self._emit(call, "call_ended", facts=(Fact("voicemail", call.queue.name, self.now),))
        self._finish(call)

    def _end_talk(self, call: _Call, agent: _Agent) -> None:
        assert call.answer_queue is not None
        agent.talk_queue = None
        agent.wrap_queue = call.answer_queue.name
        self._emit(call, "call_ended", agent=agent.agent_id, agents=(agent,))

    def _talk_end(self, call: _Call, agent: _Agent) -> None:
        self._end_talk(call, agent)
        call.state = WRAPUP
        assert call.answer_queue is not None
        wrapup = call.answer_queue.config.wrapup_seconds.sample_ms(self._rng)
        self._at(self.now + wrapup, partial(self._wrapup_end, call, agent))

    def _wrapup_end(self, call: _Call, agent: _Agent) -> None:
        assert call.answer_queue is not None
        queue = call.answer_queue.name
        fact = Fact("handled", queue, self.now, self.now - call.answer_ts)
        agent.wrap_queue = None
        handled = AgentFact(
            "handled",
            agent.agent_id,
            self.now,
            next(self._fact_seq),
            handle_ms=self.now - call.answer_ts,
        )
        self._emit(
            call,
            "wrapup_ended",
            queue=queue,
            agent=agent.agent_id,
            facts=(fact, handled),
            agents=(agent,),
        )
        self._finish(call)
        if self.closed_at is None:
            self._agent_free(agent)

    def _finish(self, call: _Call) -> None:
        call.state = DONE
        self._active -= 1
        del self._open[call.call_id]

    # -- events and faults ---------------------------------------------------------------------

    def _emit(
        self,
        call: _Call,
        type_: str,
        *,
        queue: str | None = None,
        agent: str | None = None,
        reason: str | None = None,
        facts: tuple[Fact | AgentFact, ...] = (),
        agents: tuple[_Agent, ...] = (),
    ) -> None:
        """Send a call event; `agents`: those whose state it shows changed."""
        if call.stale is not None:  # this event ends the ring the agent let go
            call.stale.rings.pop(call.call_id, None)
            call.stale.wrap_queue = None  # an instant of another call: it ends after-call work
            agents = (call.stale, *agents)
            call.stale = None
        for changed in agents:
            facts += self._observe(changed)
        call.numbered += 1
        event: dict[str, Any] = {
            "event_id": f"{call.call_id}-{call.numbered}",
            "call_id": call.call_id,
            "type": type_,
            "ts": self.now if self.config.ts_format == "epoch_ms" else _rfc3339(self.now),
        }
        if queue is not None:
            event["queue"] = queue
        if agent is not None:
            event["agent_id"] = agent
        if reason is not None:
            event["reason"] = reason
        record = Record(call.call_id, orjson.dumps(event), self.now, self.now, None, facts)
        if self.faults and self.closed_at is None:  # the closing events are sent clean
            self._send_with_faults(call, record, event)
        else:
            self._push(record)

    def _emit_agent(
        self,
        agent: _Agent,
        type_: str,
        *,
        queues: tuple[str, ...] | None = None,
        reason: str | None = None,
    ) -> None:
        """Send an agent event (contract §6), clean: faults are for call events."""
        agent.numbered += 1
        event: dict[str, Any] = {
            "event_id": f"{self._id_prefix}-{agent.agent_id}-{agent.numbered}",
            "agent_id": agent.agent_id,
            "type": type_,
            "ts": self.now if self.config.ts_format == "epoch_ms" else _rfc3339(self.now),
        }
        if queues is not None:
            event["queues"] = list(queues)
        if reason is not None:
            event["reason"] = reason
        value = orjson.dumps(event)
        agent.wrap_queue = None  # the agent's next event ends their after-call work (contract §6)
        facts = self._observe(agent)
        self._push(Record(agent.agent_id, value, self.now, self.now, None, facts, AGENT_TOPIC))

    def _observe(self, agent: _Agent) -> tuple[AgentFact, ...]:
        """The agent's state as the events sent so far show it (contract §6: a call's activity
        wins over the state the agent set); a fact when it changed."""
        if agent.state == OFF:
            state, reason = "logged_out", None
        elif agent.state == PAUSED:
            state, reason = "not_ready", agent.reason
        else:
            state, reason = "available", None
        queues = set() if state == "logged_out" else set(agent.serves)
        queues.update(agent.rings.values())
        for busy in (agent.talk_queue, agent.wrap_queue):
            if busy is not None:
                queues.add(busy)
        if agent.talk_queue is not None:
            state, reason = "on_call", None
        elif agent.rings:
            state, reason = "ringing", None
        elif agent.wrap_queue is not None:
            state, reason = "after_call_work", None
        shown = (state, reason, tuple(sorted(queues)))
        if shown == agent.shown:
            return ()
        agent.shown = shown
        seq = next(self._fact_seq)
        return (AgentFact("state", agent.agent_id, self.now, seq, state, shown[2], reason),)

    def _push(self, record: Record) -> int:
        seq = next(self._seq)
        heapq.heappush(self._outbox, (record.emit_at, seq, record))
        return seq

    def _send_with_faults(self, call: _Call, record: Record, event: dict[str, Any]) -> None:
        rng, rates = self._fault_rng, self.config.faults
        held, call.held = call.held, None
        if held is not None and held[1].emit_at <= self.now:
            held = None  # already sent: the hold ran out before this event came
        roll = rng.random()
        if roll < rates.late:
            record = replace(
                record, emit_at=self.now + rates.late_seconds.sample_ms(rng), fault="late"
            )
            self._push(record)
        elif roll < rates.late + rates.reorder and held is None:
            record = replace(record, emit_at=self.now + REORDER_HOLD_MS, fault="reordered")
            call.held = (self._push(record), record)  # until the call's next event overtakes it
        else:
            self._push(record)
        if held is not None:  # this event overtook the held one: it follows right after
            self._cancelled.add(held[0])
            self._push(replace(held[1], emit_at=self.now))
        if rng.random() < rates.duplicate:
            delay = rng.randint(0, DUPLICATE_DELAY_MS)
            self._push(replace(record, emit_at=record.emit_at + delay, fault="duplicate", facts=()))
        if rng.random() < rates.malformed:
            self._push(self._malformed(record, event, rng))

    def _malformed(self, record: Record, event: dict[str, Any], rng: random.Random) -> Record:
        kind = rng.choice(MALFORMED_KINDS)
        if kind == "invalid_json":  # cut short: a JSON object missing its end is never valid
            value = record.value[: rng.randint(1, len(record.value) - 1)]
        else:
            broken = dict(event, event_id=f"{event['event_id']}-bad")
            if kind == "missing_field":
                del broken[rng.choice(("event_id", "call_id", "type", "ts"))]
            else:
                broken["type"] = rng.choice(UNKNOWN_TYPES)
            value = orjson.dumps(broken)
        return Record(record.key, value, record.ts, record.emit_at, kind)


def _rfc3339(ms: int) -> str:
    instant = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{instant:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
