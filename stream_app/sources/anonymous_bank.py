"""The Technion "Anonymous Bank" call log (February 1999) as contract §1 events.

Why: a month of a real call center, warts included, is the most honest replay the pipeline
can get. This module applies the mapping of ``data/README.md`` exactly, so the engine sees
what a PBX connector would have sent for each row, and nothing else. Callers pass the file's
path: the month committed as ``data/anonymous-bank-1999-02.tsv.xz``, or any file of the same
layout, plain or compressed (``.xz``, ``.gz``, ``.bz2``: told by the suffix).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TextIO
from zoneinfo import ZoneInfo

LOCAL_DEFAULT = ZoneInfo("UTC")  # the README: read the times as UTC unless told otherwise

COLUMNS: tuple[str, ...] = (
    "vru+line",
    "call_id",
    "customer_id",
    "priority",
    "type",
    "date",
    "vru_entry",
    "vru_exit",
    "vru_time",
    "q_start",
    "q_exit",
    "q_time",
    "outcome",
    "ser_start",
    "ser_exit",
    "ser_time",
    "server",
)
TIME_COLUMNS: tuple[str, ...] = (
    "vru_entry",
    "vru_exit",
    "q_start",
    "q_exit",
    "ser_start",
    "ser_exit",
)
OUTCOMES = frozenset({"AGENT", "HANG", "PHANTOM"})
ABSENT = "0:00:00"  # q_start / ser_start of a call that never queued / was never served
NEXT_DAY_SECONDS = 12 * 3600  # a time this much (or more) before vru_entry is on the next day

_TIME = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})")
_DATE = re.compile(r"\d{6}")


@dataclass(frozen=True)
class Skip:
    """A data row that produced no events, and why (nothing is dropped silently)."""

    line: int  # 1-based line of the file; the header is line 1
    reason: str  # "phantom", "duplicate: ...", or "malformed: <what>"


@dataclass
class ReplayPlan:
    """Everything a replay needs: the events in event-time order, ready to produce."""

    events: list[tuple[str, dict[str, object]]]  # (key = call_id, contract event object)
    calls: int  # rows that became a call
    skipped: list[Skip]


class MalformedRow(ValueError):
    """A row that cannot be mapped; ``what`` is the reason without the line number."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(f"line {line}: {what}")
        self.line = line
        self.what = what


def _field(row: dict[str, str], column: str, line: int) -> str:
    try:
        return row[column].strip()
    except KeyError:
        raise MalformedRow(line, f"no column {column!r}") from None


def _required(row: dict[str, str], column: str, line: int) -> str:
    value = _field(row, column, line)
    if not value:
        raise MalformedRow(line, f"{column}: empty")
    return value


def _clock(row: dict[str, str], column: str, line: int) -> int:
    """Seconds since midnight of an H:MM:SS field."""
    raw = _field(row, column, line)
    match = _TIME.fullmatch(raw)
    if match is None:
        raise MalformedRow(line, f"{column}: not a time H:MM:SS: {raw!r}")
    hours, minutes, seconds = (int(part) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 59:
        raise MalformedRow(line, f"{column}: no such time of day: {raw!r}")
    return hours * 3600 + minutes * 60 + seconds


def _day(row: dict[str, str], line: int) -> date:
    raw = _field(row, "date", line)
    try:
        if _DATE.fullmatch(raw) is None:
            raise ValueError(raw)
        return datetime.strptime(raw, "%y%m%d").date()
    except ValueError:
        raise MalformedRow(line, f"date: not a YYMMDD date: {raw!r}") from None


def _rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timed_events(
    row: dict[str, str], line: int, tz: tzinfo
) -> list[tuple[datetime, dict[str, object]]]:
    """The row's events in the natural order of contract §1, each with its instant."""
    outcome = _field(row, "outcome", line)
    if outcome not in OUTCOMES:
        raise MalformedRow(line, f"unknown outcome {outcome!r}")
    if outcome == "PHANTOM":
        return []
    vru = _required(row, "vru+line", line)
    number = _required(row, "call_id", line)
    queue = _required(row, "type", line)
    day = _day(row, line)
    clocks = {column: _clock(row, column, line) for column in TIME_COLUMNS}
    server = _required(row, "server", line) if outcome == "AGENT" else ""
    entry = clocks["vru_entry"]

    def at(column: str) -> datetime:
        # Wall-clock times carry no date: one far before the IVR entry is after midnight.
        clock = clocks[column]
        when = day + timedelta(days=1) if entry - clock > NEXT_DAY_SECONDS else day
        local = time(clock // 3600, clock % 3600 // 60, clock % 60)
        return datetime.combine(when, local, tzinfo=tz).astimezone(UTC)

    call_id = f"{vru}-{number}-{_field(row, 'date', line)}"
    events: list[tuple[datetime, dict[str, object]]] = []

    def emit(kind: str, instant: datetime, **extra: str) -> None:
        event: dict[str, object] = {
            "event_id": f"{call_id}:{kind}",
            "call_id": call_id,
            "type": kind,
            "ts": _rfc3339(instant),
        }
        event.update(extra)
        events.append((instant, event))

    queued = _field(row, "q_start", line) != ABSENT
    served = _field(row, "ser_start", line) != ABSENT
    ivr_exit = at("vru_exit")
    # The queue on call_started makes an unqueued call attributable to its service type.
    emit("call_started", at("vru_entry"), queue=queue)
    emit("ivr_ended", ivr_exit)
    if queued:
        emit("queue_entered", at("q_start"), queue=queue)
    if outcome == "AGENT":
        answered = at("ser_start") if served else at("q_exit") if queued else ivr_exit
        emit("call_answered", answered, queue=queue, agent_id=server)
        # Without service times the end is unknown: no call_ended or wrapup_ended (README).
        if served:
            emit("call_ended", at("ser_exit"))
            emit("wrapup_ended", at("ser_exit"))
    elif queued:  # HANG in the queue: an abandon (service times on such rows are ignored)
        emit("call_abandoned", at("q_exit"))
        emit("call_ended", at("q_exit"))
    else:  # HANG in the IVR: IVR-only
        emit("call_ended", ivr_exit)
    return events


def row_events(
    row: dict[str, str], line: int, tz: tzinfo = LOCAL_DEFAULT
) -> list[dict[str, object]]:
    """The contract events of one row (header name -> field), in contract §1 order.

    A PHANTOM row gives none. Raises ``MalformedRow`` (a ``ValueError``) naming the line
    and the field when the row cannot be mapped.
    """
    return [event for _, event in _timed_events(row, line, tz)]


def open_text(path: str | os.PathLike[str]) -> TextIO:
    """The file as text, decompressed when its name ends in ``.xz``, ``.gz`` or ``.bz2``; bytes
    that are not UTF-8 become U+FFFD, so a damaged row is reported, not the whole file."""
    name = os.fspath(path)
    suffix = os.path.splitext(name)[1]
    if suffix == ".xz":
        return lzma.open(name, "rt", encoding="utf-8-sig", errors="replace", newline=None)
    if suffix == ".gz":
        return gzip.open(name, "rt", encoding="utf-8-sig", errors="replace", newline=None)
    if suffix == ".bz2":
        return bz2.open(name, "rt", encoding="utf-8-sig", errors="replace", newline=None)
    return open(name, encoding="utf-8-sig", errors="replace", newline=None)


def load(path: str | os.PathLike[str], tz: tzinfo = LOCAL_DEFAULT) -> ReplayPlan:
    """Read the whole file into a replay plan, events sorted by event time.

    Times are wall-clock in ``tz`` and come out in UTC. Ties keep file order of the calls,
    then contract §1 order within a call. A bad row becomes a ``Skip``, never an exception;
    only a file without the expected header, or a damaged compressed file, raises
    ``ValueError``.
    """
    timed: list[tuple[datetime, str, dict[str, object]]] = []
    skipped: list[Skip] = []
    first_seen: dict[str, int] = {}
    try:
        with open_text(path) as lines:
            header = lines.readline().rstrip("\n").split("\t")
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise ValueError(f"{os.fspath(path)}: not the Anonymous Bank layout, no {missing}")
            for line, text in enumerate(lines, start=2):
                fields = text.rstrip("\n").split("\t")
                if len(fields) != len(header):
                    what = f"{len(header)} columns expected, got {len(fields)}"
                    skipped.append(Skip(line, f"malformed: {what}"))
                    continue
                row = dict(zip(header, fields, strict=True))
                if row["outcome"].strip() == "PHANTOM":
                    skipped.append(Skip(line, "phantom"))
                    continue
                try:
                    events = _timed_events(row, line, tz)
                except MalformedRow as exc:
                    skipped.append(Skip(line, f"malformed: {exc.what}"))
                    continue
                call_id = str(events[0][1]["call_id"])
                if call_id in first_seen:
                    # A second row with the same key would collide on event_id and be deduped.
                    skipped.append(
                        Skip(line, f"duplicate: {call_id} first on line {first_seen[call_id]}")
                    )
                    continue
                first_seen[call_id] = line
                timed.extend((instant, call_id, event) for instant, event in events)
    except (lzma.LZMAError, EOFError) as exc:  # gzip's and bz2's errors are OSError already
        raise ValueError(f"{os.fspath(path)}: cannot decompress: {exc}") from exc
    timed.sort(key=lambda item: item[0])  # stable: ties keep call then event order
    return ReplayPlan(
        events=[(call_id, event) for _, call_id, event in timed],
        calls=len(first_seen),
        skipped=skipped,
    )
