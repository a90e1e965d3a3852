"""Erlang C, the service level it predicts, the agents required and the expected wait (§6)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.staffing import (
    agents_required,
    erlang_c,
    expected_wait_seconds,
    service_level,
)


def closed_form_c(n: int, a: Fraction) -> Fraction:
    """Erlang C in exact rational arithmetic, the textbook closed form of the M/M/n queue
    (L. Kleinrock, Queueing Systems, Vol. 1, 1975, eq. 3.40):
    C = (aⁿ/n! · n/(n-a)) / (Σ_{k<n} aᵏ/k! + aⁿ/n! · n/(n-a))."""
    last = a**n / math.factorial(n) * n / (n - a)
    return last / (sum(a**k / math.factorial(k) for k in range(n)) + last)


def test_small_systems_solved_by_hand() -> None:
    """From the closed form by hand: C(1, a) = a (one server: the chance it is busy);
    C(2, 1) = (1/2 · 2) / (1 + 1 + 1) = 1/3; C(3, 2) = (8/6 · 3) / (1 + 2 + 2 + 4) = 4/9."""
    assert erlang_c(2, 1) == pytest.approx(1 / 3, abs=1e-12)
    assert erlang_c(3, 2) == pytest.approx(4 / 9, abs=1e-12)
    for a in (0.1, 0.5, 0.9):
        assert erlang_c(1, a) == pytest.approx(a, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "expected"), [(11, 0.6821), (12, 0.4494), (13, 0.2853), (14, 0.1741), (15, 0.1020)]
)
def test_ten_erlangs_table(n: int, expected: float) -> None:
    """The classic table row of A = 10 Erlangs (N = 11 waits with probability 0.6821), each
    value as the exact closed form gives it to four places."""
    assert float(closed_form_c(n, Fraction(10))) == pytest.approx(expected, abs=5e-5)
    assert erlang_c(n, 10) == pytest.approx(expected, abs=5e-5)


def test_the_textbook_ten_servers_at_six_erlangs() -> None:
    """120 arrivals an hour, 3 minutes each, 10 servers: "from the Erlang C curve, the
    probability of waiting is about 0.10" (a standard M/M/10 exercise)."""
    assert erlang_c(10, 6.0) == pytest.approx(0.1013, abs=5e-5)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 60), st.fractions(min_value=0, max_value=80, max_denominator=8))
def test_erlang_c_equals_the_exact_closed_form(n: int, a: Fraction) -> None:
    expected = 1.0 if n <= a else float(closed_form_c(n, a))
    assert erlang_c(n, float(a)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_large_systems_do_not_overflow() -> None:
    # The textbook form overflows a float from n = 171 (171! > 1.8e308); the recursion does not.
    c = erlang_c(2000, 1900.0)
    assert 0 < c < 1
    assert erlang_c(5000, 1000.0) == 0.0  # far more agents than traffic: nobody waits


def test_overloaded_or_empty_systems() -> None:
    assert erlang_c(5, 5.0) == 1.0  # n <= a: the queue grows without bound
    assert erlang_c(3, 7.5) == 1.0
    assert erlang_c(4, 0.0) == 0.0  # no traffic: nobody waits
    assert service_level(5, 5.0, 20, 180) == 0.0


@pytest.mark.parametrize(("n", "a"), [(-1, 1.0), (2, -0.5), (2, math.inf), (2, math.nan)])
def test_impossible_inputs_are_refused(n: int, a: float) -> None:
    with pytest.raises(ValueError):
        erlang_c(n, a)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200), st.floats(0, 200, allow_nan=False))
def test_erlang_c_is_a_probability_falling_with_more_agents(n: int, a: float) -> None:
    c, more = erlang_c(n, a), erlang_c(n + 1, a)
    assert 0 <= c <= 1
    assert more <= c + 1e-12


def test_service_level_by_hand() -> None:
    """A = 1, N = 2, T = AHT·ln 2 / (N - A): 1 - C/2 = 1 - 1/6."""
    aht = 180.0
    assert service_level(2, 1.0, aht * math.log(2), aht) == pytest.approx(5 / 6, abs=1e-12)
    assert service_level(2, 1.0, 0, aht) == pytest.approx(2 / 3, abs=1e-12)  # T = 0: 1 - C


# -- agents required ------------------------------------------------------------------------------


def test_agents_required_by_hand() -> None:
    """100 calls in 15 minutes at AHT 90 s: A = 10 Erlangs. With T = 20 s, AHT 90 s, N = 13
    gives 1 - 0.2853·e^(-3·20/90) = 0.8535 and N = 12 gives 1 - 0.4494·e^(-2·20/90) = 0.7119:
    13 agents for 80 %."""
    assert service_level(12, 10.0, 20, 90) == pytest.approx(0.7119, abs=5e-5)
    assert service_level(13, 10.0, 20, 90) == pytest.approx(0.8535, abs=5e-5)
    assert agents_required(100, 90.0, 20, 0.8) == 13
    assert agents_required(100, 90.0, 20, 0.0) == 11  # the fewest N > A whatever the target


def test_agents_required_is_absent_without_calls_aht_or_target() -> None:
    assert agents_required(0, 90.0, 20, 0.8) is None
    assert agents_required(10, None, 20, 0.8) is None
    assert agents_required(10, 90.0, 20, None) is None


def test_agents_required_with_calls_of_no_duration_is_one() -> None:
    assert agents_required(10, 0.0, 20, 0.8) == 1


def test_a_target_of_one_still_ends() -> None:
    required = agents_required(100, 90.0, 20, 1.0)
    assert required is not None and service_level(required, 10.0, 20, 90) == 1.0


def test_impossible_targets_are_refused() -> None:
    with pytest.raises(ValueError):
        agents_required(10, 90.0, 20, 1.5)
    with pytest.raises(ValueError):
        agents_required(10, -1.0, 20, 0.8)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2000),
    st.floats(1, 900, allow_nan=False),
    st.floats(0, 120, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)
def test_agents_required_is_the_fewest_reaching_the_target(
    offered: int, aht: float, threshold: float, target: float
) -> None:
    required = agents_required(offered, aht, threshold, target)
    a = offered * aht / 900
    assert required is not None and required > a
    assert service_level(required, a, threshold, aht) >= target
    fewer = required - 1
    assert fewer <= a or service_level(fewer, a, threshold, aht) < target


# -- expected wait --------------------------------------------------------------------------------


def test_expected_wait_per_the_contract() -> None:
    assert expected_wait_seconds(2, 3, 5, 120.0) == 0.0  # more available than waiting
    assert expected_wait_seconds(2, 3, 5, None) == 0.0  # an agent is free: no AHT needed
    assert expected_wait_seconds(3, 3, 5, 120.0) == pytest.approx(1 * 120 / 8)
    assert expected_wait_seconds(6, 0, 4, 120.0) == pytest.approx(7 * 120 / 4)
    assert expected_wait_seconds(0, 0, 4, 120.0) == pytest.approx(120 / 4)  # the next caller


def test_expected_wait_is_absent_without_agents_or_aht() -> None:
    assert expected_wait_seconds(3, 0, 0, 120.0) is None
    assert expected_wait_seconds(3, 1, 2, None) is None
