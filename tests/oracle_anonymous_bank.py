"""Reference figures for the Anonymous Bank month, computed straight from the TSV rows.

Why: the integration test replays the whole month through the real engine and compares
every closed ``queue-metrics`` interval (contract §5) with these figures. To be a real check
this module shares nothing with ``stream_app`` (not even the adapter) and applies the
contract's definitions (§2, §3) to the dataset the plainest way: per row, no events.
"""

from __future__ import annotations

import csv
import lzma
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ABSENT = "0:00:00"  # q_start / ser_start of a call that never queued / was never served


@dataclass
class _Interval:
    """The raw samples that land in one queue's interval."""

    answer_speeds: list[int] = field(default_factory=list)
    queue_waits: list[int] = field(default_factory=list)
    abandon_times: list[int] = field(default_factory=list)
    handle_times: list[int] = field(default_factory=list)


def _seconds(clock: str) -> int:
    h, m, s = (int(part) for part in clock.split(":"))
    return h * 3600 + m * 60 + s


def _at(row: dict[str, str], column: str) -> datetime:
    """The UTC instant of a row's wall-clock time, with the README's next-day rule."""
    day = datetime.strptime(row["date"], "%y%m%d").replace(tzinfo=UTC)
    seconds = _seconds(row[column])
    if _seconds(row["vru_entry"]) - seconds > 12 * 3600:
        seconds += 24 * 3600  # more than 12 hours before the IVR entry: after midnight
    return day + timedelta(seconds=seconds)


def _span(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end; a negative span (clock glitch) counts as 0."""
    return max(0, int((end - start).total_seconds()))


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def expected_intervals(
    path: str | os.PathLike[str],
    *,
    interval_minutes: int = 15,
    service_level_seconds: float = 20,
    short_abandon_seconds: float = 5,
) -> dict[tuple[str, str], dict[str, object]]:
    """Every (queue, interval_start) with an answered, abandoned or handled call: its record.

    Values are the contract §5 fields except ``revision``; times are read as UTC.
    """
    width = timedelta(minutes=interval_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    buckets: dict[tuple[str, datetime], _Interval] = {}

    def bucket(queue: str, ts: datetime) -> _Interval:
        start = ts - (ts - epoch) % width
        return buckets.setdefault((queue, start), _Interval())

    # Its own reading, like all of it: the committed month is xz-compressed (data/README.md).
    opener = lzma.open if os.fspath(path).endswith(".xz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            outcome = row["outcome"]
            if outcome == "PHANTOM":
                continue
            queue = row["type"]
            queued = row["q_start"] != ABSENT
            served = row["ser_start"] != ABSENT
            if outcome == "AGENT":
                if served:
                    answer = _at(row, "ser_start")
                elif queued:
                    answer = _at(row, "q_exit")
                else:
                    answer = _at(row, "vru_exit")
                samples = bucket(queue, answer)
                samples.answer_speeds.append(_span(_at(row, "vru_exit"), answer))
                samples.queue_waits.append(_span(_at(row, "q_start"), answer) if queued else 0)
                if served:
                    ended = _at(row, "ser_exit")
                    bucket(queue, ended).handle_times.append(_span(answer, ended))
            elif outcome == "HANG":
                if queued:  # hung up in the queue: an abandon; HANG in the IVR is IVR-only
                    hang_up = _at(row, "q_exit")
                    bucket(queue, hang_up).abandon_times.append(_span(_at(row, "q_start"), hang_up))
            else:
                raise ValueError(f"unknown outcome {outcome!r} in {row}")

    records: dict[tuple[str, str], dict[str, object]] = {}
    for (queue, start), samples in sorted(buckets.items()):
        answered = len(samples.answer_speeds)
        abandoned = len(samples.abandon_times)
        short = sum(1 for t in samples.abandon_times if t < short_abandon_seconds)
        offered = answered + abandoned - short
        within = sum(1 for t in samples.answer_speeds if t <= service_level_seconds)
        waits = samples.answer_speeds + samples.abandon_times
        start_text = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        records[(queue, start_text)] = {
            "queue": queue,
            "interval_start": start_text,
            "interval_end": (start + width).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "offered": offered,
            "answered": answered,
            "abandoned": abandoned,
            "short_abandoned": short,
            "flowed_out": 0,
            "answered_within_threshold": within,
            "service_level_seconds": service_level_seconds,
            "asa_seconds": _mean(samples.answer_speeds),
            "awt_seconds": _mean(samples.queue_waits),
            "aht_seconds": _mean(samples.handle_times),
            "longest_wait_seconds": float(max(waits)) if waits else None,
            "service_level": within / offered if offered else None,
            "abandon_rate": (abandoned - short) / offered if offered else None,
        }
    return records
