"""Input validation against contract §1: every reject reason, every timestamp form, fuzzing."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.events import (
    MAX_NAME_CHARS,
    MAX_TS,
    REJECT_REASONS,
    Rejected,
    format_ts,
    parse_event,
    parse_ts,
)
from stream_app.domain.model import EVENT_TYPES, Event

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z
NOW = T0 + 3_600_000
_ABSENT: Any = object()  # leave the field out of the record


def raw(**fields: Any) -> bytes:
    record: dict[str, Any] = {"event_id": "e1", "call_id": "c1", "type": "call_started", "ts": T0}
    record.update(fields)
    return orjson.dumps({k: v for k, v in record.items() if v is not _ABSENT})


def reason_of(data: bytes | None, **kwargs: Any) -> str:
    with pytest.raises(Rejected) as info:
        parse_event(data, now_ms=kwargs.pop("now_ms", NOW), **kwargs)
    return info.value.reason


# -- accepted records ---------------------------------------------------------------------------


def test_a_minimal_event_parses() -> None:
    assert parse_event(raw(), now_ms=NOW) == Event("e1", "c1", "call_started", T0)


def test_every_field_is_carried() -> None:
    data = raw(type="queue_left", queue="sales", agent_id="a7", tenant="acme", reason="timeout")
    assert parse_event(data, now_ms=NOW) == Event(
        "e1", "c1", "queue_left", T0, queue="sales", agent_id="a7", tenant="acme", reason="timeout"
    )


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_event_type_is_accepted(type_: str) -> None:
    event = parse_event(raw(type=type_, queue="q", agent_id="a"), now_ms=NOW)
    assert event.type == type_


def test_an_rfc3339_ts_equals_the_same_instant_in_ms() -> None:
    assert parse_event(raw(ts="2026-03-02T10:00:00Z"), now_ms=NOW).ts == T0


def test_unknown_extra_fields_are_ignored() -> None:
    data = raw(extra={"nested": [1, 2]}, priority=3, queue_name="x")
    assert parse_event(data, now_ms=NOW) == Event("e1", "c1", "call_started", T0)


@pytest.mark.parametrize("name", ["queue", "agent_id", "tenant", "reason"])
@pytest.mark.parametrize("value", [None, "", _ABSENT])
def test_optional_fields_absent_null_or_empty_are_none(name: str, value: Any) -> None:
    event = parse_event(raw(**{name: value}), now_ms=NOW)
    assert getattr(event, name) is None


def test_unicode_strings_are_kept_as_is() -> None:
    event = parse_event(raw(type="queue_entered", queue="Vertrieb-Süd ☎"), now_ms=NOW)
    assert event.queue == "Vertrieb-Süd ☎"


def test_a_record_exactly_at_the_size_limit_is_accepted() -> None:
    data = raw()
    assert parse_event(data, now_ms=NOW, max_bytes=len(data)).event_id == "e1"


def test_bytearray_and_memoryview_are_accepted() -> None:
    # Kafka clients hand over bytes, but a buffer type must not be refused as "not JSON".
    assert parse_event(bytearray(raw()), now_ms=NOW).event_id == "e1"  # type: ignore[arg-type]


# -- rejected records ---------------------------------------------------------------------------


def test_no_value_is_invalid_json() -> None:
    assert reason_of(None) == "invalid_json"


def test_a_record_over_the_size_limit_is_oversized() -> None:
    data = raw()
    assert reason_of(data, max_bytes=len(data) - 1) == "oversized"
    assert reason_of(b"x" * 65537) == "oversized"


def test_oversized_is_checked_before_parsing() -> None:
    assert reason_of(b"{" * 100, max_bytes=10) == "oversized"


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"{'a': 1}", b"\xff\xfe", b'{"event_id": "\xff"}', b"NaN", b"1e400", b"{}{}"],
)
def test_not_json_or_not_utf8_is_invalid_json(data: bytes) -> None:
    assert reason_of(data) == "invalid_json"


@pytest.mark.parametrize("data", [b"[]", b"[{}]", b"1", b'"x"', b"null", b"true", b"1.5"])
def test_json_that_is_not_an_object_is_rejected(data: bytes) -> None:
    assert reason_of(data) == "not_an_object"


@pytest.mark.parametrize("name", ["event_id", "call_id", "type", "ts"])
@pytest.mark.parametrize("value", [None, _ABSENT])
def test_a_missing_or_null_required_field(name: str, value: Any) -> None:
    assert reason_of(raw(**{name: value})) == "missing_field"


@pytest.mark.parametrize("name", ["event_id", "call_id", "type"])
@pytest.mark.parametrize("value", ["", 1, 1.5, True, ["e1"], {"id": "e1"}])
def test_a_required_string_of_the_wrong_type_or_empty(name: str, value: Any) -> None:
    assert reason_of(raw(**{name: value})) == "invalid_field"


@pytest.mark.parametrize("name", ["queue", "agent_id", "tenant", "reason"])
@pytest.mark.parametrize("value", [1, 0, False, 1.5, ["q"], {"q": 1}])
def test_an_optional_string_of_the_wrong_type(name: str, value: Any) -> None:
    assert reason_of(raw(**{name: value})) == "invalid_field"


@pytest.mark.parametrize("type_", ["call_start", "CALL_STARTED", " call_started", "hold"])
def test_an_unknown_type(type_: str) -> None:
    assert reason_of(raw(type=type_)) == "unknown_type"


def test_queue_entered_without_a_queue() -> None:
    for queue in (_ABSENT, None, ""):
        assert reason_of(raw(type="queue_entered", queue=queue)) == "missing_queue"


def test_call_answered_without_an_agent() -> None:
    for agent in (_ABSENT, None, ""):
        assert reason_of(raw(type="call_answered", agent_id=agent)) == "missing_agent"


def test_queue_and_agent_are_optional_on_other_types() -> None:
    for type_ in EVENT_TYPES:
        if type_ not in ("queue_entered", "call_answered"):
            assert parse_event(raw(type=type_), now_ms=NOW).queue is None


def test_future_timestamps_up_to_the_limit_are_accepted_and_past_it_rejected() -> None:
    assert parse_event(raw(ts=NOW + 300_000), now_ms=NOW).ts == NOW + 300_000
    assert reason_of(raw(ts=NOW + 300_001)) == "future_timestamp"
    assert reason_of(raw(ts=NOW + 1001), max_future_ms=1000) == "future_timestamp"
    assert parse_event(raw(ts=NOW + 1000), now_ms=NOW, max_future_ms=1000).ts == NOW + 1000


def test_old_timestamps_are_not_rejected_here() -> None:
    # Lateness depends on the window state's retention: the stages decide, not the parser.
    assert parse_event(raw(ts=0), now_ms=NOW).ts == 0


def test_checks_run_in_a_fixed_order() -> None:
    """A record with several faults is always counted under the same, first reason."""
    assert reason_of(raw(event_id=None, type="nope")) == "missing_field"
    assert reason_of(raw(type="nope", ts="garbage")) == "unknown_type"
    assert reason_of(raw(ts="garbage", queue=1)) == "invalid_timestamp"
    assert reason_of(raw(ts=NOW + 10**9, queue=1)) == "future_timestamp"
    assert reason_of(raw(type="queue_entered", agent_id=5)) == "invalid_field"
    assert reason_of(raw(event_id="", call_id=None)) == "invalid_field"


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00Z", T0),
        ("2026-03-02T10:00:00z", T0),
        ("2026-03-02t10:00:00Z", T0),
        ("2026-03-02 10:00:00Z", T0),
        ("2026-03-02T10:00:30.250Z", T0 + 30_250),
        ("2026-03-02T10:00:30.25Z", T0 + 30_250),
        ("2026-03-02T10:00:30.2Z", T0 + 30_200),
        ("2026-03-02T10:00:30.2509Z", T0 + 30_250),
        ("2026-03-02T10:00:30.999999999999Z", T0 + 30_999),
        ("2026-03-02T10:00:30.000Z", T0 + 30_000),
        ("2026-03-02T12:00:00+02:00", T0),
        ("2026-03-02T04:30:00-05:30", T0),
        ("2026-03-02T10:00:00+00:00", T0),
        ("2026-03-02T10:00:00-00:00", T0),
        ("2026-03-03T09:59:00+23:59", T0),
        ("2026-03-02T00:00:00.001-10:00", T0 + 1),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("9999-12-31T23:59:59.999Z", MAX_TS - 1),
    ],
)
def test_rfc3339_forms(text: str, expected: int) -> None:
    assert parse_ts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-02",  # date only
        "2026-03-02T10:00:00",  # naive: no offset
        "2026-03-02T10:00:00.250",  # naive with a fraction
        "2026-03-02T10:00Z",  # no seconds
        "2026-03-02T10Z",
        "20260302T100000Z",  # ISO 8601 basic format
        "2026-W10-1T10:00:00Z",  # week date
        "2026-061T10:00:00Z",  # ordinal date
        "2026-03-02T10:00:00.Z",  # a dot without digits
        "2026-03-02T10:00:00,250Z",  # comma fraction
        "2026-03-02T10:00:00+0200",  # offset without a colon
        "2026-03-02T10:00:00+02",
        "2026-03-02T10:00:00+02:00:00",  # offset with seconds
        "2026-03-02T10:00:00+24:00",
        "2026-03-02T10:00:00+02:60",
        "2026-03-02T10:00:00 Z",
        "2026-03-02T10:00:00ZZ",
        "2026-03-02T10:00:00UTC",
        "2026-03-02T10:00:00GMT+1",
        "2026-03-02_10:00:00Z",  # separator other than T, t or space
        "2026-13-02T10:00:00Z",
        "2026-00-02T10:00:00Z",
        "2026-02-29T10:00:00Z",  # not a leap year
        "2026-03-32T10:00:00Z",
        "2026-03-00T10:00:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T10:60:00Z",
        "2016-12-31T23:59:60Z",  # leap second
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",  # before 1970
        "1970-01-01T00:30:00+01:00",  # before 1970 in UTC
        "+2026-03-02T10:00:00Z",
        "-2026-03-02T10:00:00Z",
        "2026-3-2T10:00:00Z",
        "\uff12\uff10\uff12\uff16-03-02T10:00:00Z",  # full-width digits
        "2026-03-02T10:00:0\u0663Z",  # Arabic-Indic digit
        "2026-03-02T10:00:00.\u0663Z",
        "1772445600000",  # epoch ms as a string
        "",
        "now",
        "yesterday at noon",
    ],
)
def test_invalid_timestamp_strings(text: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_ts(text)
    assert info.value.reason == "invalid_timestamp"


@pytest.mark.parametrize(
    "value",
    [1.7724456e12, 1772445600000.0, True, False, -1, MAX_TS, 10**30, [T0], {"ms": T0}, b"x"],
)
def test_invalid_timestamp_values(value: object) -> None:
    with pytest.raises(Rejected) as info:
        parse_ts(value)
    assert info.value.reason == "invalid_timestamp"


def test_integer_ms_at_the_ends_of_the_sane_range() -> None:
    assert parse_ts(0) == 0
    assert parse_ts(MAX_TS - 1) == MAX_TS - 1


@pytest.mark.parametrize(
    "value", ["1.7724456e12", "1772445600000.0", "true", "99999999999999999999"]
)
def test_float_bool_and_huge_json_numbers_are_invalid_timestamps(value: str) -> None:
    data = b'{"event_id": "e", "call_id": "c", "type": "call_started", "ts": ' + value.encode()
    assert reason_of(data + b"}") == "invalid_timestamp"


_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)


@given(
    instant=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    ),
    offset_min=_OFFSETS,
    digits=st.integers(min_value=0, max_value=12),
    sep=st.sampled_from("Tt "),
    zulu=st.sampled_from(["Z", "z"]),
)
def test_rfc3339_agrees_with_datetime(
    instant: datetime, offset_min: int, digits: int, sep: str, zulu: str
) -> None:
    local = instant.astimezone(timezone(timedelta(minutes=offset_min)))
    frac = f"{local.microsecond:06d}{'7' * 6}"[:digits]
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + frac
    if offset_min == 0 and digits % 2:
        text += zulu
    else:
        sign = "+" if offset_min >= 0 else "-"
        hours, minutes = divmod(abs(offset_min), 60)
        text += f"{sign}{hours:02d}:{minutes:02d}"
    whole = instant.replace(microsecond=0)
    expected_ms = int(whole.timestamp()) * 1000 + int((frac + "000")[:3] if digits else 0)
    assert parse_ts(text) == expected_ms


@given(st.integers(min_value=0, max_value=MAX_TS - 1))
def test_format_ts_round_trips(ms: int) -> None:
    text = format_ts(ms)
    assert parse_ts(text) == ms
    assert text.endswith("Z")
    assert ("." in text) == (ms % 1000 != 0)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (T0, "2026-03-02T10:00:00Z"),
        (T0 + 30_250, "2026-03-02T10:00:30.250Z"),
        (T0 + 1, "2026-03-02T10:00:00.001Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (MAX_TS - 1, "9999-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00Z"),
    ],
)
def test_format_ts(ms: int, text: str) -> None:
    assert format_ts(ms) == text


# -- robustness ---------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_or_parsed_never_crash(data: bytes) -> None:
    try:
        parse_event(data, now_ms=NOW)
    except Rejected as rejected:
        assert rejected.reason in REJECT_REASONS


_FIELD_VALUES = st.one_of(
    st.sampled_from([*EVENT_TYPES, "2026-03-02T10:00:00Z", "2026-03-02T10:00:00", T0, "", "q"]),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    st.dictionaries(
        st.sampled_from(["event_id", "call_id", "type", "ts", "queue", "agent_id", "x"]),
        _FIELD_VALUES,
    )
)
def test_arbitrary_objects_are_rejected_or_parsed_never_crash(record: dict[str, Any]) -> None:
    try:
        event = parse_event(json.dumps(record).encode(), now_ms=NOW)
    except Rejected as rejected:
        assert rejected.reason in REJECT_REASONS
    else:
        assert event.type in EVENT_TYPES
        assert 0 <= event.ts <= NOW + 300_000
        assert event.event_id and event.call_id


def test_rejected_carries_reason_and_detail() -> None:
    with pytest.raises(Rejected) as info:
        parse_event(raw(type="nope"), now_ms=NOW)
    assert info.value.reason == "unknown_type"
    assert "'nope'" in info.value.detail
    assert str(info.value).startswith("unknown_type: ")


def test_rejected_detail_is_bounded_when_quoting_input() -> None:
    with pytest.raises(Rejected) as info:
        parse_event(raw(type="x" * 10_000), now_ms=NOW)
    assert len(info.value.detail) < 200


def test_rejected_refuses_a_reason_outside_the_fixed_set() -> None:
    with pytest.raises(ValueError):
        Rejected("something_new")


def test_rejected_survives_pickling() -> None:
    copy = pickle.loads(pickle.dumps(Rejected("late", "too old")))
    assert (copy.reason, copy.detail) == ("late", "too old")


def test_reject_reasons_are_the_contract_set() -> None:
    assert {
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
        "late",
        "too_many_queues",
    } == REJECT_REASONS


# -- names that reach labels and keys ------------------------------------------------------------


@pytest.mark.parametrize("name", ["queue", "agent_id", "tenant"])
@pytest.mark.parametrize(
    "value", ["a\nb", "\x00", "tab\there", "del\x7f", "c1\x85", "x" * (MAX_NAME_CHARS + 1)]
)
def test_a_name_with_a_control_character_or_too_long_is_invalid(name: str, value: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(raw(**{name: value}), now_ms=NOW)
    assert caught.value.reason == "invalid_field"
    assert name in caught.value.detail


@pytest.mark.parametrize("name", ["queue", "agent_id"])
def test_a_queue_or_agent_holding_the_key_separator_is_invalid(name: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_event(raw(**{name: "sales|2026-03-02T10:00:00Z"}), now_ms=NOW)
    assert caught.value.reason == "invalid_field"
    assert "'|'" in caught.value.detail


def test_names_at_the_limit_and_with_unicode_or_separators_elsewhere_are_kept() -> None:
    event = parse_event(
        raw(queue="q" * MAX_NAME_CHARS, agent_id="Local/2004@from-internal/n", tenant="a|b ☎"),
        now_ms=NOW,
    )
    assert (event.queue, event.agent_id, event.tenant) == (
        "q" * MAX_NAME_CHARS,
        "Local/2004@from-internal/n",
        "a|b ☎",
    )


@given(st.text(max_size=300))
def test_an_accepted_queue_is_short_and_has_no_control_character(value: str) -> None:
    try:
        event = parse_event(raw(queue=value), now_ms=NOW)
    except Rejected as rejected:
        assert rejected.reason in ("invalid_field", "invalid_json")
        return
    assert event.queue is None or (
        0 < len(event.queue) <= MAX_NAME_CHARS
        and "|" not in event.queue
        and all(not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) for c in event.queue)
    )
