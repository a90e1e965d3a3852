"""A queue's figures now, read once for both GET /metrics and the `queue-live` record, and the
rule that decides when the record is published.

One reading serves both so a wallboard and Prometheus never disagree on what a figure means.
The record is published when its content changes, at most once per wall-clock second per queue,
and re-sent at least every `refresh_ms` unchanged: a reader that hears nothing of a queue for
longer knows its owner is gone (the wallboard's stale mark), which a once-a-minute floor alone
could not tell from a quiet queue.

A full reading costs every bucket of every window (about 170 table reads per queue; a few
milliseconds on RocksDB), too much for every queue at every tick. `LiveReadings` re-reads a
queue only when a cheap probe of it changed (its waiting calls, the buckets of the current and
the previous interval, where live calls land) and once a minute (the rolling windows move on,
and a correction to an older interval shows then).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from stream_app.domain.agent_activity import BUSY_STATES, window_span
from stream_app.domain.events import format_ts
from stream_app.domain.figures import RECORD_COUNTS, RECORD_DERIVED, Figures, record_figures
from stream_app.domain.queue_agents import agents_by_state, positions, state_time
from stream_app.domain.queues import WINDOWS, QueueStage
from stream_app.domain.sla import QueueSla, SlaConfig
from stream_app.domain.staffing import agents_required, expected_wait_seconds
from stream_app.domain.windows import MINUTE_MS, interval_start

REFRESH_MS = 5_000  # an unchanged record is re-sent this often (the contract asks ≤ 60 s)
STALE_AFTER_MS = 10_000  # a reader that heard nothing of a queue for this long calls it stale


@dataclass(frozen=True, slots=True)
class QueueNow:
    """What a queue's owner knows of it at one instant of stream time."""

    queue: str
    windows: dict[str, Figures]  # every window of WINDOWS
    calls_waiting: int
    oldest_waiting_since: int | None  # ms: when the oldest call now waiting started waiting
    stream_time: int  # ms
    targets: QueueSla
    agents: dict[str, int] | None = None  # per state of QUEUE_STATES; None: no agent ever seen
    occupancy: dict[str, float | None] = field(default_factory=dict)  # per window

    @property
    def oldest_waiting_seconds(self) -> float | None:
        if self.oldest_waiting_since is None:
            return None
        return max(0, self.stream_time - self.oldest_waiting_since) / 1000

    @property
    def expected_wait_seconds(self) -> float | None:
        if self.agents is None:
            return None
        busy = sum(self.agents[state] for state in BUSY_STATES)
        aht = self.windows["1h"].aht_seconds
        return expected_wait_seconds(self.calls_waiting, self.agents["available"], busy, aht)

    @property
    def agents_required(self) -> int | None:
        """Erlang C against the queue's target (contract §6): from its calls alone."""
        return agents_required(
            self.windows["15m"].offered,
            self.windows["1h"].aht_seconds,
            self.targets.service_level_seconds,
            self.targets.target_service_level,
        )


def queue_now(stage: QueueStage, sla: SlaConfig, queue: str, stream_now: int) -> QueueNow:
    since = stage.waiting(queue).values()
    agents = stage.agents(queue)
    occupancy: dict[str, float | None] = {}
    for window in WINDOWS:
        start, end = window_span(window, stream_now, stage.windows.interval_ms, stage.windows.zone)
        occupancy[window] = state_time(agents, start, end, stream_now).occupancy
    return QueueNow(
        queue=queue,
        windows={window: stage.window(queue, window, stream_now) for window in WINDOWS},
        calls_waiting=len(since),
        oldest_waiting_since=min(since) if since else None,
        stream_time=stream_now,
        targets=sla.for_queue(queue),
        agents=agents_by_state(agents, stream_now) if agents else None,
        occupancy=occupancy,
    )


def probe(stage: QueueStage, queue: str, stream_now: int) -> tuple[Any, ...]:
    """What changes whenever a live call changes the queue's figures: three reads, not ~170."""
    size = stage.windows.interval_ms
    current = interval_start(stream_now, size)
    return (
        stream_now // MINUTE_MS,
        stage.figures(queue, "i", current).to_json(),
        stage.figures(queue, "i", current - size).to_json(),
        sorted(stage.waiting(queue).items()),
        positions(stage.store, queue),  # an agent's new timeline for the queue
    )


class LiveReadings:
    """Per queue, the last full reading and the probe taken with it."""

    def __init__(self, stage: QueueStage, sla: SlaConfig) -> None:
        self.stage = stage
        self.sla = sla
        self._last: dict[str, tuple[tuple[Any, ...], QueueNow]] = {}
        self.full_readings = 0  # how many full readings were taken (what the cache saves)

    def read(self, queue: str, stream_now: int) -> QueueNow:
        seen = probe(self.stage, queue, stream_now)
        last = self._last.get(queue)
        if last is not None and last[0] == seen:
            return replace(last[1], stream_time=stream_now)
        now = queue_now(self.stage, self.sla, queue, stream_now)
        self.full_readings += 1
        self._last[queue] = (seen, now)
        return now


def window_figures(f: Figures, occupancy: float | None = None) -> dict[str, Any]:
    """A window's figures as in a `queue-metrics` record (contract §3), and the agent figure of
    §6 that belongs to a window."""
    return {
        **record_figures(f, RECORD_COUNTS),
        **record_figures(f, RECORD_DERIVED),
        "occupancy": occupancy,
    }


def targets_json(targets: QueueSla) -> dict[str, float | int]:
    return {f.name: getattr(targets, f.name) for f in fields(targets)}


def live_record(now: QueueNow, as_of_ms: int) -> dict[str, Any]:
    """The `queue-live` value. Agent figures (§6) are null for a queue no agent served."""
    return {
        "queue": now.queue,
        "windows": {
            window: window_figures(f, now.occupancy.get(window))
            for window, f in now.windows.items()
        },
        "calls_waiting": now.calls_waiting,
        "oldest_waiting_seconds": now.oldest_waiting_seconds,
        "agents": now.agents,
        "expected_wait_seconds": now.expected_wait_seconds,
        "agents_required": now.agents_required,
        "targets": targets_json(now.targets),
        "stream_time": format_ts(now.stream_time),
        "as_of": format_ts(as_of_ms),
    }


def fingerprint(now: QueueNow) -> tuple[Any, ...]:
    """What counts as a change. Not stream time, nor the oldest wait's age: on a live feed both
    move every second (every queue would be re-sent every second); the age follows from the
    oldest waiting call's start, which is compared, and from `as_of`, which readers have."""
    return (
        tuple(tuple(f.to_json()) for f in now.windows.values()),
        now.calls_waiting,
        now.oldest_waiting_since,
        now.targets,
        tuple(sorted((now.agents or {}).items())),
        tuple(sorted(now.occupancy.items())),
    )


class LiveThrottle:
    """Per queue: when its record is due, given what was sent last (wall-clock ms)."""

    def __init__(self, refresh_ms: int = REFRESH_MS) -> None:
        self.refresh_ms = refresh_ms
        self._sent: dict[str, tuple[tuple[Any, ...], int]] = {}

    def due(self, queue: str, print_: tuple[Any, ...], wall_ms: int) -> bool:
        last = self._sent.get(queue)
        if last is None:
            return True
        last_print, last_wall = last
        if wall_ms // 1000 <= last_wall // 1000:
            return False  # one record per queue in any second of the wall clock
        return print_ != last_print or wall_ms - last_wall >= self.refresh_ms

    def sent(self, queue: str, print_: tuple[Any, ...], wall_ms: int) -> None:
        self._sent[queue] = (print_, wall_ms)

    def forget(self, queue: str) -> None:
        """The queue moved to another worker: when it comes back, it is published at once."""
        self._sent.pop(queue, None)
