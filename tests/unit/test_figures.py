"""Figures against contract §3 and §5: facts, exact merging, derived values, the output record."""

from __future__ import annotations

import dataclasses
import math
from functools import reduce

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.domain.events import parse_ts
from stream_app.domain.figures import (
    Figures,
    contribution_facts,
    interval_key,
    interval_record,
)
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.sla import QueueSla

T0 = parse_ts("2026-03-02T10:00:00Z")
SLA = QueueSla()  # 20 s service level, 5 s short abandon

# The example record of contract §5, verbatim.
CONTRACT_EXAMPLE = b"""
{"queue": "sales", "interval_start": "2026-03-02T10:00:00Z", "interval_end": "2026-03-02T10:15:00Z",
 "offered": 5, "answered": 4, "abandoned": 2, "short_abandoned": 1, "flowed_out": 0,
 "answered_within_threshold": 3, "service_level_seconds": 20,
 "asa_seconds": 14.5, "awt_seconds": 11.0, "aht_seconds": 245.0, "longest_wait_seconds": 48.0,
 "service_level": 0.6, "abandon_rate": 0.2, "revision": 0}
"""


def total(facts: list[tuple[int, Figures]]) -> Figures:
    return reduce(Figures.merge, (f for _, f in facts), Figures())


# -- the contract's example ---------------------------------------------------------------------


def test_the_contract_example_record_is_reproduced_exactly() -> None:
    s = 1000  # ms per second
    calls = [
        # answered: (ts, answer speed, queue wait), then handled: (wrapup ts, handle time)
        Contribution(answered=(T0 + 60 * s, 3 * s, 2 * s), handled=(T0 + 300 * s, 200 * s)),
        Contribution(answered=(T0 + 120 * s, 5 * s, 4 * s), handled=(T0 + 400 * s, 250 * s)),
        Contribution(answered=(T0 + 180 * s, 2 * s, 1 * s), handled=(T0 + 500 * s, 230 * s)),
        Contribution(answered=(T0 + 240 * s, 48 * s, 37 * s), handled=(T0 + 600 * s, 300 * s)),
        Contribution(abandoned=(T0 + 90 * s, 2 * s)),  # a short abandon
        Contribution(abandoned=(T0 + 95 * s, 30 * s)),
        Contribution(waiting_since=T0 + 800 * s),  # still waiting: no figures yet
    ]
    figures = total([fact for call in calls for fact in contribution_facts(call, SLA)])
    record = interval_record("sales", T0, T0 + 15 * 60 * s, figures, SLA, revision=0)
    assert orjson.dumps(record) == orjson.dumps(orjson.loads(CONTRACT_EXAMPLE))
    assert list(record) == list(orjson.loads(CONTRACT_EXAMPLE))  # the contract's key order
    assert type(record["service_level_seconds"]) is int
    assert type(record["awt_seconds"]) is float


def test_a_record_over_zero_calls_has_null_means_and_ratios() -> None:
    record = interval_record("q", T0, T0 + 900_000, Figures(), SLA, revision=3)
    assert record == {
        "queue": "q",
        "interval_start": "2026-03-02T10:00:00Z",
        "interval_end": "2026-03-02T10:15:00Z",
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "short_abandoned": 0,
        "flowed_out": 0,
        "answered_within_threshold": 0,
        "service_level_seconds": 20,
        "asa_seconds": None,
        "awt_seconds": None,
        "aht_seconds": None,
        "longest_wait_seconds": None,
        "service_level": None,
        "abandon_rate": None,
        "revision": 3,
    }


@pytest.mark.parametrize(("seconds", "shown"), [(20.0, 20), (15, 15), (12.5, 12.5), (0.25, 0.25)])
def test_service_level_seconds_is_an_int_when_whole(seconds: float, shown: float) -> None:
    sla = QueueSla(service_level_seconds=seconds)
    value = interval_record("q", T0, T0 + 1, Figures(), sla, 0)["service_level_seconds"]
    assert value == shown and type(value) is type(shown)


def test_a_flow_out_only_interval() -> None:
    record = interval_record("q", T0, T0 + 900_000, Figures(flowed_out=2), SLA, 0)
    assert (record["flowed_out"], record["offered"], record["service_level"]) == (2, 0, None)


def test_interval_key() -> None:
    assert interval_key("sales", T0) == "sales|2026-03-02T10:00:00Z"
    assert interval_key("a|b", T0 + 250) == "a|b|2026-03-02T10:00:00.250Z"


# -- facts of one call --------------------------------------------------------------------------


def test_an_answered_call() -> None:
    facts = contribution_facts(Contribution(answered=(T0, 12_000, 9_000)), SLA)
    assert facts == [
        (
            T0,
            Figures(
                answered=1,
                answered_within_threshold=1,
                answer_ms_sum=12_000,
                queue_wait_ms_sum=9_000,
                longest_wait_ms=12_000,
            ),
        )
    ]


@pytest.mark.parametrize(("speed", "within"), [(0, 1), (19_999, 1), (20_000, 1), (20_001, 0)])
def test_answered_within_the_threshold_includes_the_threshold(speed: int, within: int) -> None:
    [(_, f)] = contribution_facts(Contribution(answered=(T0, speed, 0)), SLA)
    assert f.answered_within_threshold == within


@pytest.mark.parametrize(("waited", "short"), [(0, 1), (4_999, 1), (5_000, 0), (60_000, 0)])
def test_a_short_abandon_is_strictly_shorter_than_the_threshold(waited: int, short: int) -> None:
    [(ts, f)] = contribution_facts(Contribution(abandoned=(T0 + 7, waited)), SLA)
    assert ts == T0 + 7
    assert f == Figures(abandoned=1, short_abandoned=short, longest_wait_ms=waited)


def test_thresholds_come_from_the_queue_sla() -> None:
    sla = QueueSla(service_level_seconds=10, short_abandon_seconds=0)
    [(_, answered), (_, abandoned)] = contribution_facts(
        Contribution(answered=(T0, 15_000, 0), abandoned=(T0, 0)), sla
    )
    assert answered.answered_within_threshold == 0
    assert abandoned.short_abandoned == 0  # 0 s turns short abandons off


def test_each_flow_out_and_the_handle_time_land_at_their_own_ts() -> None:
    c = Contribution(flowed_out=(T0 + 1, T0 + 2), handled=(T0 + 3, 240_000), waiting_since=T0)
    assert contribution_facts(c, SLA) == [
        (T0 + 1, Figures(flowed_out=1)),
        (T0 + 2, Figures(flowed_out=1)),
        (T0 + 3, Figures(handled=1, handle_ms_sum=240_000)),
    ]


def test_waiting_alone_and_nothing_add_no_figures() -> None:
    assert contribution_facts(Contribution(waiting_since=T0), SLA) == []
    assert contribution_facts(EMPTY, SLA) == []


def test_negative_spans_count_as_zero() -> None:
    c = Contribution(answered=(T0, -500, -100), abandoned=(T0, -1), handled=(T0, -3))
    figures = total(contribution_facts(c, SLA))
    assert (figures.answer_ms_sum, figures.queue_wait_ms_sum, figures.handle_ms_sum) == (0, 0, 0)
    assert figures.longest_wait_ms == 0
    assert figures.short_abandoned == 1


# -- derived values -----------------------------------------------------------------------------


def test_derived_values() -> None:
    f = Figures(
        answered=4,
        answered_within_threshold=3,
        answer_ms_sum=58_000,
        queue_wait_ms_sum=44_000,
        abandoned=2,
        short_abandoned=1,
        flowed_out=1,
        handled=3,
        handle_ms_sum=600_000,
        longest_wait_ms=48_250,
    )
    assert f.offered == 5
    assert (f.asa_seconds, f.awt_seconds, f.aht_seconds) == (14.5, 11.0, 200.0)
    assert (f.service_level, f.abandon_rate, f.longest_wait_seconds) == (0.6, 0.2, 48.25)


def test_means_and_ratios_over_zero_calls_are_none_never_zero() -> None:
    f = Figures()
    assert f.offered == 0  # a count: zero is the true value
    assert f.asa_seconds is None and f.awt_seconds is None and f.aht_seconds is None
    assert f.service_level is None and f.abandon_rate is None and f.longest_wait_seconds is None


def test_only_short_abandons_offer_nothing() -> None:
    f = Figures(abandoned=2, short_abandoned=2, longest_wait_ms=3000)
    assert f.offered == 0
    assert f.service_level is None and f.abandon_rate is None
    assert f.longest_wait_seconds == 3.0


def test_handle_time_without_answers_in_the_bucket() -> None:
    # A call answered in one interval and wrapped up in the next.
    f = Figures(handled=1, handle_ms_sum=90_000)
    assert f.aht_seconds == 90.0
    assert f.asa_seconds is None and f.service_level is None


# -- merging and taking back out ----------------------------------------------------------------

counts = st.integers(min_value=0, max_value=10**12)
FIGURES = st.builds(
    Figures,
    answered=counts,
    answered_within_threshold=counts,
    answer_ms_sum=counts,
    queue_wait_ms_sum=counts,
    abandoned=counts,
    short_abandoned=counts,
    flowed_out=counts,
    handled=counts,
    handle_ms_sum=counts,
    longest_wait_ms=st.none() | counts,
)
SPANS = st.integers(min_value=-10_000, max_value=10**7)
TS = st.integers(min_value=T0, max_value=T0 + 10**8)
CONTRIBUTIONS = st.builds(
    Contribution,
    answered=st.none() | st.tuples(TS, SPANS, SPANS),
    abandoned=st.none() | st.tuples(TS, SPANS),
    flowed_out=st.lists(TS, max_size=3).map(tuple),
    handled=st.none() | st.tuples(TS, SPANS),
    waiting_since=st.none() | TS,
)
SLAS = st.builds(
    QueueSla,
    service_level_seconds=st.sampled_from([1, 10, 20, 20.5, 60]),
    short_abandon_seconds=st.sampled_from([0, 3, 5, 10.25]),
)


@given(a=FIGURES, b=FIGURES, c=FIGURES)
def test_merge_is_associative(a: Figures, b: Figures, c: Figures) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(a=FIGURES, b=FIGURES)
def test_merge_is_commutative(a: Figures, b: Figures) -> None:
    assert a.merge(b) == b.merge(a)


@given(a=FIGURES)
def test_the_empty_figures_are_the_identity(a: Figures) -> None:
    assert a.merge(Figures()) == a == Figures().merge(a)


@given(a=FIGURES, b=FIGURES)
def test_merge_returns_a_new_value_and_add_changes_in_place(a: Figures, b: Figures) -> None:
    before = dataclasses.replace(a)
    merged = a.merge(b)
    assert a == before
    a.add(b)
    assert a == merged


@given(a=FIGURES, b=FIGURES)
def test_merge_sums_counts_and_keeps_the_longest(a: Figures, b: Figures) -> None:
    merged = a.merge(b)
    assert merged.answered == a.answered + b.answered
    assert merged.handle_ms_sum == a.handle_ms_sum + b.handle_ms_sum
    waits = [w for w in (a.longest_wait_ms, b.longest_wait_ms) if w is not None]
    assert merged.longest_wait_ms == (max(waits) if waits else None)


@given(a=FIGURES, b=FIGURES)
def test_add_then_subtract_gives_back_the_counts_and_sums(a: Figures, b: Figures) -> None:
    original = dataclasses.replace(a)
    a.add(b)
    recompute = a.subtract(b)
    assert a.to_json()[:-1] == original.to_json()[:-1]
    if not recompute:
        assert a.longest_wait_ms == original.longest_wait_ms


@given(calls=st.lists(CONTRIBUTIONS, min_size=1, max_size=6), index=st.integers(0, 5), sla=SLAS)
def test_withdrawing_a_call_flags_exactly_when_it_held_the_longest_wait(
    calls: list[Contribution], index: int, sla: QueueSla
) -> None:
    index %= len(calls)
    bucket = total([f for c in calls for f in contribution_facts(c, sla)])
    withdrawn = total(contribution_facts(calls[index], sla))
    rest = total([f for i, c in enumerate(calls) if i != index for f in contribution_facts(c, sla)])
    recompute = bucket.subtract(withdrawn)
    assert bucket.to_json()[:-1] == rest.to_json()[:-1]
    if recompute:
        assert withdrawn.longest_wait_ms == bucket.longest_wait_ms
    else:
        assert bucket.longest_wait_ms == rest.longest_wait_ms


def test_subtract_flags_the_longest_wait() -> None:
    bucket = Figures(answered=2, answer_ms_sum=30_000, longest_wait_ms=20_000)
    assert not bucket.subtract(Figures(answered=1, answer_ms_sum=10_000, longest_wait_ms=10_000))
    assert bucket.subtract(Figures(answered=1, answer_ms_sum=20_000, longest_wait_ms=20_000))
    assert bucket.longest_wait_ms == 20_000  # left for the caller to recompute
    assert bucket.is_zero() is False
    assert not Figures(flowed_out=1).subtract(Figures(flowed_out=1))
    # An inconsistent bucket (a longer wait withdrawn than it holds) must be recomputed too.
    assert Figures(longest_wait_ms=5).subtract(Figures(longest_wait_ms=9))
    assert Figures().subtract(Figures(longest_wait_ms=9))


def test_is_zero() -> None:
    assert Figures().is_zero()
    assert not Figures(longest_wait_ms=0).is_zero()
    for name in [f.name for f in dataclasses.fields(Figures)][:-1]:
        assert not Figures(**{name: 1}).is_zero()
    bucket = Figures(flowed_out=1)
    bucket.subtract(Figures(flowed_out=1))
    assert bucket.is_zero()


@given(calls=st.lists(CONTRIBUTIONS, max_size=8), sla=SLAS)
def test_derived_values_from_real_calls_are_sane(calls: list[Contribution], sla: QueueSla) -> None:
    f = total([fact for c in calls for fact in contribution_facts(c, sla)])
    assert f.offered >= f.answered >= f.answered_within_threshold >= 0
    assert (f.asa_seconds is None) == (f.answered == 0)
    assert (f.awt_seconds is None) == (f.answered == 0)
    assert (f.aht_seconds is None) == (f.handled == 0)
    assert (f.service_level is None) == (f.offered == 0) == (f.abandon_rate is None)
    for mean in (f.asa_seconds, f.awt_seconds, f.aht_seconds, f.longest_wait_seconds):
        assert mean is None or mean >= 0
    for ratio in (f.service_level, f.abandon_rate):
        assert ratio is None or 0 <= ratio <= 1
    if f.service_level is not None and f.abandon_rate is not None:
        assert f.service_level + f.abandon_rate <= 1 + 1e-12
    record = interval_record("q", T0, T0 + 1, f, sla, 0)
    orjson.dumps(record)  # always serializable: no NaN, no infinity


@given(a=FIGURES)
def test_derived_values_never_divide_by_zero(a: Figures) -> None:
    """Any sums at all (a withdrawal can leave odd ones): a mean or ratio over nothing is
    absent, never an error, NaN or infinity, and otherwise the quotient its definition says."""
    quotients = {
        "asa_seconds": (a.answer_ms_sum / 1000, a.answered),
        "awt_seconds": (a.queue_wait_ms_sum / 1000, a.answered),
        "aht_seconds": (a.handle_ms_sum / 1000, a.handled),
        "service_level": (a.answered_within_threshold, a.offered),
        "abandon_rate": (a.abandoned - a.short_abandoned, a.offered),
    }
    for name, (numerator, denominator) in quotients.items():
        value = getattr(a, name)
        if denominator == 0:
            assert value is None, name
        else:
            assert math.isfinite(value) and math.isclose(value, numerator / denominator), name
    assert a.offered == a.answered + a.abandoned - a.short_abandoned
    assert a.longest_wait_seconds == (
        None if a.longest_wait_ms is None else a.longest_wait_ms / 1000
    )


# -- storage form -------------------------------------------------------------------------------


@given(a=FIGURES)
def test_json_round_trip(a: Figures) -> None:
    data = a.to_json()
    assert Figures.from_json(orjson.loads(orjson.dumps(data))) == a
    assert len(data) == 10


def test_json_is_the_fields_in_order() -> None:
    f = Figures(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert f.to_json() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert Figures.from_json([0] * 9 + [None]) == Figures()


@pytest.mark.parametrize(
    "data",
    [
        [],
        [0] * 9,
        [0] * 11,
        [0] * 8 + [None, None],
        [0.5] + [0] * 9,
        [True] + [0] * 9,
        [0] * 8 + [False, None],
        [0] * 7 + ["1", 0, None],
        [0] * 9 + ["1"],
    ],
)
def test_from_json_refuses_malformed_data(data: list[object]) -> None:
    with pytest.raises(ValueError):
        Figures.from_json(data)  # type: ignore[arg-type]


@given(CONTRIBUTIONS, SLAS)
def test_fact_stamps_are_the_ts_of_the_facts(c: Contribution, sla: QueueSla) -> None:
    assert c.fact_stamps() == [ts for ts, _ in contribution_facts(c, sla)]
