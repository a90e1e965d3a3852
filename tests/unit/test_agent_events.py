"""`agent-events` validation against contract §6: the rules and reject reasons of call events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.agent_events import parse_agent_event
from stream_app.domain.events import MAX_NAME_CHARS, REJECT_REASONS, Rejected
from stream_app.domain.model import AGENT_EVENT_TYPES, AgentEvent

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z
NOW = T0 + 3_600_000
_ABSENT: Any = object()  # leave the field out of the record


def raw(**fields: Any) -> bytes:
    record: dict[str, Any] = {"event_id": "e1", "agent_id": "a1", "type": "agent_ready", "ts": T0}
    record.update(fields)
    return orjson.dumps({k: v for k, v in record.items() if v is not _ABSENT})


def reason_of(data: bytes | None, **kwargs: Any) -> str:
    with pytest.raises(Rejected) as info:
        parse_agent_event(data, now_ms=kwargs.pop("now_ms", NOW), **kwargs)
    return info.value.reason


# -- accepted records ---------------------------------------------------------------------------


def test_a_minimal_event_parses() -> None:
    assert parse_agent_event(raw(), now_ms=NOW) == AgentEvent("e1", "a1", "agent_ready", T0)


@pytest.mark.parametrize("type_", AGENT_EVENT_TYPES)
def test_every_agent_event_type_is_accepted(type_: str) -> None:
    event = parse_agent_event(raw(type=type_, queues=["q"]), now_ms=NOW)
    assert event.type == type_


def test_a_login_carries_its_queues_distinct_and_sorted() -> None:
    event = parse_agent_event(
        raw(type="agent_logged_in", queues=["sales", "billing", "sales"], tenant="acme|x"),
        now_ms=NOW,
    )
    assert event == AgentEvent(
        "e1", "a1", "agent_logged_in", T0, queues=("billing", "sales"), tenant="acme|x"
    )


def test_an_empty_queue_list_is_an_agent_serving_no_queue() -> None:
    assert parse_agent_event(raw(type="agent_queues", queues=[]), now_ms=NOW).queues == ()


def test_a_not_ready_reason_is_carried_and_optional() -> None:
    event = parse_agent_event(raw(type="agent_not_ready", reason="lunch"), now_ms=NOW)
    assert event.reason == "lunch"
    for reason in (_ABSENT, None, ""):
        assert (
            parse_agent_event(raw(type="agent_not_ready", reason=reason), now_ms=NOW).reason is None
        )


def test_fields_of_another_type_are_ignored() -> None:
    event = parse_agent_event(raw(type="agent_ready", queues=5, reason=["x"]), now_ms=NOW)
    assert event == AgentEvent("e1", "a1", "agent_ready", T0)


def test_an_rfc3339_ts_equals_the_same_instant_in_ms() -> None:
    assert parse_agent_event(raw(ts="2026-03-02T11:00:00+01:00"), now_ms=NOW).ts == T0


# -- rejected records ---------------------------------------------------------------------------


def test_no_value_bad_json_and_not_an_object() -> None:
    assert reason_of(None) == "invalid_json"
    assert reason_of(b"{") == "invalid_json"
    assert reason_of(b"[]") == "not_an_object"


def test_a_record_over_the_size_limit_is_oversized() -> None:
    data = raw()
    assert parse_agent_event(data, now_ms=NOW, max_bytes=len(data)).event_id == "e1"
    assert reason_of(data, max_bytes=len(data) - 1) == "oversized"


@pytest.mark.parametrize("name", ["event_id", "agent_id", "type", "ts"])
@pytest.mark.parametrize("value", [None, _ABSENT])
def test_a_missing_or_null_required_field(name: str, value: Any) -> None:
    assert reason_of(raw(**{name: value})) == "missing_field"


@pytest.mark.parametrize("name", ["event_id", "agent_id", "type"])
@pytest.mark.parametrize("value", ["", 1, True, ["a1"], {"id": "a1"}])
def test_a_required_string_of_the_wrong_type_or_empty(name: str, value: Any) -> None:
    assert reason_of(raw(**{name: value})) == "invalid_field"


@pytest.mark.parametrize(
    "agent_id", ["a|1", "a\n1", "a\x00", "\x9f", "x" * (MAX_NAME_CHARS + 1)], ids=repr
)
def test_an_agent_id_that_cannot_be_a_key_is_invalid(agent_id: str) -> None:
    assert reason_of(raw(agent_id=agent_id)) == "invalid_field"


def test_an_agent_id_of_the_maximum_length_is_accepted() -> None:
    agent_id = "x" * MAX_NAME_CHARS
    assert parse_agent_event(raw(agent_id=agent_id), now_ms=NOW).agent_id == agent_id


@pytest.mark.parametrize("type_", ["agent_login", "AGENT_READY", "call_started", "agent_paused"])
def test_an_unknown_type(type_: str) -> None:
    assert reason_of(raw(type=type_)) == "unknown_type"


@pytest.mark.parametrize("type_", ["agent_logged_in", "agent_queues"])
def test_a_queue_list_type_without_queues(type_: str) -> None:
    for queues in (_ABSENT, None):
        assert reason_of(raw(type=type_, queues=queues)) == "missing_queue"


@pytest.mark.parametrize(
    "queues",
    ["sales", {"sales": 1}, 3, [""], [None], [1], [["sales"]], ["a|b"], ["q\t"], ["x" * 201]],
    ids=repr,
)
def test_a_bad_queue_list_is_invalid(queues: Any) -> None:
    assert reason_of(raw(type="agent_logged_in", queues=queues)) == "invalid_field"


@pytest.mark.parametrize("reason", [1, ["break"], "x" * 201, "bre\nak"], ids=repr)
def test_a_bad_not_ready_reason_is_invalid(reason: Any) -> None:
    assert reason_of(raw(type="agent_not_ready", reason=reason)) == "invalid_field"


@pytest.mark.parametrize("ts", ["2026-03-02T10:00:00", 1.5e12, "now", -1, True])
def test_a_bad_ts_is_an_invalid_timestamp(ts: Any) -> None:
    assert reason_of(raw(ts=ts)) == "invalid_timestamp"


def test_future_timestamps_up_to_the_limit_are_accepted_and_past_it_rejected() -> None:
    assert parse_agent_event(raw(ts=NOW + 300_000), now_ms=NOW).ts == NOW + 300_000
    assert reason_of(raw(ts=NOW + 300_001)) == "future_timestamp"


def test_checks_run_in_a_fixed_order() -> None:
    assert reason_of(raw(event_id=None, type="nope")) == "missing_field"
    assert reason_of(raw(agent_id="a|b", type="nope")) == "invalid_field"
    assert reason_of(raw(type="nope", ts="garbage")) == "unknown_type"
    assert reason_of(raw(ts="garbage", tenant=1)) == "invalid_timestamp"
    assert reason_of(raw(ts=NOW + 10**9, tenant=1)) == "future_timestamp"
    assert reason_of(raw(type="agent_queues", tenant=1)) == "invalid_field"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["event_id", "agent_id", "type", "ts", "queues", "reason", "tenant"]),
        _JSON | st.sampled_from([*AGENT_EVENT_TYPES, T0, "e", ["q"]]),
    )
)
def test_any_object_parses_or_is_rejected_with_a_known_reason(record: dict[str, Any]) -> None:
    """Nothing but `Rejected` escapes, and an accepted event holds only validated values."""
    try:
        event = parse_agent_event(orjson.dumps(record), now_ms=NOW)
    except Rejected as rejected:
        assert rejected.reason in REJECT_REASONS
        return
    assert event.agent_id == record["agent_id"] and event.type in AGENT_EVENT_TYPES
    assert (event.queues is not None) == (event.type in ("agent_logged_in", "agent_queues"))
