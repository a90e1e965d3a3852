"""Mergeable figures per (queue, bucket), and the `queue-metrics` record built from them.

Only counts and integer-ms sums are stored, so buckets merge exactly (a rolling window is
the sum of its minute buckets, in any order) and a call's contribution can be taken back
out when a late event corrects it. Means and ratios are derived on read, never stored and
never averaged; over zero calls they are None (JSON null, no Prometheus sample), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from stream_app.domain.events import format_ts
from stream_app.domain.model import Contribution
from stream_app.domain.sla import QueueSla


@dataclass(slots=True)
class Figures:
    """Sums over the calls of one queue in one bucket (contract §3)."""

    answered: int = 0
    answered_within_threshold: int = 0
    answer_ms_sum: int = 0
    queue_wait_ms_sum: int = 0
    abandoned: int = 0  # short abandons included
    short_abandoned: int = 0
    flowed_out: int = 0
    handled: int = 0
    handle_ms_sum: int = 0
    longest_wait_ms: int | None = None  # max of answer speeds and times to abandon

    def merge(self, other: Figures) -> Figures:
        """A new value holding both: sums add, the longest wait is the max."""
        result = replace(self)
        result.add(other)
        return result

    def add(self, other: Figures) -> None:
        self.answered += other.answered
        self.answered_within_threshold += other.answered_within_threshold
        self.answer_ms_sum += other.answer_ms_sum
        self.queue_wait_ms_sum += other.queue_wait_ms_sum
        self.abandoned += other.abandoned
        self.short_abandoned += other.short_abandoned
        self.flowed_out += other.flowed_out
        self.handled += other.handled
        self.handle_ms_sum += other.handle_ms_sum
        if other.longest_wait_ms is not None and (
            self.longest_wait_ms is None or other.longest_wait_ms > self.longest_wait_ms
        ):
            self.longest_wait_ms = other.longest_wait_ms

    def subtract(self, other: Figures) -> bool:
        """Take `other` back out of the sums; True when the longest wait must be recomputed.

        A max cannot be un-merged: when `other` held this bucket's longest wait (or claims a
        longer one, which means the bucket is inconsistent), only the caller, who has the
        remaining calls, can find the new max. `longest_wait_ms` is left unchanged.
        """
        self.answered -= other.answered
        self.answered_within_threshold -= other.answered_within_threshold
        self.answer_ms_sum -= other.answer_ms_sum
        self.queue_wait_ms_sum -= other.queue_wait_ms_sum
        self.abandoned -= other.abandoned
        self.short_abandoned -= other.short_abandoned
        self.flowed_out -= other.flowed_out
        self.handled -= other.handled
        self.handle_ms_sum -= other.handle_ms_sum
        return other.longest_wait_ms is not None and (
            self.longest_wait_ms is None or other.longest_wait_ms >= self.longest_wait_ms
        )

    def is_zero(self) -> bool:
        """Nothing counted: the bucket can be deleted from its table."""
        return self.longest_wait_ms is None and not (
            self.answered
            or self.answered_within_threshold
            or self.answer_ms_sum
            or self.queue_wait_ms_sum
            or self.abandoned
            or self.short_abandoned
            or self.flowed_out
            or self.handled
            or self.handle_ms_sum
        )

    def to_json(self) -> list[int | None]:
        """The fields in declaration order: compact in a table's changelog."""
        return [
            self.answered,
            self.answered_within_threshold,
            self.answer_ms_sum,
            self.queue_wait_ms_sum,
            self.abandoned,
            self.short_abandoned,
            self.flowed_out,
            self.handled,
            self.handle_ms_sum,
            self.longest_wait_ms,
        ]

    @classmethod
    def from_json(cls, data: Sequence[int | None]) -> Figures:
        if len(data) != _FIELD_COUNT:
            raise ValueError(f"Figures needs {_FIELD_COUNT} values, got {len(data)}")
        if {*map(type, data[:-1])} != _INT_ONLY:  # exactly int: no bool, no float
            raise ValueError(f"Figures counts must be integers, got {list(data)!r}")
        longest = data[-1]
        if longest is not None and type(longest) is not int:
            raise ValueError(f"Figures longest wait must be an integer or null, got {longest!r}")
        return cls(*data)  # type: ignore[arg-type]  # checked above

    # Derived on read (contract §3).

    @property
    def offered(self) -> int:
        """A count, so 0 over zero calls (not None): short abandons are not offered calls."""
        return self.answered + self.abandoned - self.short_abandoned

    @property
    def asa_seconds(self) -> float | None:
        return self.answer_ms_sum / (self.answered * 1000) if self.answered else None

    @property
    def awt_seconds(self) -> float | None:
        return self.queue_wait_ms_sum / (self.answered * 1000) if self.answered else None

    @property
    def aht_seconds(self) -> float | None:
        return self.handle_ms_sum / (self.handled * 1000) if self.handled else None

    @property
    def service_level(self) -> float | None:
        offered = self.offered
        return self.answered_within_threshold / offered if offered else None

    @property
    def abandon_rate(self) -> float | None:
        offered = self.offered
        return (self.abandoned - self.short_abandoned) / offered if offered else None

    @property
    def longest_wait_seconds(self) -> float | None:
        return None if self.longest_wait_ms is None else self.longest_wait_ms / 1000


_FIELD_COUNT = len(Figures.__dataclass_fields__)
_INT_ONLY = {int}


def contribution_facts(c: Contribution, sla: QueueSla) -> list[tuple[int, Figures]]:
    """The figures each fact of a call adds, each with the ts that places it in a bucket.

    Thresholds are applied here, not upstream, so a queue's thresholds live in one place.
    Negative spans (source clocks disagree) count as 0 (contract §2), also here, so a stage
    bug can never make a sum negative.
    """
    facts: list[tuple[int, Figures]] = []
    if c.answered is not None:
        ts, speed, wait = c.answered[0], max(c.answered[1], 0), max(c.answered[2], 0)
        within = 1 if speed <= sla.service_level_ms else 0
        facts.append(
            (
                ts,
                Figures(
                    answered=1,
                    answered_within_threshold=within,
                    answer_ms_sum=speed,
                    queue_wait_ms_sum=wait,
                    longest_wait_ms=speed,
                ),
            )
        )
    if c.abandoned is not None:
        ts, waited = c.abandoned[0], max(c.abandoned[1], 0)
        short = 1 if waited < sla.short_abandon_ms else 0
        facts.append((ts, Figures(abandoned=1, short_abandoned=short, longest_wait_ms=waited)))
    facts.extend((ts, Figures(flowed_out=1)) for ts in c.flowed_out)
    if c.handled is not None:
        ts, handle = c.handled[0], max(c.handled[1], 0)
        facts.append((ts, Figures(handled=1, handle_ms_sum=handle)))
    return facts


# A window's figures as records carry them (contract §3), in the contract's order.
RECORD_COUNTS = (
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "flowed_out",
    "answered_within_threshold",
)
RECORD_DERIVED = (
    "asa_seconds",
    "awt_seconds",
    "aht_seconds",
    "longest_wait_seconds",
    "service_level",
    "abandon_rate",
)


def record_figures(f: Figures, names: tuple[str, ...]) -> dict[str, object]:
    return {name: getattr(f, name) for name in names}


def interval_record(
    queue: str, start_ms: int, end_ms: int, f: Figures, sla: QueueSla, revision: int
) -> dict[str, object]:
    """The `queue-metrics` value (contract §5), keys in the contract's order."""
    threshold = sla.service_level_seconds
    return {
        "queue": queue,
        "interval_start": format_ts(start_ms),
        "interval_end": format_ts(end_ms),
        **record_figures(f, RECORD_COUNTS),
        "service_level_seconds": int(threshold) if float(threshold).is_integer() else threshold,
        **record_figures(f, RECORD_DERIVED),
        "revision": revision,
    }


def interval_key(queue: str, start_ms: int) -> str:
    """The compacted `queue-metrics` key: the latest revision of an interval wins."""
    return f"{queue}|{format_ts(start_ms)}"
