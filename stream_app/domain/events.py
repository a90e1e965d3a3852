"""Parse and validate one `call-events` record (contract §1).

Every record either becomes an `Event` or raises `Rejected` with one reason from
`REJECT_REASONS`: the caller routes it to the dead-letter topic and counts it under that
reason, so nothing is dropped silently. The checks run in a fixed order (size, JSON, shape,
required fields, type, timestamp, optional fields, per-type requirements) so that a record
with several faults is always counted under the same reason.

This runs once per event: the JSON is parsed once, and a timestamp string's shape is
checked by hand (no regex) before `datetime.fromisoformat` computes it, because on its own
it accepts far more than RFC 3339 (week dates, basic format, no seconds, no offset).
"""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import orjson

from stream_app.domain.model import TYPE_RANK, Event

REJECT_REASONS: frozenset[str] = frozenset(
    {
        "oversized",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "unknown_type",
        "invalid_timestamp",
        "future_timestamp",
        "missing_queue",
        "missing_agent",
        "late",  # raised downstream, past the retention of the window state
        "too_many_queues",  # raised downstream: a new queue beyond MAX_QUEUES
    }
)

# Sane event times: 1970-01-01T00:00:00Z (inclusive) to 10000-01-01T00:00:00Z (exclusive).
MIN_TS = 0
MAX_TS = 253_402_300_800_000

# Names that become Prometheus label values and parts of output keys (`queue|interval_start`).
MAX_NAME_CHARS = 200
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (Cc)
KEY_SEPARATOR = "|"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_DAY_MS = 86_400_000
_MS = timedelta(milliseconds=1)
_DIGITS = "0123456789"


class Rejected(Exception):
    """An input record that cannot become an `Event`.

    `reason` is a fixed label (safe for metrics and DLQ headers); `detail` is free text for
    humans and may quote the input, so it must never become a metric label.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


_SHORT = reprlib.Repr()  # bounded in depth and length: JSON may nest past Python's repr limit
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 200, 200


def quote(value: object, limit: int = 60) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_event(
    raw: bytes | None,
    *,
    now_ms: int,
    max_bytes: int = 65536,
    max_future_ms: int = 300_000,
) -> Event:
    """Validate one record value; `now_ms` is the wall clock, to reject events from the future."""
    obj = decode_record(raw, max_bytes)
    event_id = required_str(obj, "event_id")
    call_id = required_str(obj, "call_id")
    type_ = required_str(obj, "type")
    if type_ not in TYPE_RANK:
        raise Rejected("unknown_type", f"type {quote(type_)}")
    ts = event_time(obj, now_ms, max_future_ms)
    queue = optional_name(obj, "queue")
    agent_id = optional_name(obj, "agent_id")
    tenant = optional_name(obj, "tenant", separator_ok=True)
    reason = optional_str(obj, "reason")
    if queue is None and type_ == "queue_entered":
        raise Rejected("missing_queue", "queue_entered needs a queue")
    if agent_id is None and type_ == "call_answered":
        raise Rejected("missing_agent", "call_answered needs an agent_id")
    return Event(event_id, call_id, type_, ts, queue, agent_id, tenant, reason)


def decode_record(raw: bytes | None, max_bytes: int) -> dict[str, object]:
    """The record value as a JSON object: the checks every input topic starts with."""
    if raw is None:
        raise Rejected("invalid_json", "the record has no value")
    if len(raw) > max_bytes:
        raise Rejected("oversized", f"{len(raw)} bytes, more than {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", str(exc)) from None
    if type(obj) is not dict:
        raise Rejected("not_an_object", f"a JSON {type(obj).__name__}, not an object")
    return obj


def event_time(obj: dict[str, object], now_ms: int, max_future_ms: int) -> int:
    """The record's `ts`, refused when it lies further ahead of the wall clock than allowed."""
    raw_ts = obj.get("ts")
    if raw_ts is None:
        raise Rejected("missing_field", "ts is missing")
    ts = parse_ts(raw_ts)
    if ts > now_ms + max_future_ms:
        raise Rejected(
            "future_timestamp", f"ts {format_ts(ts)} is {ts - now_ms} ms ahead of the wall clock"
        )
    return ts


def required_str(obj: dict[str, object], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise Rejected("missing_field", f"{name} is missing")
    if type(value) is not str or not value:
        raise Rejected("invalid_field", f"{name} must be a non-empty string, got {quote(value)}")
    return value


def optional_str(obj: dict[str, object], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise Rejected("invalid_field", f"{name} must be a string, got {quote(value)}")
    return value or None  # an empty string says as much as an absent field


def optional_name(obj: dict[str, object], name: str, *, separator_ok: bool = False) -> str | None:
    value = optional_str(obj, name)
    return None if value is None else check_name(value, name, separator_ok=separator_ok)


def check_name(value: str, name: str, *, separator_ok: bool = False) -> str:
    """A queue, agent or tenant: at most MAX_NAME_CHARS, no control characters (they would reach
    Prometheus labels and BI keys); no '|' in a queue or agent, which separates the parts of
    the `queue-metrics` (and agent) keys, so a name that holds it is rejected, not escaped."""
    if len(value) > MAX_NAME_CHARS:
        raise Rejected(
            "invalid_field", f"{name} has {len(value)} characters, more than {MAX_NAME_CHARS}"
        )
    if _CONTROL.search(value) is not None:
        raise Rejected("invalid_field", f"{name} holds a control character: {quote(value)}")
    if not separator_ok and KEY_SEPARATOR in value:
        raise Rejected(
            "invalid_field",
            f"{name} holds '{KEY_SEPARATOR}', the separator of output keys: {quote(value)}",
        )
    return value


def parse_ts(value: object) -> int:
    """Epoch ms from an integer of epoch ms or an RFC 3339 string with an offset.

    Floats are refused (a float of epoch ms has usually lost precision, or is seconds);
    a string without an offset is refused because its instant is unknowable.
    """
    if type(value) is int:
        ts = value
    elif type(value) is str:
        parsed = _parse_rfc3339(value)
        if parsed is None:
            raise Rejected("invalid_timestamp", f"ts {quote(value)} is not RFC 3339 with an offset")
        ts = parsed
    else:
        raise Rejected(
            "invalid_timestamp", f"ts must be an RFC 3339 string or integer ms, got {quote(value)}"
        )
    if not MIN_TS <= ts < MAX_TS:
        raise Rejected("invalid_timestamp", f"ts {quote(value)} is outside years 1970..9999")
    return ts


def _parse_rfc3339(s: str) -> int | None:
    """`YYYY-MM-DD(T|t| )hh:mm:ss[.frac](Z|z|±hh:mm)` → epoch ms (fraction truncated), else None.

    The shape is checked here, by its separators; `datetime.fromisoformat` (C, fast) then
    checks the digits and ranges (month, day, leap years, hour, minute, second) and sums.
    """
    if (
        len(s) < 20
        or not s.isascii()
        or s[4] != "-"
        or s[7] != "-"
        or s[13] != ":"
        or s[16] != ":"
        or s[10] not in "Tt "
    ):
        return None
    rest = s[19:]
    if rest[0] == ".":
        offset = rest[1:].lstrip(_DIGITS)
        if len(offset) == len(rest) - 1:  # a dot without digits
            return None
    else:
        offset = rest
    if offset == "Z":
        normal = s  # fromisoformat takes "Z" (3.11+), not "z"
    elif offset == "z":
        normal = s[:-1] + "Z"
    elif len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        hm = offset[1:3] + offset[4:6]
        if not (hm.isascii() and hm.isdigit()) or hm[:2] > "23" or hm[2:] > "59":
            return None
        normal = s
    else:
        return None
    if s[10] != "T":
        normal = normal[:10] + "T" + normal[11:]
    try:
        instant = datetime.fromisoformat(normal)
    except ValueError:  # out of range: month 13, Feb 30, hour 24, second 60 (leap seconds)...
        return None
    return (instant - _EPOCH) // _MS


@lru_cache(maxsize=4096)
def format_ts(ms: int) -> str:
    """RFC 3339 in UTC, milliseconds only when there are any: the form used in output keys.

    Runs several times per event: a call's outcome formats the same instants again at each of
    its later events (hence the cache), the time of day is plain arithmetic and the date, the
    costly part, is formatted once per day."""
    day, in_day = divmod(ms, _DAY_MS)
    seconds, frac = divmod(in_day, 1000)
    text = f"{_date_part(day)}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{frac:03d}Z" if frac else f"{text}Z"


@lru_cache(maxsize=1024)
def _date_part(day: int) -> str:
    """`YYYY-MM-DDT` of a day counted from the epoch."""
    date = _EPOCH_DATE + timedelta(days=day)
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
