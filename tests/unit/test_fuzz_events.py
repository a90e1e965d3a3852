"""Fuzzing the event parser and the calls stage: any bytes, any JSON, any mutation of a valid
event either becomes an event or is rejected with a reason, never another exception (a crash
in the calls agent would stop every partition it owns, not just the bad record).
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream_app.domain.calls_stage import CallsStage, Outcome
from stream_app.domain.clock import EventClock
from stream_app.domain.events import MAX_TS, MIN_TS, REJECT_REASONS, Rejected, parse_event
from stream_app.domain.model import TYPE_RANK, Event
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sla import SlaConfig
from tests.hostile import (
    HOSTILE_TIMESTAMPS,
    HOSTILE_TOKENS,
    KNOWN_FIELDS,
    encode_fields,
    hostile_value,
    mutate_bytes,
    mutate_event,
    valid_events,
)
from tests.unit.dict_store import DictStore

HOUR = 3_600_000
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp() * 1000)
NOW = T0 + 2 * HOUR
MAX_BYTES = 4096
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STAGE_FUZZ = settings(FUZZ, max_examples=60)

BASE = valid_events("c1", T0) + valid_events("c2", T0 + HOUR)

# Any JSON document orjson writes (64-bit integers, finite floats, any text but surrogates).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Plausible field values next to hostile ones, so the deeper checks get reached too.
field_tokens = st.one_of(
    st.sampled_from([orjson.dumps(v) for e in BASE for v in e.values()]),
    st.sampled_from(HOSTILE_TOKENS),
    st.sampled_from(HOSTILE_TIMESTAMPS),
    st.sampled_from([orjson.dumps(kind) for kind in TYPE_RANK]),
    # Any text, lone surrogates included, as a JSON string with \u escapes.
    st.text(st.characters(codec=None), max_size=30).map(lambda s: json.dumps(s).encode()),
    json_values.map(orjson.dumps),
)
objects = st.lists(
    st.tuples(st.sampled_from([*KNOWN_FIELDS, "note"]), field_tokens), max_size=10
).map(encode_fields)


def check(raw: bytes | None) -> Event | None:
    """The parser's verdict on `raw`: an event that honours contract §1, or None if rejected
    with a reason of its own (never `late`: only the stage knows lateness)."""
    try:
        event = parse_event(raw, now_ms=NOW, max_bytes=MAX_BYTES)
    except Rejected as rejected:
        assert rejected.reason in REJECT_REASONS - {"late"}, rejected
        assert rejected.detail
        return None
    for name in ("event_id", "call_id", "type"):
        value = getattr(event, name)
        assert type(value) is str and value, (name, value)
    assert event.type in TYPE_RANK
    assert MIN_TS <= event.ts < MAX_TS and event.ts <= NOW + 300_000
    for name in ("queue", "agent_id", "tenant", "reason"):
        value = getattr(event, name)
        assert value is None or (type(value) is str and value), (name, value)
    assert event.type != "queue_entered" or event.queue is not None
    assert event.type != "call_answered" or event.agent_id is not None
    return event


@settings(FUZZ)
@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"\xef\xbb\xbf{}")  # a UTF-8 BOM
def test_any_bytes_are_an_event_or_a_rejection(raw: bytes) -> None:
    check(raw)


@settings(FUZZ)
@given(json_values)
def test_any_json_document_is_an_event_or_a_rejection(value: Any) -> None:
    check(orjson.dumps(value))


@settings(FUZZ)
@given(objects)
@example(b'{"event_id":"e","call_id":"c","type":"call_started","ts":' + b"1" * 400 + b"}")
@example(b'{"event_id":"e","call_id":"c","type":"call_started","ts":NaN}')
@example(b'{"event_id":"e","call_id":"c","type":"call_started","ts":1e400}')
@example(b'{"event_id":"\\ud800","call_id":"c","type":"call_started","ts":0}')
@example(b'{"event_id":"e","call_id":"c","type":"call_started","ts":0,"queue":"\\u0000|"}')
@example(b'{"event_id":"e","call_id":"c","type":"call_started","ts":"9999-12-31T23:59:59-23:59"}')
def test_any_object_of_known_fields_is_an_event_or_a_rejection(raw: bytes) -> None:
    check(raw)


def test_a_value_nested_past_pythons_recursion_limit_is_rejected() -> None:
    """Within orjson's depth limit (1024) but past Python's recursion limit (1000), which
    hypothesis raises inside its tests: so this one runs outside them. Quoting the value in
    the rejection's detail must not raise RecursionError."""
    for depth in (999, 1000, 1023):
        nested = b"[" * depth + b"]" * depth
        assert check(b'{"event_id":' + nested + b"}") is None
        assert (
            check(b'{"event_id":"e","call_id":"c","type":"call_started","ts":' + nested + b"}")
            is None
        )


@settings(FUZZ)
@given(st.randoms(use_true_random=False))
def test_mutations_of_valid_events_are_events_or_rejections(rng: random.Random) -> None:
    event = rng.choice(BASE)
    check(mutate_event(event, rng))
    check(mutate_bytes(orjson.dumps(event), rng))


@settings(FUZZ)
@given(st.integers(min_value=-5, max_value=5), st.sampled_from(BASE))
def test_records_around_the_size_limit_are_events_or_oversized(
    offset: int, event: dict[str, object]
) -> None:
    plain = orjson.dumps({**event, "note": ""})
    raw = orjson.dumps({**event, "note": "x" * (MAX_BYTES - len(plain) + offset)})
    assert len(raw) == MAX_BYTES + offset
    assert (check(raw) is None) == (offset > 0)


def test_every_valid_base_event_parses() -> None:
    for event in BASE:
        assert check(orjson.dumps(event)) is not None, event


# -- the whole calls stage, then the queues stage ------------------------------------------------


class Pipeline:
    """The calls stage on an in-memory store as the calls agent drives it (a re-keyed record
    comes back under its call_id), its emissions applied to a queues stage."""

    def __init__(self) -> None:
        self.clock = EventClock()
        self.calls = CallsStage(
            DictStore(),
            SlaConfig(),
            self.clock,
            max_event_bytes=MAX_BYTES,
            retention_ms=48 * HOUR,
            call_ttl_ms=6 * HOUR,
        )
        self.queues = QueueStage(DictStore(), WindowConfig(), SlaConfig())
        self.offsets = itertools.count()
        self.counted = 0  # records counted under an event type, as callcenter_events_total
        self.rejected = 0  # records counted under a reason, as callcenter_events_rejected_total

    def feed(self, key: bytes | None, raw: bytes | None) -> Outcome:
        outcome = self.calls.process(key, raw, NOW, 0)
        if outcome.reject is not None:
            assert outcome.reject in REJECT_REASONS, outcome
            assert outcome.emission is None
            assert outcome.late == (outcome.reject == "late")
            self.rejected += 1
            return outcome
        assert outcome.event is not None, outcome
        assert outcome.event == check(raw)
        if outcome.rekey is not None:
            assert outcome.rekey == outcome.event.call_id
            assert outcome.emission is None
            again = self.feed(outcome.rekey.encode(), raw)
            assert again.rekey is None  # under its own key it is processed
            return outcome
        self.counted += 1
        if outcome.emission is not None:
            if outcome.emission.outcome is not None:
                orjson.dumps(outcome.emission.outcome)  # a call-outcomes record
            for queue, contribution in outcome.emission.contributions.items():
                self.queues.apply(queue, outcome.event.call_id, contribution, next(self.offsets))
        return outcome

    def finish(self) -> None:
        """What ticks and scrapes do afterwards must not fail on what was let in either."""
        now = self.clock.newest
        swept = self.calls.sweep(0)
        for call_id, emission in swept.emissions:
            for queue, contribution in emission.contributions.items():
                self.queues.apply(queue, call_id, contribution, next(self.offsets))
        if now is None:
            return
        for queue in self.queues.queues():
            for window in ("interval", "15m", "1h", "today"):
                self.queues.window(queue, window, now)
            for _, record in self.queues.close_due(queue, now + 24 * HOUR):
                orjson.dumps(record)
        for _, record in self.queues.published():
            orjson.dumps(record)
        self.queues.sweep(now + 72 * HOUR)


@settings(STAGE_FUZZ)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=30))
@example(random.Random(0), 1)
def test_the_calls_stage_counts_or_rejects_every_hostile_record(
    rng: random.Random, count: int
) -> None:
    pipeline = Pipeline()
    for _ in range(count):
        raw = hostile_value(rng, BASE)
        parsed = None if raw is None else orjson.loads(raw) if _is_object(raw) else None
        call_id = parsed.get("call_id") if isinstance(parsed, dict) else None
        keys: list[bytes | None] = [None, b"", b"other", rng.randbytes(4)]
        if isinstance(call_id, str):
            keys += [call_id.encode()] * 4
        pipeline.feed(rng.choice(keys), raw)
    assert pipeline.counted + pipeline.rejected == count
    pipeline.finish()


def _is_object(raw: bytes) -> bool:
    try:
        return type(orjson.loads(raw)) is dict
    except orjson.JSONDecodeError:
        return False


@settings(STAGE_FUZZ)
@given(st.lists(st.tuples(st.sampled_from(["q1", "q2"]), objects), max_size=20))
def test_the_calls_stage_takes_objects_of_known_fields(records: list[tuple[str, bytes]]) -> None:
    pipeline = Pipeline()
    for key, raw in records:
        pipeline.feed(key.encode(), raw)
    assert pipeline.counted + pipeline.rejected == len(records)
    pipeline.finish()
