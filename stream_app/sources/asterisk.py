"""Asterisk ``queue_log`` lines as contract §1 events, one line at a time.

Why: Asterisk's app_queue is the most widely deployed open-source ACD, and its queue_log
already holds every fact the contract needs (``docs/sources.md``). A stateful
``QueueLogMapper`` takes lines one by one, so the same code replays a whole file and maps a
live tail (``follow.py``); the little per-call state it keeps is bounded and can be saved
with the read position (``snapshot``/``restore``).

Choices where the log is silent (each has a test):

- ``call_id`` is the callid (the caller channel's uniqueid), so every visit of a call (one per
  ENTERQUEUE, overflow included) meets in the engine. Asterisk has no IVR facts, so no
  ``call_started``/``ivr_ended``: the line-wait starts at the first ``queue_entered``.
- ``event_id`` is ``ast:<hash of the line>:<n>:<type>``: the same line always gives the same
  ids, so a file read twice gives duplicates the engine drops. ``n`` counts earlier identical
  lines (same second, same call, same content: a dialplan loop can write one twice), so they
  stay two events, numbered alike on every read.
- CONNECT gives ``agent_offered`` at ts - ringtime (never before the call's queue entry) and
  ``call_answered``; without a ringtime (old Asterisk) only the answer. A ring, hold or wait
  time reaching back before 1970 is garbage: ignored, as if absent.
- A CONNECT or ABANDON of a call whose ENTERQUEUE was not seen (lost to rotation) rebuilds the
  ``queue_entered`` at ts - holdtime / waittime (both reach back to the entry): without it
  the answer speed would be 0 and the abandon a short one.
- ABANDON → ``call_abandoned``; EXITWITHTIMEOUT / EXITEMPTY / EXITWITHKEY / WITHDRAW →
  ``queue_left`` (reason timeout / empty / key / withdraw); COMPLETECALLER, COMPLETEAGENT,
  BLINDTRANSFER, ATTENDEDTRANSFER, TRANSFER → ``call_ended`` at the line's ts (logged at the
  hang-up or transfer), then ``wrapup_ended`` at the same ts: queue_log has no after-call work,
  so the agent's work ends with the call (contract §6) and the handle time is the talk time.
- SYSCOMPAT → ``call_ended``: the PBX dropped the caller before the bridge; unanswered, the
  engine counts it abandoned, as app_queue itself does (``record_abandoned``).
- RINGNOANSWER, RINGCANCELED, AGENTDUMP change no contract figure (the offer that counts comes
  from CONNECT, the hang-up from ABANDON): ignored, counted. So are custom verbs, and
  CONFIGRELOAD (written at every logger reload or rotation while calls go on).
- Agent lines become `agent-events` (contract §6), keyed by the agent: ADDMEMBER and
  REMOVEMEMBER change the queues the agent serves (kept per agent: a second ADDMEMBER gives
  ``agent_queues`` with both; the first logs the agent in, removing the last logs them out);
  AGENTLOGIN / AGENTLOGOFF log in (with the queues kept) and out; PAUSE / PAUSEALL give
  ``agent_not_ready`` with data1 as the reason, UNPAUSE / UNPAUSEALL ``agent_ready``. A pause
  in one queue makes the agent not ready everywhere: readiness is per agent in the contract.
- Agents are named alike on every line (``agent_name``): a member interface
  ``Local/2004@from-internal/n`` is ``2004``, ``PJSIP/201`` (or ``SIP/…``, ``Agent/…``…) is
  ``201``, a channel's ``-0000001a`` suffix is dropped; any other name is kept as written.
- QUEUESTART is written once per Asterisk start: every call still open (queued or talking)
  died with the old process. Each gets ``call_ended`` at the QUEUESTART ts, the first moment
  its end is certain: a queued one then counts abandoned (a lost caller is not hidden from the
  service level), a talking one ended. The true hang-up lies somewhere before it.
- A call is open from ENTERQUEUE (or CONNECT) to its terminal line (ABANDON, a flow-out,
  COMPLETE*, a transfer, SYSCOMPAT); one silent for ``max_open_hours`` of log time is forgotten.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from stream_app.domain.events import MAX_TS, MIN_TS, Rejected, check_name, format_ts, parse_ts

FORMS: tuple[str, ...] = ("file", "csv")
COLUMNS: tuple[str, ...] = (
    "time",
    "callid",
    "queuename",
    "agent",
    "event",
    "data1",
    "data2",
    "data3",
    "data4",
    "data5",
)
FLOW_OUT: dict[str, str] = {
    "EXITWITHTIMEOUT": "timeout",
    "EXITEMPTY": "empty",
    "EXITWITHKEY": "key",
    "WITHDRAW": "withdraw",
}
CALL_END = frozenset(
    {
        "COMPLETECALLER",
        "COMPLETEAGENT",
        "BLINDTRANSFER",
        "ATTENDEDTRANSFER",
        "TRANSFER",
        "SYSCOMPAT",
    }
)
CALL_NOISE = frozenset({"RINGNOANSWER", "RINGCANCELED", "AGENTDUMP"})  # ignored, but a sign of life
NO_CALL = frozenset({"", "NONE", "REALTIME", "MANAGER", "CLI"})  # callids naming no call
RESTART = "QUEUESTART"
RECENT_MS = 5000  # how long a line's content is remembered to number identical lines
AGENT_VERBS = frozenset(
    {
        "ADDMEMBER",
        "REMOVEMEMBER",
        "AGENTLOGIN",
        "AGENTCALLBACKLOGIN",
        "AGENTLOGOFF",
        "AGENTCALLBACKLOGOFF",
        "PAUSE",
        "PAUSEALL",
        "UNPAUSE",
        "UNPAUSEALL",
    }
)
SKIP_REASONS = frozenset(
    {
        "too_few_fields",
        "bad_time",
        "no_event",
        "no_callid",
        "no_queue",
        "no_agent",
        "bad_agent",
        "bad_header",
        "bad_csv",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SECONDS = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?")
_LOCAL = re.compile(r"Local/([^@/;]+)@.*", re.IGNORECASE)
_DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_]*/([^/]+)")
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(?:;\d)?")


def agent_name(text: str) -> str:
    """The one name of an agent, however a line writes it (docs/sources.md): the extension of
    a Local channel (``Local/2004@from-internal/n`` → ``2004``), the resource of a device or
    agent interface (``PJSIP/201``, ``SIP/201-0000001a``, ``Agent/201`` → ``201``), any other
    name as written. So FreePBX's queue member ``Local/201@from-queue/n`` and the phone
    ``PJSIP/201`` that answers are one agent; "" for none."""
    name = text.strip()
    if name in NO_CALL:
        return ""
    local = _LOCAL.fullmatch(name)
    if local is not None:
        return local.group(1)
    device = _DEVICE.fullmatch(name)
    if device is not None:
        resource = device.group(1)
        suffix = _CHANNEL_SUFFIX.search(resource)
        if suffix is not None and suffix.end() == len(resource):
            resource = resource[: suffix.start()]
        return resource or name
    return name


@dataclass(frozen=True, slots=True)
class Skip:
    """A line that produced no events because it cannot be read; nothing is dropped silently."""

    source: str  # the file's name
    line: int  # 1-based line number in that file
    reason: str  # a fixed label from SKIP_REASONS
    detail: str  # for humans; may quote the line

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: skipped ({self.reason}): {self.detail}"


@dataclass
class MapStats:
    """What the mapper did with the lines it was fed."""

    lines: int = 0
    events: int = 0
    blank: int = 0
    headers: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> lines
    ignored: Counter[str] = field(default_factory=Counter)  # verb -> lines
    closed_at_restart: int = 0  # open calls ended by a QUEUESTART
    rebuilt_entries: int = 0  # queue_entered rebuilt from a CONNECT or ABANDON
    forgotten: int = 0  # open calls silent for max_open_hours
    agent_lines: int = 0  # agent lines mapped (to agent-events)
    reasons_dropped: int = 0  # pause reasons left out: not a usable name (too long, control)


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed queue_log line."""

    ts: int  # epoch ms
    callid: str
    queue: str
    agent: str
    verb: str
    data: tuple[str, ...]

    def datum(self, index: int) -> str:
        """data<index + 1>, or "" when the line has fewer fields."""
        return self.data[index] if index < len(self.data) else ""


class BadLine(ValueError):
    """A line that cannot be read; ``reason`` is a label of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _quote(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _seconds_ms(text: str) -> int | None:
    """Milliseconds of a ``seconds[.fraction]`` field (a time or a span), else None."""
    match = _SECONDS.fullmatch(text)
    if match is None:
        return None
    whole, fraction = match.groups()
    return int(whole) * 1000 + int(((fraction or "") + "000")[:3])


def _checked(ms: int, text: str) -> int:
    if not MIN_TS <= ms < MAX_TS:
        raise BadLine("bad_time", f"time {_quote(text)} is outside years 1970..9999")
    return ms


def parse_file_line(text: str) -> Record:
    """``epoch|callid|queue|agent|EVENT|data1|...`` (Asterisk's own queue_log file)."""
    fields = [part.strip() for part in text.split("|")]
    if len(fields) < 5:
        raise BadLine("too_few_fields", f"{len(fields)} '|'-separated fields, at least 5 needed")
    stamp = fields[0].lstrip("\ufeff")
    ms = _seconds_ms(stamp)
    if ms is None:
        raise BadLine("bad_time", f"time {_quote(stamp)} is not epoch seconds")
    return _record(_checked(ms, stamp), fields[1:5], tuple(fields[5:]))


def parse_local_time(text: str, tz: tzinfo) -> int:
    """Epoch ms of a realtime ``time`` value: local ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in ``tz``
    (an explicit offset wins), or epoch seconds as some schemas store it."""
    ms = _seconds_ms(text)
    if ms is None:
        try:
            instant = datetime.fromisoformat(text)
        except ValueError:
            raise BadLine("bad_time", f"time {_quote(text)} is not a date and time") from None
        if instant.tzinfo is None:
            # A wall-clock time repeated by a DST change is read as its first occurrence.
            instant = instant.replace(tzinfo=tz)
        ms = (instant - _EPOCH) // _MS
    return _checked(ms, text)


def _record(ts: int, head: list[str], data: tuple[str, ...]) -> Record:
    callid, queue, agent, verb = head
    if not verb:
        raise BadLine("no_event", "the event field is empty")
    return Record(ts, callid, queue, agent, verb.upper(), data)


def _split_csv(text: str) -> list[str]:
    """A CSV row; a row of psql's table output (``a | b | c``, as in Wazo's docs) also works."""
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as exc:  # a field over the csv module's size limit, a bare carriage return
        raise BadLine("bad_csv", f"not a CSV row: {exc}") from None
    if len(fields) < 5 and "|" in text:
        fields = text.split("|")
    return [part.strip() for part in fields]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=10).hexdigest()


@dataclass(slots=True)
class _Open:
    """A call the mapper has seen enter a queue (or answer) and not end yet."""

    queue: str
    answered: bool
    entered: int | None  # ms of the current visit's queue entry, when known
    last: int  # ms of the call's newest line

    def to_json(self) -> list[object]:
        return [self.queue, int(self.answered), self.entered, self.last]

    @classmethod
    def from_json(cls, data: list[object]) -> _Open:
        queue, answered, entered, last = data
        if not (
            isinstance(queue, str)
            and isinstance(answered, int)
            and (entered is None or isinstance(entered, int))
            and isinstance(last, int)
        ):
            raise ValueError(f"not an open call: {data!r}")
        return cls(queue, bool(answered), entered, last)


Emitted = tuple[str, dict[str, object]]  # (key = call_id or agent_id, contract event)


class QueueLogMapper:
    """Feed queue_log lines in file order; get contract events back (see the module doc).

    ``form`` is ``"file"`` (``epoch|callid|...``) or ``"csv"`` (the realtime table: time,
    callid, queuename, agent, event, data1..data5, times local to ``tz``; a header row, found
    anywhere, names the columns and may add others). Unreadable lines become ``Skip`` entries
    in ``skips`` (the caller reports and clears them) and are counted in ``stats``.
    """

    def __init__(
        self,
        form: str = "file",
        tz: tzinfo = UTC,
        *,
        source: str = "queue_log",
        max_open_hours: float = 24.0,
    ) -> None:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.form = form
        self.tz = tz
        self.source = source
        self.stats = MapStats()
        self.skips: list[Skip] = []
        self._max_open_ms = int(max_open_hours * 3_600_000)
        self._open: dict[str, _Open] = {}  # least recently touched first
        self._columns: dict[str, int] | None = None  # from a CSV header row
        self._recent: dict[str, list[int]] = {}  # line digest -> [ts, lines of that content]
        self._newest = MIN_TS  # the newest ts of a mapped line
        self._members: dict[str, list[str]] = {}  # agent -> the queues they are a member of
        self._logged_in: set[str] = set()  # agents the events sent show logged in

    @property
    def open_calls(self) -> int:
        return len(self._open)

    # -- input ------------------------------------------------------------------------------

    def feed(self, text: str, line: int) -> list[Emitted]:
        """Map one line (its line ending may be present); an unreadable one is skipped."""
        self.stats.lines += 1
        raw = text.rstrip("\r\n")
        if not raw.strip():
            self.stats.blank += 1
            return []
        try:
            record = self._parse(raw)
            if record is None:
                self.stats.headers += 1
                return []
            events = self._map(record, raw)
        except BadLine as exc:
            self.stats.skipped[exc.reason] += 1
            self.skips.append(Skip(self.source, line, exc.reason, exc.detail))
            return []
        self.stats.events += len(events)
        return events

    def _parse(self, raw: str) -> Record | None:
        if self.form == "file":
            return parse_file_line(raw)
        fields = _split_csv(raw.lstrip("\ufeff"))
        names = [name.lower() for name in fields]
        if "time" in names and "event" in names and "callid" in names:
            self._columns = self._header(names)
            return None
        columns = self._columns
        if columns is None:
            if len(fields) < 5:
                raise BadLine("too_few_fields", f"{len(fields)} columns, at least 5 needed")
            head = fields[1:5]
            data = tuple(fields[5:])
        else:
            if len(fields) <= max(columns[name] for name in COLUMNS[:5]):
                raise BadLine(
                    "too_few_fields", f"{len(fields)} columns, the header names {len(columns)}"
                )
            head = [fields[columns[name]] for name in COLUMNS[1:5]]

            def column(name: str) -> str:
                index = columns.get(name, len(fields))
                return fields[index] if index < len(fields) else ""

            if "data" in columns and "data1" not in columns:
                data = tuple(column("data").split("|"))  # the non-adaptive table's one column
            else:
                data = tuple(column(name) for name in COLUMNS[5:])
        stamp = fields[columns["time"] if columns else 0]
        ts = parse_local_time(stamp, self.tz)
        if data and "|" in data[-1]:  # data5 holds the remainder of longer lines
            data = (*data[:-1], *data[-1].split("|"))
        while data and not data[-1]:
            data = data[:-1]
        return _record(ts, head, tuple(part.strip() for part in data))

    @staticmethod
    def _header(names: list[str]) -> dict[str, int]:
        columns = {name: index for index, name in enumerate(names)}
        missing = [name for name in COLUMNS[:5] if name not in columns]
        if missing:
            raise BadLine("bad_header", f"a header row without {missing}")
        return columns

    # -- mapping ----------------------------------------------------------------------------

    def _map(self, record: Record, raw: str) -> list[Emitted]:
        verb = record.verb
        if verb == RESTART:
            return self._close_all(record, raw)
        if verb in AGENT_VERBS:
            return self._map_agent(record, raw)
        callid = record.callid
        mapped = verb in ("ENTERQUEUE", "CONNECT", "ABANDON") or verb in FLOW_OUT
        if not mapped and verb not in CALL_END:
            self.stats.ignored[verb] += 1
            if verb in CALL_NOISE and callid in self._open:
                self._touch(callid, record.ts)
            return []
        if callid in NO_CALL:
            raise BadLine("no_callid", f"{verb} names no call (callid {_quote(callid)})")
        self._forget_silent(record.ts)
        digest = _digest(raw)
        state = self._open.pop(callid, None)
        base = f"ast:{digest}:{self._occurrence(digest, record.ts)}"
        queue = record.queue if record.queue not in NO_CALL else None
        events: list[Emitted] = []

        def emit(kind: str, ts: int, **extra: str | None) -> None:
            event: dict[str, object] = {
                "event_id": f"{base}:{kind}",
                "call_id": callid,
                "type": kind,
                "ts": format_ts(ts),
            }
            event.update({name: value for name, value in extra.items() if value})
            events.append((callid, event))

        def rebuild_entry(held: str) -> int | None:
            """The queue entry of a call first seen at its answer or abandon (docs/sources.md)."""
            held_ms = _seconds_ms(held)
            if held_ms is None or queue is None or record.ts - held_ms < MIN_TS:
                return None
            self.stats.rebuilt_entries += 1
            emit("queue_entered", record.ts - held_ms, queue=queue)
            return record.ts - held_ms

        if verb == "ENTERQUEUE":
            if queue is None:
                raise BadLine("no_queue", f"ENTERQUEUE without a queue: {_quote(raw)}")
            emit("queue_entered", record.ts, queue=queue)
            self._open[callid] = _Open(queue, False, record.ts, record.ts)
        elif verb == "CONNECT":
            entered = state.entered if state is not None else rebuild_entry(record.datum(0))
            # app_queue always names the member; keep the answer when the name is unusable
            agent = _usable(agent_name(record.agent)) or "NONE"
            ring_ms = _seconds_ms(record.datum(2))
            if ring_ms is not None:
                offered = record.ts - ring_ms
                if entered is not None:
                    offered = max(offered, entered)
                if offered >= MIN_TS:
                    emit("agent_offered", offered, queue=queue, agent_id=agent)
            emit("call_answered", record.ts, queue=queue, agent_id=agent)
            self._open[callid] = _Open(
                queue or (state.queue if state else ""), True, entered, record.ts
            )
        elif verb == "ABANDON":
            if state is None:
                rebuild_entry(record.datum(2))
            emit("call_abandoned", record.ts, queue=queue)
        elif verb in FLOW_OUT:
            emit("queue_left", record.ts, queue=queue, reason=FLOW_OUT[verb])
        else:  # CALL_END
            member = _usable(agent_name(record.agent))
            emit("call_ended", record.ts, queue=queue, agent_id=member)
            if verb != "SYSCOMPAT" and (member or (state is not None and state.answered)):
                emit("wrapup_ended", record.ts, queue=queue, agent_id=member)
        return events

    def _map_agent(self, record: Record, raw: str) -> list[Emitted]:
        """An agent line: its agent event (none when it changes nothing the events show)."""
        verb = record.verb
        name = agent_name(record.agent)
        if not name:
            raise BadLine("no_agent", f"{verb} names no agent: {_quote(raw)}")
        try:
            check_name(name, "agent_id")
        except Rejected as exc:
            raise BadLine("bad_agent", exc.detail) from None
        queue = record.queue if record.queue not in NO_CALL else None
        if verb in ("ADDMEMBER", "REMOVEMEMBER") and queue is None:
            raise BadLine("no_queue", f"{verb} without a queue: {_quote(raw)}")
        digest = _digest(raw)
        base = f"ast:{digest}:{self._occurrence(digest, record.ts)}"
        events: list[Emitted] = []
        self.stats.agent_lines += 1

        def emit(kind: str, **extra: object) -> None:
            event: dict[str, object] = {
                "event_id": f"{base}:{kind}",
                "agent_id": name,
                "type": kind,
                "ts": format_ts(record.ts),
            }
            event.update(extra)
            events.append((name, event))

        queues = self._members.setdefault(name, [])
        if verb == "ADDMEMBER":
            assert queue is not None
            added = queue not in queues
            if added:
                bisect.insort(queues, queue)
            if name not in self._logged_in:
                self._logged_in.add(name)
                emit("agent_logged_in", queues=list(queues))
            elif added:
                emit("agent_queues", queues=list(queues))
        elif verb == "REMOVEMEMBER":
            assert queue is not None
            removed = queue in queues
            if removed:
                queues.remove(queue)
            if name in self._logged_in and not queues:
                self._logged_in.discard(name)
                emit("agent_logged_out")
            elif name in self._logged_in and removed:
                emit("agent_queues", queues=list(queues))
        elif verb in ("AGENTLOGIN", "AGENTCALLBACKLOGIN"):
            self._logged_in.add(name)
            emit("agent_logged_in", queues=list(queues))
        elif verb in ("AGENTLOGOFF", "AGENTCALLBACKLOGOFF"):
            self._logged_in.discard(name)
            emit("agent_logged_out")
        elif verb in ("PAUSE", "PAUSEALL"):
            reason = record.datum(0)
            if reason and _usable(reason, separator_ok=True) is None:
                self.stats.reasons_dropped += 1
                reason = ""
            emit("agent_not_ready", **({"reason": reason} if reason else {}))
        else:  # UNPAUSE, UNPAUSEALL
            emit("agent_ready")
        if not queues:
            del self._members[name]  # keep no empty entries: the state stays small
        return events

    def _close_all(self, record: Record, raw: str) -> list[Emitted]:
        """QUEUESTART: Asterisk restarted, so every call still open ended with the old process."""
        events: list[Emitted] = []
        ts = format_ts(record.ts)
        for callid, state in self._open.items():
            kinds = ("call_ended", "wrapup_ended") if state.answered else ("call_ended",)
            for kind in kinds:
                event: dict[str, object] = {
                    "event_id": f"ast:{_digest(raw + chr(10) + callid)}:0:{kind}",
                    "call_id": callid,
                    "type": kind,
                    "ts": ts,
                }
                if state.queue:
                    event["queue"] = state.queue
                events.append((callid, event))
        self.stats.closed_at_restart += len(self._open)
        self._open.clear()
        return events

    def _occurrence(self, digest: str, ts: int) -> int:
        """Earlier lines of this very content: identical lines share their ts, so only the last
        few seconds of lines are remembered (a few seconds, for writes slightly out of order)."""
        if ts > self._newest:
            self._newest = ts
            horizon = ts - RECENT_MS
            self._recent = {d: seen for d, seen in self._recent.items() if seen[0] >= horizon}
        seen = self._recent.setdefault(digest, [ts, 0])
        seen[1] += 1
        return seen[1] - 1

    def _touch(self, callid: str, ts: int) -> None:
        state = self._open.pop(callid)
        state.last = max(state.last, ts)
        self._open[callid] = state

    def _forget_silent(self, now: int) -> None:
        """Drop open calls silent for max_open_hours: their end was lost, keep memory bounded."""
        while self._open:
            callid, state = next(iter(self._open.items()))
            if now - state.last <= self._max_open_ms:
                return
            del self._open[callid]
            self.stats.forgotten += 1

    # -- persistence ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """The state a restart needs (open calls, CSV columns), as JSON-able data."""
        return {
            "open": {callid: state.to_json() for callid, state in self._open.items()},
            "columns": self._columns,
            "recent": self._recent,
            "newest": self._newest,
            "members": self._members,
            "logged_in": sorted(self._logged_in),
        }

    def restore(self, data: Mapping[str, object]) -> None:
        """Inverse of ``snapshot``; raises ValueError on data it did not write."""
        opened = data.get("open", {})
        columns = data.get("columns")
        recent = data.get("recent", {})
        newest = data.get("newest", MIN_TS)
        members = data.get("members", {})
        logged_in = data.get("logged_in", [])
        if (
            not isinstance(members, dict)
            or not isinstance(logged_in, list)
            or not all(isinstance(q, list) for q in members.values())
        ):
            raise ValueError("not a queue_log mapper snapshot")
        if (
            not isinstance(opened, dict)
            or not (columns is None or isinstance(columns, dict))
            or not isinstance(recent, dict)
            or not isinstance(newest, int)
        ):
            raise ValueError("not a queue_log mapper snapshot")
        self._open = {str(callid): _Open.from_json(list(state)) for callid, state in opened.items()}
        self._columns = None if columns is None else {str(k): int(v) for k, v in columns.items()}
        self._recent = {str(d): [int(seen[0]), int(seen[1])] for d, seen in recent.items()}
        self._newest = newest
        self._members = {str(a): sorted(str(q) for q in queues) for a, queues in members.items()}
        self._logged_in = {str(agent) for agent in logged_in}


def _usable(name: str, *, separator_ok: bool = False) -> str | None:
    """The name when the engine accepts it as an agent (or reason), else None."""
    if not name:
        return None
    try:
        return check_name(name, "name", separator_ok=separator_ok)
    except Rejected:
        return None


def summary(stats: MapStats) -> str:
    """One line for stderr: the skips by reason and the ignored lines by verb."""
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.skipped.items())) or "none"
    ignored = ", ".join(f"{n} {verb}" for verb, n in sorted(stats.ignored.items()) if n) or "none"
    parts = [f"skipped lines: {skipped}", f"ignored lines: {ignored}"]
    if stats.closed_at_restart:
        parts.append(f"calls ended by QUEUESTART: {stats.closed_at_restart}")
    if stats.rebuilt_entries:
        parts.append(f"queue entries rebuilt from hold times: {stats.rebuilt_entries}")
    if stats.forgotten:
        parts.append(f"open calls forgotten after silence: {stats.forgotten}")
    if stats.agent_lines:
        parts.append(f"agent lines: {stats.agent_lines}")
    if stats.reasons_dropped:
        parts.append(f"pause reasons left out (not a usable name): {stats.reasons_dropped}")
    return "; ".join(parts)


@dataclass
class ReplayPlan:
    """A whole log mapped: the events in event-time order (ties in file order), ready to produce."""

    events: list[Emitted]
    calls: int
    agents: int
    stats: MapStats
    skips: list[Skip]


def load(
    paths: Iterable[str | os.PathLike[str]], form: str = "file", tz: tzinfo = UTC
) -> ReplayPlan:
    """Map files in the order given (oldest first: one mapper reads them all, so a call that
    spans a rotation is whole), then sort the events by ts, stably."""
    mapper = QueueLogMapper(form, tz)
    timed: list[tuple[int, Emitted]] = []
    for path in paths:
        mapper.source = os.fspath(path)
        with open(path, "rb") as lines:
            for number, raw in enumerate(lines, start=1):
                for emitted in mapper.feed(raw.decode("utf-8", "replace"), number):
                    timed.append((parse_ts(emitted[1]["ts"]), emitted))
    timed.sort(key=lambda item: item[0])
    return ReplayPlan(
        events=[emitted for _, emitted in timed],
        calls=len({key for _, (key, event) in timed if "call_id" in event}),
        agents=len({key for _, (key, event) in timed if "call_id" not in event}),
        stats=mapper.stats,
        skips=mapper.skips,
    )
